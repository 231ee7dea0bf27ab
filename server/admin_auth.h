// AdminAuth: who is calling the admin API. A client certificate that
// chained to mtls_trusted_ca (checked during the handshake) is enough by
// itself; otherwise HTTP basic auth (RFC 7617) against admin.users, whose
// passwords are stored only as scrypt hashes.
//
//   request ─► verified client certificate? ─yes─► allowed ("cert CN=...")
//           └► Authorization: Basic ─► wait (failures from this address) ─►
//              scrypt on the libuv thread pool (never on the control loop)
//              ─► allowed ("user admin") / 401
//
// Repeated failures from one address are slowed down: each one doubles the
// wait before that address's next verification (from 250 ms up to 8 s), a
// success clears it. One address has one verification at a time; the rest
// queue behind it, so guesses sent in parallel wait like guesses in a row. The table of addresses is bounded (the oldest entry
// goes first), so a scan from many addresses cannot grow it.
// Control thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "http/http_message.h"
#include "tls/password_hash.h"

namespace shardgate::server {

class AdminAuth {
 public:
  static constexpr uint64_t kFirstDelayMs = 250;
  static constexpr uint64_t kMaxDelayMs = 8000;
  static constexpr size_t kMaxTrackedAddresses = 1024;

  struct Outcome {
    bool allowed = false;
    std::string who;         // "user admin", "cert CN=ops"; the user name tried when refused
    http::Response refusal;  // when not allowed: 401 with WWW-Authenticate
  };
  using Done = std::function<void(Outcome)>;

  explicit AdminAuth(uv_loop_t* loop);
  ~AdminAuth();
  AdminAuth(const AdminAuth&) = delete;
  AdminAuth& operator=(const AdminAuth&) = delete;

  // The users (their hashes were checked by the config parser; one that
  // does not parse here never authenticates).
  void setUsers(const std::vector<config::AdminUser>& users);
  // Calls done on the loop, now (a certificate, no credentials) or after a
  // verification. done is not called once this object is destroyed.
  void authenticate(const http::Request& request, Done done);

  // The wait before the next verification for an address with this many failures.
  static uint64_t delayFor(unsigned failures);

 private:
  struct Failures {
    unsigned count = 0;
    uint64_t last_ms = 0;
  };
  struct Pending;
  // An address with a verification under way, and what queues behind it.
  struct Turn {
    std::deque<std::unique_ptr<Pending>> waiting;
  };

  // Waits as the address's failures say, then verifies.
  void schedule(std::unique_ptr<Pending> pending);
  // The address's verification ended: the next one in its queue goes.
  void next(const std::string& host);
  void verify(std::unique_ptr<Pending> pending);
  void finished(Pending& pending, bool ok);

  uv_loop_t* loop_;
  std::unordered_map<std::string, tls::PasswordHash> users_;
  // Used for unknown user names, so a wrong name costs as long as a wrong password.
  tls::PasswordHash dummy_;
  std::unordered_map<std::string, Failures> failures_;
  // Bounded by the admin connection cap: a connection has one request at a time.
  std::unordered_map<std::string, Turn> turns_;
  std::shared_ptr<bool> alive_;
};

// "user:password" from an Authorization header value ("Basic dXNlcjpwYXNz");
// nullopt when it is not basic auth or does not decode.
std::optional<std::pair<std::string, std::string>> parseBasicAuth(const std::string& header_value);

}  // namespace shardgate::server
