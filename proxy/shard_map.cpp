#include "proxy/shard_map.h"

namespace shardgate::proxy {

Result<std::shared_ptr<const ShardMap>> ShardMap::create(std::vector<ShardEndpoint> shards,
                                                         const SlotOwners& owners) {
  if (shards.empty()) return makeError("a shard map needs at least one shard");
  for (size_t slot = 0; slot < owners.size(); ++slot) {
    if (owners[slot] >= shards.size()) {
      return makeError("slot " + std::to_string(slot) + " is owned by shard " +
                       std::to_string(owners[slot]) + ", but there are " +
                       std::to_string(shards.size()) + " shard(s)");
    }
  }
  return std::shared_ptr<const ShardMap>(new ShardMap(std::move(shards), owners));
}

}  // namespace shardgate::proxy
