// ShardMapSource: the current ShardMap of one database, replaceable at run
// time. replace() publishes a whole new map (a pointer swap that cannot
// fail); readers on the data path do not take the lock: each worker keeps the
// map it last loaded and compares generation() -- one atomic load -- before a
// pipeline batch, loading the map again only when it changed. A map in use
// lives until its last user lets go, so requests routed by the old map finish
// on the old map's links.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>

#include "common/shared_snapshot.h"
#include "proxy/shard_map.h"

namespace shardgate::proxy {

class ShardMapSource {
 public:
  explicit ShardMapSource(std::shared_ptr<const ShardMap> initial) {
    snapshot_.store(std::move(initial));
  }
  ShardMapSource(const ShardMapSource&) = delete;
  ShardMapSource& operator=(const ShardMapSource&) = delete;

  // Changes with every replace(). Read it before current(): a map loaded
  // after a given generation is at least that new.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  std::shared_ptr<const ShardMap> current() const { return snapshot_.load(); }

  // Any thread. Readers pick the new map up at their next generation check.
  void replace(std::shared_ptr<const ShardMap> next) {
    snapshot_.store(std::move(next));
    generation_.fetch_add(1, std::memory_order_release);
  }

 private:
  SharedSnapshot<ShardMap> snapshot_;
  std::atomic<uint64_t> generation_{1};
};

}  // namespace shardgate::proxy
