// ClusterTopology: a Redis Cluster as one node's CLUSTER SHARDS (Redis 7.0+)
// or CLUSTER SLOTS reply describes it: its nodes (masters and replicas, with
// their endpoints and health) and, for each of the 16384 slots, the master
// that owns it. Pure: built from reply bytes, no I/O; the proxy builds its
// routing table from it, and logs what changed between two of them.
//
// Validation names what is wrong in the reply ("CLUSTER SHARDS reply: shard 2
// has no master"). Slots no master owns are not an error: a cluster with
// uncovered slots still serves the others (`cluster-require-full-coverage
// no`), so they are kept as a list of ranges the caller can report.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace shardgate::redis {

enum class NodeRole : uint8_t { kMaster, kReplica };
// CLUSTER SHARDS's "health"; CLUSTER SLOTS does not say (kUnknown), it lists
// only nodes that are not failed.
enum class NodeHealth : uint8_t { kOnline, kFailed, kLoading, kUnknown };

const char* nodeRoleName(NodeRole role);
const char* nodeHealthName(NodeHealth health);

struct ClusterNode {
  std::string id;        // 40 hex characters; empty if the reply gave none
  std::string host;      // where to connect: the preferred endpoint, else the ip
  std::string ip;        // as reported; may equal host
  std::string hostname;  // as reported (cluster-announce-hostname); often empty
  uint16_t port = 0;     // plaintext port; 0 when the node serves TLS only
  uint16_t tls_port = 0; // 0 when not given (CLUSTER SLOTS, or no TLS)
  NodeRole role = NodeRole::kMaster;
  NodeHealth health = NodeHealth::kUnknown;
  int64_t replication_offset = -1;  // -1: not given
  int master = -1;       // a replica: index of its master in nodes(); -1 if unknown

  // The node's identity across two replies: its id, or host:port without one.
  std::string key() const;
  // "127.0.0.1:7000" (tls-port when there is no plaintext port).
  std::string address() const;
};

struct SlotRange {
  uint16_t first = 0;
  uint16_t last = 0;  // inclusive
  friend bool operator==(const SlotRange&, const SlotRange&) = default;
};

// "0-99" or "5" for one slot; a list joined by ",".
std::string formatSlotRanges(const std::vector<SlotRange>& ranges);

class ClusterTopology {
 public:
  static constexpr int kNoOwner = -1;

  // `answering_host` is the host of the node that sent the reply: Redis 7
  // with `cluster-preferred-endpoint-type unknown-endpoint` leaves endpoints
  // empty, meaning "the host you asked". A reply that is an error (an old
  // Redis without CLUSTER SHARDS, a node not in cluster mode) is an error
  // naming the node's own message, so the caller can fall back to SLOTS.
  static Result<ClusterTopology> fromShards(std::string_view reply,
                                            std::string_view answering_host = {});
  static Result<ClusterTopology> fromSlots(std::string_view reply,
                                           std::string_view answering_host = {});

  const std::vector<ClusterNode>& nodes() const { return nodes_; }
  // The index in nodes() of the master that owns slot, or kNoOwner.
  int slotOwner(uint16_t slot) const { return owner_[slot]; }
  const ClusterNode* ownerOf(uint16_t slot) const {
    const int i = owner_[slot];
    return i == kNoOwner ? nullptr : &nodes_[static_cast<size_t>(i)];
  }
  // Index of the node with this id (or key()), -1 if none.
  int find(std::string_view key) const;
  std::vector<int> masters() const;  // masters that own at least one slot
  std::vector<int> replicasOf(int master) const;
  std::vector<SlotRange> slotsOf(int node) const;
  std::vector<SlotRange> uncovered() const;
  size_t coveredSlots() const;

  // One line for the log: "3 masters, 3 replicas, 16384 slots covered",
  // with failed nodes and uncovered ranges when there are any.
  std::string describe() const;

 private:
  ClusterTopology();
  std::vector<ClusterNode> nodes_;
  std::vector<int16_t> owner_;  // kHashSlots entries
  friend class TopologyBuilder;
};

// Slots whose owner differs between two topologies (compared by node
// identity, not index), as ranges of consecutive slots with the same move.
struct SlotMove {
  SlotRange slots;
  std::string from;  // ClusterNode::address() of the old owner, "" if none
  std::string to;    // of the new owner, "" if none
  friend bool operator==(const SlotMove&, const SlotMove&) = default;
};
std::vector<SlotMove> changedSlots(const ClusterTopology& before, const ClusterTopology& after);
// "slots 0-99 127.0.0.1:7000 -> 127.0.0.1:7001; slot 5000 127.0.0.1:7002 -> none"
// (at most `limit` moves, then "and N more"); "no slot moved" when empty.
std::string describeMoves(const std::vector<SlotMove>& moves, size_t limit = 8);

// How the nodes changed between two topologies (by identity), one entry per
// node that changed, in `after`'s order then the nodes gone:
//   "127.0.0.1:7006 joined as master", "... joined as replica of 127.0.0.1:7000",
//   "... left", "... failed", "... is back as replica of ...", "... is now master".
// Only failing and coming back count as health changes (not loading), and
// slots are describeMoves' business: a cluster that changed nothing else
// gives none.
std::vector<std::string> nodeChanges(const ClusterTopology& before, const ClusterTopology& after);
// Joined by "; ", at most `limit` then "and N more".
std::string describeNodeChanges(const std::vector<std::string>& changes, size_t limit = 8);

}  // namespace shardgate::redis
