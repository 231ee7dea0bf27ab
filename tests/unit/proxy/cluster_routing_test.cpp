// Routing by a Redis Cluster's topology: maps built from real CLUSTER
// SHARDS / SLOTS replies, slots no master serves, and what a cluster
// database answers CLUSTER with.
#include <doctest/doctest.h>

#include <string>

#include "proxy/cluster_shard_map.h"
#include "proxy/multiplex_session.h"
#include "redis/cluster_replies.h"
#include "redis/cluster_topology.h"
#include "redis/hash_slot.h"
#include "tests/unit/proxy/fake_links.h"
#include "tests/unit/redis/cluster_fixtures.h"

namespace shardgate::proxy::testing {

namespace {

redis::ClusterTopology topologyOf(const char* fixture) {
  const std::string bytes = test::clusterFixture(fixture);
  auto t = std::string_view(fixture).starts_with("shards") ? redis::ClusterTopology::fromShards(bytes)
                                                            : redis::ClusterTopology::fromSlots(bytes);
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.message()));
  return *t;
}

std::shared_ptr<const ShardMap> mapOf(const redis::ClusterTopology& t, const ShardMap* previous = nullptr) {
  auto map = shardMapFromTopology(t, nullptr, previous);
  REQUIRE_MESSAGE(map.ok(), (map.ok() ? "" : map.message()));
  return *map;
}

// Two shards: shard 0 owns 0-8191, 8192-16383 has no owner.
std::shared_ptr<const ShardMap> halfServedMap() {
  ShardMap::SlotOwners owners{};
  for (size_t s = 0; s < owners.size(); ++s) owners[s] = s < 8192 ? 0 : ShardMap::kNoShard;
  auto map = ShardMap::create({ShardEndpoint{"10.0.0.0:6379", {}}, ShardEndpoint{"10.0.0.1:6379", {}}}, owners);
  REQUIRE(map.ok());
  return *map;
}

std::string keyInSlots(uint16_t first, uint16_t last, std::string_view prefix = "k") {
  for (int n = 0;; ++n) {
    std::string key = std::string(prefix) + std::to_string(n);
    const uint16_t slot = redis::keyHashSlot(key);
    if (slot >= first && slot <= last) return key;
  }
}

const std::string kNotServed = "-CLUSTERDOWN Hash slot not served\r\n";

}  // namespace

TEST_CASE("cluster map: the masters of CLUSTER SHARDS and SLOTS are the shards, by first slot") {
  for (const char* fixture : {"shards_resp2.bin", "shards_resp3.bin", "slots_resp2.bin"}) {
    CAPTURE(fixture);
    auto map = mapOf(topologyOf(fixture));
    REQUIRE(map->shardCount() == 3);
    CHECK(map->shard(0).address == "127.0.0.1:50173");
    CHECK(map->shard(1).address == "127.0.0.1:38851");
    CHECK(map->shard(2).address == "127.0.0.1:53943");
    CHECK(map->shardOfSlot(0) == 0);
    CHECK(map->shardOfSlot(5461) == 1);
    CHECK(map->shardOfSlot(16383) == 2);
    CHECK(map->unservedSlots() == 0);
    CHECK(map->shard(1).addr.ss_family == AF_INET);
  }
  // The same cluster read twice, or by the other command: the same routing.
  CHECK(mapOf(topologyOf("shards_resp2.bin"))->sameRouting(*mapOf(topologyOf("slots_resp2.bin"))));
}

TEST_CASE("cluster map: a reshard moves slots and keeps each master's place") {
  auto before = mapOf(topologyOf("shards_resp2.bin"));
  auto after = mapOf(topologyOf("shards_resharded_resp2.bin"), before.get());
  REQUIRE(after->shardCount() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(after->shard(i).address == before->shard(i).address);
  CHECK_FALSE(after->sameRouting(*before));
  size_t moved = 0;
  for (uint16_t s = 0; s < redis::kHashSlots; ++s) {
    if (after->shardOfSlot(s) != before->shardOfSlot(s)) {
      ++moved;
      CHECK(before->shardOfSlot(s) == 1);  // 38851 -> 50173
      CHECK(after->shardOfSlot(s) == 0);
    }
  }
  CHECK(moved == 100);
}

TEST_CASE("cluster map: a promoted replica takes the failed master's slots, at the end of the list") {
  auto before = mapOf(topologyOf("shards_resp2.bin"));
  auto after = mapOf(topologyOf("shards_failed_resp2.bin"), before.get());
  REQUIRE(after->shardCount() == 3);
  // The masters that stayed keep their places; the new one comes last.
  CHECK(after->shard(0).address == before->shard(0).address);
  CHECK(after->shard(2).address == "127.0.0.1:57959");
  CHECK(after->shardOfSlot(16383) == 2);
  CHECK_FALSE(after->sameRouting(*before));
}

TEST_CASE("shard map: slots with no owner") {
  auto map = halfServedMap();
  CHECK(map->unservedSlots() == 8192);
  CHECK(map->shardOfSlot(0) == 0);
  CHECK(map->shardOfSlot(9000) == ShardMap::kNoShard);
  CHECK(map->shardOfKey(keyInSlots(8192, 16383)) == ShardMap::kNoShard);
  // One shard that does not own every slot still hashes each key.
  ShardMap::SlotOwners owners{};
  owners.fill(0);
  owners[100] = ShardMap::kNoShard;
  auto one = ShardMap::create({ShardEndpoint{"a:1", {}}}, owners);
  REQUIRE(one.ok());
  CHECK((*one)->shardOfKey(keyInSlots(100, 100)) == ShardMap::kNoShard);
  CHECK((*one)->shardOfKey(keyInSlots(0, 99)) == 0);
}

TEST_CASE("multiplex session: a key in a slot no master serves gets CLUSTERDOWN, the rest work") {
  Database db = testDatabase(2);
  db.shard_map = std::make_shared<ShardMapSource>(halfServedMap());
  SessionRig rig(db);
  const std::string served = keyInSlots(0, 8191, "a"), lost = keyInSlots(8192, 16383, "b");

  rig.send(command({"GET", lost}) + command({"GET", served}));
  REQUIRE(rig.links.shared(0).sent == std::vector<std::string>{command({"GET", served})});
  CHECK(rig.links.shared(1).sent.empty());
  rig.links.shared(0).reply(bulk("v"));
  CHECK(rig.out() == kNotServed + bulk("v"));

  // A multi-key command with one such key is refused whole: no part is sent.
  rig.send(command({"MGET", served, lost}) + command({"DEL", lost, served}) + command({"PUBLISH", lost, "m"}));
  CHECK(rig.out() == kNotServed + kNotServed + kNotServed);
  CHECK(rig.links.shared(0).sent.size() == 1);
  CHECK(rig.session.idle());
}

TEST_CASE("multiplex session: a cluster database answers CLUSTER as one node at the client's endpoint") {
  Database db = testDatabase(2);
  db.cluster = true;
  SessionRig rig(db);
  rig.session.setFace("127.0.0.1", 6390);
  const redis::ClusterFace face{"127.0.0.1", 6390, false, 1};

  for (const char* sub : {"SLOTS", "SHARDS", "NODES", "INFO", "MYID"}) {
    CAPTURE(sub);
    ByteBuffer want;
    std::vector<std::string_view> args{"CLUSTER", sub};
    redis::answerClusterCommand(args, face, false, want);
    rig.send(command({"CLUSTER", sub}));
    CHECK(rig.out() == std::string(want.view()));
  }
  CHECK(rig.links.shared(0).sent.empty());
  // A question about a slot's keys goes to the master that owns it.
  rig.send(command({"CLUSTER", "COUNTKEYSINSLOT", "16000"}));
  REQUIRE(rig.links.shared(1).sent == std::vector<std::string>{command({"CLUSTER", "COUNTKEYSINSLOT", "16000"})});
  rig.links.shared(1).reply(":7\r\n");
  CHECK(rig.out() == ":7\r\n");
}

TEST_CASE("multiplex session: a database of static shards passes CLUSTER INFO to a shard") {
  Database db = testDatabase(2);
  SessionRig rig(db);
  rig.send(command({"CLUSTER", "INFO"}));
  CHECK(rig.links.shared(0).sent == std::vector<std::string>{command({"CLUSTER", "INFO"})});
}

namespace shardgate::proxy::testing {

TEST_CASE("multiplex session: a cluster database splits multi-key commands by slot, not by shard") {
  Database db = testDatabase(2);
  db.cluster = true;
  SessionRig rig(db);
  // Two keys of shard 0 in different slots, one of shard 1, and two in one slot.
  const std::string a = keyInSlots(0, 100, "a"), b = keyInSlots(200, 8191, "b"), c = keyInSlots(8192, 16383, "c");
  REQUIRE(redis::keyHashSlot(a) != redis::keyHashSlot(b));
  rig.send(command({"MGET", a, b, c, "{" + a + "}x"}));
  // One command per slot: a node refuses keys of two slots (CROSSSLOT).
  REQUIRE(rig.links.shared(0).sent ==
          std::vector<std::string>{command({"MGET", a, "{" + a + "}x"}), command({"MGET", b})});
  REQUIRE(rig.links.shared(1).sent == std::vector<std::string>{command({"MGET", c})});
  rig.links.shared(0).reply("*2\r\n" + bulk("va") + "$-1\r\n");
  rig.links.shared(0).reply("*1\r\n" + bulk("vb"));
  rig.links.shared(1).reply("*1\r\n" + bulk("vc"));
  CHECK(rig.out() == "*4\r\n" + bulk("va") + bulk("vb") + bulk("vc") + "$-1\r\n");
  // Keys of one slot go as the client wrote them.
  rig.send(command({"DEL", a, "{" + a + "}x"}));
  CHECK(rig.links.shared(0).sent.back() == command({"DEL", a, "{" + a + "}x"}));
}

TEST_CASE("multiplex session: a cluster database refuses SELECT of another database, as a node does") {
  Database db = testDatabase(2);
  db.cluster = true;
  SessionRig rig(db);
  // db.c selectCommand: the integer is parsed first, then the cluster check.
  rig.send(command({"SELECT", "1"}) + command({"SELECT", "x"}) + command({"SELECT", "0"}));
  CHECK(rig.out() == "-ERR SELECT is not allowed in cluster mode\r\n"
                     "-ERR value is not an integer or out of range\r\n"
                     "+OK\r\n");
  // Still database 0: a key goes on the shared link, no SELECT before it.
  const std::string key = keyInSlots(0, 8191);
  rig.send(command({"GET", key}));
  CHECK(rig.links.shared(0).sent == std::vector<std::string>{command({"GET", key})});
}

}  // namespace shardgate::proxy::testing

namespace shardgate::proxy::testing {

TEST_CASE("multiplex session: a cluster transaction is queued by the proxy and sent whole at EXEC") {
  Database db = testDatabase(2);
  db.cluster = true;
  SessionRig rig(db);
  const std::string a = keyInSlots(0, 100, "a");
  rig.send(command({"MULTI"}) + command({"SET", a, "1"}) + command({"INCR", a}));
  // Nothing reached a node yet: the +QUEUED are the proxy's.
  CHECK(rig.out() == "+OK\r\n+QUEUED\r\n+QUEUED\r\n");
  CHECK(rig.links.privateLink(0) == nullptr);
  rig.send(command({"EXEC"}));
  FakeLink* link = rig.links.privateLink(0);
  REQUIRE(link != nullptr);
  REQUIRE(link->sent == std::vector<std::string>{command({"MULTI"}) + command({"SET", a, "1"}) + command({"INCR", a}),
                                                 command({"EXEC"})});
  link->reply("+OK\r\n");
  link->reply("+QUEUED\r\n");
  link->reply("+QUEUED\r\n");
  link->reply("*2\r\n+OK\r\n:2\r\n");
  CHECK(rig.out() == "*2\r\n+OK\r\n:2\r\n");
}

TEST_CASE("multiplex session: a cluster transaction past its bound is refused and EXEC aborts") {
  Database db = testDatabase(2);
  db.cluster = true;
  SessionRig rig(db);
  const std::string a = keyInSlots(0, 100, "a");
  const std::string big(MultiplexSession::kMaxTransactionBytes / 2, 'v');
  rig.send(command({"MULTI"}) + command({"SET", a, big}));
  CHECK(rig.out() == "+OK\r\n+QUEUED\r\n");
  rig.send(command({"SET", a, big}));
  CHECK(rig.out().starts_with("-ERR shardgate: a transaction on a cluster database queues at most 1048576 bytes"));
  rig.send(command({"EXEC"}));
  CHECK(rig.out() == "-EXECABORT Transaction discarded because of previous errors.\r\n");
  CHECK(rig.links.privateLink(0) == nullptr);  // nothing was sent
}

TEST_CASE("cluster map: a node known by a name is connected to at its ip, and the name is its alias") {
  redis::ClusterNode byName;
  byName.host = "redis-1.example";  // cluster-preferred-endpoint-type hostname
  byName.ip = "10.0.0.7";
  byName.hostname = "redis-1.example";
  byName.port = 6379;
  byName.tls_port = 6380;
  CHECK(connectAddress(byName, false) == "10.0.0.7:6379");
  CHECK(connectAddress(byName, true) == "10.0.0.7:6380");
  CHECK(announcedAddress(byName, false) == "redis-1.example:6379");
  CHECK(announcedAddress(byName, true) == "redis-1.example:6380");
  CHECK(verifyName(byName) == "redis-1.example");

  redis::ClusterNode byIp = byName;  // a hostname announced, the ip preferred
  byIp.host = "10.0.0.7";
  CHECK(connectAddress(byIp, false) == "10.0.0.7:6379");
  CHECK(announcedAddress(byIp, false).empty());
  CHECK(verifyName(byIp) == "10.0.0.7");

  redis::ClusterNode v6 = byIp;
  v6.host = v6.ip = "::1";
  CHECK(connectAddress(v6, false) == "[::1]:6379");

  redis::ClusterNode nameOnly = byName;  // no ip reported: nothing to connect to by number
  nameOnly.ip = "";
  CHECK(connectAddress(nameOnly, false) == "redis-1.example:6379");
  CHECK(announcedAddress(nameOnly, false).empty());
}

TEST_CASE("shard map: aliases are looked up by the announced name and take part in sameRouting") {
  ShardMap::SlotOwners owners{};
  auto a = ShardMap::create({ShardEndpoint{"10.0.0.7:6379", {}}}, owners, {NodeAlias{"redis-1:6379", "10.0.0.7:6379"}});
  auto b = ShardMap::create({ShardEndpoint{"10.0.0.7:6379", {}}}, owners);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE((*a)->aliasOf("redis-1:6379") != nullptr);
  CHECK(*(*a)->aliasOf("redis-1:6379") == "10.0.0.7:6379");
  CHECK((*a)->aliasOf("redis-2:6379") == nullptr);
  CHECK_FALSE((*a)->sameRouting(**b));
  CHECK((*a)->sameRouting(**a));
}
}

}  // namespace shardgate::proxy::testing
