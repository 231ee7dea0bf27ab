#include "tls/ticket_keys.h"

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/tls/test_certs.h"
#include "tls/memory_link.h"
#include "tls/tls_context.h"
#include "tls/tls_session.h"

using namespace shardgate;
using namespace shardgate::tls;
using namespace shardgate::tls::testing;

namespace {

// A client handshake against server, resuming resume when given. Returns
// the client's session afterwards (for the next resumption).
struct Outcome {
  bool open = false;
  bool reused = false;
  std::string session;
};

Outcome connect(const TlsContextPtr& client_ctx, const TlsContextPtr& server_ctx,
                const std::string& resume = "") {
  MemoryPeer c;
  MemoryPeer s;
  c.session = TlsSession::create(client_ctx, TlsSession::Role::kClient);
  s.session = TlsSession::create(server_ctx, TlsSession::Role::kServer);
  REQUIRE(c.session);
  REQUIRE(s.session);
  if (!resume.empty()) REQUIRE(c.session->importSession(resume));
  c.session->startHandshake(c.out);
  pump(c, s, 50);
  Outcome o;
  o.open = c.session->isOpen() && s.session->isOpen();
  o.reused = s.session->sessionReused();
  CHECK(c.session->sessionReused() == o.reused);
  o.session = c.session->exportSession();
  return o;
}

TlsContextPtr server(const std::shared_ptr<TicketKeys>& keys, const std::string& cn) {
  CertSpec spec;
  spec.cn = cn;
  auto r = TlsContext::createServer(selfSignedBundle(spec), TlsPolicy{}, 1, keys);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  return *r;
}

TlsContextPtr client(TlsVersion max) {
  auto r = TlsContext::createClient(TlsPolicy{}, "", max);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  return *r;
}

}  // namespace

TEST_CASE("TicketKeys: rotate keeps the current key and two previous ones") {
  auto keys = TicketKeys::create();
  auto first = keys->snapshot();
  REQUIRE(first->current);
  CHECK(first->previous.empty());

  std::vector<TicketKeys::Key> history{*first->current};
  for (int i = 0; i < 4; ++i) {
    REQUIRE(keys->rotate());
    history.push_back(*keys->snapshot()->current);
  }
  auto now = keys->snapshot();
  REQUIRE(now->previous.size() == TicketKeys::kMaxPrevious);
  CHECK(now->current->name == history[4].name);
  CHECK(now->previous[0].name == history[3].name);  // newest first
  CHECK(now->previous[1].name == history[2].name);
  // Old snapshots are immutable: a handshake holding one is not disturbed.
  CHECK(first->current->name == history[0].name);
  CHECK(first->previous.empty());

  std::set<std::string> names;
  for (const auto& k : history) {
    names.insert(std::string(k.name.begin(), k.name.end()));
    CHECK(k.hmac_key != k.aes_key);
  }
  CHECK(names.size() == history.size());
}

TEST_CASE("TicketKeys: concurrent rotations are none of them lost") {
  auto keys = TicketKeys::create();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) CHECK(keys->rotate());
    });
  }
  for (auto& th : threads) th.join();
  auto now = keys->snapshot();
  REQUIRE(now->current);
  CHECK(now->previous.size() == TicketKeys::kMaxPrevious);
}

TEST_CASE("TicketKeys: a ticket survives a certificate rotation, and up to two key rotations") {
  for (TlsVersion max : {TlsVersion::k1_3, TlsVersion::k1_2}) {
    CAPTURE(toString(max));
    auto keys = TicketKeys::create();
    auto cctx = client(max);
    auto gen1 = server(keys, "old.example");
    auto gen2 = server(keys, "new.example");  // a different certificate and key
    REQUIRE(gen1->certInfo().sha256_fingerprint != gen2->certInfo().sha256_fingerprint);

    Outcome first = connect(cctx, gen1);
    REQUIRE(first.open);
    CHECK_FALSE(first.reused);
    REQUIRE_FALSE(first.session.empty());

    // Same keys, new certificate: resumes.
    Outcome across = connect(cctx, gen2, first.session);
    REQUIRE(across.open);
    CHECK(across.reused);

    // One rotation: the ticket's key is now a previous key, still accepted.
    REQUIRE(keys->rotate());
    Outcome after_one = connect(cctx, gen2, first.session);
    REQUIRE(after_one.open);
    CHECK(after_one.reused);

    REQUIRE(keys->rotate());
    Outcome after_two = connect(cctx, gen1, first.session);
    REQUIRE(after_two.open);
    CHECK(after_two.reused);

    // Three: the key is forgotten; a full handshake, which still succeeds.
    REQUIRE(keys->rotate());
    Outcome after_three = connect(cctx, gen2, first.session);
    REQUIRE(after_three.open);
    CHECK_FALSE(after_three.reused);

    // And a ticket issued now resumes again.
    REQUIRE_FALSE(after_three.session.empty());
    Outcome fresh = connect(cctx, gen1, after_three.session);
    CHECK(fresh.reused);
  }
}

TEST_CASE("TicketKeys: contexts without shared keys do not accept each other's tickets") {
  auto cctx = client(TlsVersion::k1_3);
  auto a = server(nullptr, "a.example");
  auto b = server(nullptr, "b.example");
  Outcome first = connect(cctx, a);
  REQUIRE_FALSE(first.session.empty());
  CHECK(connect(cctx, a, first.session).reused);
  Outcome other = connect(cctx, b, first.session);
  CHECK(other.open);
  CHECK_FALSE(other.reused);
}

TEST_CASE("TicketKeys: the context keeps its keys alive") {
  auto keys = TicketKeys::create();
  auto ctx = server(keys, "localhost");
  std::weak_ptr<TicketKeys> weak = keys;
  keys.reset();
  CHECK_FALSE(weak.expired());
  auto cctx = client(TlsVersion::k1_3);
  Outcome first = connect(cctx, ctx);
  CHECK(connect(cctx, ctx, first.session).reused);
  ctx.reset();
  CHECK(weak.expired());
}
