// TcpStream and TlsStream on a real loop over 127.0.0.1: bytes both ways,
// half-close, self-owned close, and TLS in both roles (verification, SNI,
// what is written before the handshake completes).
#include <doctest/doctest.h>

#include <openssl/ssl.h>

#include "tests/unit/net/loop_fixture.h"
#include "tests/unit/tls/test_certs.h"

using namespace shardgate;
using namespace shardgate::net;
using namespace shardgate::net::testing;

namespace {

struct ServerCert {
  tls::testing::ThreeLevelChain chain;
  tls::TlsContextPtr server;
  std::string root_pem;

  ServerCert() {
    auto ctx = tls::TlsContext::createServer(chain.bundle(), tls::TlsPolicy{}, 1);
    REQUIRE_MESSAGE(ctx.ok(), (ctx.ok() ? "" : ctx.message()));
    server = *ctx;
    root_pem = tls::testing::certPem(chain.root.get());
  }
};

tls::TlsContextPtr clientCtx(const std::string& ca_pem) {
  auto ctx = tls::TlsContext::createClient(tls::TlsPolicy{}, ca_pem);
  REQUIRE_MESSAGE(ctx.ok(), (ctx.ok() ? "" : ctx.message()));
  return *ctx;
}

}  // namespace

TEST_CASE("TcpStream: bytes both ways, half-close, then close") {
  LoopFixture f;
  uint16_t port = f.listen();
  // The server echoes, and answers the client's end with one last line:
  // after a half-close the other direction still works.
  f.on_accept = [](Recorder& r) {
    r.on_data = [](Recorder& self) {
      if (self.got == "hello") self.write("HELLO");
    };
    r.on_end = [](Recorder& self) { self.write("bye"); };
  };
  Recorder client;
  Stream* c = f.connect(port, client);
  client.write("hello");  // held until connected
  c->setReading(true);    // applied once connected
  REQUIRE(f.runUntil([&] { return client.got == "HELLO"; }));
  CHECK(client.connected == 0);
  CHECK(c->peerName() == "127.0.0.1:" + std::to_string(port));

  REQUIRE(c->shutdownWrite() == 0);
  REQUIRE(f.runUntil([&] { return client.got == "HELLObye"; }));
  REQUIRE(f.accepted.size() == 1);
  CHECK(f.accepted[0]->ended);
  CHECK(f.accepted[0]->end_status == UV_EOF);
  CHECK(c->writeIdle());

  bool closed = false;
  c->close([](void* p) { *static_cast<bool*>(p) = true; }, &closed);
  f.closeAll();
  REQUIRE(f.runUntil([&] { return closed; }));
}

TEST_CASE("TcpStream: a refused connect is reported, and close frees the stream") {
  LoopFixture f;
  // A port nobody listens on: bind one, read its number, close it.
  auto addr = parseSocketAddress("127.0.0.1:0", true);
  auto fd = bindListenSocket(*addr);
  REQUIRE(fd.ok());
  uint16_t port = *boundPort(*fd);
  ::close(*fd);

  Recorder client;
  Stream* c = f.connect(port, client);
  REQUIRE(f.runUntil([&] { return client.connected != 1; }));
  CHECK(client.connected == UV_ECONNREFUSED);
  c->close();
}

TEST_CASE("TcpStream: callbacks after close reach nobody; the owner may be gone") {
  LoopFixture f;
  uint16_t port = f.listen();
  auto client = std::make_unique<Recorder>();
  Stream* c = f.connect(port, *client);
  REQUIRE(f.runUntil([&] { return client->connected == 0 && f.accepted.size() == 1; }));
  // A write larger than the socket buffers stays in flight; closing now
  // cancels it, and its callback must not reach the deleted owner.
  std::string big(8 << 20, 'x');
  client->write(big);
  bool closed = false;
  c->close([](void* p) { *static_cast<bool*>(p) = true; }, &closed);
  client.reset();
  REQUIRE(f.runUntil([&] { return closed; }));
}

TEST_CASE("TlsStream: a client verifies the server, sends SNI, and talks") {
  ServerCert cert;
  LoopFixture f;
  uint16_t port = f.listen(cert.server);
  f.on_accept = [](Recorder& r) {
    r.on_data = [](Recorder& self) {
      if (self.got == "PING") self.write("PONG");
    };
  };
  Recorder client;
  Stream* tcp = f.connect(port, client);
  auto tls = TlsStream::create(f.driver, tcp, clientCtx(cert.root_pem), &client, "localhost");
  REQUIRE(tls.ok());
  client.stream = *tls;
  client.write("PING");  // before the handshake: held, sent after it
  client.stream->setReading(true);
  REQUIRE(f.runUntil([&] { return client.got == "PONG" || client.tls_failed; }));
  CHECK(client.handshake);
  CHECK_FALSE(client.tls_failed);
  REQUIRE(f.accepted.size() == 1);
  CHECK(f.accepted[0]->handshake);
  auto* server_side = static_cast<TlsStream*>(f.accepted[0]->stream);
  CHECK(server_side->session().serverName() == "localhost");
  CHECK(std::string((*tls)->session().protocolName()) == "TLSv1.3");

  // close_notify reaches the server as a clean end.
  REQUIRE(client.stream->closeNotify() == 0);
  REQUIRE(f.runUntil([&] { return f.accepted[0]->ended; }));
  CHECK(f.accepted[0]->end_status == UV_EOF);
  client.stream->close();
}

TEST_CASE("TlsStream: what a client held during the handshake is sent after it, and the owner hears it drained") {
  ServerCert cert;
  LoopFixture f;
  uint16_t port = f.listen(cert.server);
  f.on_accept = [](Recorder& r) {
    r.on_data = [](Recorder& self) {
      if (self.got.size() == 1000) self.write("DONE");
    };
  };
  Recorder client;
  Stream* tcp = f.connect(port, client);
  auto tls = TlsStream::create(f.driver, tcp, clientCtx(cert.root_pem), &client, "localhost");
  REQUIRE(tls.ok());
  client.stream = *tls;
  client.write(std::string(1000, 'x'));
  CHECK_FALSE(client.stream->writeIdle());  // held
  client.stream->setReading(true);
  REQUIRE(f.runUntil([&] { return client.got == "DONE" || client.tls_failed; }));
  // An owner that stopped reading its other side until this stream drained
  // (backpressure) is told, whether the held bytes went out at once or not.
  CHECK(client.drained_after_handshake >= 1);
  CHECK(client.drained_status == 0);
  CHECK(client.stream->writeIdle());
  client.stream->close();
}

TEST_CASE("TlsStream: a client resumes through its resumption slot") {
  ServerCert cert;
  LoopFixture f;
  uint16_t port = f.listen(cert.server);
  f.on_accept = [](Recorder& r) {
    r.on_data = [](Recorder& self) {
      if (self.got == "PING") self.write("PONG");
    };
  };
  auto ctx = clientCtx(cert.root_pem);
  auto slot = std::make_shared<tls::ResumptionSlot>();
  for (bool resumed : {false, true}) {
    CAPTURE(resumed);
    Recorder client;
    auto tls = TlsStream::create(f.driver, f.connect(port, client), ctx, &client, "127.0.0.1", slot);
    REQUIRE(tls.ok());
    client.stream = *tls;
    client.write("PING");
    client.stream->setReading(true);
    // PONG comes after the TLS 1.3 ticket: the slot holds it by then.
    REQUIRE(f.runUntil([&] { return client.got == "PONG" || client.tls_failed; }));
    CHECK((*tls)->session().sessionReused() == resumed);
    CHECK_FALSE(slot->empty());
    client.stream->close();
  }
}

TEST_CASE("TlsStream: a client refuses a server its CA did not sign") {
  ServerCert cert;
  tls::testing::ThreeLevelChain other;  // another root
  LoopFixture f;
  uint16_t port = f.listen(cert.server);
  Recorder client;
  Stream* tcp = f.connect(port, client);
  auto tls = TlsStream::create(f.driver, tcp, clientCtx(tls::testing::certPem(other.root.get())),
                               &client, "localhost");
  REQUIRE(tls.ok());
  client.stream = *tls;
  client.stream->setReading(true);
  REQUIRE(f.runUntil([&] { return client.tls_failed || client.handshake; }));
  CHECK(client.tls_failed);
  CHECK_FALSE(client.handshake);
  // The other root has the same name, so OpenSSL tries its key first: the
  // reason may be the signature check ("EVP lib") rather than the verdict.
  CHECK((*tls)->session().failureReason().rfind("TLS handshake failed", 0) == 0);
  // The alert reaches the server: its handshake fails too.
  REQUIRE(f.runUntil([&] { return f.accepted.size() == 1 && f.accepted[0]->tls_failed; }));
  client.stream->close();
}

TEST_CASE("TlsStream: a client checks the name in the server's certificate") {
  ServerCert cert;  // issued to localhost and 127.0.0.1
  LoopFixture f;
  uint16_t port = f.listen(cert.server);

  Recorder by_ip;
  auto ok = TlsStream::create(f.driver, f.connect(port, by_ip), clientCtx(cert.root_pem), &by_ip,
                              "127.0.0.1");
  REQUIRE(ok.ok());
  by_ip.stream = *ok;
  by_ip.stream->setReading(true);
  REQUIRE(f.runUntil([&] { return by_ip.handshake || by_ip.tls_failed; }));
  CHECK(by_ip.handshake);

  Recorder wrong;
  auto bad = TlsStream::create(f.driver, f.connect(port, wrong), clientCtx(cert.root_pem), &wrong,
                               "shard.example");
  REQUIRE(bad.ok());
  wrong.stream = *bad;
  wrong.stream->setReading(true);
  REQUIRE(f.runUntil([&] { return wrong.handshake || wrong.tls_failed; }));
  CHECK(wrong.tls_failed);
  by_ip.stream->close();
  wrong.stream->close();
}

TEST_CASE("TlsStream: a server hands the first bytes to its owner before TLS sees them") {
  ServerCert cert;
  LoopFixture f;
  uint16_t port = f.listen(cert.server);
  // The owner answers plaintext in plaintext, as the proxy does.
  struct Refuser : Recorder {
    bool onStreamFirstBytes(const uint8_t* data, size_t) override {
      if (data[0] != '*') return false;
      static const std::string line = "-ERR use TLS\r\n";
      static_cast<TlsStream*>(stream)->writeClear(reinterpret_cast<const uint8_t*>(line.data()),
                                                  line.size());
      return true;
    }
  };
  Refuser* refuser = nullptr;
  // Swap in the refusing owner for the accepted stream.
  f.on_accept = [&](Recorder& r) {
    auto* owner = new Refuser;
    owner->stream = r.stream;
    r.stream->setOwner(owner);
    refuser = owner;
  };
  Recorder client;
  Stream* c = f.connect(port, client);
  client.write("*1\r\n$4\r\nPING\r\n");
  c->setReading(true);
  REQUIRE(f.runUntil([&] { return client.got == "-ERR use TLS\r\n"; }));
  REQUIRE(refuser != nullptr);
  CHECK(refuser->got.empty());
  CHECK_FALSE(refuser->tls_failed);
  c->close();
  f.closeAll();  // detaches the owner at once
  delete refuser;
}
