#include "proxy/cluster_shard_map.h"

#include <arpa/inet.h>

#include <algorithm>
#include <string>
#include <vector>

#include "net/socket_address.h"

namespace shardgate::proxy {

namespace {

bool numericHost(const std::string& host) {
  in6_addr buf{};
  return inet_pton(AF_INET, host.c_str(), &buf) == 1 || inet_pton(AF_INET6, host.c_str(), &buf) == 1;
}

uint16_t connectPort(const redis::ClusterNode& node, bool tls) {
  return tls && node.tls_port != 0 ? node.tls_port : node.port;
}

std::string joinHostPort(const std::string& host, uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool knownByName(const redis::ClusterNode& node) { return !numericHost(node.host) && numericHost(node.ip); }

}  // namespace

std::string connectAddress(const redis::ClusterNode& node, bool tls) {
  const uint16_t port = connectPort(node, tls);
  if (port == 0) return {};
  return joinHostPort(knownByName(node) ? node.ip : node.host, port);
}

std::string announcedAddress(const redis::ClusterNode& node, bool tls) {
  const uint16_t port = connectPort(node, tls);
  return port != 0 && knownByName(node) ? node.host + ":" + std::to_string(port) : std::string();
}

std::string verifyName(const redis::ClusterNode& node) { return node.host; }

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
    shards.push_back(ShardEndpoint{address, *addr, tlsOf(address, verifyName(topology.nodes()[static_cast<size_t>(node)]))});
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
    replicas.push_back(ReplicaEndpoint{ShardEndpoint{address, *addr, tlsOf(address, verifyName(n))}, master});
  }
  // Every node known by a name, masters without slots and replicas too: an
  // ASK may name a master that is being given its first slot.
  std::vector<NodeAlias> aliases;
  for (const redis::ClusterNode& n : topology.nodes()) {
    std::string announced = announcedAddress(n, db_tls != nullptr);
    if (!announced.empty()) aliases.push_back(NodeAlias{std::move(announced), connectAddress(n, db_tls != nullptr)});
  }
  ShardMap::SlotOwners owners{};
  for (size_t slot = 0; slot < owners.size(); ++slot) {
    const int owner = topology.slotOwner(static_cast<uint16_t>(slot));
    owners[slot] = owner == redis::ClusterTopology::kNoOwner ? ShardMap::kNoShard
                                                             : shard_of_node[static_cast<size_t>(owner)];
  }
  return ShardMap::create(std::move(shards), owners, std::move(aliases), std::move(replicas));
}

}  // namespace shardgate::proxy
