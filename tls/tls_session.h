// TlsSession: one connection's TLS state machine. It never touches a socket:
// ciphertext comes in as a byte range and goes out appended to a ByteBuffer.
// The read side borrows the caller's bytes (no copy into a
// memory BIO); the write side appends straight into the caller's buffer.
// SSL_MODE_RELEASE_BUFFERS is on, so an idle session holds no record buffers.
//
//   socket bytes ─► feed() ─► plaintext ByteBuffer ─► backend
//   backend bytes ─► encrypt() ─► ciphertext ByteBuffer ─► socket
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/byte_buffer.h"
#include "common/result.h"
#include "tls/client_identity.h"
#include "tls/resumption_slot.h"
#include "tls/tls_context.h"
#include "tls/tls_version.h"

struct ssl_st;  // SSL, kept opaque outside tls/

namespace shardgate::tls {

class TlsSession {
 public:
  enum class Role { kServer, kClient };
  enum class State { kHandshaking, kOpen, kPeerClosed, kFailed };

  struct FeedResult {
    bool handshake_completed = false;  // the handshake finished during this call
  };

  // The session keeps ctx alive for as long as it lives. Returns null only
  // when OpenSSL cannot allocate the SSL object.
  static std::unique_ptr<TlsSession> create(TlsContextPtr ctx, Role role);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Client role, before startHandshake: the name the server is asked for
  // (SNI, RFC 6066 section 3) and, when the context verifies, the name (or
  // IP address) its certificate must carry. An IP address is verified but
  // not sent: SNI carries host names only. False when OpenSSL refuses it.
  bool setServerName(const std::string& name);
  // Client role: writes the ClientHello to cipher_out.
  void startHandshake(ByteBuffer& cipher_out);

  // Takes ciphertext from the peer. Plaintext goes to plain_out; whatever must
  // go back to the peer (handshake messages, tickets, alerts) to cipher_out.
  // On failure state() is kFailed, failureReason() says why, and cipher_out
  // may hold an alert worth sending before closing.
  FeedResult feed(const uint8_t* data, size_t len, ByteBuffer& plain_out,
                  ByteBuffer& cipher_out);

  // Encrypts plaintext into TLS records appended to cipher_out. Only when open.
  Status encrypt(const uint8_t* data, size_t len, ByteBuffer& cipher_out);

  // Appends a close_notify alert to cipher_out.
  void shutdown(ByteBuffer& cipher_out);

  State state() const { return state_; }
  bool isOpen() const { return state_ == State::kOpen; }
  const std::string& failureReason() const { return failure_; }
  // The short OpenSSL reason of a failed handshake ("unsupported protocol",
  // "no shared cipher", ...), suitable as a metric label.
  const std::string& failureCode() const { return failure_code_; }

  const char* protocolName() const;   // "TLSv1.3", after the handshake
  // The version agreed on, once the handshake has completed (also after the
  // peer closed); nullopt before that or after a failed handshake.
  std::optional<TlsVersion> negotiatedVersion() const;
  const char* cipherName() const;
  bool sessionReused() const;
  // Server role: the name the client asked for (SNI), empty when none.
  std::string serverName() const;
  // The peer sent a certificate (a server always does; a client when asked).
  bool peerPresentedCertificate() const;
  // The subject of the peer's certificate ("CN=ops,O=example") when it
  // chained to the context's trusted CAs; empty when the peer sent none or
  // one that did not verify (a context that asks for a certificate without
  // requiring one lets such a handshake finish).
  std::string verifiedPeerSubject() const;
  // The same certificate's names (subject, CN, SANs) for allow-lists and
  // logs; nullopt when no verified certificate. A resumed session reports
  // the identity verified at its full handshake.
  std::optional<ClientIdentity> verifiedPeerIdentity() const;
  // Server role, before the first feed(): asks for a client certificate but
  // accepts any outcome. Only for the preflight probe, which has no
  // certificate from the operator's client CAs to present.
  void acceptAnyClientCertificate();

  // Client-side resumption: the DER of the session to resume (empty when
  // there is none yet; with TLS 1.3 the ticket arrives after the handshake,
  // through feed()), and setting one before startHandshake(). importSession
  // returns false when der does not parse.
  std::string exportSession() const;
  bool importSession(const std::string& der);
  // Client role, before startHandshake: offers slot's session when it was
  // made with a context of this one's generation, and stores every session
  // the server sends from now on into slot (the context's new-session
  // callback). The slot is kept alive by this session.
  void useResumptionSlot(std::shared_ptr<ResumptionSlot> slot);
  uint64_t generation() const { return ctx_->generation(); }
  const TlsContext& context() const { return *ctx_; }

  // Used by the BIO glue only.
  struct Io {
    const uint8_t* in = nullptr;
    size_t in_len = 0;
    ByteBuffer* out = nullptr;
  };
  Io& io() { return io_; }

 private:
  TlsSession(TlsContextPtr ctx, ssl_st* ssl);
  void fail(const char* where, int ssl_error);
  friend int storeNewSession(ssl_st* ssl, struct ssl_session_st* session);
  // The new-session callback's work: true when the slot took a copy of session.
  bool keepSession(struct ssl_session_st* session);

  TlsContextPtr ctx_;
  ssl_st* ssl_;
  Io io_;
  State state_ = State::kHandshaking;
  std::string failure_;
  std::string failure_code_;
  std::shared_ptr<ResumptionSlot> resumption_;  // client role: where new tickets go
};

// The SSL_CTX new-session callback of client contexts (tls_context.cpp).
int storeNewSession(ssl_st* ssl, struct ssl_session_st* session);

}  // namespace shardgate::tls
