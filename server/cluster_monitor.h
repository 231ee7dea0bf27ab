// ClusterMonitor: follows the Redis Cluster behind one database. At start it
// asks the seeds in turn for the topology (CLUSTER SHARDS, or CLUSTER SLOTS
// on a Redis older than 7.0) and publishes the first ShardMap; then, every
// cluster.refresh_interval_ms, it asks again -- the nodes it knows first,
// then the seeds -- and publishes a new map only when a slot changed owner
// or the set of masters changed. A change is logged at once; while a
// migration goes on (a reshard publishes a change per refresh) the changes
// that follow are summed up in one line per kChangeLogGapMs, so a long
// reshard logs a few lines, not one per refresh. Nodes that joined, left,
// failed or came back are logged once each, by the read that first shows it.
//
//   control loop                     thread pool                 workers
//   timer / requestRefresh() ──► uv_queue_work: queryNode ...
//                               ◄── after: topology ──► compare ──► ShardMapSource::replace
//                                                                     (picked up per batch)
//
// The queries block, so they never run on an event loop: create() runs
// before the workers start, refreshes on libuv's thread pool. At most one
// refresh is in flight; requests made meanwhile are coalesced into one more.
// The monitor lives on the control loop's thread, except requestRefresh().
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "proxy/cluster_refresh.h"
#include "proxy/database.h"
#include "redis/cluster_topology.h"

namespace shardgate::server {

// The topology one node gave, and how it was asked.
struct ClusterReading {
  redis::ClusterTopology topology;
  std::string node;     // "127.0.0.1:7000"
  std::string command;  // "CLUSTER SHARDS" or "CLUSTER SLOTS"
};

// Asks each candidate in turn until one answers with a topology whose
// masters own at least one slot. Blocking; each node bounded by timeout_ms.
// The error names every node asked and why it did not do.
Result<ClusterReading> readClusterTopology(const std::vector<proxy::ShardEndpoint>& candidates,
                                           const std::optional<std::string>& password, int timeout_ms);

class ClusterMonitor final : public proxy::ClusterRefresh {
 public:
  // Discovers the cluster from db's seeds (blocking) and sets db.shard_map.
  // Fails, naming each seed and why, when none answers.
  // Sets db.cluster_refresh to the monitor, too.
  static Result<std::unique_ptr<ClusterMonitor>> create(proxy::Database& db);
  ~ClusterMonitor();
  ClusterMonitor(const ClusterMonitor&) = delete;
  ClusterMonitor& operator=(const ClusterMonitor&) = delete;

  // Starts the periodic refresh on the control loop.
  void start(uv_loop_t* loop);
  // Any thread (a worker that got -MOVED): refresh soon. Coalesced: at most
  // one refresh in flight, and refreshes at least kMinGapMs apart. Callers
  // must be done (the workers finished) before stop().
  void requestRefresh() override;
  Counts refreshCounts() const override {
    return Counts{changed_.load(std::memory_order_relaxed), unchanged_.load(std::memory_order_relaxed),
                  failed_.load(std::memory_order_relaxed)};
  }
  std::vector<NodeState> nodeStates() const override;
  // Control loop: no more refreshes. One in flight finishes on the pool and
  // is dropped; the handles close in the background.
  void stop();

  static constexpr uint64_t kMinGapMs = 100;
  // A refresh asks one node for at most this long before trying the next.
  static constexpr int kRefreshNodeTimeoutMs = 1000;
  static constexpr int kStartNodeTimeoutMs = 2000;
  // Topology changes are logged at most this often (the first at once).
  static constexpr uint64_t kChangeLogGapMs = 5000;

 private:
  struct Work;
  explicit ClusterMonitor(proxy::Database& db, ClusterReading first);

  void maybeRefresh();
  void startRefresh();
  void finishRefresh(Work& work);
  // Logs the slots moved since the last line, and the masters now.
  void logChanges();
  // The known nodes (masters, then replicas) and then the seeds not among them.
  std::vector<proxy::ShardEndpoint> candidates() const;

  proxy::Database& db_;
  redis::ClusterTopology topology_;  // what the published map was built from
  uv_loop_t* loop_ = nullptr;
  uv_timer_t* tick_ = nullptr;   // every refresh interval
  uv_timer_t* soon_ = nullptr;   // a requested refresh held back by kMinGapMs
  uv_timer_t* log_timer_ = nullptr;  // the summary line of changes held back by kChangeLogGapMs
  redis::ClusterTopology logged_topology_;  // as of the last "topology changed" line
  uint64_t unlogged_changes_ = 0;           // maps published since that line
  std::string unlogged_source_;             // "CLUSTER SHARDS from 127.0.0.1:7000", of the latest
  uint64_t last_log_ms_ = 0;                // loop time of that line; 0: none yet
  // requestRefresh() from another thread; null until start() (a request
  // made before is kept in requested_ and served by start()).
  std::atomic<uv_async_t*> wake_{nullptr};
  std::atomic<bool> requested_{false};
  bool in_flight_ = false;
  Work* in_flight_work_ = nullptr;  // owned by the thread pool's request until its after-callback
  bool stopped_ = false;
  bool failing_ = false;          // the last refresh found no node answering
  uint64_t last_start_ms_ = 0;    // loop time the last refresh began
  // Written by the control loop, read by the metrics.
  std::atomic<uint64_t> changed_{0}, unchanged_{0}, failed_{0};
};

}  // namespace shardgate::server
