// ShardMap: where a multiplexed database's keys live -- its shards' endpoints
// and, for each of the 16384 hash slots, the index of the shard that owns
// it. Immutable once built: a new routing is a new ShardMap, published whole
// through a ShardMapSource, so every reader sees one map or the other, never
// a mix.
//
// A slot may have no owner (kNoShard): a Redis Cluster with a master down
// and no replica to take over, or slots nobody was given, still serves the
// others. The router answers a key in such a slot as Redis Cluster does
// (-CLUSTERDOWN Hash slot not served); a map built from a `shards` list has
// an owner for every slot (the config checks coverage).
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

// A Redis Cluster node known by a name (cluster-preferred-endpoint-type
// hostname): MOVED and ASK name it "name:port"; shardgate connects to the
// ip the node reports beside it.
struct NodeAlias {
  std::string announced;  // "redis-1.example:6379", as redirects name it
  std::string address;    // "10.0.0.7:6379", where shardgate connects
  bool operator==(const NodeAlias&) const = default;
};

class ShardMap {
 public:
  using SlotOwners = std::array<uint16_t, config::kSlotCount>;
  static constexpr uint16_t kNoShard = 0xFFFF;
  // Redis's reply for a key whose slot no master serves (cluster.c
  // getNodeByQuery, CLUSTER_REDIR_DOWN_UNBOUND).
  static constexpr std::string_view kNotServedError = "CLUSTERDOWN Hash slot not served";

  // Fails unless there is at least one shard and every slot names one of
  // them or kNoShard.
  static Result<std::shared_ptr<const ShardMap>> create(std::vector<ShardEndpoint> shards,
                                                        const SlotOwners& owners,
                                                        std::vector<NodeAlias> aliases = {});

  size_t shardCount() const { return shards_.size(); }
  const std::vector<ShardEndpoint>& shards() const { return shards_; }
  const ShardEndpoint& shard(size_t index) const { return shards_[index]; }
  // The shard owning a slot, or kNoShard.
  uint16_t shardOfSlot(uint16_t slot) const { return owners_[slot]; }
  // With one shard owning every slot, every key belongs to shard 0: no CRC16.
  uint16_t shardOfKey(std::string_view key) const {
    return whole_ ? 0 : owners_[redis::keyHashSlot(key)];
  }
  // Slots with no owner (0 for a map from a `shards` list).
  size_t unservedSlots() const { return unserved_; }
  // Same shards (addresses, in order), the same owner for every slot and
  // the same aliases.
  bool sameRouting(const ShardMap& other) const;
  const std::vector<NodeAlias>& aliases() const { return aliases_; }
  // The address a node's announced "name:port" stands for; null if none.
  const std::string* aliasOf(std::string_view announced) const {
    for (const NodeAlias& a : aliases_) {
      if (a.announced == announced) return &a.address;
    }
    return nullptr;
  }

 private:
  ShardMap(std::vector<ShardEndpoint> shards, const SlotOwners& owners, size_t unserved,
           std::vector<NodeAlias> aliases)
      : shards_(std::move(shards)), aliases_(std::move(aliases)), owners_(owners), unserved_(unserved),
        whole_(shards_.size() == 1 && unserved == 0) {}

  std::vector<ShardEndpoint> shards_;
  std::vector<NodeAlias> aliases_;
  SlotOwners owners_;
  size_t unserved_;
  bool whole_;
};

}  // namespace shardgate::proxy
