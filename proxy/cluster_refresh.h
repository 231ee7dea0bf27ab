// ClusterRefresh: what the data path may ask of the thing that follows a
// cluster database's topology (server::ClusterMonitor): read it again soon,
// because a node said a slot moved or a node's connection failed. Callable
// from any worker thread; cheap and coalesced (one flag, one wake-up), so a
// burst of MOVED replies costs one refresh.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shardgate::proxy {

class ClusterRefresh {
 public:
  virtual void requestRefresh() = 0;

  // Refreshes done so far, by result, for the metrics (any thread).
  struct Counts {
    uint64_t changed = 0;    // a new map was published
    uint64_t unchanged = 0;  // the nodes said what the map already says
    uint64_t failed = 0;     // no node answered, or its answer was unusable
  };
  virtual Counts refreshCounts() const = 0;

  // Each node as the last topology read gave it, for the metrics. Control
  // thread only (where the monitor updates it); never on the request path.
  struct NodeState {
    std::string address;  // where shardgate connects to it, like a shard's address
    bool master = false;
    // Not marked failed by the cluster. A loading node counts as up: Redis 7.0
    // says "loading" of any replica that has not replicated a byte yet, as in
    // a cluster without writes. (CLUSTER SLOTS lists only live nodes.)
    bool up = false;
  };
  virtual std::vector<NodeState> nodeStates() const = 0;

 protected:
  ClusterRefresh() = default;
  ~ClusterRefresh() = default;
};

}  // namespace shardgate::proxy
