#include "tls/tls_context.h"

#include <doctest/doctest.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tests/unit/tls/test_certs.h"
#include "tests/unit/temp_dir.h"

#include <cstdio>

using namespace shardgate::tls;
using namespace shardgate::tls::testing;

TEST_CASE("validatePolicy accepts the defaults") {
  CHECK(validatePolicy(TlsPolicy{}).ok());
  TlsPolicy old;
  old.min_version = TlsVersion::k1_0;
  old.ciphers = "DEFAULT";
  CHECK(validatePolicy(old).ok());
}

TEST_CASE("validatePolicy names the bad string") {
  TlsPolicy bad_ciphers;
  bad_ciphers.ciphers = "FOO";
  auto c = validatePolicy(bad_ciphers);
  REQUIRE_FALSE(c.ok());
  CHECK(c.message() == R"(tls.ciphers: no cipher matches "FOO")");

  TlsPolicy bad_suites;
  bad_suites.ciphersuites = "BAR";
  auto s = validatePolicy(bad_suites);
  REQUIRE_FALSE(s.ok());
  CHECK(s.message() == R"(tls.ciphersuites: invalid TLS 1.3 ciphersuite list "BAR")");
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("createServer fails with the bundle's message") {
  CertBundle a = selfSignedBundle();
  a.key_pem = selfSignedBundle().key_pem;
  auto r = TlsContext::createServer(a, TlsPolicy{}, 1);
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() ==
        "/certs/proxy_key.pem: private key does not match the certificate in /certs/proxy_cert.pem");

  TlsPolicy bad;
  bad.ciphers = "FOO";
  auto p = TlsContext::createServer(selfSignedBundle(), bad, 1);
  REQUIRE_FALSE(p.ok());
  CHECK(p.message() == R"(tls.ciphers: no cipher matches "FOO")");
}

TEST_CASE("createServer carries what it was built from") {
  TlsPolicy policy;
  policy.min_version = TlsVersion::k1_3;
  auto r = TlsContext::createServer(selfSignedBundle(), policy, 7);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  const TlsContext& ctx = **r;
  CHECK(ctx.isServer());
  CHECK(ctx.generation() == 7);
  CHECK(ctx.certInfo().subject == "CN=localhost");
  CHECK((ctx.policy().min_version == TlsVersion::k1_3));
  CHECK(SSL_CTX_get_min_proto_version(ctx.sslCtx()) == TLS1_3_VERSION);
  CHECK((SSL_CTX_get_options(ctx.sslCtx()) & SSL_OP_NO_RENEGOTIATION) != 0);
  CHECK((SSL_CTX_get_options(ctx.sslCtx()) & SSL_OP_CIPHER_SERVER_PREFERENCE) != 0);
  CHECK((SSL_CTX_get_mode(ctx.sslCtx()) & SSL_MODE_RELEASE_BUFFERS) != 0);
  CHECK(SSL_CTX_get_security_level(ctx.sslCtx()) > 0);
}

TEST_CASE("createServer with min_version 1.0 drops the security level to 0") {
  TlsPolicy policy;
  policy.min_version = TlsVersion::k1_0;
  auto r = TlsContext::createServer(selfSignedBundle(), policy, 1);
  REQUIRE(r.ok());
  CHECK(SSL_CTX_get_security_level((*r)->sslCtx()) == 0);
  CHECK(SSL_CTX_get_min_proto_version((*r)->sslCtx()) == TLS1_VERSION);
}

TEST_CASE("createServer serves the chain after the leaf") {
  ThreeLevelChain chain;
  auto r = TlsContext::createServer(chain.bundle(), TlsPolicy{}, 1);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  CHECK((*r)->certInfo().chain_length == 2);
  STACK_OF(X509)* served = nullptr;
  REQUIRE(SSL_CTX_get0_chain_certs((*r)->sslCtx(), &served) == 1);
  REQUIRE(served != nullptr);
  REQUIRE(sk_X509_num(served) == 2);
  CHECK(X509_cmp(sk_X509_value(served, 0), chain.inter.get()) == 0);
  CHECK(X509_cmp(sk_X509_value(served, 1), chain.root.get()) == 0);
}

TEST_CASE("createServer serves the given chain as is, never one built per handshake") {
  ThreeLevelChain chain;
  auto r = TlsContext::createServer(chain.bundle(), TlsPolicy{}, 1);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  CHECK((SSL_CTX_get_mode((*r)->sslCtx()) & SSL_MODE_NO_AUTO_CHAIN) != 0);
}

TEST_CASE("createClient with and without a trusted CA") {
  auto plain = TlsContext::createClient(TlsPolicy{}, "");
  REQUIRE(plain.ok());
  CHECK_FALSE((*plain)->isServer());
  CHECK(SSL_CTX_get_verify_mode((*plain)->sslCtx()) == SSL_VERIFY_NONE);

  auto verifying = TlsContext::createClient(TlsPolicy{}, selfSignedBundle().cert_pem);
  REQUIRE(verifying.ok());
  CHECK(SSL_CTX_get_verify_mode((*verifying)->sslCtx()) == SSL_VERIFY_PEER);

  auto junk = TlsContext::createClient(TlsPolicy{}, "junk");
  REQUIRE_FALSE(junk.ok());
  CHECK(junk.message() == "trusted CA: no PEM certificate found");
}

TEST_CASE("createClient caps the version it offers") {
  auto capped = TlsContext::createClient(TlsPolicy{}, "", TlsVersion::k1_2);
  REQUIRE(capped.ok());
  CHECK(SSL_CTX_get_max_proto_version((*capped)->sslCtx()) == TLS1_2_VERSION);
  auto open = TlsContext::createClient(TlsPolicy{}, "");
  REQUIRE(open.ok());
  CHECK(SSL_CTX_get_max_proto_version((*open)->sslCtx()) == 0);  // no cap

  TlsPolicy strict;
  strict.min_version = TlsVersion::k1_3;
  auto impossible = TlsContext::createClient(strict, "", TlsVersion::k1_2);
  REQUIRE_FALSE(impossible.ok());
  CHECK(impossible.message() == "TLS client: maximum version 1.2 is below the minimum 1.3");
}

TEST_CASE("createClientFromFiles: a CA file, optionally a certificate and key") {
  shardgate::testing::TempDir dir;
  ThreeLevelChain chain;
  auto write = [&](const std::string& name, const std::string& text) {
    std::string path = dir.path + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    return path;
  };
  std::string ca = write("ca.pem", certPem(chain.root.get()));
  CertBundle b = chain.bundle();
  std::string cert = write("client.pem", b.cert_pem + b.chain_pem);
  std::string key = write("client.key", b.key_pem);
  std::string junk = write("junk.pem", "junk");

  auto verify_only = TlsContext::createClientFromFiles(TlsPolicy{}, ca);
  REQUIRE_MESSAGE(verify_only.ok(), (verify_only.ok() ? "" : verify_only.message()));
  CHECK_FALSE((*verify_only)->isServer());

  auto mutual = TlsContext::createClientFromFiles(TlsPolicy{}, ca, cert, key);
  REQUIRE_MESSAGE(mutual.ok(), (mutual.ok() ? "" : mutual.message()));
  CHECK((*mutual)->certInfo().subject.find("localhost") != std::string::npos);

  auto missing = TlsContext::createClientFromFiles(TlsPolicy{}, dir.path + "/none.pem");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.message().find("none.pem") != std::string::npos);

  auto not_pem = TlsContext::createClientFromFiles(TlsPolicy{}, junk);
  REQUIRE_FALSE(not_pem.ok());
  CHECK(not_pem.message().find("junk.pem") != std::string::npos);

  auto half = TlsContext::createClientFromFiles(TlsPolicy{}, ca, cert, "");
  REQUIRE_FALSE(half.ok());
  CHECK(half.message().find("both") != std::string::npos);

  auto wrong_key = TlsContext::createClientFromFiles(TlsPolicy{}, ca, cert, ca);
  CHECK_FALSE(wrong_key.ok());
}
