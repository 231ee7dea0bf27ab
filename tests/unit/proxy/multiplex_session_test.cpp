// MultiplexSession driven with bytes: client commands in, fake shard replies
// in, the client's bytes out checked whole.
#include <doctest/doctest.h>

#include <string>

#include "proxy/multiplex_session.h"
#include "redis/hash_slot.h"
#include "redis/redis_text.h"
#include "tests/unit/proxy/fake_links.h"

namespace shardgate::proxy::testing {

namespace {

std::string error(std::string_view text) { return "-" + std::string(text) + "\r\n"; }

}  // namespace

TEST_CASE("multiplex session: replies go back in request order across shards") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  auto map = db.shard_map->current();
  const std::string k1 = keyOn(*map, 0), k2 = keyOn(*map, 1);

  rig.send(command({"GET", k1}) + command({"GET", k2}));
  REQUIRE(rig.links.shared(0).sent == std::vector<std::string>{command({"GET", k1})});
  REQUIRE(rig.links.shared(1).sent == std::vector<std::string>{command({"GET", k2})});

  // Shard 1 answers first: its reply waits behind k1's.
  rig.links.shared(1).reply(bulk("v2"));
  CHECK(rig.out().empty());
  rig.links.shared(0).reply(bulk("v1"));
  CHECK(rig.out() == bulk("v1") + bulk("v2"));
  CHECK(rig.session.idle());
}

TEST_CASE("multiplex session: local replies wait behind replies in flight") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  const std::string k = keyOn(*db.shard_map->current(), 1);

  rig.send(command({"GET", k}) + command({"PING"}) + command({"ECHO", "hi"}));
  CHECK(rig.out().empty());
  rig.links.shared(1).reply("$-1\r\n");
  CHECK(rig.out() == "$-1\r\n+PONG\r\n" + bulk("hi"));
}

TEST_CASE("multiplex session: MGET across three shards is merged in key order") {
  Database db = testDatabase(3);
  SessionRig rig(db);
  auto map = db.shard_map->current();
  const std::string a = keyOn(*map, 0, "a"), b = keyOn(*map, 1, "b"), c = keyOn(*map, 2, "c");
  const std::string d = keyOn(*map, 0, "d");

  rig.send(command({"MGET", b, a, c, d}));
  CHECK(rig.links.shared(0).sent == std::vector<std::string>{command({"MGET", a, d})});
  CHECK(rig.links.shared(1).sent == std::vector<std::string>{command({"MGET", b})});
  CHECK(rig.links.shared(2).sent == std::vector<std::string>{command({"MGET", c})});

  // Out of order: shard 2, then 0, then 1.
  rig.links.shared(2).reply("*1\r\n" + bulk("vc"));
  rig.links.shared(0).reply("*2\r\n" + bulk("va") + "$-1\r\n");
  CHECK(rig.out().empty());
  rig.links.shared(1).reply("*1\r\n" + bulk("vb"));
  CHECK(rig.out() == "*4\r\n" + bulk("vb") + bulk("va") + bulk("vc") + "$-1\r\n");
}

TEST_CASE("multiplex session: DEL across shards is summed; one shard is sent as is") {
  Database db = testDatabase(3);
  SessionRig rig(db);
  auto map = db.shard_map->current();
  const std::string a = keyOn(*map, 0, "a"), b = keyOn(*map, 1, "b"), c = keyOn(*map, 2, "c");
  const std::string a2 = keyOn(*map, 0, "x");

  rig.send(command({"DEL", a, b, c}) + command({"DEL", a, a2}));
  CHECK(rig.links.shared(0).sent ==
        std::vector<std::string>{command({"DEL", a}), command({"DEL", a, a2})});
  rig.links.shared(1).reply(":1\r\n");
  rig.links.shared(0).reply(":0\r\n");
  rig.links.shared(0).reply(":2\r\n");
  CHECK(rig.out().empty());
  rig.links.shared(2).reply(":1\r\n");
  CHECK(rig.out() == ":2\r\n:2\r\n");
}

TEST_CASE("multiplex session: MULTI pins the transaction to its keys' shard") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  const std::string k = keyOn(*db.shard_map->current(), 1);

  rig.send(command({"MULTI"}) + command({"SET", k, "v"}) + command({"GET", k}) +
           command({"EXEC"}));
  // MULTI is answered at once: no shard is named yet.
  FakeLink* link = rig.links.privateLink(1);
  REQUIRE(link != nullptr);
  CHECK(rig.links.shared(0).sent.empty());
  CHECK(rig.links.shared(1).sent.empty());
  REQUIRE(link->sent.size() == 4);
  CHECK(link->sent[0] == command({"MULTI"}));
  CHECK(link->sent[1] == command({"SET", k, "v"}));
  CHECK(link->sent[2] == command({"GET", k}));
  CHECK(link->sent[3] == command({"EXEC"}));
  link->reply("+OK\r\n");  // to MULTI: the proxy's, dropped
  link->reply("+QUEUED\r\n");
  link->reply("+QUEUED\r\n");
  link->reply("*2\r\n+OK\r\n" + bulk("v"));
  CHECK(rig.out() == "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n" + bulk("v"));
  CHECK(rig.session.idle());
}

TEST_CASE("multiplex session: keys of another shard inside MULTI make EXEC abort") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  auto map = db.shard_map->current();
  const std::string k0 = keyOn(*map, 0), k1 = keyOn(*map, 1);

  rig.send(command({"MULTI"}) + command({"SET", k0, "v"}) + command({"SET", k1, "v"}) +
           command({"EXEC"}));
  FakeLink* link = rig.links.privateLink(0);
  REQUIRE(link != nullptr);
  link->reply("+OK\r\n");
  link->reply("+QUEUED\r\n");
  // The shard's MULTI is discarded; its answer is the proxy's.
  REQUIRE(link->sent.size() == 3);
  CHECK(link->sent[2] == command({"DISCARD"}));
  link->reply("+OK\r\n");
  CHECK(rig.out() == "+OK\r\n+QUEUED\r\n" + error(redis::kCrossSlot) +
                         "-EXECABORT Transaction discarded because of previous errors.\r\n");
  CHECK(rig.links.privateLink(1) == nullptr);
}

TEST_CASE("multiplex session: WATCH names the shard MULTI goes to") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  auto map = db.shard_map->current();
  const std::string k0 = keyOn(*map, 0), k1 = keyOn(*map, 1);

  // Keys of two shards in one WATCH: refused, nothing sent.
  rig.send(command({"WATCH", k0, k1}));
  CHECK(rig.out() == error(redis::kCrossSlot));
  CHECK(rig.links.private_opened == 0);

  rig.send(command({"WATCH", k1}));
  FakeLink* link = rig.links.privateLink(1);
  REQUIRE(link != nullptr);
  link->reply("+OK\r\n");
  CHECK(rig.out() == "+OK\r\n");

  // Another shard's key in WATCH now: CROSSSLOT. MULTI goes to shard 1.
  rig.send(command({"WATCH", k0}) + command({"MULTI"}) + command({"GET", k0}) + command({"EXEC"}));
  CHECK(rig.out() == error(redis::kCrossSlot));
  // GET of shard 0's key inside the transaction: CROSSSLOT, and EXEC aborts
  // (the shard's transaction is discarded, its answer dropped).
  REQUIRE(link->sent.size() == 3);
  CHECK(link->sent[1] == command({"MULTI"}));
  CHECK(link->sent[2] == command({"DISCARD"}));
  link->reply("+OK\r\n");
  link->reply("+OK\r\n");
  CHECK(rig.out() == "+OK\r\n" + error(redis::kCrossSlot) +
                         "-EXECABORT Transaction discarded because of previous errors.\r\n");
  CHECK(rig.links.privateLink(0) == nullptr);
}

TEST_CASE("multiplex session: PING after SUBSCRIBE is answered after the confirmations") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  auto map = db.shard_map->current();
  const std::string a = keyOn(*map, 0, "ch"), b = keyOn(*map, 1, "ch");

  rig.send(command({"SUBSCRIBE", a, b}) + command({"PING"}));
  FakeLink* link0 = rig.links.privateLink(0);
  FakeLink* link1 = rig.links.privateLink(1);
  REQUIRE(link0 != nullptr);
  REQUIRE(link1 != nullptr);
  CHECK(link0->sent == std::vector<std::string>{command({"SUBSCRIBE", a})});
  CHECK(link1->sent == std::vector<std::string>{command({"SUBSCRIBE", b})});
  CHECK(rig.out().empty());

  // Shard 1 confirms first; the client hears a's confirmation first anyway,
  // with counts over every shard, then PONG in its subscribed form.
  link1->reply("*3\r\n" + bulk("subscribe") + bulk(b) + ":1\r\n");
  CHECK(rig.out().empty());
  link0->reply("*3\r\n" + bulk("subscribe") + bulk(a) + ":1\r\n");
  CHECK(rig.out() == "*3\r\n" + bulk("subscribe") + bulk(a) + ":1\r\n" + "*3\r\n" +
                         bulk("subscribe") + bulk(b) + ":2\r\n" + "*2\r\n" + bulk("pong") +
                         bulk(""));

  // Messages pass through as they come.
  const std::string message = "*3\r\n" + bulk("message") + bulk(b) + bulk("hello");
  link1->reply(message);
  CHECK(rig.out() == message);
}

TEST_CASE("multiplex session: a shard failing mid-pipeline answers its requests with an error") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  auto map = db.shard_map->current();
  const std::string a = keyOn(*map, 0, "a"), b = keyOn(*map, 1, "b"), c = keyOn(*map, 0, "c");

  rig.send(command({"GET", a}) + command({"GET", b}) + command({"GET", c}));
  rig.links.shared(1).reply(bulk("vb"));
  rig.links.shared(0).fail("connection reset by peer");
  const std::string down = "-ERR shard 10.0.0.0:6379 unavailable: connection reset by peer\r\n";
  CHECK(rig.out() == down + bulk("vb") + down);

  // While it is down, its commands are answered at once, without waiting.
  rig.send(command({"GET", a}) + command({"GET", b}));
  CHECK(rig.links.shared(0).sent.size() == 2);
  CHECK(rig.out() == down);
  rig.links.shared(1).reply(bulk("vb"));
  CHECK(rig.out() == bulk("vb"));

  // An MGET with a part on it: the merge carries the error.
  rig.links.shared(0).recover();
  rig.send(command({"MGET", a, b}));
  rig.links.shared(1).reply("*1\r\n" + bulk("vb"));
  rig.links.shared(0).fail("connection refused");
  CHECK(rig.out() == "-ERR shard 10.0.0.0:6379 unavailable: connection refused\r\n");
}

TEST_CASE("multiplex session: a command after a map replace goes by the new map, once the old one's are answered") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  auto old_map = db.shard_map->current();
  const std::string k = keyOn(*old_map, 0);
  FakeLink& old_link = rig.links.shared(0);

  rig.send(command({"GET", k}));
  REQUIRE(old_link.waiting() == 1);

  // Every slot now on one shard of other endpoints. The request in flight
  // could still be redirected to the new owner: the next command waits for
  // it rather than overtake it there.
  db.shard_map->replace(evenMap(1, 7));
  rig.send(command({"SET", k, "v"}));
  FakeLink& new_link = rig.links.shared(0);
  REQUIRE(&new_link != &old_link);
  CHECK(new_link.address() == "10.0.7.0:6379");
  CHECK(new_link.sent.empty());
  CHECK(old_link.sent.size() == 1);

  // Answered on its old link: the waiting command goes by the new map.
  old_link.reply(bulk("old"));
  CHECK(rig.out() == bulk("old"));
  CHECK(new_link.sent == std::vector<std::string>{command({"SET", k, "v"})});
  new_link.reply("+OK\r\n");
  CHECK(rig.out() == "+OK\r\n");
  CHECK(rig.links.retired.size() == 1);
}

TEST_CASE("multiplex session: a transaction keeps its map until it ends") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  const std::string k = keyOn(*db.shard_map->current(), 1);

  rig.send(command({"WATCH", k}));
  FakeLink* pinned = rig.links.privateLink(1);
  REQUIRE(pinned != nullptr);
  pinned->reply("+OK\r\n");
  CHECK(rig.out() == "+OK\r\n");

  db.shard_map->replace(evenMap(1, 9));
  rig.send(command({"MULTI"}) + command({"INCR", k}) + command({"EXEC"}));
  REQUIRE(pinned->sent.size() == 4);  // WATCH, MULTI, INCR, EXEC on the old map's shard 1
  pinned->reply("+OK\r\n");
  pinned->reply("+QUEUED\r\n");
  pinned->reply("*1\r\n:1\r\n");
  CHECK(rig.out() == "+OK\r\n+QUEUED\r\n*1\r\n:1\r\n");

  // Done: the next command goes by the new map.
  rig.send(command({"GET", k}));
  CHECK(rig.links.shared(0).address() == "10.0.9.0:6379");
  CHECK(rig.links.shared(0).sent == std::vector<std::string>{command({"GET", k})});
}

TEST_CASE("multiplex session: a map change keeps the links of endpoints both maps have") {
  Database db = testDatabase(3);
  SessionRig rig(db);
  auto old_map = db.shard_map->current();
  const std::string k0 = keyOn(*old_map, 0), k2 = keyOn(*old_map, 2);
  FakeLink& link0 = rig.links.shared(0);
  FakeLink& link2 = rig.links.shared(2);
  rig.send(command({"GET", k0}) + command({"GET", k2}));
  REQUIRE(link0.waiting() == 1);
  REQUIRE(link2.waiting() == 1);

  // A reshard that dropped shard 1 (10.0.0.1) and gave every slot to the
  // other two, now in swapped places, plus a new endpoint with no slots.
  ShardMap::SlotOwners owners{};
  for (size_t slot = 0; slot < owners.size(); ++slot) owners[slot] = slot < 8192 ? 1 : 0;
  db.shard_map->replace(*ShardMap::create(
      {old_map->shard(2), old_map->shard(0), ShardEndpoint{"10.0.5.0:6379", {}}}, owners));
  rig.send(command({"GET", k2}));

  // The same link objects, at their new places: their requests in flight
  // are still answered through them.
  CHECK(&rig.links.shared(0) == &link2);
  CHECK(&rig.links.shared(1) == &link0);
  CHECK(link2.shard() == 0);
  CHECK(link0.shard() == 1);
  CHECK(rig.links.shared(2).address() == "10.0.5.0:6379");
  link0.reply(bulk("v0"));
  link2.reply(bulk("v2"));
  // Sent by the new map once those two were answered.
  CHECK(rig.out() == bulk("v0") + bulk("v2"));
  const bool k2_low = redis::keyHashSlot(k2) < 8192;
  FakeLink& k2_owner = k2_low ? link0 : link2;
  CHECK(k2_owner.sent.back() == command({"GET", k2}));
  k2_owner.reply(bulk("again"));
  CHECK(rig.out() == bulk("again"));
  // The old set (with the dropped endpoint's link) retired.
  REQUIRE(rig.links.retired.size() == 1);
  CHECK(rig.links.retired[0]->links[1]->address() == "10.0.0.1:6379");
}

}  // namespace shardgate::proxy::testing
