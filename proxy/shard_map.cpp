#include "proxy/shard_map.h"

namespace shardgate::proxy {

Result<std::shared_ptr<const ShardMap>> ShardMap::create(std::vector<ShardEndpoint> shards,
                                                         const SlotOwners& owners,
                                                         std::vector<NodeAlias> aliases) {
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
  return std::shared_ptr<const ShardMap>(new ShardMap(std::move(shards), owners, unserved, std::move(aliases)));
}

bool ShardMap::sameRouting(const ShardMap& other) const {
  if (shards_.size() != other.shards_.size() || owners_ != other.owners_ || aliases_ != other.aliases_) {
    return false;
  }
  for (size_t i = 0; i < shards_.size(); ++i) {
    if (shards_[i].address != other.shards_[i].address) return false;
  }
  return true;
}

}  // namespace shardgate::proxy
