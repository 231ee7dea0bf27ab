// ResumptionSlot: the latest TLS session (a TLS 1.3 ticket, or a TLS 1.2
// session) one client got from one server, offered on its next connection
// there so the reconnect is an abbreviated handshake.
//
// Owned by one thread (a worker keeps one per shard) and shared with the
// TlsSessions it lends itself to: a session offers the slot's content at
// its start, and stores every new ticket the server sends into it, also
// the ones that arrive after the handshake (TLS 1.3, RFC 8446 section 4.6.1).
// The SSL_SESSION inside stays opaque outside tls/.
#pragma once

#include <cstdint>
#include <memory>

struct ssl_session_st;  // SSL_SESSION

namespace shardgate::tls {

class ResumptionSlot {
 public:
  // Nothing to offer yet.
  bool empty() const { return session_ == nullptr; }
  // The generation of the client context the session was made with: it is
  // offered only to a connection on a context of the same generation, so a
  // new CA or client certificate always gets a full handshake.
  uint64_t generation() const { return generation_; }
  // How many sessions (tickets) were stored so far.
  uint64_t stored() const { return stored_; }
  void clear() {
    session_.reset();
    generation_ = 0;
  }

 private:
  friend class TlsSession;
  std::shared_ptr<ssl_session_st> session_;
  uint64_t generation_ = 0;
  uint64_t stored_ = 0;
};

}  // namespace shardgate::tls
