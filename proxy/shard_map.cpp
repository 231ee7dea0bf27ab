#include "proxy/shard_map.h"

#include <algorithm>

namespace shardgate::proxy {

Result<std::shared_ptr<const ShardMap>> ShardMap::create(std::vector<ShardEndpoint> shards,
                                                         const SlotOwners& owners,
                                                         std::vector<NodeAlias> aliases,
                                                         std::vector<ReplicaEndpoint> replicas) {
  if (shards.empty()) return makeError("a shard map needs at least one shard");
  if (shards.size() >= kNoShard) return makeError("a shard map holds at most 65534 shards");
  size_t unserved = 0;
  for (size_t slot = 0; slot < owners.size(); ++slot) {
    if (owners[slot] == kNoShard) {
      ++unserved;
      continue;
    }
    if (owners[slot] >= shards.size()) {
      return makeError("slot " + std::to_string(slot) + " is owned by shard " +
                       std::to_string(owners[slot]) + ", but there are " +
                       std::to_string(shards.size()) + " shard(s)");
    }
  }
  if (shards.size() + replicas.size() >= kNoShard) return makeError("a shard map holds at most 65534 nodes");
  for (const ReplicaEndpoint& r : replicas) {
    if (r.master >= shards.size()) {
      return makeError("replica " + r.endpoint.address + " names shard " + std::to_string(r.master) +
                       " as its master, but there are " + std::to_string(shards.size()) + " shard(s)");
    }
  }
  return std::shared_ptr<const ShardMap>(
      new ShardMap(std::move(shards), owners, unserved, std::move(aliases), std::move(replicas)));
}

ShardMap::ShardMap(std::vector<ShardEndpoint> shards, const SlotOwners& owners, size_t unserved,
                   std::vector<NodeAlias> aliases, std::vector<ReplicaEndpoint> replicas)
    : shards_(std::move(shards)), aliases_(std::move(aliases)), replicas_(std::move(replicas)), owners_(owners),
      unserved_(unserved),
      whole_(shards_.size() == 1 && unserved == 0) {
  // Each master's replicas side by side, in the order given.
  std::stable_sort(replicas_.begin(), replicas_.end(),
                   [](const ReplicaEndpoint& a, const ReplicaEndpoint& b) { return a.master < b.master; });
  replica_range_.assign(shards_.size(), {0, 0});
  for (size_t i = 0; i < replicas_.size(); ++i) {
    auto& range = replica_range_[replicas_[i].master];
    if (range.first == range.second) range.first = static_cast<uint16_t>(i);
    range.second = static_cast<uint16_t>(i + 1);
  }
}

bool ShardMap::sameRouting(const ShardMap& other) const {
  if (shards_.size() != other.shards_.size() || owners_ != other.owners_ || aliases_ != other.aliases_) {
    return false;
  }
  for (size_t i = 0; i < shards_.size(); ++i) {
    if (shards_[i].address != other.shards_[i].address) return false;
  }
  if (replicas_.size() != other.replicas_.size()) return false;
  for (size_t i = 0; i < replicas_.size(); ++i) {
    if (replicas_[i].endpoint.address != other.replicas_[i].endpoint.address ||
        replicas_[i].master != other.replicas_[i].master) {
      return false;
    }
  }
  return true;
}

}  // namespace shardgate::proxy
