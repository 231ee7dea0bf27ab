// ShardMap: where a multiplexed database's keys live -- its shards' endpoints
// and, for each of the 16384 hash slots, the index of the shard that owns
// it. Immutable once built: a new routing is a new ShardMap, published whole
// through a ShardMapSource, so every reader sees one map or the other, never
// a mix.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "config/config.h"
#include "proxy/shard_tls.h"
#include "redis/hash_slot.h"

namespace shardgate::proxy {

struct ShardEndpoint {
  std::string address;  // "127.0.0.1:7001", as error lines and logs name it
  sockaddr_storage addr{};
  // Set when the shard has tls on: every connection to it is TLS.
  std::shared_ptr<ShardTls> tls;
};

class ShardMap {
 public:
  using SlotOwners = std::array<uint16_t, config::kSlotCount>;

  // Fails unless there is at least one shard and every slot names one of them.
  static Result<std::shared_ptr<const ShardMap>> create(std::vector<ShardEndpoint> shards,
                                                        const SlotOwners& owners);

  size_t shardCount() const { return shards_.size(); }
  const std::vector<ShardEndpoint>& shards() const { return shards_; }
  const ShardEndpoint& shard(size_t index) const { return shards_[index]; }
  uint16_t shardOfSlot(uint16_t slot) const { return owners_[slot]; }
  // With one shard every key belongs to shard 0: no CRC16.
  uint16_t shardOfKey(std::string_view key) const {
    return shards_.size() == 1 ? 0 : owners_[redis::keyHashSlot(key)];
  }

 private:
  ShardMap(std::vector<ShardEndpoint> shards, const SlotOwners& owners)
      : shards_(std::move(shards)), owners_(owners) {}

  std::vector<ShardEndpoint> shards_;
  SlotOwners owners_;
};

}  // namespace shardgate::proxy
