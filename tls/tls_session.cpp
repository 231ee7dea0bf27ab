// TlsSession: OpenSSL talks to one custom BIO (both read and write side)
// whose data pointer is the session itself. During feed()/encrypt()/
// shutdown() the session points Io at the caller's bytes and buffer:
//
//   feed(data,len) ─► Io.in ─► BIO read ─► SSL ─► SSL_read ─► plain_out
//                                           └──► BIO write ─► Io.out (cipher_out)
//
// Outside those calls Io is empty, so OpenSSL can neither read stale input
// nor write into a buffer the caller no longer owns.
#include "tls/tls_session.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include <openssl/err.h>

#include "tls/client_identity.h"
#include "tls/openssl_ptr.h"

namespace shardgate::tls {
namespace {

constexpr size_t kReadChunk = 16384;  // one TLS record's worth of plaintext

TlsSession::Io& ioOf(BIO* bio) {
  return static_cast<TlsSession*>(BIO_get_data(bio))->io();
}

int bioRead(BIO* bio, char* buf, size_t len, size_t* done) {
  BIO_clear_retry_flags(bio);
  TlsSession::Io& io = ioOf(bio);
  if (io.in_len == 0) {
    BIO_set_retry_read(bio);  // "no more for now", never EOF: the socket owns EOF
    *done = 0;
    return 0;
  }
  size_t n = std::min(len, io.in_len);
  std::memcpy(buf, io.in, n);
  io.in += n;
  io.in_len -= n;
  *done = n;
  return 1;
}

int bioWrite(BIO* bio, const char* buf, size_t len, size_t* done) {
  BIO_clear_retry_flags(bio);
  TlsSession::Io& io = ioOf(bio);
  assert(io.out != nullptr && "OpenSSL wrote outside feed/encrypt/shutdown");
  if (io.out == nullptr) {
    BIO_set_retry_write(bio);
    *done = 0;
    return 0;
  }
  io.out->append(buf, len);
  *done = len;
  return 1;
}

long bioCtrl(BIO*, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;  // writes land in the caller's buffer at once
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING: return 0;
    default: return 0;
  }
}

int bioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

int bioDestroy(BIO*) { return 1; }  // the session owns itself; nothing to free

// Called on entry to every feed/encrypt/shutdown, i.e. per request: an
// empty queue is the rule, and ERR_peek_error() tells that at once where
// ERR_clear_error() would wipe all 16 slots of the thread's queue.
void clearErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// One BIO_METHOD for the process, built on first use (thread-safe static).
const BIO_METHOD* sessionBioMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "shardgate session");
    if (m != nullptr) {
      BIO_meth_set_write_ex(m, bioWrite);
      BIO_meth_set_read_ex(m, bioRead);
      BIO_meth_set_ctrl(m, bioCtrl);
      BIO_meth_set_create(m, bioCreate);
      BIO_meth_set_destroy(m, bioDestroy);
    }
    return m;
  }();
  return method;
}

}  // namespace

std::unique_ptr<TlsSession> TlsSession::create(TlsContextPtr ctx, Role role) {
  assert(ctx);
  assert(ctx->isServer() == (role == Role::kServer));
  const BIO_METHOD* method = sessionBioMethod();
  if (method == nullptr) return nullptr;
  SslPtr ssl(SSL_new(ctx->sslCtx()));
  if (!ssl) {
    ERR_clear_error();
    return nullptr;
  }
  BIO* bio = BIO_new(method);
  if (bio == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  std::unique_ptr<TlsSession> session(new TlsSession(std::move(ctx), ssl.release()));
  BIO_set_data(bio, session.get());
  // The new-session callback finds the session (and its slot) through it.
  SSL_set_app_data(session->ssl_, session.get());
  // rbio == wbio: SSL_set_bio takes the single reference.
  SSL_set_bio(session->ssl_, bio, bio);
  if (role == Role::kServer) {
    SSL_set_accept_state(session->ssl_);
  } else {
    SSL_set_connect_state(session->ssl_);
  }
  return session;
}

TlsSession::TlsSession(TlsContextPtr ctx, ssl_st* ssl) : ctx_(std::move(ctx)), ssl_(ssl) {
  ctx_->live_sessions_.fetch_add(1, std::memory_order_relaxed);
}

TlsSession::~TlsSession() {
  SSL_free(ssl_);
  ctx_->live_sessions_.fetch_sub(1, std::memory_order_relaxed);
}

bool TlsSession::setServerName(const std::string& name) {
  const bool verifying = (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  bool ok = true;
  if (X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) == 1) {
    // An IP literal: checked against the certificate's IP SANs. Set on the
    // parameter even when not verifying; it only matters when verifying.
  } else {
    ERR_clear_error();
    // SSL_set_tlsext_host_name() is a macro with a C cast; this is its body.
    ok = SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                  const_cast<char*>(name.c_str())) == 1;
    if (ok && verifying) ok = SSL_set1_host(ssl_, name.c_str()) == 1;
  }
  ERR_clear_error();
  return ok;
}

void TlsSession::useResumptionSlot(std::shared_ptr<ResumptionSlot> slot) {
  if (!slot || SSL_is_server(ssl_) == 1) return;
  if (!slot->empty() && slot->generation() == ctx_->generation()) {
    // A copy, not the slot's object: OpenSSL marks the session of a
    // connection freed without close_notify as not resumable (a shard
    // connection that failed, or was dropped), which must not spoil the
    // slot for the next connection. A session the server no longer accepts
    // simply ends in a full handshake.
    SslSessionPtr copy(SSL_SESSION_dup(slot->session_.get()));
    if (!copy || SSL_set_session(ssl_, copy.get()) != 1) ERR_clear_error();
  }
  resumption_ = std::move(slot);
}

int storeNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TlsSession*>(SSL_get_app_data(ssl));
  // 0: OpenSSL keeps its reference (the slot holds a copy of its own).
  if (self != nullptr) self->keepSession(session);
  return 0;
}

bool TlsSession::keepSession(SSL_SESSION* session) {
  if (!resumption_ || SSL_SESSION_is_resumable(session) != 1) return false;
  // A copy, for the same reason as in useResumptionSlot: this connection
  // keeps using `session` and may end uncleanly.
  SSL_SESSION* copy = SSL_SESSION_dup(session);
  if (copy == nullptr) {
    ERR_clear_error();
    return false;
  }
  resumption_->session_ = std::shared_ptr<SSL_SESSION>(copy, SSL_SESSION_free);
  resumption_->generation_ = ctx_->generation();
  ++resumption_->stored_;
  return true;
}

void TlsSession::startHandshake(ByteBuffer& cipher_out) {
  if (state_ != State::kHandshaking) return;
  clearErrors();
  io_ = Io{nullptr, 0, &cipher_out};
  int rc = SSL_do_handshake(ssl_);
  if (rc != 1) {
    int err = SSL_get_error(ssl_, rc);
    if (err != SSL_ERROR_WANT_READ) fail("TLS handshake failed", err);
  }
  io_ = Io{};
}

TlsSession::FeedResult TlsSession::feed(const uint8_t* data, size_t len,
                                        ByteBuffer& plain_out, ByteBuffer& cipher_out) {
  FeedResult result;
  // Bytes after close_notify or a failure mean nothing; drop them.
  if (state_ == State::kFailed || state_ == State::kPeerClosed) return result;

  clearErrors();
  io_ = Io{data, len, &cipher_out};

  if (state_ == State::kHandshaking) {
    int rc = SSL_do_handshake(ssl_);
    if (rc == 1) {
      state_ = State::kOpen;
      result.handshake_completed = true;
    } else {
      int err = SSL_get_error(ssl_, rc);
      if (err != SSL_ERROR_WANT_READ) fail("TLS handshake failed", err);
    }
  }

  // Application data may follow the handshake in the same input.
  while (state_ == State::kOpen) {
    size_t room = plain_out.writable() >= 4096 ? plain_out.writable() : kReadChunk;
    uint8_t* dst = plain_out.prepare(room);
    size_t got = 0;
    int rc = SSL_read_ex(ssl_, dst, room, &got);
    if (rc == 1) {
      plain_out.commit(got);
      // Every byte given is inside OpenSSL and no decrypted data waits: one
      // more SSL_read would only find the input empty (and, with released
      // buffers, allocate and free a record buffer to learn it). OpenSSL
      // reads one record at a time (no read-ahead), so nothing whole is left.
      if (io_.in_len == 0 && SSL_pending(ssl_) == 0) break;
      continue;
    }
    int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      state_ = State::kPeerClosed;
      ERR_clear_error();
      break;
    }
    fail("TLS read failed", err);
  }

  // OpenSSL must have taken every byte: the caller drops the range after we
  // return, and nothing here keeps a copy.
  assert(state_ == State::kFailed || state_ == State::kPeerClosed || io_.in_len == 0);
  io_ = Io{};
  return result;
}

Status TlsSession::encrypt(const uint8_t* data, size_t len, ByteBuffer& cipher_out) {
  if (state_ != State::kOpen) return makeError("TLS session is not open");
  clearErrors();
  io_ = Io{nullptr, 0, &cipher_out};
  size_t done = 0;
  // The BIO never blocks, so one call writes everything; loop only in case a
  // future OpenSSL returns early.
  while (done < len) {
    size_t written = 0;
    int rc = SSL_write_ex(ssl_, data + done, len - done, &written);
    if (rc != 1) {
      fail("TLS write failed", SSL_get_error(ssl_, rc));
      io_ = Io{};
      return makeError(failure_);
    }
    done += written;
  }
  io_ = Io{};
  return Status();
}

void TlsSession::shutdown(ByteBuffer& cipher_out) {
  if (state_ != State::kOpen && state_ != State::kPeerClosed) return;
  if ((SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) != 0) return;
  clearErrors();
  io_ = Io{nullptr, 0, &cipher_out};
  // One call: it writes our close_notify. We do not wait for the peer's.
  SSL_shutdown(ssl_);
  ERR_clear_error();
  io_ = Io{};
}

void TlsSession::fail(const char* where, int ssl_error) {
  state_ = State::kFailed;
  unsigned long code = ERR_peek_error();
  const char* reason = code != 0 ? ERR_reason_error_string(code) : nullptr;
  if (reason != nullptr) {
    failure_code_ = reason;
  } else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) {
    failure_code_ = "peer closed";
  } else {
    failure_code_ = "protocol error";
  }
  // A client certificate the server refused: the code says why (expired,
  // unknown CA, revoked), which the reason "certificate verify failed" alone
  // does not.
  if (SSL_is_server(ssl_) == 1 && failure_code_ == "certificate verify failed") {
    long verdict = SSL_get_verify_result(ssl_);
    if (verdict != X509_V_OK) failure_code_ += std::string(": ") + X509_verify_cert_error_string(verdict);
  }
  // A client that refused the server's certificate: the verdict is the
  // reason, whatever else the chain check left in the error queue first (a
  // signature check against a same-named CA pushes "EVP lib"), and
  // failureReason() says why in OpenSSL's words ("hostname mismatch",
  // "unable to get local issuer certificate"); failureCode() stays short.
  long verdict = SSL_is_server(ssl_) != 1 && state_ == State::kFailed && SSL_is_init_finished(ssl_) != 1
                     ? SSL_get_verify_result(ssl_)
                     : X509_V_OK;
  if (verdict != X509_V_OK && (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0) {
    failure_code_ = "certificate verify failed";
  }
  failure_ = std::string(where) + ": " + failure_code_;
  if (verdict != X509_V_OK && failure_code_ == "certificate verify failed") {
    failure_ += std::string(" (") + X509_verify_cert_error_string(verdict) + ")";
  }
  ERR_clear_error();
}

const char* TlsSession::protocolName() const { return SSL_get_version(ssl_); }

std::optional<TlsVersion> TlsSession::negotiatedVersion() const {
  // kFailed after a completed handshake (a bad record later) still knows the
  // version; SSL_is_init_finished tells a finished handshake from a failed one.
  if (SSL_is_init_finished(ssl_) != 1) return std::nullopt;
  switch (SSL_version(ssl_)) {
    case TLS1_VERSION: return TlsVersion::k1_0;
    case TLS1_1_VERSION: return TlsVersion::k1_1;
    case TLS1_2_VERSION: return TlsVersion::k1_2;
    case TLS1_3_VERSION: return TlsVersion::k1_3;
    default: return std::nullopt;
  }
}

const char* TlsSession::cipherName() const {
  return SSL_CIPHER_get_name(SSL_get_current_cipher(ssl_));
}

bool TlsSession::sessionReused() const { return SSL_session_reused(ssl_) == 1; }

std::string TlsSession::serverName() const {
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name != nullptr ? std::string(name) : std::string();
}

bool TlsSession::peerPresentedCertificate() const {
  X509Ptr cert(SSL_get1_peer_certificate(ssl_));
  return cert != nullptr;
}

void TlsSession::acceptAnyClientCertificate() {
  SSL_set_verify(ssl_, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
}

std::optional<ClientIdentity> TlsSession::verifiedPeerIdentity() const {
  X509Ptr cert(SSL_get1_peer_certificate(ssl_));
  if (!cert || SSL_get_verify_result(ssl_) != X509_V_OK) return std::nullopt;
  if ((SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) == 0) return std::nullopt;
  return identityOfCertificate(cert.get());
}

std::string TlsSession::verifiedPeerSubject() const {
  X509Ptr cert(SSL_get1_peer_certificate(ssl_));
  if (!cert || SSL_get_verify_result(ssl_) != X509_V_OK) return {};
  // Only a context with trusted CAs verifies; without them OpenSSL reports
  // X509_V_OK for a certificate it never checked.
  if ((SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) == 0) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert.get()), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

std::string TlsSession::exportSession() const {
  SslSessionPtr session(SSL_get1_session(ssl_));
  if (!session || SSL_SESSION_is_resumable(session.get()) != 1) return {};
  int len = i2d_SSL_SESSION(session.get(), nullptr);
  if (len <= 0) return {};
  std::string der(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_SSL_SESSION(session.get(), &p) != len) return {};
  return der;
}

bool TlsSession::importSession(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  SslSessionPtr session(d2i_SSL_SESSION(nullptr, &p, static_cast<long>(der.size())));
  if (!session) {
    ERR_clear_error();
    return false;
  }
  bool ok = SSL_set_session(ssl_, session.get()) == 1;  // takes its own reference
  ERR_clear_error();
  return ok;
}

}  // namespace shardgate::tls
