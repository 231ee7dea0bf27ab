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
// it has neither of the kind needed. The host is the node's preferred
// endpoint, or its ip when that endpoint is a name (shardgate resolves no
// names on its event loops; the cluster reports the ip beside the name).
std::string connectAddress(const redis::ClusterNode& node, bool tls);
// The "name:port" redirects call a node whose preferred endpoint is a name
// (same port as connectAddress); "" for a node known by its ip.
std::string announcedAddress(const redis::ClusterNode& node, bool tls);
// The name a node's TLS certificate is checked against (without the
// database's server_name): its preferred endpoint, a name or an ip.
std::string verifyName(const redis::ClusterNode& node);

// Fails when no master owns a slot, or a master has no numeric address
// shardgate can connect to (a name without an ip). Nodes known by a name
// become the map's aliases.
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
