#include "redis/cluster_replies.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "redis/cluster_topology.h"
#include "redis/hash_slot.h"
#include "redis/resp_value.h"
#include "tests/unit/redis/cluster_fixtures.h"

using namespace shardgate;
using redis::ClusterCommandResult;
using redis::ClusterFace;
using redis::ClusterTopology;
using redis::SlotRange;
using test::clusterFixture;

namespace {

std::string bytes(void (*fn)(ByteBuffer&, const ClusterFace&, bool), const ClusterFace& face,
                  bool resp3) {
  ByteBuffer out;
  fn(out, face, resp3);
  return std::string(out.view());
}

std::string answer(std::vector<std::string_view> args, const ClusterFace& face, bool resp3 = false,
                   ClusterCommandResult* result = nullptr) {
  ByteBuffer out;
  ClusterCommandResult r = redis::answerClusterCommand(args, face, resp3, out);
  if (result != nullptr) *result = r;
  return std::string(out.view());
}

// redis-benchmark --cluster's reading of CLUSTER NODES (redis-benchmark.c,
// fetchClusterConfiguration, 7.0): only "\n"-terminated lines; the first 8
// space-separated fields, then the slots; replicas skipped; a master
// without slots skipped; fewer than two masters is "Invalid cluster".
struct BenchNode {
  std::string name, ip;
  int port = 0;
  bool myself = false;
  size_t slots = 0;
};
std::vector<BenchNode> benchmarkReadsNodes(std::string text) {
  std::vector<BenchNode> nodes;
  size_t pos = 0;
  for (size_t nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    std::string line = text.substr(pos, nl - pos);
    std::vector<std::string> fields;
    size_t p = 0;
    for (size_t sp; fields.size() < 8 && (sp = line.find(' ', p)) != std::string::npos; p = sp + 1) {
      fields.push_back(line.substr(p, sp - p));
    }
    REQUIRE(fields.size() >= 7);
    // Slots only after an 8th space-terminated field (a line without slots
    // ends at the link state).
    const std::string slots = fields.size() == 8 ? line.substr(p) : std::string();
    if (fields[2].find("slave") != std::string::npos || fields[3][0] != '-') continue;
    BenchNode n;
    n.name = fields[0];
    const size_t colon = fields[1].rfind(':');
    n.ip = fields[1].substr(0, colon);
    n.port = std::atoi(fields[1].c_str() + colon + 1);
    n.myself = fields[2].find("myself") != std::string::npos;
    const size_t dash = slots.find('-');
    n.slots = slots.empty() ? 0
              : dash == std::string::npos
                  ? 1
                  : static_cast<size_t>(std::atoi(slots.c_str() + dash + 1) - std::atoi(slots.c_str()) + 1);
    if (n.slots > 0) nodes.push_back(n);
  }
  return nodes;
}

}  // namespace

TEST_CASE("node ids: 40 hex characters, stable, one per endpoint and index") {
  const std::string id = redis::faceNodeId("127.0.0.1", 6380);
  CHECK(id.size() == 40);
  CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
  // Pinned: a client that cached it across a restart must find it again.
  CHECK(id == redis::faceNodeId("127.0.0.1", 6380, 0));
  CHECK(id == "d508bb07fa79d7b3be90ec85b516fbc3d6a747de");
  std::set<std::string> ids{id, redis::faceNodeId("127.0.0.1", 6381),
                            redis::faceNodeId("127.0.0.2", 6380),
                            redis::faceNodeId("127.0.0.1", 6380, 1),
                            redis::faceNodeId("localhost", 6380)};
  CHECK(ids.size() == 5);
}

TEST_CASE("one node owning every slot: CLUSTER SLOTS and SHARDS read back as that topology") {
  const ClusterFace face{"127.0.0.1", 6380, false, 1};
  for (bool resp3 : {false, true}) {
    CAPTURE(resp3);
    auto slots = ClusterTopology::fromSlots(bytes(redis::appendClusterSlots, face, resp3));
    REQUIRE_MESSAGE(slots.ok(), slots.message());
    auto shards = ClusterTopology::fromShards(bytes(redis::appendClusterShards, face, resp3));
    REQUIRE_MESSAGE(shards.ok(), shards.message());
    for (const ClusterTopology* t : {&*slots, &*shards}) {
      REQUIRE(t->nodes().size() == 1);
      CHECK(t->coveredSlots() == 16384);
      CHECK(t->nodes()[0].address() == "127.0.0.1:6380");
      CHECK(t->nodes()[0].id == redis::faceNodeId("127.0.0.1", 6380));
      CHECK(t->describe() == "1 master, 0 replicas, 16384 slots covered");
    }
    CHECK(shards->nodes()[0].health == redis::NodeHealth::kOnline);
  }
  CHECK(bytes(redis::appendClusterSlots, face, false) ==
        "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6380\r\n$40\r\n" +
            redis::faceNodeId("127.0.0.1", 6380) + "\r\n*0\r\n");
}

TEST_CASE("the replies have redis-server 7.0's shapes, RESP2 and RESP3") {
  const ClusterFace face{"127.0.0.1", 6380, false, 3};
  // CLUSTER SLOTS: [first, last, [host, port, id, {metadata}]], the metadata
  // a map in RESP3 (as in the captured replies).
  const std::string real2 = clusterFixture("slots_resp2.bin");
  const std::string real3 = clusterFixture("slots_resp3.bin");
  CHECK(real2.find("*0\r\n") != std::string::npos);
  CHECK(real3.find("%0\r\n") != std::string::npos);
  CHECK(bytes(redis::appendClusterSlots, face, false).find("%0") == std::string::npos);
  CHECK(bytes(redis::appendClusterSlots, face, true).find("%0\r\n") != std::string::npos);
  // CLUSTER SHARDS: flat arrays in RESP2, maps in RESP3.
  CHECK(clusterFixture("shards_resp3.bin").substr(0, 8) == "*3\r\n%2\r\n");
  CHECK(bytes(redis::appendClusterShards, face, true).substr(0, 8) == "*3\r\n%2\r\n");
  CHECK(clusterFixture("shards_resp2.bin").substr(0, 8) == "*3\r\n*4\r\n");
  CHECK(bytes(redis::appendClusterShards, face, false).substr(0, 8) == "*3\r\n*4\r\n");
  // CLUSTER NODES and INFO: bulk in RESP2, verbatim text in RESP3.
  CHECK(clusterFixture("nodes_resp3.bin")[0] == '=');
  CHECK(clusterFixture("info_resp3.bin")[0] == '=');
  for (auto fn : {redis::appendClusterNodes, redis::appendClusterInfo}) {
    const std::string two = bytes(fn, face, false);
    const std::string three = bytes(fn, face, true);
    CHECK(two[0] == '$');
    CHECK(three[0] == '=');
    auto v2 = redis::parseReply(two);
    auto v3 = redis::parseReply(three);
    REQUIRE(v2.ok());
    REQUIRE(v3.ok());
    CHECK(v3->str == "txt:" + std::string(v2->str));
  }
  // TLS: a TLS-only redis-server reports "tls-port", not "port".
  const std::string tls = bytes(redis::appendClusterShards, {"127.0.0.1", 6380, true, 1}, false);
  CHECK(tls.find("tls-port") != std::string::npos);
  CHECK(tls.find("$4\r\nport") == std::string::npos);
  auto t = ClusterTopology::fromShards(tls);
  REQUIRE(t.ok());
  CHECK(t->nodes()[0].tls_port == 6380);
  CHECK(t->nodes()[0].port == 0);
  CHECK(t->nodes()[0].address() == "127.0.0.1:6380");
}

TEST_CASE("N virtual nodes split the slots as redis-cli --cluster create does") {
  auto real = ClusterTopology::fromSlots(clusterFixture("slots_resp2.bin"));
  REQUIRE(real.ok());
  const ClusterFace face{"10.1.2.3", 6380, false, 3};
  std::vector<SlotRange> real_split;
  for (int m : real->masters()) {
    const auto ranges = real->slotsOf(m);
    real_split.insert(real_split.end(), ranges.begin(), ranges.end());
  }
  std::sort(real_split.begin(), real_split.end(),
            [](const SlotRange& a, const SlotRange& b) { return a.first < b.first; });
  CHECK(real_split == std::vector<SlotRange>{face.slotsOf(0), face.slotsOf(1), face.slotsOf(2)});
  for (uint16_t n : {1, 2, 5, 16, 16384}) {
    const ClusterFace f{"10.1.2.3", 6380, false, n};
    CAPTURE(n);
    CHECK(f.slotsOf(0).first == 0);
    CHECK(f.slotsOf(static_cast<uint16_t>(n - 1)).last == 16383);
    for (uint16_t i = 1; i < n; ++i) CHECK(f.slotsOf(i).first == f.slotsOf(i - 1).last + 1);
  }
  // Out of range: one node, or one per slot.
  CHECK(ClusterFace{"h", 1, false, 0}.slotsOf(0) == SlotRange{0, 16383});
  CHECK(ClusterFace{"h", 1, false, 20000}.slotsOf(16383) == SlotRange{16383, 16383});
  // Every reply shows the same nodes: the ids CLUSTER SLOTS gives are those
  // of CLUSTER NODES (redis-benchmark looks them up by id).
  auto slots = ClusterTopology::fromSlots(bytes(redis::appendClusterSlots, face, false));
  auto shards = ClusterTopology::fromShards(bytes(redis::appendClusterShards, face, true));
  REQUIRE(slots.ok());
  REQUIRE(shards.ok());
  CHECK(redis::changedSlots(*slots, *shards).empty());
  const std::string nodes = redis::clusterNodesText(face);
  for (uint16_t i = 0; i < 3; ++i) {
    const std::string id = redis::faceNodeId("10.1.2.3", 6380, i);
    CHECK(nodes.find(id + " 10.1.2.3:6380@0 ") != std::string::npos);
    CHECK(slots->find(id) >= 0);
  }
}

TEST_CASE("redis-benchmark --cluster can read CLUSTER NODES, and needs two nodes") {
  // The real cluster's reply: three masters.
  auto real = redis::parseReply(clusterFixture("nodes_resp2.bin"));
  REQUIRE(real.ok());
  CHECK(benchmarkReadsNodes(std::string(real->str)).size() == 3);
  const auto one = benchmarkReadsNodes(redis::clusterNodesText({"127.0.0.1", 6380, false, 1}));
  CHECK(one.size() == 1);  // "Invalid cluster: 1 node(s)." from redis-benchmark
  const auto two = benchmarkReadsNodes(redis::clusterNodesText({"127.0.0.1", 6380, false, 2}));
  REQUIRE(two.size() == 2);
  CHECK(two[0].myself);
  CHECK_FALSE(two[1].myself);
  for (const auto& n : two) {
    CHECK(n.ip == "127.0.0.1");
    CHECK(n.port == 6380);
    CHECK(n.name.size() == 40);
  }
  CHECK(two[0].slots + two[1].slots == 16384);
  CHECK(redis::clusterNodesText({"127.0.0.1", 6380, false, 1}) ==
        redis::faceNodeId("127.0.0.1", 6380) +
            " 127.0.0.1:6380@0 myself,master - 0 0 1 connected 0-16383\n");
}

TEST_CASE("CLUSTER INFO says ok with every slot assigned, in redis-server's line format") {
  const std::string info = redis::clusterInfoText({"127.0.0.1", 6380, false, 2});
  CHECK(info.rfind("cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n", 0) == 0);
  CHECK(info.find("cluster_known_nodes:2\r\n") != std::string::npos);
  CHECK(info.find("cluster_size:2\r\n") != std::string::npos);
  // Every field name we send is one redis-server 7.0 sends too.
  const std::string real = std::string(redis::parseReply(clusterFixture("info_resp2.bin"))->str);
  size_t pos = 0;
  for (size_t nl; (nl = info.find("\r\n", pos)) != std::string::npos; pos = nl + 2) {
    const std::string name = info.substr(pos, info.find(':', pos) - pos);
    CAPTURE(name);
    CHECK(real.find(name + ":") != std::string::npos);
  }
}

TEST_CASE("answerClusterCommand: what is answered, routed, refused") {
  const ClusterFace face{"127.0.0.1", 6380, false, 1};
  const std::string id = redis::faceNodeId("127.0.0.1", 6380);
  CHECK(answer({"CLUSTER", "slots"}, face) == bytes(redis::appendClusterSlots, face, false));
  CHECK(answer({"cluster", "SHARDS"}, face, true) == bytes(redis::appendClusterShards, face, true));
  CHECK(answer({"CLUSTER", "NODES"}, face) == bytes(redis::appendClusterNodes, face, false));
  CHECK(answer({"CLUSTER", "INFO"}, face) == bytes(redis::appendClusterInfo, face, false));
  CHECK(answer({"CLUSTER", "MYID"}, face) == "$40\r\n" + id + "\r\n");
  CHECK(answer({"CLUSTER", "KEYSLOT", "foo"}, face) == ":12182\r\n");
  CHECK(answer({"CLUSTER", "KEYSLOT", "{user1000}.following"}, face) ==
        ":" + std::to_string(redis::keyHashSlot("user1000")) + "\r\n");
  CHECK(answer({"CLUSTER", "REPLICAS", id}, face) == "*0\r\n");
  CHECK(answer({"CLUSTER", "SLAVES", "abc"}, face) == "-ERR Unknown node abc\r\n");

  ClusterCommandResult r;
  CHECK(answer({"CLUSTER", "COUNTKEYSINSLOT", "7000"}, face, false, &r).empty());
  CHECK(r.kind == ClusterCommandResult::Kind::kRouteToSlot);
  CHECK(r.slot == 7000);
  CHECK(answer({"CLUSTER", "GETKEYSINSLOT", "16383", "10"}, face, false, &r).empty());
  CHECK(r.kind == ClusterCommandResult::Kind::kRouteToSlot);
  CHECK(r.slot == 16383);

  // redis-server 7.0's own errors.
  CHECK(answer({"CLUSTER", "COUNTKEYSINSLOT", "16384"}, face, false, &r) == "-ERR Invalid slot\r\n");
  CHECK(r.kind == ClusterCommandResult::Kind::kAnswered);
  CHECK(answer({"CLUSTER", "COUNTKEYSINSLOT", "x"}, face) ==
        "-ERR value is not an integer or out of range\r\n");
  CHECK(answer({"CLUSTER", "GETKEYSINSLOT", "1", "-1"}, face) ==
        "-ERR Invalid slot or number of keys\r\n");
  CHECK(answer({"CLUSTER", "KEYSLOT"}, face) ==
        "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n");
  CHECK(answer({"CLUSTER", "SLOTS", "x"}, face) ==
        "-ERR wrong number of arguments for 'cluster|slots' command\r\n");
  CHECK(answer({"CLUSTER"}, face) == "-ERR wrong number of arguments for 'cluster' command\r\n");
  CHECK(answer({"CLUSTER", "bogus"}, face) ==
        "-ERR unknown subcommand 'bogus'. Try CLUSTER HELP.\r\n");
  CHECK(answer({"CLUSTER", "x\r\ny"}, face) ==
        "-ERR unknown subcommand 'x  y'. Try CLUSTER HELP.\r\n");
  // Changing the cluster is for its operator, on its own nodes.
  CHECK(answer({"CLUSTER", "failover"}, face) ==
        "-ERR CLUSTER FAILOVER is not served by the proxy: run it on the cluster's own nodes\r\n");
  CHECK(answer({"CLUSTER", "SETSLOT", "1", "STABLE"}, face) ==
        "-ERR CLUSTER SETSLOT is not served by the proxy: run it on the cluster's own nodes\r\n");
}
