// ClusterRefresh: what the data path may ask of the thing that follows a
// cluster database's topology (server::ClusterMonitor): read it again soon,
// because a node said a slot moved or a node's connection failed. Callable
// from any worker thread; cheap and coalesced (one flag, one wake-up), so a
// burst of MOVED replies costs one refresh.
#pragma once

#include <cstdint>

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

 protected:
  ClusterRefresh() = default;
  ~ClusterRefresh() = default;
};

}  // namespace shardgate::proxy
