// CertReloader: the one path by which a TLS context becomes the served one,
// whatever asked for it (startup, a file event in cert_dir, SIGHUP, later the
// admin API). It is a transaction (as HAProxy's ssl_ckch):
//
//   read cert_dir ─► unchanged? stop ─► validate pair, chain, dates
//        ─► build SSL_CTX ─► preflight handshake in memory ─► publish (swap)
//
// Any failing step leaves the last good context serving, counts a failed
// reload and logs the reason naming the file; a file missing at run time is
// such a failure (a self-signed pair is generated at the first start only).
// When the files come back equal to what is served, that is logged too.
// Runs on the control thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "config/config.h"
#include "tls/cert_files.h"
#include "tls/ticket_keys.h"
#include "tls/tls_context_store.h"

namespace shardgate::server {

class CertReloader {
 public:
  // kRetryLater: the files could not even be read because the process is
  // short of descriptors or memory (a connection flood at the open-file
  // limit); nothing is known about them, and no file event will come to say
  // they are readable again, so the caller tries again after kRetryMs.
  enum class Outcome { kApplied, kUnchanged, kFailed, kRetryLater };
  static constexpr uint64_t kRetryMs = 1000;

  explicit CertReloader(tls::TlsContextStore& store);

  // Startup: generates a self-signed pair if allowed and none exists, then
  // applies. A failure is returned, not just logged: the process cannot serve.
  Status loadInitial(const config::Config& config);
  // A change was noticed (trigger: "file change", "SIGHUP"); applies it if it
  // is whole and valid, otherwise keeps serving the last good context. Only
  // reads cert_dir: never generates a pair.
  Outcome reload(const config::Config& config, const char* trigger);
  // Warns once per generation as the served certificate nears its end (30, 7, 1 days).
  void checkExpiry(int64_t now_epoch);

  uint64_t reloadsOk() const { return ok_; }
  uint64_t reloadsFailed() const { return failed_; }
  const std::string& lastFailure() const { return last_failure_; }
  tls::TicketKeys& ticketKeys() { return *ticket_keys_; }

 private:
  Result<tls::TlsContextPtr> build(const config::Config& config, const tls::CertBundle& bundle);
  bool sameInputs(const tls::CertBundle& bundle, const tls::TlsPolicy& policy) const;

  tls::TlsContextStore& store_;
  std::shared_ptr<tls::TicketKeys> ticket_keys_;
  // What the served context was built from, to skip reloads that change nothing.
  tls::CertBundle applied_bundle_;
  tls::TlsPolicy applied_policy_;
  // The last input that failed, so an unrelated event does not count it again.
  tls::CertBundle failed_bundle_;
  tls::TlsPolicy failed_policy_;
  bool have_failed_input_ = false;
  // The last reload attempt failed (for whatever reason), so files equal to
  // the served ones are news: "valid again".
  bool last_attempt_failed_ = false;
  uint64_t ok_ = 0;
  uint64_t failed_ = 0;
  std::string last_failure_;
  uint64_t expiry_warned_generation_ = 0;
  int expiry_warned_days_ = 0;
};

}  // namespace shardgate::server
