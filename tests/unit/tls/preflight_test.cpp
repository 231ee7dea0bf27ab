#include "tls/preflight.h"

#include <doctest/doctest.h>

#include <string>

#include "tests/unit/tls/test_certs.h"

using namespace shardgate;
using namespace shardgate::tls;
using namespace shardgate::tls::testing;

namespace {

TlsContextPtr server(const TlsPolicy& policy, const CertBundle& bundle = selfSignedBundle()) {
  auto r = TlsContext::createServer(bundle, policy, 1);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  return *r;
}

// An RSA leaf, for the cipher/key-type mismatch in the other direction.
CertBundle rsaBundle() {
  EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  REQUIRE(key);
  X509Ptr cert = makeCert(CertSpec{}, key.get(), nullptr, nullptr);
  CertBundle b;
  b.cert_pem = certPem(cert.get());
  b.key_pem = keyPem(key.get());
  b.cert_source = "/certs/proxy_cert.pem";
  b.key_source = "/certs/proxy_key.pem";
  return b;
}

}  // namespace

TEST_CASE("preflight: a good context passes, whatever its minimum version") {
  for (TlsVersion v : {TlsVersion::k1_0, TlsVersion::k1_2, TlsVersion::k1_3}) {
    CAPTURE(toString(v));
    TlsPolicy policy;
    policy.min_version = v;
    if (v < TlsVersion::k1_2) policy.ciphers = std::string(kDefaultCiphers) + ":" + kLegacyCiphers;
    auto ctx = server(policy);
    Status s = preflight(ctx);
    CHECK_MESSAGE(s.ok(), s.message());
    CHECK(ctx->liveSessions() == 0);  // its probe sessions are gone
  }
  Status rsa = preflight(server(TlsPolicy{}, rsaBundle()));
  CHECK_MESSAGE(rsa.ok(), rsa.message());
  Status chain = preflight(server(TlsPolicy{}, ThreeLevelChain().bundle()));
  CHECK_MESSAGE(chain.ok(), chain.message());
}

TEST_CASE("preflight: an ECDSA certificate with only RSA ciphers fails at TLS 1.2") {
  TlsPolicy policy;
  policy.ciphers = "ECDHE-RSA-AES128-GCM-SHA256";
  Status s = preflight(server(policy));
  REQUIRE_FALSE(s.ok());
  CHECK(s.message() ==
        "preflight handshake at TLS 1.2 failed: no shared cipher "
        "(tls.ciphers has no cipher usable with this ECDSA certificate?)");

  // The same context with TLS 1.2 refused serves: TLS 1.3 does not use tls.ciphers.
  policy.min_version = TlsVersion::k1_3;
  Status only13 = preflight(server(policy));
  CHECK_MESSAGE(only13.ok(), only13.message());
}

TEST_CASE("preflight: an RSA certificate with only ECDSA ciphers names RSA") {
  TlsPolicy policy;
  policy.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
  Status s = preflight(server(policy, rsaBundle()));
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("at TLS 1.2") != std::string::npos);
  CHECK(s.message().find("this RSA certificate") != std::string::npos);
}

TEST_CASE("preflight: refuses a client context") {
  auto client = TlsContext::createClient(TlsPolicy{}, "");
  REQUIRE(client.ok());
  CHECK_FALSE(preflight(*client).ok());
  CHECK_FALSE(preflight(nullptr).ok());
}
