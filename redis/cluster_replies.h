// What shardgate answers a cluster-aware client (redis-cli -c, redis-py's
// RedisCluster, redis-benchmark --cluster, ...) that asks about the cluster:
// a healthy cluster whose every node is shardgate itself, at the endpoint the
// client connected to, together owning all 16384 slots. The client then sends
// every command to that one endpoint, and shardgate routes it; the real
// cluster behind it, and its moves, never show.
//
// ClusterFace says how many nodes to show: one is the truth, but
// `redis-benchmark --cluster` refuses a cluster of fewer than two masters
// (redis-benchmark.c: "Invalid cluster: 1 node(s)"), so a face may show N
// virtual masters at the same endpoint, each with its share of the slots,
// split as `redis-cli --cluster create` splits them. Every reply (SLOTS,
// SHARDS, NODES, INFO, MYID) shows the same nodes with the same ids: clients
// match CLUSTER SLOTS's ids against CLUSTER NODES's.
//
// Node ids are 40 hex characters derived from the endpoint and the node's
// index: stable across restarts and across workers, different per endpoint.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/byte_buffer.h"
#include "redis/cluster_topology.h"

namespace shardgate::redis {

struct ClusterFace {
  std::string_view host;  // the address the client connected to (its socket's local address)
  uint16_t port = 0;
  bool tls = false;       // CLUSTER SHARDS then says "tls-port" instead of "port"
  uint16_t nodes = 1;     // virtual masters shown, 1..16384 (clamped)

  // The slots node `index` owns: an even split, the remainder to the first nodes.
  SlotRange slotsOf(uint16_t index) const;
};

// The 40-hex id of virtual node `index` of the endpoint host:port.
std::string faceNodeId(std::string_view host, uint16_t port, uint16_t index = 0);

void appendClusterSlots(ByteBuffer& out, const ClusterFace& face, bool resp3);
void appendClusterShards(ByteBuffer& out, const ClusterFace& face, bool resp3);
void appendClusterNodes(ByteBuffer& out, const ClusterFace& face, bool resp3);
void appendClusterInfo(ByteBuffer& out, const ClusterFace& face, bool resp3);
void appendClusterMyId(ByteBuffer& out, const ClusterFace& face);

// The text of CLUSTER NODES (lines ending "\n") and CLUSTER INFO (lines
// ending "\r\n"), as redis-server 7.0 writes them.
std::string clusterNodesText(const ClusterFace& face);
std::string clusterInfoText(const ClusterFace& face);

// One CLUSTER command from a client. kAnswered: `out` holds the reply
// (including errors for a wrong arity, a bad slot, an unknown subcommand, or
// a subcommand that changes the cluster, which only the real cluster's
// operator may run). kRouteToSlot: a question about the data in `slot`
// (COUNTKEYSINSLOT, GETKEYSINSLOT) for the master that owns it; `out` is
// untouched.
struct ClusterCommandResult {
  enum class Kind : uint8_t { kAnswered, kRouteToSlot };
  Kind kind = Kind::kAnswered;
  uint16_t slot = 0;
};
ClusterCommandResult answerClusterCommand(const std::vector<std::string_view>& args,
                                          const ClusterFace& face, bool resp3, ByteBuffer& out);

}  // namespace shardgate::redis
