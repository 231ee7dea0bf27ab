// A Redis Cluster's topology as a ShardMap: each master that owns slots is a
// shard, each slot's owner its shard, a slot no master serves kNoShard.
//
// Shards keep their place across refreshes: the masters of `previous` that
// still own slots come first, in its order, then new masters by their first
// slot. So a cluster that did not change gives an equal map (sameRouting),
// and a shard's counters stay with its address while others come and go.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "proxy/shard_map.h"
#include "redis/cluster_topology.h"

namespace shardgate::proxy {

// Where shardgate connects to a node: its TLS port when the database speaks
// TLS to its nodes and the node has one, else its plaintext port; "" when
// it has neither of the kind needed.
std::string connectAddress(const redis::ClusterNode& node, bool tls);

// Fails when no master owns a slot, or a master's address is not a numeric
// HOST:PORT shardgate can connect to (a hostname).
//
// db_tls: the database's shard_tls (null: plaintext); each master's TLS is
// a nodeTls of it -- the one of `previous` for a node it already had, so
// a worker's resumption slot for that node stays.
//
// with_replicas (read_from replica_preferred): each master's replicas that
// are not failed or loading join the map; one that cannot be connected to
// (a hostname, no port of the kind needed) is left out, its master serves.
Result<std::shared_ptr<const ShardMap>> shardMapFromTopology(const redis::ClusterTopology& topology,
                                                             const std::shared_ptr<ShardTls>& db_tls,
                                                             const ShardMap* previous = nullptr,
                                                             bool with_replicas = false);

}  // namespace shardgate::proxy
