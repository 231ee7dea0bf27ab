#include "proxy/client_connection.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

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

void allocFromWorker(uv_handle_t* handle, size_t, uv_buf_t* buf);

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
    : worker_(worker),
      db_(db),
      to_client_(this, &ClientConnection::onToClientDrained),
      to_backend_(this, &ClientConnection::onToBackendDrained) {}

void ClientConnection::accept(Worker& worker, const Database& db, int fd) {
  auto* c = new ClientConnection(worker, db);
  uv_tcp_init(worker.loop(), &c->client_);
  uv_tcp_init(worker.loop(), &c->backend_);
  uv_timer_init(worker.loop(), &c->timer_);
  c->client_.data = c->backend_.data = c->timer_.data = c;
  c->open_handles_ = 3;
  worker.add(c);
  worker.stats().connections_total.add();
  worker.stats().connections_current.add();
  int rc = uv_tcp_open(&c->client_, fd);
  if (rc != 0) {
    ::close(fd);
    spdlog::debug("{}: accept: {}", db.listen, uv_strerror(rc));
    c->closeNow();
    return;
  }
  c->start();
}

void ClientConnection::start() {
  last_activity_ms_ = uv_now(worker_.loop());
  // TCP_NODELAY came with the socket from the listening one (Listener::start).

  if (db_.tls) {
    tls_ = tls::TlsSession::create(worker_.tlsContext(), tls::TlsSession::Role::kServer);
    if (!tls_) {
      static thread_local RateLimitedLog failed(spdlog::level::err, "TLS sessions not created");
      if (auto pass = failed.admit(uv_now(worker_.loop()))) {
        spdlog::error("{}: cannot create a TLS session (out of memory?){}", db_.listen, pass);
      }
      closeNow();
      return;
    }
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<ClientConnection*>(t->data)->onTimer(); },
                   worker_.settings().handshake_timeout_ms, 0);
  } else {
    handshake_done_ = true;
  }
  if (db_.multiplex) multiplex_ = std::make_unique<MultiplexSession>(worker_, db_, *this);

  // The shard connection is opened when the client sends its first bytes of
  // plaintext: a flood of bare TCP connections, or of handshakes that never
  // send a command (health checks, scanners), never reaches the shards.
  updateReading();
}

void ClientConnection::connectBackend() {
  backend_connecting_ = true;
  // Requests are allocated for their one use rather than kept in every
  // connection: an idle connection's memory is what the proxy scales by.
  auto* req = new uv_connect_t;
  req->data = this;
  int rc = uv_tcp_connect(req, &backend_, reinterpret_cast<const sockaddr*>(&db_.shard_addr),
                          [](uv_connect_t* r, int status) {
                            std::unique_ptr<uv_connect_t> done(r);
                            static_cast<ClientConnection*>(r->data)->onConnected(status);
                          });
  if (rc != 0) {
    delete req;
    onConnected(rc);
  }
}

// ---- reading ----------------------------------------------------------------

namespace {
void allocFromWorker(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  // Every read lands in the worker's one read buffer: it is consumed before
  // the read callback returns, so no connection holds read memory while idle.
  *buf = static_cast<Worker*>(handle->loop->data)->readBuffer();
}
}  // namespace

void ClientConnection::onClientRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<ClientConnection*>(s->data);
  if (self->closing_ || nread == 0) return;
  if (nread < 0) {
    self->onClientEnd(nread == UV_EOF);
    return;
  }
  self->onClientData(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
}

void ClientConnection::onBackendRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<ClientConnection*>(s->data);
  if (self->closing_ || nread == 0) return;
  if (nread < 0) {
    self->onBackendEnd(static_cast<int>(nread));
    return;
  }
  self->onBackendData(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
}

void ClientConnection::onClientData(const uint8_t* data, size_t len) {
  last_activity_ms_ = uv_now(worker_.loop());
  worker_.stats().bytes_from_clients.add(len);
  if (!tls_) {
    if (multiplex_) multiplex_->onBytes(data, len);
    else toBackend(data, len);
    return;
  }
  if (!handshake_done_ && !tls_started_) {
    tls_started_ = true;
    if (looksLikePlaintextRedis(data[0])) {
      refusePlaintext();
      return;
    }
  }
  ByteBuffer& plain = worker_.plainScratch();
  ByteBuffer& cipher = worker_.cipherScratch();
  plain.clear();
  cipher.clear();
  auto result = tls_->feed(data, len, plain, cipher);
  if (!cipher.empty()) sendToClient(cipher.data(), cipher.size());
  if (closing_) return;
  if (tls_->state() == tls::TlsSession::State::kFailed) {
    if (!handshake_done_) {
      onHandshakeFailed(tls_->failureCode());
    } else {
      spdlog::debug("{}: TLS error from {}: {}", db_.listen, peerName(), tls_->failureReason());
      client_dead_ = true;
      closeAfterFlush();
    }
    return;
  }
  if (result.handshake_completed) onHandshakeDone();
  if (closing_ || close_after_flush_) return;
  if (!plain.empty()) {
    if (multiplex_) multiplex_->onBytes(plain.data(), plain.size());
    else toBackend(plain.data(), plain.size());
  }
  if (tls_->state() == tls::TlsSession::State::kPeerClosed) onClientEnd(true);
}

void ClientConnection::onBackendData(const uint8_t* data, size_t len) {
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
    to_backend_.hold(data, len);
    if (!backend_connecting_) connectBackend();
  } else if (int rc = to_backend_.send(backendStream(), data, len); rc != 0) {
    onBackendEnd(rc);
    return;
  }
  updateReading();
}

void ClientConnection::toClient(const uint8_t* data, size_t len) {
  if (client_dead_) return;
  if (!tls_) {
    sendToClient(data, len);
  } else {
    ByteBuffer& cipher = worker_.cipherScratch();
    cipher.clear();
    if (auto st = tls_->encrypt(data, len, cipher); !st) {
      spdlog::debug("{}: cannot encrypt for {}: {}", db_.listen, peerName(), st.message());
      client_dead_ = true;
      closeAfterFlush();
      return;
    }
    sendToClient(cipher.data(), cipher.size());
  }
  updateReading();
}

void ClientConnection::sendToClient(const uint8_t* data, size_t len) {
  if (client_dead_ || closing_) return;
  if (int rc = to_client_.send(clientStream(), data, len); rc != 0) {
    spdlog::debug("{}: write to {} failed: {}", db_.listen, peerName(), uv_strerror(rc));
    client_dead_ = true;
    to_client_.discard();
    closeAfterFlush();
  }
}

void ClientConnection::sendErrorLine(const std::string& line) {
  toClient(reinterpret_cast<const uint8_t*>(line.data()), line.size());
}

void ClientConnection::onToClientDrained(void* p, int status) {
  auto* self = static_cast<ClientConnection*>(p);
  if (self->closing_) return;
  if (status != 0) {
    self->client_dead_ = true;
    self->closeAfterFlush();
    return;
  }
  if (self->close_after_flush_) {
    if (self->to_backend_.idle() || self->backend_eof_) self->closeNow();
    return;
  }
  self->updateReading();
}

void ClientConnection::onToBackendDrained(void* p, int status) {
  auto* self = static_cast<ClientConnection*>(p);
  if (self->closing_) return;
  if (status != 0) {
    self->onBackendEnd(status);
    return;
  }
  if (self->close_after_flush_) {
    if (self->to_client_.idle()) self->closeNow();
    return;
  }
  if (self->client_eof_) {
    if (self->client_dead_) {
      self->closeNow();  // nobody to reply to; what the client sent is delivered
    } else {
      self->shutdownBackend();
    }
    return;
  }
  self->updateReading();
}

void ClientConnection::lendReplyBuffer(ByteBuffer& into) { worker_.lendBuffer(into); }

void ClientConnection::onReplyReady() {
  if (!closing_) worker_.markDirty(this);
}

void ClientConnection::flushReplies() {
  if (closing_ || !multiplex_) return;
  multiplex_->resume();
  size_t held = multiplex_->bufferedBytes() + reply_out_.size() + to_client_.queued();
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
  if (multiplex_) return to_client_.idle() && multiplex_->acceptsInput();
  return backend_connected_ ? to_backend_.idle() : to_backend_.queued() == 0;
}

bool ClientConnection::backendReadAllowed() const {
  return !closing_ && !close_after_flush_ && backend_connected_ && handshake_done_ &&
         !backend_eof_ && to_client_.idle();
}

void ClientConnection::updateReading() {
  bool want_client = clientReadAllowed();
  if (want_client != client_reading_) {
    if (want_client) {
      uv_read_start(clientStream(), allocFromWorker, &ClientConnection::onClientRead);
    } else {
      uv_read_stop(clientStream());
    }
    client_reading_ = want_client;
  }
  bool want_backend = backendReadAllowed();
  if (want_backend != backend_reading_) {
    if (want_backend) {
      uv_read_start(backendStream(), allocFromWorker, &ClientConnection::onBackendRead);
    } else {
      uv_read_stop(backendStream());
    }
    backend_reading_ = want_backend;
  }
}

// ---- events -----------------------------------------------------------------

void ClientConnection::onConnected(int status) {
  if (closing_) return;
  if (status != 0) {
    backend_failed_ = true;
    worker_.stats().backend_connect_failures.add();
    static thread_local RateLimitedLog refused(spdlog::level::warn, "failed shard connections");
    if (auto pass = refused.admit(uv_now(worker_.loop()))) {
      spdlog::warn("db {}: shard {} unavailable: {}{}", db_.name, db_.shard, uv_strerror(status), pass);
    }
    to_backend_.discard();
    sendErrorLine("-ERR shard " + db_.shard + " unavailable: " + asciiLower(uv_strerror(status)) + "\r\n");
    closeAfterFlush();
    return;
  }
  backend_connected_ = true;
  uv_tcp_nodelay(&backend_, 1);
  if (int rc = to_backend_.flush(backendStream()); rc != 0) {
    onBackendEnd(rc);
    return;
  }
  if (client_eof_ && to_backend_.idle()) shutdownBackend();
  updateReading();
}

void ClientConnection::onHandshakeDone() {
  handshake_done_ = true;
  uv_timer_stop(&timer_);
  Stats& stats = worker_.stats();
  stats.handshakes_ok.add();
  if (tls_->sessionReused()) stats.handshakes_resumed.add();
  std::string_view proto = tls_->protocolName();
  if (proto == "TLSv1.3") stats.connections_by_version[3].add();
  else if (proto == "TLSv1.2") stats.connections_by_version[2].add();
  else if (proto == "TLSv1.1") stats.connections_by_version[1].add();
  else stats.connections_by_version[0].add();
  if (const auto& audit = tls_->context().policy().audit_min_version) {
    auto version = tls_->negotiatedVersion();
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
                  tls_->cipherName(), tls_->sessionReused() ? " (resumed)" : "", tls_->generation());
  }
  updateReading();
}

void ClientConnection::refusePlaintext() {
  // One plaintext line the client can read and show, then the close: without
  // it redis-cli prints nothing and the user cannot tell why.
  worker_.stats().handshake_failures[static_cast<size_t>(HandshakeFailure::kNotTls)].add();
  spdlog::debug("{}: plaintext from {} on a TLS endpoint: told it to use TLS", db_.listen, peerName());
  const auto* line = reinterpret_cast<const uint8_t*>(kTlsRequiredLine.data());
  sendToClient(line, kTlsRequiredLine.size());
  closeAfterFlush();  // no close_notify: the handshake never began
}

void ClientConnection::onHandshakeFailed(std::string_view reason) {
  HandshakeFailure kind = classifyHandshakeFailure(reason);
  worker_.stats().handshake_failures[static_cast<size_t>(kind)].add();
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("{}: TLS handshake from {} failed ({}): {}", db_.listen, peerName(), toString(kind),
                  tls_ ? tls_->failureReason() : std::string(reason));
  }
  closeAfterFlush();  // the alert OpenSSL produced goes out first
}

void ClientConnection::onTimer() {
  if (closing_) return;
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
    to_client_.discard();
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
    if (backend_failed_ || to_backend_.queued() == 0) closeAfterFlush();
    // else: the held request goes out once the shard connects, then we half-close
  } else if (to_backend_.idle()) {
    if (client_dead_) {
      closeNow();
      return;
    }
    shutdownBackend();
  }
  // Bounded: a shard that never answers the half-close does not keep us forever.
  if (!closing_ && !close_after_flush_) {
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<ClientConnection*>(t->data)->onTimer(); },
                   kFlushBeforeCloseMs, 0);
  }
}

void ClientConnection::shutdownBackend() {
  if (backend_shutdown_ || closing_) return;
  backend_shutdown_ = true;
  auto* req = new uv_shutdown_t;
  req->data = this;
  int rc = uv_shutdown(req, backendStream(), [](uv_shutdown_t* r, int status) {
    std::unique_ptr<uv_shutdown_t> done(r);
    auto* self = static_cast<ClientConnection*>(r->data);
    if (!self->closing_ && status != 0) self->closeAfterFlush();
  });
  if (rc != 0) {
    delete req;
    closeAfterFlush();
  }
}

void ClientConnection::onBackendEnd(int status) {
  if (backend_eof_) return;
  backend_eof_ = true;
  to_backend_.discard();
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
    if (tls_ && handshake_done_ && !client_dead_ &&
        tls_->state() != tls::TlsSession::State::kFailed) {
      ByteBuffer& cipher = worker_.cipherScratch();
      cipher.clear();
      tls_->shutdown(cipher);
      sendToClient(cipher.data(), cipher.size());
    }
    if (closing_) return;
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<ClientConnection*>(t->data)->onTimer(); },
                   kFlushBeforeCloseMs, 0);
  }
  bool client_flushed = to_client_.idle() || client_dead_;
  bool backend_flushed = to_backend_.idle() || backend_eof_ || !backend_connected_;
  if (client_flushed && backend_flushed) closeNow();
}

void ClientConnection::closeIfIdle(uint64_t now_ms) {
  if (closing_) return;
  if (!handshake_done_) {
    closeNow();
    return;
  }
  bool in_flight = multiplex_ ? !multiplex_->idle() : awaiting_reply_;
  if (!in_flight && to_client_.idle() && to_backend_.idle() &&
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
  worker_.stats().connections_current.sub();
  auto on_closed = [](uv_handle_t* h) {
    auto* self = static_cast<ClientConnection*>(h->data);
    if (--self->open_handles_ == 0) delete self;
  };
  uv_close(asHandle(&client_), on_closed);
  uv_close(asHandle(&backend_), on_closed);
  uv_close(asHandle(&timer_), on_closed);
}

std::string ClientConnection::peerName() {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(&client_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return fmt::format("{}:{}", host, port);
  }
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
  port = ntohs(a->sin6_port);
  return fmt::format("[{}]:{}", host, port);
}

}  // namespace shardgate::proxy
