// Client certificates: the allow-list matcher, the names read from a
// certificate, and a server context that verifies clients (required or
// optional, CAs, CRL-free) driven through memory.
#include "tls/client_identity.h"

#include <doctest/doctest.h>

#include "tests/unit/tls/test_certs.h"
#include "tls/preflight.h"
#include "tls/tls_context.h"
#include "tls/tls_session.h"

using namespace shardgate;
using namespace shardgate::tls;
using namespace shardgate::tls::testing;

namespace {

struct Peer {
  std::unique_ptr<TlsSession> session;
  ByteBuffer plain;
  ByteBuffer out;
};

bool deliver(Peer& from, Peer& to) {
  if (from.out.empty()) return false;
  ByteBuffer wire;
  wire.swap(from.out);
  to.session->feed(wire.data(), wire.size(), to.plain, to.out);
  return true;
}

void pump(Peer& a, Peer& b) {
  for (int rounds = 0; rounds < 100; ++rounds) {
    bool moved = deliver(a, b);
    moved = deliver(b, a) || moved;
    if (!moved) return;
  }
  FAIL("pump did not settle");
}

struct Ca {
  EvpPkeyPtr key = makeKey();
  X509Ptr cert;
  explicit Ca(const std::string& cn) {
    CertSpec spec;
    spec.cn = cn;
    spec.ca = true;
    cert = makeCert(spec, key.get(), nullptr, nullptr);
  }
  CertBundle issue(const std::string& cn, long not_after_offset = 30L * 24 * 3600) const {
    CertSpec spec;
    spec.cn = cn;
    spec.not_after_offset = not_after_offset;
    if (not_after_offset < 0) spec.not_before_offset = not_after_offset - 3600;
    EvpPkeyPtr leaf_key = makeKey();
    X509Ptr leaf = makeCert(spec, leaf_key.get(), cert.get(), key.get());
    CertBundle b;
    b.cert_pem = certPem(leaf.get());
    b.key_pem = keyPem(leaf_key.get());
    b.cert_source = cn + ".pem";
    b.key_source = cn + ".key";
    return b;
  }
};

TlsContextPtr verifyingServer(const Ca& ca, bool required) {
  ClientVerify verify;
  verify.required = required;
  verify.ca_pem = certPem(ca.cert.get());
  verify.scope = "db1";
  auto ctx = TlsContext::createServer(selfSignedBundle(), TlsPolicy{}, 1, nullptr, nullptr, &verify);
  REQUIRE_MESSAGE(ctx.ok(), (ctx.ok() ? "" : ctx.message()));
  return *ctx;
}

// Handshake plus one request: the server's verdict on a TLS 1.3 client
// certificate comes after the client considers itself connected.
struct Exchange {
  Peer client, server;
  Exchange(TlsContextPtr server_ctx, const CertBundle* client_cert) {
    auto client_ctx = TlsContext::createClient(TlsPolicy{}, "", std::nullopt, client_cert);
    REQUIRE_MESSAGE(client_ctx.ok(), (client_ctx.ok() ? "" : client_ctx.message()));
    client.session = TlsSession::create(*client_ctx, TlsSession::Role::kClient);
    server.session = TlsSession::create(std::move(server_ctx), TlsSession::Role::kServer);
    client.session->startHandshake(client.out);
    pump(client, server);
    if (client.session->isOpen()) {
      static constexpr uint8_t kPing[] = {'P', 'I', 'N', 'G'};
      REQUIRE(client.session->encrypt(kPing, sizeof kPing, client.out).ok());
      pump(client, server);
    }
  }
};

}  // namespace

TEST_CASE("wildcardMatch: exact, '*' anywhere, any run of characters") {
  CHECK(wildcardMatch("app.example.com", "app.example.com"));
  CHECK_FALSE(wildcardMatch("app.example.com", "app.example.co"));
  CHECK(wildcardMatch("app-*.example.com", "app-1.example.com"));
  CHECK(wildcardMatch("app-*.example.com", "app-.example.com"));
  CHECK(wildcardMatch("app-*.example.com", "app-a.b.example.com"));  // '*' crosses dots
  CHECK_FALSE(wildcardMatch("app-*.example.com", "web-1.example.com"));
  CHECK(wildcardMatch("*", ""));
  CHECK(wildcardMatch("*", "anything"));
  CHECK(wildcardMatch("spiffe://example.org/ns/prod/*", "spiffe://example.org/ns/prod/sa/app"));
  CHECK_FALSE(wildcardMatch("spiffe://example.org/ns/prod/*", "spiffe://example.org/ns/dev/sa/app"));
  CHECK(wildcardMatch("a*b*c", "aXXbYYc"));
  CHECK_FALSE(wildcardMatch("a*b*c", "aXXbYY"));
  CHECK(wildcardMatch("*.example.com", "x.example.com"));
  CHECK_FALSE(wildcardMatch("*.example.com", "example.com"));
}

TEST_CASE("ClientAllowList: entries are validated with their index") {
  CHECK(ClientAllowList::create({"cn:a", "dns:b", "email:c@d", "uri:spiffe://x/*"}).ok());
  auto bad = ClientAllowList::create({"cn:ok", "host:web-1"});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.message().find("[1]") == 0);
  CHECK(bad.message().find("cn:, dns:, email: or uri:") != std::string::npos);
  auto empty = ClientAllowList::create({"dns:"});
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.message().find("[0]") == 0);
  CHECK(empty.message().find("nothing after dns:") != std::string::npos);
}

TEST_CASE("ClientAllowList: any entry matching any name of its kind") {
  auto list = ClientAllowList::create({"cn:app-*.example.com", "uri:spiffe://example.org/ns/prod/*",
                                       "email:ops@example.com", "dns:DB-*.Example.com"});
  REQUIRE(list.ok());
  ClientIdentity by_cn{"CN=app-1.example.com", "app-1.example.com", {}, {}, {}};
  CHECK(list->allows(by_cn));
  ClientIdentity by_uri{"CN=svc", "svc", {}, {}, {"spiffe://example.org/ns/prod/sa/batch"}};
  CHECK(list->allows(by_uri));
  ClientIdentity by_email{"CN=x", "x", {}, {"ops@example.com"}, {}};
  CHECK(list->allows(by_email));
  ClientIdentity by_dns{"CN=x", "x", {"db-7.example.COM"}, {}, {}};  // DNS: case-insensitive
  CHECK(list->allows(by_dns));
  // A name of another kind does not count: the CN is not a DNS SAN.
  ClientIdentity wrong_kind{"CN=ops@example.com", "ops@example.com", {"app-1.example.com"}, {}, {}};
  CHECK_FALSE(list->allows(wrong_kind));
  ClientIdentity none{"CN=batch", "batch", {"batch.example.com"}, {"batch@example.com"},
                      {"spiffe://example.org/ns/dev/sa/batch"}};
  CHECK_FALSE(list->allows(none));
}

TEST_CASE("identityOfCertificate: subject, CN and DNS SANs") {
  Ca ca("names CA");
  CertBundle leaf = ca.issue("app-1.example.com");
  BioPtr bio(BIO_new_mem_buf(leaf.cert_pem.data(), static_cast<int>(leaf.cert_pem.size())));
  X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  REQUIRE(x);
  ClientIdentity id = identityOfCertificate(x.get());
  CHECK(id.subject == "CN=app-1.example.com");
  CHECK(id.cn == "app-1.example.com");
  REQUIRE(id.dns.size() == 1);
  CHECK(id.dns[0] == "app-1.example.com");
  CHECK(id.email.empty());
  CHECK(id.uri.empty());
}

TEST_CASE("ClientVerify required: a certificate from the CA passes, none or a foreign one fails with a reason") {
  Ca ca("client CA");
  Ca other("other CA");
  TlsContextPtr server = verifyingServer(ca, true);
  CHECK(server->verifiesClients());

  CertBundle good = ca.issue("app-1");
  Exchange ok(server, &good);
  REQUIRE_MESSAGE(ok.server.session->isOpen(), ok.server.session->failureReason());
  CHECK(ok.server.plain.view() == "PING");
  auto id = ok.server.session->verifiedPeerIdentity();
  REQUIRE(id);
  CHECK(id->cn == "app-1");

  Exchange none(server, nullptr);
  CHECK(none.server.session->state() == TlsSession::State::kFailed);
  CHECK(none.server.session->failureCode() == "peer did not return a certificate");
  CHECK(none.server.plain.empty());

  CertBundle foreign = other.issue("intruder");
  Exchange bad(server, &foreign);
  CHECK(bad.server.session->state() == TlsSession::State::kFailed);
  CHECK(bad.server.session->failureCode().find("certificate verify failed: ") == 0);
  CHECK(bad.server.plain.empty());
  // An expired client certificate ("certificate verify failed: certificate
  // has expired") is tested end to end (test_client_certs.py): the client
  // contexts here refuse to load an expired certificate.
}

TEST_CASE("ClientVerify optional: no certificate passes unidentified, a foreign one fails") {
  Ca ca("client CA");
  Ca other("other CA");
  TlsContextPtr server = verifyingServer(ca, false);
  Exchange none(server, nullptr);
  REQUIRE(none.server.session->isOpen());
  CHECK(none.server.plain.view() == "PING");
  CHECK_FALSE(none.server.session->verifiedPeerIdentity());

  CertBundle foreign = other.issue("intruder");
  Exchange bad(server, &foreign);
  CHECK(bad.server.session->state() == TlsSession::State::kFailed);
}

TEST_CASE("ClientVerify: preflight passes for required (the probe has no client certificate)") {
  Ca ca("client CA");
  CHECK(preflight(verifyingServer(ca, true)).ok());
  CHECK(preflight(verifyingServer(ca, false)).ok());
}

TEST_CASE("ClientVerify: no CA certificate in the bundle, or a CRL file without a CRL, is an error") {
  ClientVerify verify;
  verify.ca_pem = "not PEM";
  auto none = TlsContext::createServer(selfSignedBundle(), TlsPolicy{}, 1, nullptr, nullptr, &verify);
  REQUIRE_FALSE(none.ok());
  CHECK(none.message().find("client CA: no PEM certificate") == 0);
  Ca ca("client CA");
  verify.ca_pem = certPem(ca.cert.get());
  verify.crl_pem = "garbage";
  auto crl = TlsContext::createServer(selfSignedBundle(), TlsPolicy{}, 1, nullptr, nullptr, &verify);
  REQUIRE_FALSE(crl.ok());
  CHECK(crl.message().find("client CRL: no PEM CRL") == 0);
}
