#include "net/tls_stream.h"

#include <uv.h>

namespace shardgate::net {

using tls::TlsSession;

Result<TlsStream*> TlsStream::create(IoDriver& io, Stream* transport, tls::TlsContextPtr ctx,
                                     StreamOwner* owner, const std::string& server_name,
                                     std::shared_ptr<tls::ResumptionSlot> resumption) {
  const bool server = ctx->isServer();
  auto session = TlsSession::create(std::move(ctx), server ? TlsSession::Role::kServer
                                                           : TlsSession::Role::kClient);
  if (!session) return makeError("cannot create a TLS session (out of memory?)");
  if (!server && !server_name.empty() && !session->setServerName(server_name)) {
    return makeError("TLS client: cannot use \"" + server_name + "\" as the server name");
  }
  if (!server && resumption) session->useResumptionSlot(std::move(resumption));
  auto* self = new TlsStream(io, transport, std::move(session), owner);
  transport->setOwner(self);
  if (!server) {
    ByteBuffer& cipher = io.cipherScratch();
    cipher.clear();
    self->session_->startHandshake(cipher);
    // A failure here (none is expected before the peer answers) shows as
    // a failed session at the first read.
    self->writeCipher(cipher);
  }
  return self;
}

TlsStream::TlsStream(IoDriver& io, Stream* transport, std::unique_ptr<TlsSession> session,
                     StreamOwner* owner)
    : io_(io),
      transport_(transport),
      session_(std::move(session)),
      owner_(owner),
      server_(session_->context().isServer()) {}

// ---- from the peer ---------------------------------------------------------------

void TlsStream::onStreamData(const uint8_t* data, size_t len) {
  if (closing_ || !owner_) return;
  if (server_ && !first_bytes_seen_) {
    first_bytes_seen_ = true;
    if (owner_->onStreamFirstBytes(data, len) || closing_) return;
  }
  ByteBuffer& plain = io_.plainScratch();
  ByteBuffer& cipher = io_.cipherScratch();
  plain.clear();
  cipher.clear();
  TlsSession::FeedResult result = session_->feed(data, len, plain, cipher);
  // Handshake messages, tickets or an alert go out first.
  if (!cipher.empty()) {
    if (int rc = writeCipher(cipher); rc != 0) {
      transport_->discardWrites();
      owner_->onStreamDrained(rc);
      if (closing_) return;
    }
  }
  if (session_->state() == TlsSession::State::kFailed) {
    owner_->onStreamTlsFailed();
    return;
  }
  if (result.handshake_completed) {
    owner_->onStreamHandshake();
    if (closing_) return;
    if (!held_.empty()) {
      ByteBuffer held;
      held.swap(held_);
      if (int rc = encryptAndWrite(held.data(), held.size()); rc != 0) {
        owner_->onStreamDrained(rc);
        if (closing_) return;
      } else if (transport_->writeIdle()) {
        // The held bytes reached the kernel at once: no write completes
        // later to say so, and an owner that stopped reading its other
        // side until this stream drained (backpressure) must hear it.
        owner_->onStreamDrained(0);
        if (closing_) return;
      }
    }
  }
  if (!plain.empty()) {
    owner_->onStreamData(plain.data(), plain.size());
    if (closing_) return;
  }
  if (session_->state() == TlsSession::State::kPeerClosed && !peer_closed_told_) {
    peer_closed_told_ = true;
    owner_->onStreamEnd(UV_EOF);  // close_notify: a clean end
  }
}

void TlsStream::onStreamEnd(int status) {
  if (!closing_ && owner_) owner_->onStreamEnd(status);
}

void TlsStream::onStreamDrained(int status) {
  if (!closing_ && owner_) owner_->onStreamDrained(status);
}

void TlsStream::onStreamConnected(int status) {
  if (!closing_ && owner_) owner_->onStreamConnected(status);
}

void TlsStream::onStreamShutdown(int status) {
  if (!closing_ && owner_) owner_->onStreamShutdown(status);
}

// ---- to the peer -------------------------------------------------------------------

int TlsStream::write(const uint8_t* data, size_t len) {
  if (closing_) return UV_ECANCELED;
  if (!server_ && session_->state() == TlsSession::State::kHandshaking) {
    held_.append(data, len);
    return 0;
  }
  return encryptAndWrite(data, len);
}

int TlsStream::encryptAndWrite(const uint8_t* data, size_t len) {
  ByteBuffer& cipher = io_.cipherScratch();
  cipher.clear();
  // Not open (the peer sent close_notify, or the session failed): nothing
  // more can be said on this connection.
  if (!session_->encrypt(data, len, cipher)) return UV_EPROTO;
  return writeCipher(cipher);
}

int TlsStream::writeCipher(const ByteBuffer& cipher) {
  if (cipher.empty()) return 0;
  return transport_->write(cipher.data(), cipher.size());
}

void TlsStream::discardWrites() {
  held_.clear();
  held_.release();
  transport_->discardWrites();
}

int TlsStream::closeNotify() {
  if (closing_) return 0;
  ByteBuffer& cipher = io_.cipherScratch();
  cipher.clear();
  session_->shutdown(cipher);  // nothing unless the session is open
  return writeCipher(cipher);
}

int TlsStream::shutdownWrite() {
  // RFC 8446 section 6.1: close_notify ends our writing; the FIN after it
  // tells a peer that does not read TLS alerts.
  if (int rc = closeNotify(); rc != 0) return rc;
  return transport_->shutdownWrite();
}

void TlsStream::close(ClosedFn closed, void* arg) {
  if (closing_) return;
  closing_ = true;
  owner_ = nullptr;
  closed_ = closed;
  closed_arg_ = arg;
  transport_->close(
      [](void* p) {
        auto* self = static_cast<TlsStream*>(p);
        ClosedFn fn = self->closed_;
        void* fn_arg = self->closed_arg_;
        delete self;
        if (fn) fn(fn_arg);
      },
      this);
}

}  // namespace shardgate::net
