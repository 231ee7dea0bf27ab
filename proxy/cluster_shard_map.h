// A Redis Cluster's topology as a ShardMap: each master that owns slots is a
// shard, each slot's owner its shard, a slot no master serves kNoShard.
//
// Shards keep their place across refreshes: the masters of `previous` that
// still own slots come first, in its order, then new masters by their first
// slot. So a cluster that did not change gives an equal map (sameRouting),
// and a shard's counters stay with its address while others come and go.
#pragma once

#include <memory>

#include "common/result.h"
#include "proxy/shard_map.h"
#include "redis/cluster_topology.h"

namespace shardgate::proxy {

// Fails when no master owns a slot, or a master's address is not a numeric
// HOST:PORT shardgate can connect to (a hostname, a TLS-only node).
Result<std::shared_ptr<const ShardMap>> shardMapFromTopology(const redis::ClusterTopology& topology,
                                                             const ShardMap* previous = nullptr);

}  // namespace shardgate::proxy
