#include <doctest/doctest.h>

#include <thread>

#include "proxy/shard_map.h"
#include "proxy/shard_map_source.h"
#include "redis/hash_slot.h"
#include "tests/unit/proxy/fake_links.h"

namespace shardgate::proxy::testing {

TEST_CASE("shard map: keys go to the shard owning their slot") {
  auto map = evenMap(2);
  CHECK(map->shardCount() == 2);
  CHECK(map->shard(1).address == "10.0.0.1:6379");
  CHECK(map->shardOfSlot(0) == 0);
  CHECK(map->shardOfSlot(8191) == 0);
  CHECK(map->shardOfSlot(8192) == 1);
  CHECK(map->shardOfKey("foo") == (redis::keyHashSlot("foo") < 8192 ? 0 : 1));
  // One shard: every key, no CRC16 needed.
  CHECK(evenMap(1)->shardOfKey("foo") == 0);
}

TEST_CASE("shard map: create refuses a map naming a shard it does not have") {
  ShardMap::SlotOwners owners{};
  CHECK(!ShardMap::create({}, owners));
  owners[100] = 2;
  auto map = ShardMap::create({ShardEndpoint{"a:1", {}, nullptr}, ShardEndpoint{"b:2", {}, nullptr}}, owners);
  REQUIRE(!map);
  CHECK(map.message() == "slot 100 is owned by shard 2, but there are 2 shard(s)");
}

TEST_CASE("shard map source: replace publishes a new map and a new generation") {
  ShardMapSource source(evenMap(2));
  auto first = source.current();
  const uint64_t generation = source.generation();
  source.replace(evenMap(3, 1));
  CHECK(source.generation() != generation);
  CHECK(source.current()->shardCount() == 3);
  // A reader that loaded the old map keeps it whole.
  CHECK(first->shardCount() == 2);
  CHECK(first->shard(0).address == "10.0.0.0:6379");
}

TEST_CASE("shard map source: readers on other threads see one map or the other") {
  ShardMapSource source(evenMap(2));
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) source.replace(evenMap(static_cast<size_t>(1 + i % 3), i));
  });
  for (int i = 0; i < 2000; ++i) {
    auto map = source.current();
    const size_t n = map->shardCount();
    CHECK(n >= 1);
    CHECK(map->shardOfSlot(16383) == n - 1);
  }
  writer.join();
}

}  // namespace shardgate::proxy::testing
