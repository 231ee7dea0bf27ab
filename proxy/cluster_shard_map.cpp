#include "proxy/cluster_shard_map.h"

#include <algorithm>
#include <string>
#include <vector>

#include "net/socket_address.h"

namespace shardgate::proxy {

std::string connectAddress(const redis::ClusterNode& node, bool tls) {
  const uint16_t port = tls && node.tls_port != 0 ? node.tls_port : node.port;
  return port == 0 ? std::string() : node.host + ":" + std::to_string(port);
}

Result<std::shared_ptr<const ShardMap>> shardMapFromTopology(const redis::ClusterTopology& topology,
                                                             const std::shared_ptr<ShardTls>& db_tls,
                                                             const ShardMap* previous, bool with_replicas) {
  // Masters owning slots, in the order of their first slot.
  std::vector<int> masters;
  for (size_t slot = 0; slot < ShardMap::SlotOwners().size(); ++slot) {
    const int owner = topology.slotOwner(static_cast<uint16_t>(slot));
    if (owner != redis::ClusterTopology::kNoOwner &&
        std::find(masters.begin(), masters.end(), owner) == masters.end()) {
      masters.push_back(owner);
    }
  }
  if (masters.empty()) return makeError("no master owns a slot");
  // (address, node index) in the order the shards take.
  std::vector<std::pair<std::string, int>> ordered;
  for (int m : masters) {
    const redis::ClusterNode& n = topology.nodes()[static_cast<size_t>(m)];
    std::string address = connectAddress(n, db_tls != nullptr);
    if (address.empty()) {
      return makeError("master " + n.address() + " serves TLS only (no plaintext port): set the database's shard_tls");
    }
    ordered.emplace_back(std::move(address), m);
  }
  if (previous != nullptr) {
    auto place = [&](const std::string& address) {
      for (size_t i = 0; i < previous->shardCount(); ++i) {
        if (previous->shard(i).address == address) return i;
      }
      return previous->shardCount();  // new: after every known one
    };
    std::stable_sort(ordered.begin(), ordered.end(),
                     [&](const auto& a, const auto& b) { return place(a.first) < place(b.first); });
  }
  // A node the previous map had keeps its TLS (and so its resumption slot).
  auto tlsOf = [&](const std::string& address, const std::string& host) {
    for (size_t i = 0; previous != nullptr && i < previous->endpointCount(); ++i) {
      if (previous->endpoint(i).address == address) return previous->endpoint(i).tls;
    }
    return nodeTls(db_tls, host);
  };
  std::vector<ShardEndpoint> shards;
  std::vector<uint16_t> shard_of_node(topology.nodes().size(), ShardMap::kNoShard);
  for (const auto& [address, node] : ordered) {
    auto parsed = net::parseSocketAddress(address);
    if (!parsed) return makeError("master " + address + ": " + parsed.message());
    auto addr = net::toSockaddr(*parsed);
    if (!addr) return makeError("master " + address + ": " + addr.message());
    shard_of_node[static_cast<size_t>(node)] = static_cast<uint16_t>(shards.size());
    shards.push_back(ShardEndpoint{address, *addr, tlsOf(address, parsed->host)});
  }
  std::vector<ReplicaEndpoint> replicas;
  for (size_t i = 0; with_replicas && i < topology.nodes().size(); ++i) {
    const redis::ClusterNode& n = topology.nodes()[i];
    if (n.role != redis::NodeRole::kReplica || n.master < 0) continue;
    if (n.health == redis::NodeHealth::kFailed || n.health == redis::NodeHealth::kLoading) continue;
    const uint16_t master = shard_of_node[static_cast<size_t>(n.master)];
    if (master == ShardMap::kNoShard) continue;  // the replica of a master with no slot
    std::string address = connectAddress(n, db_tls != nullptr);
    if (address.empty()) continue;
    auto parsed = net::parseSocketAddress(address);
    if (!parsed) continue;
    auto addr = net::toSockaddr(*parsed);
    if (!addr) continue;
    // A node listed twice (a reply caught mid-failover) is used once, as the master.
    const bool known = std::any_of(shards.begin(), shards.end(), [&](const ShardEndpoint& e) {
      return e.address == address;
    }) || std::any_of(replicas.begin(), replicas.end(), [&](const ReplicaEndpoint& r) {
      return r.endpoint.address == address;
    });
    if (known) continue;
    replicas.push_back(ReplicaEndpoint{ShardEndpoint{address, *addr, tlsOf(address, parsed->host)}, master});
  }
  ShardMap::SlotOwners owners{};
  for (size_t slot = 0; slot < owners.size(); ++slot) {
    const int owner = topology.slotOwner(static_cast<uint16_t>(slot));
    owners[slot] = owner == redis::ClusterTopology::kNoOwner ? ShardMap::kNoShard
                                                             : shard_of_node[static_cast<size_t>(owner)];
  }
  return ShardMap::create(std::move(shards), owners, std::move(replicas));
}

}  // namespace shardgate::proxy
