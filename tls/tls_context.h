// TlsContext: an immutable SSL_CTX together with what it was built from
// (certificate description, policy, generation). Built whole off the data
// path, then shared by reference count: every TlsSession holds one, so a
// context lives until its last connection closes (DESIGN.md, "Applying is a
// pointer swap").
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tls/cert_files.h"
#include "tls/result.h"
#include "tls/tls_version.h"

struct ssl_ctx_st;  // SSL_CTX, kept opaque outside tls/

namespace shardgate::tls {

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
};

// Checks the cipher strings against OpenSSL without building a server context.
// The message says which string ("tls.ciphers" / "tls.ciphersuites") is bad.
Status validatePolicy(const TlsPolicy& policy);

class TlsContext {
 public:
  // A server context serving bundle's leaf plus chain under policy.
  // Validates the bundle first (validateCertBundle); fails with its message.
  static Result<std::shared_ptr<const TlsContext>> createServer(
      const CertBundle& bundle, const TlsPolicy& policy, uint64_t generation);

  // A client context (tests, preflight). trusted_ca_pem empty: no verification.
  static Result<std::shared_ptr<const TlsContext>> createClient(
      const TlsPolicy& policy, const std::string& trusted_ca_pem);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  ssl_ctx_st* sslCtx() const { return ctx_; }
  const CertInfo& certInfo() const { return info_; }
  const TlsPolicy& policy() const { return policy_; }
  uint64_t generation() const { return generation_; }
  bool isServer() const { return server_; }

 private:
  TlsContext(ssl_ctx_st* ctx, CertInfo info, TlsPolicy policy,
             uint64_t generation, bool server);

  ssl_ctx_st* ctx_;
  CertInfo info_;
  TlsPolicy policy_;
  uint64_t generation_;
  bool server_;
};

using TlsContextPtr = std::shared_ptr<const TlsContext>;

}  // namespace shardgate::tls
