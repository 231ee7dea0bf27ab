#include "tests/unit/temp_dir.h"
#include "tls/tls_session.h"

#include <doctest/doctest.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/tls/test_certs.h"

using namespace shardgate;
using namespace shardgate::tls;
using namespace shardgate::tls::testing;

namespace {

// One side of a connection held in memory: the session, the plaintext it
// produced and the ciphertext waiting to reach the other side.
struct Peer {
  std::unique_ptr<TlsSession> session;
  ByteBuffer plain;
  ByteBuffer out;
  int handshakes_completed = 0;
};

// Moves from's pending ciphertext into to, in chunks of at most chunk bytes.
bool deliver(Peer& from, Peer& to, size_t chunk) {
  if (from.out.empty()) return false;
  ByteBuffer wire;
  wire.swap(from.out);  // to may answer into its own out while we feed
  size_t off = 0;
  while (off < wire.size()) {
    size_t n = std::min(chunk, wire.size() - off);
    auto r = to.session->feed(wire.data() + off, n, to.plain, to.out);
    if (r.handshake_completed) ++to.handshakes_completed;
    off += n;
  }
  return true;
}

// Shuttles ciphertext both ways until neither side has anything to say.
void pump(Peer& a, Peer& b, size_t chunk = SIZE_MAX) {
  for (int rounds = 0; rounds < 10000; ++rounds) {
    bool moved = deliver(a, b, chunk);
    moved = deliver(b, a, chunk) || moved;
    if (!moved) return;
  }
  FAIL("pump did not settle");
}

TlsContextPtr serverCtx(const TlsPolicy& policy = {}, const CertBundle& bundle = selfSignedBundle()) {
  auto r = TlsContext::createServer(bundle, policy, 1);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  return *r;
}

TlsContextPtr clientCtx(const TlsPolicy& policy = {}, const std::string& ca = "") {
  auto r = TlsContext::createClient(policy, ca);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  return *r;
}

struct Pair {
  Peer client;
  Peer server;
  Pair(TlsContextPtr cctx, TlsContextPtr sctx, const std::string& resume = "") {
    client.session = TlsSession::create(std::move(cctx), TlsSession::Role::kClient);
    server.session = TlsSession::create(std::move(sctx), TlsSession::Role::kServer);
    REQUIRE(client.session);
    REQUIRE(server.session);
    if (!resume.empty()) REQUIRE(client.session->importSession(resume));
    client.session->startHandshake(client.out);
  }
  void run(size_t chunk = SIZE_MAX) { pump(client, server, chunk); }
};

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 7) & 0xFF);
  return s;
}

void send(Peer& p, const std::string& data) {
  auto s = p.session->encrypt(reinterpret_cast<const uint8_t*>(data.data()), data.size(), p.out);
  REQUIRE_MESSAGE(s.ok(), s.message());
}

}  // namespace

TEST_CASE("TlsSession: handshake and data both ways through memory") {
  Pair p(clientCtx(), serverCtx());
  CHECK(p.client.session->state() == TlsSession::State::kHandshaking);
  CHECK_FALSE(p.client.out.empty());  // the ClientHello
  p.run();
  REQUIRE(p.client.session->isOpen());
  REQUIRE(p.server.session->isOpen());
  CHECK(p.client.handshakes_completed == 1);
  CHECK(p.server.handshakes_completed == 1);
  CHECK(std::string(p.server.session->protocolName()) == "TLSv1.3");
  CHECK(std::string(p.client.session->cipherName()) ==
        std::string(p.server.session->cipherName()));
  CHECK_FALSE(p.server.session->sessionReused());
  CHECK(p.server.session->generation() == 1);

  send(p.client, "PING\r\n");
  p.run();
  CHECK(p.server.plain.view() == "PING\r\n");
  p.server.plain.clear();
  send(p.server, "+PONG\r\n");
  p.run();
  CHECK(p.client.plain.view() == "+PONG\r\n");
  p.client.plain.clear();

  std::string big = pattern(1 << 20);
  send(p.client, big);
  send(p.server, big);
  p.run();
  CHECK(p.server.plain.size() == big.size());
  CHECK(p.server.plain.view() == big);
  CHECK(p.client.plain.view() == big);
}

TEST_CASE("TlsSession: an error left on the thread's queue fails neither handshake nor data") {
  // Someone else's OpenSSL call left an error behind; SSL_get_error() would
  // take it for this session's unless feed()/encrypt() clear it first.
  Pair p(clientCtx(), serverCtx());
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
  p.run();
  REQUIRE_MESSAGE(p.server.session->isOpen(), p.server.session->failureReason());
  REQUIRE_MESSAGE(p.client.session->isOpen(), p.client.session->failureReason());
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
  send(p.client, "PING\r\n");
  // One byte at a time: every feed but the last ends in SSL_ERROR_WANT_READ,
  // which a stale error would turn into a failure.
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
  p.run(1);
  CHECK_MESSAGE(p.server.session->isOpen(), p.server.session->failureReason());
  CHECK(p.server.plain.view() == "PING\r\n");
  ERR_clear_error();
}

TEST_CASE("TlsSession: ciphertext fed one byte at a time") {
  Pair p(clientCtx(), serverCtx());
  p.run(1);
  REQUIRE(p.client.session->isOpen());
  REQUIRE(p.server.session->isOpen());
  CHECK(p.client.handshakes_completed == 1);
  CHECK(p.server.handshakes_completed == 1);

  std::string big = pattern(1 << 20);
  send(p.client, big);
  send(p.server, "+OK\r\n");
  p.run(1);
  CHECK(p.server.plain.view() == big);
  CHECK(p.client.plain.view() == "+OK\r\n");
}

TEST_CASE("TlsSession: TLS 1.2 with the default cipher list") {
  auto cctx = clientCtx();
  SSL_CTX_set_max_proto_version(cctx->sslCtx(), TLS1_2_VERSION);
  Pair p(cctx, serverCtx());
  p.run(7);
  REQUIRE(p.server.session->isOpen());
  CHECK(std::string(p.client.session->protocolName()) == "TLSv1.2");
  CHECK(std::string(p.server.session->cipherName()) == "ECDHE-ECDSA-AES128-GCM-SHA256");
  send(p.client, "hello");
  p.run(3);
  CHECK(p.server.plain.view() == "hello");
}

TEST_CASE("TlsSession: min_version 1.0 really serves TLS 1.0") {
  TlsPolicy old;
  old.min_version = TlsVersion::k1_0;
  old.ciphers = "ECDHE-ECDSA-AES128-SHA:" + std::string(kDefaultCiphers);
  auto cctx = clientCtx(old);
  SSL_CTX_set_max_proto_version(cctx->sslCtx(), TLS1_VERSION);
  Pair p(cctx, serverCtx(old));
  p.run();
  REQUIRE_MESSAGE(p.server.session->isOpen(), p.server.session->failureReason());
  CHECK(std::string(p.server.session->protocolName()) == "TLSv1");
}

TEST_CASE("TlsSession: a 1.3-only server refuses a 1.2 client") {
  TlsPolicy strict;
  strict.min_version = TlsVersion::k1_3;
  auto cctx = clientCtx();
  SSL_CTX_set_max_proto_version(cctx->sslCtx(), TLS1_2_VERSION);
  Pair p(cctx, serverCtx(strict));
  p.run();
  REQUIRE(p.server.session->state() == TlsSession::State::kFailed);
  CHECK(p.server.session->failureCode() == "unsupported protocol");
  CHECK(p.server.session->failureReason() == "TLS handshake failed: unsupported protocol");
  REQUIRE(p.client.session->state() == TlsSession::State::kFailed);
  CHECK(p.client.session->failureCode().find("protocol version") != std::string::npos);

  // Once failed, input is ignored and nothing is encrypted.
  uint8_t junk[3] = {1, 2, 3};
  p.server.session->feed(junk, sizeof junk, p.server.plain, p.server.out);
  CHECK(p.server.plain.empty());
  CHECK_FALSE(p.server.session->encrypt(junk, sizeof junk, p.server.out).ok());
}

TEST_CASE("TlsSession: no shared cipher") {
  TlsPolicy s;
  s.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
  TlsPolicy c;
  c.ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384";
  auto cctx = clientCtx(c);
  SSL_CTX_set_max_proto_version(cctx->sslCtx(), TLS1_2_VERSION);
  Pair p(cctx, serverCtx(s));
  p.run();
  REQUIRE(p.server.session->state() == TlsSession::State::kFailed);
  CHECK(p.server.session->failureCode() == "no shared cipher");
  CHECK(p.client.session->state() == TlsSession::State::kFailed);

  TlsPolicy s13;
  s13.ciphersuites = "TLS_AES_128_GCM_SHA256";
  TlsPolicy c13;
  c13.ciphersuites = "TLS_AES_256_GCM_SHA384";
  Pair q(clientCtx(c13), serverCtx(s13));
  q.run();
  REQUIRE(q.server.session->state() == TlsSession::State::kFailed);
  CHECK(q.server.session->failureCode() == "no shared cipher");
}

TEST_CASE("TlsSession: a server fed plaintext fails with a reason") {
  Peer server;
  server.session = TlsSession::create(serverCtx(), TlsSession::Role::kServer);
  std::string ping = "*1\r\n$4\r\nPING\r\n";
  server.session->feed(reinterpret_cast<const uint8_t*>(ping.data()), ping.size(), server.plain,
                       server.out);
  REQUIRE(server.session->state() == TlsSession::State::kFailed);
  CHECK_FALSE(server.session->failureCode().empty());
  CHECK(server.session->failureReason().rfind("TLS handshake failed: ", 0) == 0);
}

TEST_CASE("TlsSession: client verification against the trusted CA") {
  CertBundle bundle = selfSignedBundle();
  Pair ok(clientCtx({}, bundle.cert_pem), serverCtx({}, bundle));
  ok.run();
  CHECK(ok.client.session->isOpen());

  Pair bad(clientCtx({}, selfSignedBundle().cert_pem), serverCtx({}, bundle));
  bad.run();
  REQUIRE(bad.client.session->state() == TlsSession::State::kFailed);
  CHECK(bad.client.session->failureCode() == "certificate verify failed");

  // A chain is served in order: a client that trusts only the root accepts it.
  ThreeLevelChain chain;
  Pair chained(clientCtx({}, certPem(chain.root.get())), serverCtx({}, chain.bundle()));
  chained.run();
  CHECK_MESSAGE(chained.client.session->isOpen(), chained.client.session->failureReason());
}

TEST_CASE("TlsSession: a generated self-signed certificate is its own trust anchor") {
  // What `redis-cli --tls --cacert proxy_cert.pem` does.
  shardgate::testing::TempDir tmp;
  const std::string& dir = tmp.path;
  auto info = generateSelfSigned(dir, {"localhost"});
  REQUIRE(info.ok());
  auto bundle = readProxyCertFiles(dir);
  REQUIRE(bundle.ok());
  auto cctx = clientCtx({}, bundle->cert_pem);
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(cctx->sslCtx());
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);  // as Python 3.13 does
  X509_VERIFY_PARAM_set1_host(param, "localhost", 0);
  Pair p(cctx, serverCtx({}, *bundle));
  p.run();
  CHECK_MESSAGE(p.client.session->isOpen(), p.client.session->failureReason());
  std::remove((dir + "/proxy_cert.pem").c_str());
  std::remove((dir + "/proxy_key.pem").c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("TlsSession: resumption with a ticket") {
  for (int max_version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    CAPTURE(max_version);
    auto sctx = serverCtx();
    auto cctx = clientCtx();
    SSL_CTX_set_max_proto_version(cctx->sslCtx(), max_version);

    Pair first(cctx, sctx);
    first.run();
    REQUIRE(first.client.session->isOpen());
    CHECK_FALSE(first.client.session->sessionReused());
    std::string ticket = first.client.session->exportSession();
    REQUIRE_FALSE(ticket.empty());

    Pair second(cctx, sctx, ticket);
    second.run();
    REQUIRE(second.client.session->isOpen());
    CHECK(second.client.session->sessionReused());
    CHECK(second.server.session->sessionReused());
    send(second.client, "after resumption");
    second.run();
    CHECK(second.server.plain.view() == "after resumption");

    // A ticket from another context's keys is not accepted, but does no harm.
    Pair elsewhere(cctx, serverCtx(), ticket);
    elsewhere.run();
    REQUIRE(elsewhere.client.session->isOpen());
    CHECK_FALSE(elsewhere.server.session->sessionReused());
  }
  Peer c;
  c.session = TlsSession::create(clientCtx(), TlsSession::Role::kClient);
  CHECK_FALSE(c.session->importSession("not a session"));
  CHECK(c.session->exportSession().empty());
}

TEST_CASE("TlsSession: shutdown sends close_notify and the peer sees kPeerClosed") {
  Pair p(clientCtx(), serverCtx());
  p.run();
  REQUIRE(p.server.session->isOpen());
  send(p.client, "last words");
  p.client.session->shutdown(p.client.out);
  CHECK_FALSE(p.client.out.empty());
  p.run();
  CHECK(p.server.plain.view() == "last words");
  CHECK(p.server.session->state() == TlsSession::State::kPeerClosed);
  CHECK_FALSE(p.server.session->encrypt(reinterpret_cast<const uint8_t*>("x"), 1,
                                        p.server.out).ok());
  p.server.session->shutdown(p.server.out);
  CHECK_FALSE(p.server.out.empty());
  p.run();
  CHECK(p.client.session->state() == TlsSession::State::kPeerClosed);
  // A second shutdown writes nothing more.
  p.client.session->shutdown(p.client.out);
  CHECK(p.client.out.empty());
}

TEST_CASE("TlsSession: many sessions on many threads") {
  auto sctx = serverCtx();
  auto cctx = clientCtx();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        Peer client, server;
        client.session = TlsSession::create(cctx, TlsSession::Role::kClient);
        server.session = TlsSession::create(sctx, TlsSession::Role::kServer);
        client.session->startHandshake(client.out);
        for (int r = 0; r < 20 && (deliver(client, server, 100) | deliver(server, client, 100));) ++r;
        std::string msg = "hello " + std::to_string(i);
        if (!client.session->encrypt(reinterpret_cast<const uint8_t*>(msg.data()), msg.size(),
                                     client.out).ok()) {
          continue;
        }
        deliver(client, server, 100);
        if (server.plain.view() == msg) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ok.load() == 160);
}

TEST_CASE("TlsSession: negotiatedVersion after the handshake only") {
  Pair p(clientCtx(), serverCtx());
  CHECK_FALSE(p.client.session->negotiatedVersion().has_value());
  CHECK_FALSE(p.server.session->negotiatedVersion().has_value());
  p.run();
  REQUIRE(p.server.session->isOpen());
  CHECK((p.client.session->negotiatedVersion() == TlsVersion::k1_3));
  CHECK((p.server.session->negotiatedVersion() == TlsVersion::k1_3));

  auto c12 = TlsContext::createClient(TlsPolicy{}, "", TlsVersion::k1_2);
  REQUIRE(c12.ok());
  Pair q(*c12, serverCtx());
  q.run();
  REQUIRE(q.server.session->isOpen());
  CHECK((q.server.session->negotiatedVersion() == TlsVersion::k1_2));
  CHECK((q.client.session->negotiatedVersion() == TlsVersion::k1_2));

  // The version survives the peer's close_notify.
  q.client.session->shutdown(q.client.out);
  q.run();
  CHECK(q.server.session->state() == TlsSession::State::kPeerClosed);
  CHECK((q.server.session->negotiatedVersion() == TlsVersion::k1_2));

  TlsPolicy old;
  old.min_version = TlsVersion::k1_0;
  old.ciphers = std::string(kDefaultCiphers) + ":" + kLegacyCiphers;
  auto c10 = TlsContext::createClient(old, "", TlsVersion::k1_0);
  REQUIRE(c10.ok());
  Pair r(*c10, serverCtx(old));
  r.run();
  REQUIRE(r.server.session->isOpen());
  CHECK((r.server.session->negotiatedVersion() == TlsVersion::k1_0));

  // A failed handshake has no version.
  TlsPolicy strict;
  strict.min_version = TlsVersion::k1_3;
  Pair f(*c12, serverCtx(strict));
  f.run();
  REQUIRE(f.server.session->state() == TlsSession::State::kFailed);
  CHECK_FALSE(f.server.session->negotiatedVersion().has_value());
  CHECK_FALSE(f.client.session->negotiatedVersion().has_value());
}

TEST_CASE("TlsContext: liveSessions counts the sessions holding the context") {
  auto sctx = serverCtx();
  auto cctx = clientCtx();
  CHECK(sctx->liveSessions() == 0);
  {
    Pair a(cctx, sctx);
    CHECK(sctx->liveSessions() == 1);
    CHECK(cctx->liveSessions() == 1);
    a.run();
    Pair b(cctx, sctx);
    CHECK(sctx->liveSessions() == 2);
    CHECK(cctx->liveSessions() == 2);
  }
  CHECK(sctx->liveSessions() == 0);
  CHECK(cctx->liveSessions() == 0);

  // Sessions created and destroyed on many threads at once.
  std::vector<std::thread> threads;
  std::atomic<int> peak{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::vector<std::unique_ptr<TlsSession>> held;
      for (int i = 0; i < 100; ++i) {
        held.push_back(TlsSession::create(sctx, TlsSession::Role::kServer));
      }
      int seen = static_cast<int>(sctx->liveSessions());
      int prev = peak.load();
      while (seen > prev && !peak.compare_exchange_weak(prev, seen)) {
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(peak.load() >= 100);
  CHECK(sctx->liveSessions() == 0);
}

TEST_CASE("TlsSession: the client role sends SNI and checks the server's name") {
  ThreeLevelChain chain;
  TlsContextPtr sctx = serverCtx({}, chain.bundle());
  TlsContextPtr cctx = clientCtx({}, certPem(chain.root.get()));
  for (const char* name : {"localhost", "127.0.0.1", "other.example"}) {
    CAPTURE(name);
    Peer client;
    Peer server;
    client.session = TlsSession::create(cctx, TlsSession::Role::kClient);
    server.session = TlsSession::create(sctx, TlsSession::Role::kServer);
    REQUIRE(client.session->setServerName(name));
    client.session->startHandshake(client.out);
    pump(client, server);
    const bool good = std::string(name) != "other.example";
    CHECK(client.session->isOpen() == good);
    // SNI carries host names only, never an IP address (RFC 6066 section 3).
    CHECK(server.session->serverName() == (std::string(name) == "127.0.0.1" ? "" : name));
    if (!good) {
      CHECK(client.session->failureReason().find("certificate verify failed") != std::string::npos);
    }
  }
}

TEST_CASE("TlsSession: a client presents its certificate when the server asks for one") {
  ThreeLevelChain server_chain;
  ThreeLevelChain client_chain;
  TlsContextPtr sctx = serverCtx({}, server_chain.bundle());
  // Server side of mutual TLS, set up by hand: the product does not serve it.
  SSL_CTX* raw = sctx->sslCtx();
  SSL_CTX_set_verify(raw, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(raw), client_chain.root.get());

  CertBundle client_cert = client_chain.bundle();
  auto with_cert = TlsContext::createClient({}, certPem(server_chain.root.get()), std::nullopt,
                                            &client_cert);
  REQUIRE_MESSAGE(with_cert.ok(), (with_cert.ok() ? "" : with_cert.message()));
  CHECK((*with_cert)->certInfo().subject.find("localhost") != std::string::npos);
  {
    Pair p(*with_cert, sctx);
    p.run();
    CHECK(p.client.session->isOpen());
    CHECK(p.server.session->isOpen());
    CHECK(p.server.session->peerPresentedCertificate());
    CHECK(p.client.session->peerPresentedCertificate());
  }
  {
    // Without one the server refuses the handshake.
    Pair p(clientCtx({}, certPem(server_chain.root.get())), sctx);
    p.run();
    CHECK(p.server.session->state() == TlsSession::State::kFailed);
  }
}
