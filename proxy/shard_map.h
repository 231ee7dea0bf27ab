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
//
// A cluster database with read_from replica_preferred also lists each
// master's replicas. Links are made per endpoint: indices below shardCount()
// are the masters (the shards), the rest replicas, each master's together
// (replicaBegin / replicaEnd). Without replicas the two counts are equal and
// nothing else changes.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
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

// A replica and the shard (master) whose slots it copies.
struct ReplicaEndpoint {
  ShardEndpoint endpoint;
  uint16_t master = 0;
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
  // Replicas must name one of the shards as their master.
  static Result<std::shared_ptr<const ShardMap>> create(std::vector<ShardEndpoint> shards,
                                                        const SlotOwners& owners,
                                                        std::vector<NodeAlias> aliases = {},
                                                        std::vector<ReplicaEndpoint> replicas = {});

  size_t shardCount() const { return shards_.size(); }
  const std::vector<ShardEndpoint>& shards() const { return shards_; }
  const ShardEndpoint& shard(size_t index) const { return shards_[index]; }

  // Masters and replicas: endpoint(i) for i < endpointCount().
  size_t endpointCount() const { return shards_.size() + replicas_.size(); }
  const ShardEndpoint& endpoint(size_t index) const {
    return index < shards_.size() ? shards_[index] : replicas_[index - shards_.size()].endpoint;
  }
  bool isReplica(size_t index) const { return index >= shards_.size(); }
  bool hasReplicas() const { return !replicas_.empty(); }
  const std::vector<ReplicaEndpoint>& replicas() const { return replicas_; }
  // A replica endpoint's master (shard index).
  uint16_t masterOf(size_t index) const { return replicas_[index - shards_.size()].master; }
  // Shard `shard`'s replicas are the endpoints [replicaBegin, replicaEnd).
  size_t replicaBegin(size_t shard) const { return shards_.size() + replica_range_[shard].first; }
  size_t replicaEnd(size_t shard) const { return shards_.size() + replica_range_[shard].second; }
  // The shard owning a slot, or kNoShard.
  uint16_t shardOfSlot(uint16_t slot) const { return owners_[slot]; }
  // With one shard owning every slot, every key belongs to shard 0: no CRC16.
  uint16_t shardOfKey(std::string_view key) const {
    return whole_ ? 0 : owners_[redis::keyHashSlot(key)];
  }
  // Slots with no owner (0 for a map from a `shards` list).
  size_t unservedSlots() const { return unserved_; }
  // Same shards (addresses, in order), the same owner for every slot and
  // the same aliases and the same replicas (addresses, in order, with
  // their masters).
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
           std::vector<NodeAlias> aliases, std::vector<ReplicaEndpoint> replicas);

  std::vector<ShardEndpoint> shards_;
  std::vector<NodeAlias> aliases_;
  std::vector<ReplicaEndpoint> replicas_;  // sorted by master
  std::vector<std::pair<uint16_t, uint16_t>> replica_range_;  // per shard: [first, last) in replicas_
  SlotOwners owners_;
  size_t unserved_;
  bool whole_;
};

}  // namespace shardgate::proxy
