// TlsContext: an immutable SSL_CTX together with what it was built from
// (certificate description, policy, generation). Built whole off the data
// path, then shared by reference count: every TlsSession holds one, so a
// context lives until its last connection closes: applying a new one
// is a pointer swap.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "tls/cert_files.h"
#include "common/result.h"
#include "tls/tls_version.h"

struct ssl_ctx_st;  // SSL_CTX, kept opaque outside tls/

namespace shardgate::tls {

class TicketKeys;

inline constexpr const char* kDefaultCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
// Added to the default list when tls.min_version is below 1.2: what TLS 1.0
// and 1.1 clients can negotiate.
inline constexpr const char* kLegacyCiphers =
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA";
inline constexpr const char* kDefaultCiphersuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

struct TlsPolicy {
  TlsVersion min_version = TlsVersion::k1_2;
  std::string ciphers = kDefaultCiphers;            // TLS <= 1.2
  std::string ciphersuites = kDefaultCiphersuites;  // TLS 1.3
  // Handshakes below this version are counted and logged (not refused), so
  // an operator sees who a higher min_version would turn away.
  std::optional<TlsVersion> audit_min_version;
  // The floor of the control listeners (admin API, metrics), which serve
  // the api and metrics_exporter certificates; min_version is the data
  // listeners'. The cipher strings are shared.
  TlsVersion control_min_version = TlsVersion::k1_2;

  bool operator==(const TlsPolicy&) const = default;
};

// How a data endpoint verifies its clients' certificates (client_auth
// optional or required). Clients are asked for a certificate naming ca_pem's
// CAs in the CertificateRequest; one that does not chain to them, is expired,
// or is revoked by crl_pem fails the handshake with the matching TLS alert
// (unknown_ca, certificate_expired, certificate_revoked). required: a client
// that sends none fails too (certificate_required in TLS 1.3,
// handshake_failure before it).
struct ClientVerify {
  bool required = false;
  std::string ca_pem;   // one or more PEM CA certificates
  std::string crl_pem;  // zero or more PEM CRLs; any: every client's certificate is checked against them
  // Names the endpoint in the session id context (see createServer).
  std::string scope;
};

// Checks the cipher strings against OpenSSL without building a server context.
// The message says which string ("tls.ciphers" / "tls.ciphersuites") is bad.
Status validatePolicy(const TlsPolicy& policy);

class TlsContext {
 public:
  // A server context serving bundle's leaf plus chain under policy.
  // Validates the bundle first (validateCertBundle); fails with its message.
  // ticket_keys: session-ticket keys shared by every generation, so a ticket
  // issued before a certificate rotation still resumes after it; the context
  // keeps them alive. nullptr: OpenSSL's own keys, private to this context.
  // client_ca_pem, when given and not empty: clients are asked for a
  // certificate (not required to send one); one that chains to these CAs
  // shows in TlsSession::verifiedPeerSubject(), one that does not is let
  // through unverified, so a password can still authenticate its client.
  //
  // client_verify, when given, verifies clients instead (a data endpoint
  // with client_auth). Its session id context is a digest of scope, the mode,
  // the CAs and the CRLs: a session (ticket) issued before any of them changed
  // does not resume afterwards, so a removed CA or a new revocation is never
  // bypassed by resumption, while a resumed session keeps the identity
  // verified at its full handshake.
  static Result<std::shared_ptr<const TlsContext>> createServer(
      const CertBundle& bundle, const TlsPolicy& policy, uint64_t generation,
      std::shared_ptr<TicketKeys> ticket_keys = nullptr, const std::string* client_ca_pem = nullptr,
      const ClientVerify* client_verify = nullptr);

  // A client context. trusted_ca_pem empty: no verification (tests,
  // preflight); otherwise the peer's chain must lead to one of its
  // certificates. max_version caps what the client offers (preflight's TLS
  // 1.2 handshake). client_cert, if given, is presented when the server asks
  // for one (validated like a server bundle first).
  //
  // Every client context keeps no session cache of its own
  // (SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE): the sessions
  // the server sends go to the connection's ResumptionSlot, if it has one
  // (TlsSession::useResumptionSlot). generation: what such sessions are
  // tagged with, so they are only offered to contexts of that generation.
  static Result<std::shared_ptr<const TlsContext>> createClient(
      const TlsPolicy& policy, const std::string& trusted_ca_pem,
      std::optional<TlsVersion> max_version = std::nullopt,
      const CertBundle* client_cert = nullptr, uint64_t generation = 0);

  // The same from files: a CA file to verify the server against, and an
  // optional certificate and key (both or neither) to present. Errors name
  // the file.
  static Result<std::shared_ptr<const TlsContext>> createClientFromFiles(
      const TlsPolicy& policy, const std::string& ca_file, const std::string& cert_file = "",
      const std::string& key_file = "");

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  ssl_ctx_st* sslCtx() const { return ctx_; }
  const CertInfo& certInfo() const { return info_; }
  const TlsPolicy& policy() const { return policy_; }
  uint64_t generation() const { return generation_; }
  bool isServer() const { return server_; }
  // A server context that verifies client certificates (client_verify).
  bool verifiesClients() const { return verifies_clients_; }
  // TlsSessions alive on this context, on any thread: after a rotation, the
  // old generation's count drains to 0 as its clients close.
  int64_t liveSessions() const { return live_sessions_.load(std::memory_order_relaxed); }

 private:
  friend class TlsSession;  // counts itself in live_sessions_

  TlsContext(ssl_ctx_st* ctx, CertInfo info, TlsPolicy policy,
             uint64_t generation, bool server);

  ssl_ctx_st* ctx_;
  CertInfo info_;
  TlsPolicy policy_;
  uint64_t generation_;
  bool server_;
  bool verifies_clients_ = false;
  // Null unless createServer was given shared keys; the ticket callback finds
  // them through the SSL_CTX's ex_data, and this reference keeps them alive.
  std::shared_ptr<TicketKeys> ticket_keys_;
  // A statistic, not a lock: relaxed is enough. Mutable because sessions
  // share the context as const.
  mutable std::atomic<int64_t> live_sessions_{0};
};

using TlsContextPtr = std::shared_ptr<const TlsContext>;

}  // namespace shardgate::tls
