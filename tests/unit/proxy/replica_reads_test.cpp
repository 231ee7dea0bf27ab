#include <doctest/doctest.h>

#include <set>
#include <vector>

#include "proxy/replica_reads.h"
#include "proxy/shard_map.h"

namespace shardgate::proxy::testing {

using redis::CommandInfo;

TEST_CASE("replica reads: only readonly commands that neither block nor subscribe") {
  CHECK(readableFromReplica(CommandInfo::kReadonly));                             // GET, MGET, HGETALL
  CHECK(readableFromReplica(CommandInfo::kReadonly | CommandInfo::kMovableKeys));  // SORT_RO, ...
  CHECK(!readableFromReplica(CommandInfo::kWrite));                               // SET
  CHECK(!readableFromReplica(CommandInfo::kReadonly | CommandInfo::kBlocking));   // XREAD BLOCK, ...
  CHECK(!readableFromReplica(CommandInfo::kReadonly | CommandInfo::kPubsub));
  CHECK(!readableFromReplica(0));                                                 // PING, INFO, MULTI
}

TEST_CASE("replica reads: a master's replicas take turns, skipping those not usable") {
  uint32_t next = 0;
  auto all = [](size_t) { return true; };
  std::vector<int> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(pickReplica(10, 13, next, all));
  CHECK(picks == std::vector<int>{10, 11, 12, 10, 11, 12});

  // Endpoint 11 down: its turns go to the next usable one.
  next = 0;
  auto not11 = [](size_t i) { return i != 11; };
  std::multiset<int> seen;
  for (int i = 0; i < 6; ++i) seen.insert(pickReplica(10, 13, next, not11));
  CHECK(seen.count(11) == 0);
  CHECK(seen.count(10) + seen.count(12) == 6);

  // None usable, or none at all: the master serves (-1).
  CHECK(pickReplica(10, 13, next, [](size_t) { return false; }) == -1);
  CHECK(pickReplica(4, 4, next, all) == -1);
}

TEST_CASE("replica reads: a refusal that sends the read to the master") {
  CHECK(replicaRefusal("-LOADING Redis is loading the dataset in memory\r\n"));
  CHECK(replicaRefusal("-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"));
  CHECK(replicaRefusal("-CLUSTERDOWN The cluster is down\r\n"));
  // Redirects are ClusterRedirects'; errors of the command are the client's.
  CHECK(!replicaRefusal("-MOVED 3999 127.0.0.1:7001\r\n"));
  CHECK(!replicaRefusal("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"));
  CHECK(!replicaRefusal("$1\r\nx\r\n"));
}

TEST_CASE("replica reads: a replica left out is tried again after a bounded back-off") {
  uint64_t ms = 0;
  std::vector<uint64_t> pauses;
  for (int i = 0; i < 7; ++i) pauses.push_back(ms = nextReplicaPauseMs(ms));
  CHECK(pauses == std::vector<uint64_t>{500, 1000, 2000, 4000, 8000, 8000, 8000});
}

TEST_CASE("shard map: replicas follow the masters, each master's side by side") {
  ShardMap::SlotOwners owners{};
  for (size_t s = 0; s < owners.size(); ++s) owners[s] = s < 8192 ? 0 : 1;
  auto e = [](const char* a) { return ShardEndpoint{a, {}, nullptr}; };
  auto map = ShardMap::create({e("m0:1"), e("m1:1")}, owners, {},
                              {ReplicaEndpoint{e("r1a:1"), 1}, ReplicaEndpoint{e("r0:1"), 0},
                               ReplicaEndpoint{e("r1b:1"), 1}});
  REQUIRE(map);
  const ShardMap& m = **map;
  CHECK(m.shardCount() == 2);
  CHECK(m.endpointCount() == 5);
  CHECK(m.hasReplicas());
  CHECK(m.replicaBegin(0) == 2);
  CHECK(m.replicaEnd(0) == 3);
  CHECK(m.endpoint(2).address == "r0:1");
  CHECK(m.replicaBegin(1) == 3);
  CHECK(m.replicaEnd(1) == 5);
  CHECK(m.endpoint(3).address == "r1a:1");
  CHECK(m.endpoint(4).address == "r1b:1");
  CHECK(m.isReplica(3));
  CHECK(!m.isReplica(1));
  CHECK(m.masterOf(4) == 1);

  // A map without replicas: nothing more than its shards.
  auto plain = ShardMap::create({e("m0:1"), e("m1:1")}, owners);
  REQUIRE(plain);
  CHECK((*plain)->endpointCount() == 2);
  CHECK((*plain)->replicaBegin(1) == (*plain)->replicaEnd(1));
  // A replica list that changed is a routing change (the monitor publishes it).
  CHECK(!m.sameRouting(**plain));
  CHECK(m.sameRouting(m));

  ShardMap::SlotOwners one{};  // every slot shard 0's
  auto bad = ShardMap::create({e("m0:1")}, one, {}, {ReplicaEndpoint{e("r:1"), 3}});
  REQUIRE(!bad);
  CHECK(bad.message() == "replica r:1 names shard 3 as its master, but there are 1 shard(s)");
}

}  // namespace shardgate::proxy::testing
