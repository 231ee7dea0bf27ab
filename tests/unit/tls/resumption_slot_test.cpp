// Client-side resumption through a ResumptionSlot, and the reasons a client
// gives when it refuses a server's certificate: two TlsSessions in memory,
// no sockets.
#include "tls/resumption_slot.h"

#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "tests/unit/tls/test_certs.h"
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
  for (int rounds = 0; rounds < 1000; ++rounds) {
    bool moved = deliver(a, b);
    moved = deliver(b, a) || moved;
    if (!moved) return;
  }
  FAIL("pump did not settle");
}

struct Shard {
  ThreeLevelChain chain;
  TlsContextPtr server;
  explicit Shard(const TlsPolicy& policy = {}) {
    auto made = TlsContext::createServer(chain.bundle(), policy, 1);
    REQUIRE_MESSAGE(made.ok(), (made.ok() ? "" : made.message()));
    server = *made;
  }
  std::string caPem() const { return certPem(chain.root.get()); }
};

TlsContextPtr clientCtx(const std::string& ca, uint64_t generation,
                        std::optional<TlsVersion> max = std::nullopt) {
  auto made = TlsContext::createClient({}, ca, max, nullptr, generation);
  REQUIRE_MESSAGE(made.ok(), (made.ok() ? "" : made.message()));
  return *made;
}

struct Outcome {
  bool open = false;
  bool resumed = false;
  std::string failure;
};

// One connection: handshake, then a round trip of data (so TLS 1.3
// tickets, sent after the handshake, reach the client).
Outcome connect(const Shard& shard, TlsContextPtr cctx, std::shared_ptr<ResumptionSlot> slot,
                const std::string& name = "127.0.0.1") {
  Peer client, server;
  client.session = TlsSession::create(std::move(cctx), TlsSession::Role::kClient);
  server.session = TlsSession::create(shard.server, TlsSession::Role::kServer);
  REQUIRE(client.session->setServerName(name));
  client.session->useResumptionSlot(std::move(slot));
  client.session->startHandshake(client.out);
  pump(client, server);
  Outcome o;
  o.open = client.session->isOpen();
  o.failure = client.session->failureReason();
  if (!o.open) return o;
  o.resumed = client.session->sessionReused();
  const std::string ping = "PING\r\n";
  REQUIRE(server.session->encrypt(reinterpret_cast<const uint8_t*>(ping.data()), ping.size(), server.out));
  pump(client, server);
  CHECK(client.plain.view() == ping);
  return o;
}

}  // namespace

// Every connection here ends without close_notify (as a dropped shard
// connection does), which makes OpenSSL mark its session not resumable: the
// slot keeps copies, so that never spoils the next connection.
TEST_CASE("ResumptionSlot: a reconnect resumes with the ticket of the last connection") {
  for (std::optional<TlsVersion> max : {std::optional<TlsVersion>(), std::optional(TlsVersion::k1_2)}) {
    CAPTURE(max.has_value());
    Shard shard;
    TlsContextPtr cctx = clientCtx(shard.caPem(), 1, max);
    auto slot = std::make_shared<ResumptionSlot>();
    CHECK(slot->empty());
    Outcome first = connect(shard, cctx, slot);
    REQUIRE(first.open);
    CHECK_FALSE(first.resumed);
    CHECK_FALSE(slot->empty());  // TLS 1.3: captured from a ticket after the handshake
    CHECK(slot->generation() == 1);
    const uint64_t stored = slot->stored();
    Outcome second = connect(shard, cctx, slot);
    REQUIRE(second.open);
    CHECK(second.resumed);
    // TLS 1.3 sends a fresh ticket on the resumed connection too: the slot
    // keeps the latest.
    if (!max) CHECK(slot->stored() > stored);
    Outcome third = connect(shard, cctx, slot);
    CHECK(third.resumed);
  }
}

TEST_CASE("ResumptionSlot: no slot, or a slot of another context generation, means a full handshake") {
  Shard shard;
  auto slot = std::make_shared<ResumptionSlot>();
  REQUIRE(connect(shard, clientCtx(shard.caPem(), 1), slot).open);
  REQUIRE_FALSE(slot->empty());
  CHECK_FALSE(connect(shard, clientCtx(shard.caPem(), 1), nullptr).resumed);
  // A rebuilt context (new CA, new client certificate): the old session is not offered.
  Outcome fresh = connect(shard, clientCtx(shard.caPem(), 2), slot);
  REQUIRE(fresh.open);
  CHECK_FALSE(fresh.resumed);
  CHECK(slot->generation() == 2);  // and the new context's ticket replaces it
  CHECK(connect(shard, clientCtx(shard.caPem(), 2), slot).resumed);
}

TEST_CASE("ResumptionSlot: a refused certificate says why, and stores nothing") {
  Shard shard;
  auto slot = std::make_shared<ResumptionSlot>();
  Outcome wrong_name = connect(shard, clientCtx(shard.caPem(), 1), slot, "redis.internal");
  CHECK_FALSE(wrong_name.open);
  CHECK(wrong_name.failure == "TLS handshake failed: certificate verify failed (hostname mismatch)");
  Outcome wrong_ip = connect(shard, clientCtx(shard.caPem(), 1), slot, "127.0.0.2");
  CHECK_FALSE(wrong_ip.open);
  CHECK(wrong_ip.failure == "TLS handshake failed: certificate verify failed (IP address mismatch)");
  Shard other;
  Outcome wrong_ca = connect(shard, clientCtx(other.caPem(), 1), slot);
  CHECK_FALSE(wrong_ca.open);
  // Both test roots are named "Test Root": the verdict is the signature's.
  CHECK_MESSAGE(wrong_ca.failure.rfind("TLS handshake failed: certificate verify failed (", 0) == 0, wrong_ca.failure);
  CHECK(slot->empty());
  // The name the certificate does carry works.
  CHECK(connect(shard, clientCtx(shard.caPem(), 1), slot, "localhost").open);
}

