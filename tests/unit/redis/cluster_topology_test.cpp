#include "redis/cluster_topology.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/unit/redis/cluster_fixtures.h"

using namespace shardgate;
using redis::ClusterTopology;
using redis::NodeHealth;
using redis::NodeRole;
using redis::SlotMove;
using redis::SlotRange;
using test::arr;
using test::bulk;
using test::clusterFixture;
using test::num;

// The fixtures' cluster (redis-server 7.0.15, redis-cli --cluster create
// --cluster-replicas 1): master 50173 owns 0-5460 (replica 38969), master
// 38851 owns 5461-10922 (replica 34835), master 53943 owns 10923-16383
// (replica 57959). "resharded": 100 slots moved 38851 -> 50173. "failed":
// then 53943 was killed and 57959 took over.

namespace {

std::string ownerAddress(const ClusterTopology& t, uint16_t slot) {
  const auto* n = t.ownerOf(slot);
  return n == nullptr ? "none" : n->address();
}

void checkFreshCluster(const ClusterTopology& t) {
  CHECK(t.nodes().size() == 6);
  CHECK(t.masters().size() == 3);
  CHECK(t.coveredSlots() == 16384);
  CHECK(t.uncovered().empty());
  CHECK(ownerAddress(t, 0) == "127.0.0.1:50173");
  CHECK(ownerAddress(t, 5460) == "127.0.0.1:50173");
  CHECK(ownerAddress(t, 5461) == "127.0.0.1:38851");
  CHECK(ownerAddress(t, 10922) == "127.0.0.1:38851");
  CHECK(ownerAddress(t, 10923) == "127.0.0.1:53943");
  CHECK(ownerAddress(t, 16383) == "127.0.0.1:53943");
  const int m = t.slotOwner(0);
  const auto& master = t.nodes()[static_cast<size_t>(m)];
  CHECK(master.id == "ead8204d83281abfc6f58fe9a026eb1da7bd810c");
  CHECK(master.role == NodeRole::kMaster);
  CHECK(master.host == "127.0.0.1");
  CHECK(master.port == 50173);
  const auto replicas = t.replicasOf(m);
  REQUIRE(replicas.size() == 1);
  const auto& replica = t.nodes()[static_cast<size_t>(replicas[0])];
  CHECK(replica.address() == "127.0.0.1:38969");
  CHECK(replica.id == "d3b33ab5820f2d9a9106cd4bb55a97d17c8c2fce");
  CHECK(replica.role == NodeRole::kReplica);
  CHECK(t.slotsOf(m) == std::vector<SlotRange>{{0, 5460}});
  CHECK(t.describe() == "3 masters, 3 replicas, 16384 slots covered");
}

}  // namespace

TEST_CASE("CLUSTER SHARDS of a real cluster, RESP2 and RESP3, give the same topology") {
  for (const char* name : {"shards_resp2.bin", "shards_resp3.bin"}) {
    CAPTURE(name);
    auto t = ClusterTopology::fromShards(clusterFixture(name));
    REQUIRE_MESSAGE(t.ok(), t.message());
    checkFreshCluster(*t);
    for (const auto& n : t->nodes()) {
      CHECK(n.health == NodeHealth::kOnline);
      CHECK(n.ip == "127.0.0.1");
      CHECK(n.tls_port == 0);
      CHECK(n.replication_offset >= 0);  // given (gossip may not have spread it yet)
    }
  }
}

TEST_CASE("CLUSTER SLOTS of a real cluster, RESP2 and RESP3, give what CLUSTER SHARDS gives") {
  auto shards = ClusterTopology::fromShards(clusterFixture("shards_resp2.bin"));
  REQUIRE(shards.ok());
  for (const char* name : {"slots_resp2.bin", "slots_resp3.bin"}) {
    CAPTURE(name);
    auto t = ClusterTopology::fromSlots(clusterFixture(name));
    REQUIRE_MESSAGE(t.ok(), t.message());
    checkFreshCluster(*t);
    for (const auto& n : t->nodes()) CHECK(n.health == NodeHealth::kUnknown);
    CHECK(redis::changedSlots(*shards, *t).empty());
  }
}

TEST_CASE("a reshard shows as the slots that changed owner") {
  auto before = ClusterTopology::fromShards(clusterFixture("shards_resp2.bin"));
  auto after = ClusterTopology::fromShards(clusterFixture("shards_resharded_resp2.bin"));
  REQUIRE(before.ok());
  REQUIRE(after.ok());
  CHECK(ownerAddress(*after, 5560) == "127.0.0.1:50173");
  CHECK(ownerAddress(*after, 5561) == "127.0.0.1:38851");
  const auto moves = redis::changedSlots(*before, *after);
  CHECK(moves == std::vector<SlotMove>{{{5461, 5560}, "127.0.0.1:38851", "127.0.0.1:50173"}});
  CHECK(redis::describeMoves(moves) == "slots 5461-5560 127.0.0.1:38851 -> 127.0.0.1:50173");
  CHECK(redis::describeMoves({}) == "no slot moved");
  // SLOTS agrees with SHARDS after the reshard too.
  auto slots = ClusterTopology::fromSlots(clusterFixture("slots_resharded_resp2.bin"));
  REQUIRE(slots.ok());
  CHECK(redis::changedSlots(*after, *slots).empty());
}

TEST_CASE("a failover: the dead master is listed as failed, its replica owns its slots") {
  auto resharded = ClusterTopology::fromShards(clusterFixture("shards_resharded_resp2.bin"));
  auto failed = ClusterTopology::fromShards(clusterFixture("shards_failed_resp2.bin"));
  REQUIRE(resharded.ok());
  REQUIRE_MESSAGE(failed.ok(), failed.message());
  const int dead = failed->find("954191c9a32ef1d8fc599fa3fa51ab84f41a082a");
  REQUIRE(dead >= 0);
  CHECK(failed->nodes()[static_cast<size_t>(dead)].health == NodeHealth::kFailed);
  CHECK(failed->slotsOf(dead).empty());
  CHECK(ownerAddress(*failed, 10923) == "127.0.0.1:57959");
  CHECK(failed->nodes()[static_cast<size_t>(failed->slotOwner(10923))].role == NodeRole::kMaster);
  CHECK(failed->replicasOf(failed->slotOwner(10923)).empty());
  CHECK(failed->masters().size() == 3);
  CHECK(failed->describe() == "3 masters, 2 replicas, 16384 slots covered, 1 failed node");
  CHECK(redis::describeMoves(redis::changedSlots(*resharded, *failed)) ==
        "slots 10923-16383 127.0.0.1:53943 -> 127.0.0.1:57959");
  // CLUSTER SLOTS leaves the failed node out.
  auto slots = ClusterTopology::fromSlots(clusterFixture("slots_failed_resp2.bin"));
  REQUIRE(slots.ok());
  CHECK(slots->nodes().size() == 5);
  CHECK(slots->find("954191c9a32ef1d8fc599fa3fa51ab84f41a082a") == -1);
  CHECK(redis::changedSlots(*failed, *slots).empty());
}

namespace {

std::string shardNode(std::string_view id, long long port, std::string_view role,
                      std::string_view health = "online", std::string_view endpoint = "127.0.0.1") {
  return arr({bulk("id"), bulk(id), bulk("port"), num(port), bulk("ip"), bulk("127.0.0.1"),
              bulk("endpoint"), bulk(endpoint), bulk("role"), bulk(role),
              bulk("replication-offset"), num(7), bulk("health"), bulk(health)});
}

std::string shard(const std::string& slots, std::initializer_list<std::string> nodes) {
  std::string list = "*" + std::to_string(nodes.size()) + "\r\n";
  for (const auto& n : nodes) list += n;
  return arr({bulk("slots"), slots, bulk("nodes"), list});
}

const std::string kIdA(40, 'a');
const std::string kIdB(40, 'b');
const std::string kIdC(40, 'c');

std::string shardsError(const std::string& reply) {
  auto t = ClusterTopology::fromShards(reply);
  REQUIRE_FALSE(t.ok());
  return t.message();
}

std::string slotsError(const std::string& reply) {
  auto t = ClusterTopology::fromSlots(reply);
  REQUIRE_FALSE(t.ok());
  return t.message();
}

}  // namespace

TEST_CASE("uncovered slots are allowed and reported as ranges") {
  auto t = ClusterTopology::fromShards(arr({
      shard(arr({num(100), num(8000)}), {shardNode(kIdA, 7000, "master")}),
      shard(arr({num(8001), num(16000)}), {shardNode(kIdB, 7001, "master")}),
  }));
  REQUIRE_MESSAGE(t.ok(), t.message());
  CHECK(t->uncovered() == std::vector<SlotRange>{{0, 99}, {16001, 16383}});
  CHECK(t->coveredSlots() == 15901);
  CHECK(t->ownerOf(50) == nullptr);
  CHECK(t->slotOwner(50) == ClusterTopology::kNoOwner);
  CHECK(t->describe() ==
        "2 masters, 0 replicas, 15901 slots covered, slots 0-99,16001-16383 not covered");
  CHECK(redis::formatSlotRanges({{5, 5}, {7, 9}}) == "5,7-9");
}

TEST_CASE("CLUSTER SHARDS: errors name the shard and what is wrong") {
  CHECK(shardsError(arr({shard(arr({num(0), num(16383)}), {shardNode(kIdA, 7000, "master")}),
                         shard(arr({num(0), num(9)}), {shardNode(kIdB, 7001, "replica")})})) ==
        "CLUSTER SHARDS reply: shard 2 has no master");
  CHECK(shardsError(arr({shard(arr({num(0), num(16383)}),
                               {shardNode(kIdA, 7000, "master"), shardNode(kIdB, 7001, "master")})})) ==
        "CLUSTER SHARDS reply: shard 1 has two masters (127.0.0.1:7000 and 127.0.0.1:7001)");
  CHECK(shardsError(arr({shard(arr({num(0), num(5000)}), {shardNode(kIdA, 7000, "master")}),
                         shard(arr({num(5000), num(16383)}), {shardNode(kIdB, 7001, "master")})})) ==
        "CLUSTER SHARDS reply: slot 5000 owned by two masters (127.0.0.1:7000 and 127.0.0.1:7001)");
  CHECK(shardsError(arr({shard(arr({num(0)}), {shardNode(kIdA, 7000, "master")})})) ==
        "CLUSTER SHARDS reply: shard 1 \"slots\" has an odd number of bounds (expected first, last pairs)");
  CHECK(shardsError(arr({shard(arr({num(0), num(16384)}), {shardNode(kIdA, 7000, "master")})})) ==
        "CLUSTER SHARDS reply: shard 1: slot 16384 is out of range 0-16383");
  CHECK(shardsError(arr({shard(arr({num(10), num(5)}), {shardNode(kIdA, 7000, "master")})})) ==
        "CLUSTER SHARDS reply: shard 1: slot range 10-5 is backwards");
  CHECK(shardsError(arr({shard(arr({num(0), num(5)}), {shardNode(kIdA, 7000, "primary")})})) ==
        "CLUSTER SHARDS reply: shard 1 node 1: \"role\" is \"primary\", expected master or replica");
  CHECK(shardsError(arr({shard(arr({num(0), num(5)}),
                               {arr({bulk("id"), bulk(kIdA), bulk("role"), bulk("master")})})})) ==
        "CLUSTER SHARDS reply: shard 1 node 1: no \"port\" or \"tls-port\"");
  CHECK(shardsError(arr({arr({bulk("slots"), arr({})})})) ==
        "CLUSTER SHARDS reply: shard 1 has no \"nodes\" array");
  CHECK(shardsError(arr({num(3)})) == "CLUSTER SHARDS reply: shard 1 is not a map");
  CHECK(shardsError(num(3)) == "CLUSTER SHARDS reply: expected an array of shards, got an integer");
  // A node listed as master in one shard and replica in another.
  CHECK(shardsError(arr({shard(arr({num(0), num(5)}), {shardNode(kIdA, 7000, "master")}),
                         shard(arr({num(6), num(9)}),
                               {shardNode(kIdB, 7001, "master"), shardNode(kIdA, 7000, "replica")})})) ==
        "CLUSTER SHARDS reply: shard 2 node 2: node " + kIdA +
            " is listed as replica here and as master before");
  // What an old Redis, or one not in cluster mode, answers: its own words.
  CHECK(shardsError("-ERR unknown subcommand 'shards'. Try CLUSTER HELP.\r\n") ==
        "CLUSTER SHARDS reply: the node answered -ERR unknown subcommand 'shards'. Try CLUSTER HELP.");
  CHECK(shardsError("-ERR This instance has cluster support disabled\r\n") ==
        "CLUSTER SHARDS reply: the node answered -ERR This instance has cluster support disabled");
  // A truncated frame: the parser's own message, which says where.
  const std::string real = clusterFixture("shards_resp2.bin");
  const std::string cut = shardsError(real.substr(0, real.size() / 2));
  CHECK(cut.rfind("CLUSTER SHARDS reply: ", 0) == 0);
}

TEST_CASE("CLUSTER SHARDS: a shard with no slots and a failed master is not an error") {
  auto t = ClusterTopology::fromShards(arr({
      shard(arr({num(0), num(16383)}), {shardNode(kIdA, 7000, "master")}),
      shard(arr({}), {shardNode(kIdB, 7001, "master", "fail")}),
      shard(arr({}), {}),
  }));
  REQUIRE_MESSAGE(t.ok(), t.message());
  CHECK(t->describe() == "1 master, 0 replicas, 16384 slots covered, 1 failed node");
}

TEST_CASE("node changes: joined, left, failed, back, promoted; none when only slots move") {
  auto topo = [](std::initializer_list<std::string> shards) {
    auto t = ClusterTopology::fromShards(arr(shards));
    REQUIRE_MESSAGE(t.ok(), t.message());
    return *t;
  };
  const std::string kIdD(40, 'd');
  const auto start = topo({shard(arr({num(0), num(16383)}), {shardNode(kIdA, 7000, "master"),
                                                              shardNode(kIdB, 7001, "replica")})});
  CHECK(redis::nodeChanges(start, start).empty());
  // A master added (no slots yet), the replica gone.
  const auto grown = topo({shard(arr({num(0), num(16383)}), {shardNode(kIdA, 7000, "master")}),
                           shard(arr({}), {shardNode(kIdC, 7002, "master")})});
  CHECK(redis::nodeChanges(start, grown) ==
        std::vector<std::string>{"127.0.0.1:7002 joined as master", "127.0.0.1:7001 left"});
  // Slots moving is not a node change.
  const auto resharded = topo({shard(arr({num(0), num(99)}), {shardNode(kIdA, 7000, "master")}),
                               shard(arr({num(100), num(16383)}), {shardNode(kIdC, 7002, "master")})});
  CHECK(redis::nodeChanges(grown, resharded).empty());
  // The master fails and its replica takes over; then it comes back as a replica.
  // (Redis lists the dead master in a shard of its own, without slots.)
  const auto failed = topo({shard(arr({num(0), num(16383)}), {shardNode(kIdB, 7001, "master")}),
                            shard(arr({}), {shardNode(kIdA, 7000, "master", "fail")})});
  CHECK(redis::nodeChanges(start, failed) ==
        std::vector<std::string>{"127.0.0.1:7001 is now master", "127.0.0.1:7000 failed"});
  const auto back = topo({shard(arr({num(0), num(16383)}), {shardNode(kIdB, 7001, "master"),
                                                             shardNode(kIdA, 7000, "replica")})});
  CHECK(redis::nodeChanges(failed, back) ==
        std::vector<std::string>{"127.0.0.1:7000 is back as replica of 127.0.0.1:7001"});
  CHECK(redis::nodeChanges(back, topo({shard(arr({num(0), num(16383)}), {shardNode(kIdB, 7001, "master"),
                                                                          shardNode(kIdA, 7000, "replica"),
                                                                          shardNode(kIdD, 7003, "replica")})})) ==
        std::vector<std::string>{"127.0.0.1:7003 joined as replica of 127.0.0.1:7001"});
  CHECK(redis::describeNodeChanges({"a", "b", "c"}, 2) == "a; b; and 1 more");
  CHECK(redis::describeNodeChanges({"a"}) == "a");
}

TEST_CASE("node changes of a real failover: the dead master failed, its replica is now master") {
  auto resharded = ClusterTopology::fromShards(clusterFixture("shards_resharded_resp2.bin"));
  auto failed = ClusterTopology::fromShards(clusterFixture("shards_failed_resp2.bin"));
  REQUIRE(resharded.ok());
  REQUIRE(failed.ok());
  CHECK(redis::nodeChanges(*resharded, *resharded).empty());
  CHECK(redis::describeNodeChanges(redis::nodeChanges(*resharded, *failed)) ==
        "127.0.0.1:57959 is now master; 127.0.0.1:53943 failed");
}

TEST_CASE("an empty endpoint means the host that answered; '?' means the ip") {
  // cluster-preferred-endpoint-type unknown-endpoint: CLUSTER SLOTS sends "".
  auto t = ClusterTopology::fromSlots(
      arr({arr({num(0), num(16383), arr({bulk(""), num(7000), bulk(kIdA), arr({})})})}),
      "10.0.0.5");
  REQUIRE_MESSAGE(t.ok(), t.message());
  CHECK(t->ownerOf(0)->host == "10.0.0.5");
  CHECK(t->ownerOf(0)->address() == "10.0.0.5:7000");
  // Preferred endpoint hostname, not set: "?" and the ip in the metadata.
  auto q = ClusterTopology::fromSlots(arr({arr(
      {num(0), num(16383), arr({bulk("?"), num(7000), bulk(kIdA), arr({bulk("ip"), bulk("10.0.0.9")})})})}));
  REQUIRE_MESSAGE(q.ok(), q.message());
  CHECK(q->ownerOf(0)->host == "10.0.0.9");
  // A hostname endpoint is kept, with its ip beside it.
  auto h = ClusterTopology::fromSlots(arr({arr({num(0), num(16383),
                                               arr({bulk("redis-1.example"), num(7000), bulk(kIdA),
                                                    arr({bulk("ip"), bulk("10.0.0.9")})})})}));
  REQUIRE(h.ok());
  CHECK(h->ownerOf(0)->host == "redis-1.example");
  CHECK(h->ownerOf(0)->ip == "10.0.0.9");
  // Without an answering host, an empty endpoint cannot be resolved.
  CHECK(slotsError(arr({arr({num(0), num(16383), arr({bulk(""), num(7000), bulk(kIdA)})})})) ==
        "CLUSTER SLOTS reply: range 1 master: the node has no host or ip");
  // CLUSTER SHARDS: endpoint "" -> the ip it also sends.
  auto s = ClusterTopology::fromShards(
      arr({shard(arr({num(0), num(16383)}), {shardNode(kIdA, 7000, "master", "online", "")})}));
  REQUIRE(s.ok());
  CHECK(s->ownerOf(0)->host == "127.0.0.1");
}

TEST_CASE("CLUSTER SLOTS: errors name the range and what is wrong") {
  auto node = [](std::string_view id, long long port) {
    return arr({bulk("127.0.0.1"), num(port), bulk(id)});
  };
  CHECK(slotsError(arr({arr({num(0), num(100), node(kIdA, 7000)}),
                        arr({num(100), num(200), node(kIdB, 7001)})})) ==
        "CLUSTER SLOTS reply: slot 100 owned by two masters (127.0.0.1:7000 and 127.0.0.1:7001)");
  CHECK(slotsError(arr({arr({num(0), num(100), node(kIdA, 7000), node(kIdC, 7002)}),
                        arr({num(101), num(200), node(kIdB, 7001), node(kIdC, 7002)})})) ==
        "CLUSTER SLOTS reply: range 2 replica 1: 127.0.0.1:7002 is listed as the replica of two "
        "masters (127.0.0.1:7000 and 127.0.0.1:7001)");
  CHECK(slotsError(arr({arr({num(0), num(100)})})) ==
        "CLUSTER SLOTS reply: range 1: expected [first, last, master, replicas...]");
  CHECK(slotsError(arr({arr({num(0), num(-1), node(kIdA, 7000)})})) ==
        "CLUSTER SLOTS reply: range 1: slot -1 is out of range 0-16383");
  CHECK(slotsError(arr({arr({bulk("0"), num(1), node(kIdA, 7000)})})) ==
        "CLUSTER SLOTS reply: range 1: a slot number must be an integer, got a bulk string");
  CHECK(slotsError(arr({arr({num(0), num(1), arr({bulk("127.0.0.1"), num(70000)})})})) ==
        "CLUSTER SLOTS reply: range 1 master: port must be an integer 0-65535");
  CHECK(slotsError(arr({arr({num(0), num(1), node(kIdA, 7000)}),
                        arr({num(2), num(3), node(kIdB, 7001), node(kIdA, 7000)})})) ==
        "CLUSTER SLOTS reply: range 2 replica 1: node " + kIdA +
            " is listed as replica here and as master before");
  CHECK(slotsError("-CLUSTERDOWN Hash slot not served\r\n") ==
        "CLUSTER SLOTS reply: the node answered -CLUSTERDOWN Hash slot not served");
  CHECK(slotsError("*1\r\n*3\r\n:0\r\n") .rfind("CLUSTER SLOTS reply: ", 0) == 0);
  // Several ranges of one master (after a reshard) make one node.
  auto t = ClusterTopology::fromSlots(arr({arr({num(0), num(9), node(kIdA, 7000)}),
                                           arr({num(10), num(19), node(kIdB, 7001)}),
                                           arr({num(20), num(16383), node(kIdA, 7000)})}));
  REQUIRE(t.ok());
  CHECK(t->nodes().size() == 2);
  CHECK(t->slotsOf(t->find(kIdA)) == std::vector<SlotRange>{{0, 9}, {20, 16383}});
  // Nodes without ids (Redis 3) are told apart by address.
  auto old = ClusterTopology::fromSlots(arr({arr({num(0), num(8191), arr({bulk("127.0.0.1"), num(7000)})}),
                                             arr({num(8192), num(16383), arr({bulk("127.0.0.1"), num(7001)})})}));
  REQUIRE(old.ok());
  CHECK(old->nodes().size() == 2);
  CHECK(old->find("127.0.0.1:7001") == old->slotOwner(9000));
}

TEST_CASE("CLUSTER SHARDS of a TLS cluster gives each node's plaintext and TLS ports") {
  // tls-cluster yes, three masters: each node lists "port" and "tls-port".
  auto t = ClusterTopology::fromShards(clusterFixture("shards_tls_resp2.bin"));
  REQUIRE_MESSAGE(t.ok(), t.message());
  CHECK(t->nodes().size() == 3);
  CHECK(t->coveredSlots() == 16384);
  const auto& first = *t->ownerOf(0);
  CHECK(first.port == 52729);
  CHECK(first.tls_port == 38845);
  CHECK(first.address() == "127.0.0.1:52729");
  for (const auto& n : t->nodes()) {
    CHECK(n.port != 0);
    CHECK(n.tls_port != 0);
    CHECK(n.tls_port != n.port);
  }
}
