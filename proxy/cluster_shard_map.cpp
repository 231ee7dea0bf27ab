#include "proxy/cluster_shard_map.h"

#include <algorithm>
#include <string>
#include <vector>

#include "net/socket_address.h"

namespace shardgate::proxy {

Result<std::shared_ptr<const ShardMap>> shardMapFromTopology(const redis::ClusterTopology& topology,
                                                             const ShardMap* previous) {
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
  for (int m : masters) ordered.emplace_back(topology.nodes()[static_cast<size_t>(m)].address(), m);
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
  std::vector<ShardEndpoint> shards;
  std::vector<uint16_t> shard_of_node(topology.nodes().size(), ShardMap::kNoShard);
  for (const auto& [address, node] : ordered) {
    const redis::ClusterNode& n = topology.nodes()[static_cast<size_t>(node)];
    if (n.port == 0) {
      return makeError("master " + address + " serves TLS only (no plaintext port): not supported yet");
    }
    auto parsed = net::parseSocketAddress(address);
    if (!parsed) return makeError("master " + address + ": " + parsed.message());
    auto addr = net::toSockaddr(*parsed);
    if (!addr) return makeError("master " + address + ": " + addr.message());
    shard_of_node[static_cast<size_t>(node)] = static_cast<uint16_t>(shards.size());
    shards.push_back(ShardEndpoint{address, *addr});
  }
  ShardMap::SlotOwners owners{};
  for (size_t slot = 0; slot < owners.size(); ++slot) {
    const int owner = topology.slotOwner(static_cast<uint16_t>(slot));
    owners[slot] = owner == redis::ClusterTopology::kNoOwner ? ShardMap::kNoShard
                                                             : shard_of_node[static_cast<size_t>(owner)];
  }
  return ShardMap::create(std::move(shards), owners);
}

}  // namespace shardgate::proxy
