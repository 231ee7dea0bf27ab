#include "proxy/client_connection.h"
#include "proxy/shard_connect.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cstring>

#include "common/ascii.h"
#include "common/rate_limited_log.h"
#include "common/uv_handle.h"
#include "proxy/worker.h"

namespace shardgate::proxy {

namespace {

// How long a connection that is closing may take to flush its last bytes to
// a client that does not read them.
constexpr uint64_t kFlushBeforeCloseMs = 5000;
// During a shutdown drain, a connection quiet this long with nothing in
// flight counts as idle.
constexpr uint64_t kIdleQuietMs = 100;

// A TLS client's first byte is 0x16 (a handshake record). A Redis client that
// forgot --tls starts with '*' (RESP) or a letter (an inline command).
bool looksLikePlaintextRedis(uint8_t first) {
  return first == '*' || (first >= 'A' && first <= 'Z') || (first >= 'a' && first <= 'z');
}

constexpr std::string_view kTlsRequiredLine =
    "-ERR this endpoint requires TLS (redis-cli: add --tls)\r\n";

}  // namespace

// ---- setup ----------------------------------------------------------------

ClientConnection::ClientConnection(Worker& worker, const Database& db)
    : worker_(worker), db_(db), db_stats_(worker.dbStats(db)) {}

void ClientConnection::accept(Worker& worker, const Database& db, int fd) {
  auto* c = new ClientConnection(worker, db);
  worker.add(c);
  c->db_stats_.accepted.add();
  c->db_stats_.current.add();
  net::Stream* stream = nullptr;
  if (int rc = worker.io().adopt(fd, c, &stream); rc != 0) {
    spdlog::debug("{}: accept: {}", db.listen, uv_strerror(rc));
    c->closeNow();
    return;
  }
  c->client_ = stream;
  // Bytes as read from the socket: over TLS, ciphertext and handshakes.
  stream->countBytesIn(&c->db_stats_.bytes_in);
  c->start(fd);
}

void ClientConnection::start(int fd) {
  last_activity_ms_ = uv_now(worker_.loop());

  if (db_.tls) {
    // A database with client_auth has contexts of its own (its CAs, CRLs and
    // verify mode over the proxy certificate); the rest share the worker's.
    auto tls = net::TlsStream::create(worker_.io(), client_, db_.tls_store ? db_.tls_store->current() : worker_.tlsContext(),
                                      this);
    if (!tls) {
      static thread_local RateLimitedLog failed(spdlog::level::err, "TLS sessions not created");
      if (auto pass = failed.admit(uv_now(worker_.loop()))) {
        spdlog::error("{}: {}{}", db_.listen, tls.message(), pass);
      }
      closeNow();
      return;
    }
    client_ = *tls;
    startDeadline(DeadlineKind::kHandshake, worker_.settings().handshake_timeout_ms);
  } else {
    handshake_done_ = true;
    db_stats_.established.add();
  }
  if (db_.multiplex) multiplex_ = std::make_unique<MultiplexSession>(worker_, db_, *this);
  if (db_.cluster && multiplex_) {
    // The address this client reached us at: a listener on 0.0.0.0 shows
    // each client the interface it used, as a cluster node announces itself.
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      char host[INET6_ADDRSTRLEN] = "";
      uint16_t port = 0;
      if (local.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(local);
        ::inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
        port = ntohs(in6.sin6_port);
      } else {
        const auto& in4 = reinterpret_cast<const sockaddr_in&>(local);
        ::inet_ntop(AF_INET, &in4.sin_addr, host, sizeof host);
        port = ntohs(in4.sin_port);
      }
      multiplex_->setFace(host, port);
    }
  }

  // The shard connection is opened when the client sends its first bytes of
  // plaintext: a flood of bare TCP connections, or of handshakes that never
  // send a command (health checks, scanners), never reaches the shards.
  updateReading();
}

void ClientConnection::startDeadline(DeadlineKind kind, uint64_t ms) {
  worker_.startDeadline(*this, kind, ms);
}

void ClientConnection::connectBackend() {
  backend_connecting_ = true;
  auto conn = connectShard(worker_, db_.shard_addr, db_.shard_tls.get(), &shard_side_, net::ConnectOptions{});
  if (!conn) {
    onBackendFailed(conn.message());
    return;
  }
  backend_ = conn->stream;
  backend_tls_ = conn->tls;
  // A shard that does not answer the connect (a dropped SYN: the kernel
  // would retry for minutes), or a TLS shard that accepts and never
  // completes the handshake (a plaintext redis-server reads a ClientHello
  // as an unfinished inline command), must not keep the client waiting:
  // as long as a shared link's connect may take.
  startDeadline(DeadlineKind::kHandshake, kShardConnectTimeoutMs);
}

// ---- reading ----------------------------------------------------------------

bool ClientConnection::onStreamFirstBytes(const uint8_t* data, size_t) {
  last_activity_ms_ = uv_now(worker_.loop());
  if (!looksLikePlaintextRedis(data[0])) return false;
  refusePlaintext();
  return true;
}

void ClientConnection::onStreamData(const uint8_t* data, size_t len) {
  last_activity_ms_ = uv_now(worker_.loop());
  // A TLS stream hands over what it decrypted even after a failed write of
  // its own made this connection close: it is dropped.
  if (closing_ || close_after_flush_) return;
  if (multiplex_) multiplex_->onBytes(data, len);
  else toBackend(data, len);
}

void ClientConnection::onStreamEnd(int status) {
  // A TLS stream reports the client's close_notify after the data before
  // it, which may have made this connection close already.
  if (closing_ || close_after_flush_) return;
  onClientEnd(status == UV_EOF);
}

void ClientConnection::onStreamTlsFailed() {
  if (closing_) return;
  if (!handshake_done_) {
    onHandshakeFailed(tlsStream().session().failureCode());
    return;
  }
  spdlog::debug("{}: TLS error from {}: {}", db_.listen, peerName(), tlsStream().session().failureReason());
  client_dead_ = true;
  closeAfterFlush();
}

void ClientConnection::onBackendData(const uint8_t* data, size_t len) {
  if (closing_) return;
  backend_spoke_ = true;
  last_activity_ms_ = uv_now(worker_.loop());
  awaiting_reply_ = false;
  worker_.stats().bytes_from_backends.add(len);
  toClient(data, len);
}

// ---- writing ----------------------------------------------------------------

void ClientConnection::toBackend(const uint8_t* data, size_t len) {
  if (backend_failed_ || backend_eof_) return;  // the client is being told; drop
  awaiting_reply_ = true;
  if (!backend_connected_) {
    if (!backend_connecting_) connectBackend();
    // Held by the stream until it connects; dropped if it failed at once.
    if (backend_ && !backend_failed_) backend_->write(data, len);
  } else if (int rc = backend_->write(data, len); rc != 0) {
    onBackendEnd(rc);
    return;
  }
  updateReading();
}

void ClientConnection::toClient(const uint8_t* data, size_t len) {
  if (client_dead_) return;
  writeToClient(data, len);
  updateReading();
}

void ClientConnection::writeToClient(const uint8_t* data, size_t len) {
  if (client_dead_ || closing_) return;
  db_stats_.bytes_out.add(len);
  if (int rc = client_->write(data, len); rc != 0) clientWriteFailed(rc);
}

void ClientConnection::clientWriteFailed(int rc) {
  // UV_EPROTO: the TLS session can no longer encrypt (the client sent its
  // close_notify, or the session failed).
  spdlog::debug("{}: write to {} failed: {}", db_.listen, peerName(), uv_strerror(rc));
  client_dead_ = true;
  client_->discardWrites();
  closeAfterFlush();
}

void ClientConnection::sendErrorLine(const std::string& line) {
  toClient(reinterpret_cast<const uint8_t*>(line.data()), line.size());
}

void ClientConnection::onStreamDrained(int status) {
  if (closing_) return;
  if (status != 0) {
    client_dead_ = true;
    closeAfterFlush();
    return;
  }
  if (close_after_flush_) {
    if (backendWriteIdle() || backend_eof_) closeNow();
    return;
  }
  updateReading();
}

void ClientConnection::onToBackendDrained(int status) {
  if (closing_) return;
  if (status != 0) {
    onBackendEnd(status);
    return;
  }
  if (close_after_flush_) {
    if (clientWriteIdle()) closeNow();
    return;
  }
  if (client_eof_) {
    if (client_dead_) {
      closeNow();  // nobody to reply to; what the client sent is delivered
    } else {
      shutdownBackend();
    }
    return;
  }
  updateReading();
}

void ClientConnection::lendReplyBuffer(ByteBuffer& into) { worker_.lendBuffer(into); }

void ClientConnection::onReplyReady() {
  if (!closing_) worker_.markDirty(this);
}

void ClientConnection::flushReplies() {
  if (closing_ || !multiplex_) return;
  multiplex_->resume();
  size_t held = multiplex_->bufferedBytes() + reply_out_.size() + client_->writeQueued();
  if (held > db_.max_client_output) {
    // Redis's client-output-buffer-limit: a client that does not read what
    // it asked for is disconnected rather than allowed to hold the proxy's
    // memory (shared links cannot stop reading for one client).
    static thread_local RateLimitedLog over(spdlog::level::warn, "clients closed over limits.max_client_output");
    if (auto pass = over.admit(uv_now(worker_.loop()))) {
      spdlog::warn("{}: closing {}: {} bytes of replies waiting, over limits.max_client_output ({}){}",
                   db_.listen, peerName(), held, db_.max_client_output, pass);
    }
    client_dead_ = true;
    closeNow();
    return;
  }
  if (!reply_out_.empty()) {
    toClient(reply_out_.data(), reply_out_.size());
    if (closing_) return;
    reply_out_.clear();
    worker_.takeBackBuffer(reply_out_);
  }
  if (multiplex_->idle() && (multiplex_->stopped() || client_eof_)) {
    closeAfterFlush();
    return;
  }
  updateReading();
}

// ---- flow control ------------------------------------------------------------

bool ClientConnection::clientReadAllowed() const {
  if (closing_ || close_after_flush_ || client_eof_) return false;
  // During the handshake the client must be read even before the shard answers.
  if (!handshake_done_) return true;
  if (multiplex_) return client_->writeIdle() && multiplex_->acceptsInput();
  // Before the shard connects, what the client sent is held: one read's worth.
  return backendWriteIdle();
}

bool ClientConnection::backendReadAllowed() const {
  return !closing_ && !close_after_flush_ && backend_connected_ && handshake_done_ &&
         !backend_eof_ && client_->writeIdle();
}

void ClientConnection::updateReading() {
  if (closing_) return;
  bool want_client = clientReadAllowed();
  if (want_client != client_reading_) {
    client_->setReading(want_client);
    client_reading_ = want_client;
  }
  bool want_backend = backendReadAllowed();
  if (backend_ && want_backend != backend_reading_) {
    backend_->setReading(want_backend);
    backend_reading_ = want_backend;
  }
}

// ---- events -----------------------------------------------------------------

void ClientConnection::onBackendConnected(int status) {
  if (closing_) return;
  if (status != 0) {
    onBackendFailed(asciiLower(uv_strerror(status)));
    return;
  }
  // Over TLS the shard is usable once the handshake is done.
  backend_tcp_connected_ = true;
  if (backend_tls_ == nullptr) {
    // The connect deadline (connectBackend), unless a closing one replaced it.
    if (!client_eof_ && !close_after_flush_) worker_.stopDeadline(*this);
    onBackendReady();
  }
}

void ClientConnection::onBackendHandshake() {
  if (closing_) return;
  countShardHandshake(db_stats_.shard(0), *backend_tls_);
  // The connect deadline (connectBackend), unless a closing one replaced it.
  if (!client_eof_ && !close_after_flush_) worker_.stopDeadline(*this);
  // connectShard left the stream reading for the handshake: from here on
  // updateReading() decides (backpressure).
  backend_reading_ = true;
  onBackendReady();
}

void ClientConnection::onBackendTlsFailed() {
  if (closing_) return;
  const std::string why = backend_tls_->session().failureReason();
  if (!backend_connected_) {
    onBackendFailed(why);
    return;
  }
  if (!backend_spoke_ && mayBeRefusedAfterHandshake(*backend_tls_)) {
    // TLS 1.3: the shard refuses our client certificate after our side of
    // the handshake completed; before it said anything, that is still a
    // failed handshake, and the shard is unavailable.
    backend_eof_ = true;
    onBackendFailed("TLS handshake failed: " + backend_tls_->session().failureCode());
    return;
  }
  // After the handshake: a broken connection, as a reset would be.
  spdlog::debug("db {}: shard {} TLS error: {}", db_.name, db_.shard, why);
  onBackendEnd(UV_EPROTO);
}

void ClientConnection::onBackendFailed(const std::string& why) {
  if (closing_ || backend_failed_) return;
  backend_failed_ = true;
  worker_.stats().backend_connect_failures.add();
  db_stats_.shard(0).errors.add();
  db_stats_.shard(0).markDown();
  static thread_local RateLimitedLog refused(spdlog::level::warn, "failed shard connections");
  if (auto pass = refused.admit(uv_now(worker_.loop()))) {
    spdlog::warn("db {}: shard {} unavailable: {}{}", db_.name, db_.shard, why, pass);
  }
  if (backend_) backend_->discardWrites();
  sendErrorLine("-ERR shard " + db_.shard + " unavailable: " + why + "\r\n");
  closeAfterFlush();
}

void ClientConnection::onBackendReady() {
  // TCP_NODELAY is set by the stream; what was held went out before this.
  backend_connected_ = true;
  db_stats_.shard(0).markUp();
  if (client_eof_ && backend_->writeIdle()) shutdownBackend();
  updateReading();
}

// client_auth: the verified certificate's names against client_allow. The
// handshake itself already refused a missing (required) or unverifiable
// certificate; this refuses a verified one the database does not want.
// False: refused, and the connection is closing.
bool ClientConnection::admitClientCertificate(const tls::TlsSession& session) {
  Stats& stats = worker_.stats();
  std::optional<tls::ClientIdentity> id = session.verifiedPeerIdentity();
  if (!id) {
    // Only client_auth optional gets here without one: the handshake
    // requires it otherwise.
    stats.client_cert_absent.add();
    spdlog::debug("{}: client {} presented no certificate{}", db_.listen, peerName(),
                  session.sessionReused() ? " (resumed session)" : "");
    return true;
  }
  if (!db_.client_allow.empty() && !db_.client_allow.allows(*id)) {
    stats.handshake_failures[static_cast<size_t>(HandshakeFailure::kClientNotAllowed)].add();
    static thread_local RateLimitedLog refused(spdlog::level::warn, "clients refused by client_allow");
    if (auto pass = refused.admit(uv_now(worker_.loop()))) {
      std::string names = "CN " + (id->cn.empty() ? std::string("(none)") : id->cn);
      for (const auto& n : id->dns) names += ", DNS " + n;
      for (const auto& n : id->email) names += ", email " + n;
      for (const auto& n : id->uri) names += ", URI " + n;
      spdlog::warn("db {}: client {} refused: certificate subject \"{}\" ({}) matches no client_allow entry{}",
                   db_.name, peerName(), id->subject, names, pass);
    }
    client_dead_ = true;
    closeAfterFlush();
    return false;
  }
  stats.client_cert_verified.add();
  spdlog::debug("{}: client {} certificate verified: subject \"{}\"{}", db_.listen, peerName(), id->subject,
                session.sessionReused() ? " (resumed session)" : "");
  if (multiplex_) multiplex_->setCertSubject(id->subject);
  cert_subject_ = std::move(id->subject);
  return true;
}

void ClientConnection::onHandshakeDone() {
  handshake_done_ = true;
  last_activity_ms_ = uv_now(worker_.loop());
  worker_.stopDeadline(*this);
  const tls::TlsSession& session = tlsStream().session();
  Stats& stats = worker_.stats();

  stats.handshakes_ok.add();
  db_stats_.established.add();
  if (session.sessionReused()) stats.handshakes_resumed.add();
  // A refusal by client_allow comes after a completed handshake: counted as
  // one (and as established) and then as the refusal it is.
  if (db_.client_auth != config::ClientAuth::kNone && !admitClientCertificate(session)) return;
  std::string_view proto = session.protocolName();
  if (proto == "TLSv1.3") stats.connections_by_version[3].add();
  else if (proto == "TLSv1.2") stats.connections_by_version[2].add();
  else if (proto == "TLSv1.1") stats.connections_by_version[1].add();
  else stats.connections_by_version[0].add();
  if (const auto& audit = session.context().policy().audit_min_version) {
    auto version = session.negotiatedVersion();
    if (version && *version < *audit) {
      stats.audit_below_min.add();
      static thread_local RateLimitedLog below(spdlog::level::debug,
                                              "handshakes below tls.audit_min_version");
      if (auto pass = below.admit(uv_now(worker_.loop()))) {
        spdlog::debug("{}: audit: {} negotiated {}, below tls.audit_min_version {}{}", db_.listen,
                      peerName(), proto, tls::toString(*audit), pass);
      }
    }
  }
  if (spdlog::should_log(spdlog::level::trace)) {
    spdlog::trace("{}: handshake with {}: {} {}{} generation {}", db_.listen, peerName(), proto,
                  session.cipherName(), session.sessionReused() ? " (resumed)" : "", session.generation());
  }
  updateReading();
}

void ClientConnection::refusePlaintext() {
  // One plaintext line the client can read and show, then the close: without
  // it redis-cli prints nothing and the user cannot tell why.
  worker_.stats().handshake_failures[static_cast<size_t>(HandshakeFailure::kNotTls)].add();
  spdlog::debug("{}: plaintext from {} on a TLS endpoint: told it to use TLS", db_.listen, peerName());
  const auto* line = reinterpret_cast<const uint8_t*>(kTlsRequiredLine.data());
  if (int rc = tlsStream().writeClear(line, kTlsRequiredLine.size()); rc != 0) clientWriteFailed(rc);
  if (closing_) return;
  closeAfterFlush();  // no close_notify: the handshake never began
}

void ClientConnection::onHandshakeFailed(std::string_view reason) {
  HandshakeFailure kind = classifyHandshakeFailure(reason);
  worker_.stats().handshake_failures[static_cast<size_t>(kind)].add();
  if (kind == HandshakeFailure::kNoClientCert || kind == HandshakeFailure::kBadClientCert ||
      kind == HandshakeFailure::kClientCertExpired) {
    // A refused client certificate is the operator's business (a client
    // missing its certificate, a CA or CRL out of date): said at warning
    // level, at most one line a second per worker, with the count passed over.
    static thread_local RateLimitedLog refused(spdlog::level::warn, "client certificates refused");
    if (auto pass = refused.admit(uv_now(worker_.loop()))) {
      spdlog::warn("db {}: client {} refused at the handshake ({}): {}{}", db_.name, peerName(), toString(kind),
                   reason, pass);
    }
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("{}: TLS handshake from {} failed ({}): {}", db_.listen, peerName(), toString(kind),
                  db_.tls ? tlsStream().session().failureReason() : std::string(reason));
  }
  closeAfterFlush();  // the alert OpenSSL produced goes out first
}

void ClientConnection::onDeadline() {
  if (closing_) return;
  if (handshake_done_ && backend_connecting_ && !backend_connected_ && !backend_failed_ && !client_eof_ &&
      !close_after_flush_) {
    onBackendFailed(std::string(backend_tcp_connected_ ? "TLS handshake timed out" : "connect timed out") +
                    " after " + std::to_string(kShardConnectTimeoutMs) + " ms");
    return;
  }
  if (!handshake_done_) {
    worker_.stats().handshake_failures[static_cast<size_t>(HandshakeFailure::kTimeout)].add();
    spdlog::debug("{}: TLS handshake from {} timed out after {} ms", db_.listen, peerName(),
                  worker_.settings().handshake_timeout_ms);
  }
  closeNow();
}

void ClientConnection::onClientEnd(bool clean) {
  client_eof_ = true;
  if (!clean) {
    client_dead_ = true;
    client_->discardWrites();
  }
  if (!handshake_done_) {
    onHandshakeFailed("peer closed");
    closeNow();
    return;
  }
  updateReading();
  if (multiplex_) {
    // A half-closed client may still read: what it sent before the EOF is
    // answered, as redis-server answers it, then the shards free what only
    // this client waited for (MultiplexSession::endInput); flushReplies()
    // closes once the session is idle.
    multiplex_->endInput();
    if (client_dead_ || multiplex_->idle()) {
      multiplex_->abandon();
      closeAfterFlush();
      return;
    }
  } else if (!backend_connected_) {
    if (backend_failed_ || backend_ == nullptr || backend_->writeQueued() == 0) closeAfterFlush();
    // else: the held request goes out once the shard connects, then we half-close
  } else if (backend_->writeIdle()) {
    if (client_dead_) {
      closeNow();
      return;
    }
    shutdownBackend();
  }
  // Bounded: a shard that never answers the half-close does not keep us forever.
  if (!closing_ && !close_after_flush_) {
    startDeadline(DeadlineKind::kFlushBeforeClose, kFlushBeforeCloseMs);
  }
}

void ClientConnection::shutdownBackend() {
  if (backend_shutdown_ || closing_) return;
  backend_shutdown_ = true;
  if (backend_->shutdownWrite() != 0) closeAfterFlush();
}

void ClientConnection::onBackendShutdown(int status) {
  if (!closing_ && status != 0) closeAfterFlush();
}

void ClientConnection::onBackendEnd(int status) {
  if (backend_tls_ != nullptr && !backend_failed_ && !closing_ && !backend_eof_ &&
      (!backend_connected_ || (!backend_spoke_ && mayBeRefusedAfterHandshake(*backend_tls_)))) {
    // The shard closed during the TLS handshake, or (TLS 1.3: a refused
    // client certificate, its alert lost to the reset our first write
    // drew) before saying anything: it is unusable, not a connection that
    // ended.
    backend_eof_ = true;
    onBackendFailed("TLS handshake failed: " + (status == UV_EOF ? std::string("the shard closed the connection")
                                                                 : asciiLower(uv_strerror(status))));
    return;
  }
  if (backend_eof_) return;
  backend_eof_ = true;
  if (backend_) backend_->discardWrites();
  if (status != UV_EOF) {
    spdlog::debug("db {}: shard {} connection error: {}", db_.name, db_.shard, uv_strerror(status));
  }
  // The line answers a request still waiting for its reply. With none
  // waiting (the shard replied, then closed: CLIENT KILL, QUIT, its timeout)
  // the client sees the close, as it would from redis-server itself; a line
  // here would be read as the reply to its next command.
  if (awaiting_reply_ && !client_eof_ && !client_dead_ && handshake_done_) {
    sendErrorLine("-ERR shard " + db_.shard + " closed the connection\r\n");
  }
  closeAfterFlush();
}

// ---- closing ----------------------------------------------------------------

void ClientConnection::closeAfterFlush() {
  if (closing_) return;
  if (multiplex_ && !reply_out_.empty() && !client_dead_) {
    // Replies not yet written this loop turn go out before the close.
    ByteBuffer last;
    last.swap(reply_out_);
    toClient(last.data(), last.size());
    if (closing_) return;
  }
  if (!close_after_flush_) {
    close_after_flush_ = true;
    updateReading();
    // TLS: our close_notify, unless the session failed (or never opened).
    if (handshake_done_ && !client_dead_) {
      if (int rc = client_->closeNotify(); rc != 0) clientWriteFailed(rc);
    }
    if (closing_) return;
    startDeadline(DeadlineKind::kFlushBeforeClose, kFlushBeforeCloseMs);
  }
  bool client_flushed = clientWriteIdle() || client_dead_;
  bool backend_flushed = backendWriteIdle() || backend_eof_ || !backend_connected_;
  if (client_flushed && backend_flushed) closeNow();
}

void ClientConnection::closeIfIdle(uint64_t now_ms) {
  if (closing_) return;
  if (!handshake_done_) {
    closeNow();
    return;
  }
  bool in_flight = multiplex_ ? !multiplex_->idle() : awaiting_reply_;
  if (!in_flight && clientWriteIdle() && backendWriteIdle() &&
      now_ms - last_activity_ms_ >= kIdleQuietMs) {
    closeAfterFlush();
  }
}

void ClientConnection::closeNow() {
  if (closing_) return;
  closing_ = true;
  // The session goes first: its requests are orphaned while the worker's
  // links still exist.
  multiplex_.reset();
  if (dirty) worker_.forgetClient(this);
  worker_.remove(this);
  db_stats_.current.sub();
  if (handshake_done_) db_stats_.disconnections.add();
  else db_stats_.establishment_failures.add();
  // The streams free themselves once their sockets are closed; from here
  // on they call nobody.
  worker_.stopDeadline(*this);
  if (backend_) backend_->close();
  if (client_) {
    client_->close([](void* self) { delete static_cast<ClientConnection*>(self); }, this);
  } else {
    delete this;  // only from accept(), which returns at once
  }
}

}  // namespace shardgate::proxy
