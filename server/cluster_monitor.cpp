#include "server/cluster_monitor.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/uv_handle.h"
#include "net/socket_address.h"
#include "proxy/cluster_shard_map.h"
#include "proxy/node_query.h"

namespace shardgate::server {

namespace {

// A node without CLUSTER SHARDS (Redis < 7.0) says so with an unknown
// subcommand error; anything else (cluster support disabled, LOADING) is
// that node's answer.
bool unknownSubcommand(std::string_view reply) {
  return reply.starts_with("-ERR unknown subcommand") || reply.starts_with("-ERR Unknown subcommand") ||
         reply.starts_with("-ERR unknown command");
}

Result<ClusterReading> askNode(const proxy::ShardEndpoint& node, const std::optional<std::string>& password,
                               int timeout_ms) {
  auto shards = proxy::queryNode(node, password, {{"CLUSTER", "SHARDS"}}, timeout_ms);
  if (!shards) return makeError(node.address + ": " + shards.message());
  std::string_view reply = shards->reply(0);
  // The host the node was reached at, for a reply that leaves endpoints
  // empty ("the host you asked"); an IPv6 address without its brackets.
  std::string host = node.address.substr(0, node.address.rfind(':'));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (!unknownSubcommand(reply)) {
    auto topology = redis::ClusterTopology::fromShards(reply, host);
    if (!topology) return makeError(node.address + ": " + topology.message());
    return ClusterReading{std::move(*topology), node.address, "CLUSTER SHARDS"};
  }
  auto slots = proxy::queryNode(node, password, {{"CLUSTER", "SLOTS"}}, timeout_ms);
  if (!slots) return makeError(node.address + ": " + slots.message());
  auto topology = redis::ClusterTopology::fromSlots(slots->reply(0), host);
  if (!topology) return makeError(node.address + ": " + topology.message());
  return ClusterReading{std::move(*topology), node.address, "CLUSTER SLOTS"};
}

std::string describeMasters(const proxy::ShardMap& map) {
  std::string out;
  for (size_t i = 0; i < map.shardCount(); ++i) out += (i ? ", " : "") + map.shard(i).address;
  // read_from replica_preferred: the replicas reads go to.
  if (map.hasReplicas()) {
    out += "; replicas read from ";
    for (size_t i = 0; i < map.replicas().size(); ++i) {
      const proxy::ReplicaEndpoint& r = map.replicas()[i];
      out += (i ? ", " : "") + r.endpoint.address + " (of " + map.shard(r.master).address + ")";
    }
  }
  return out;
}

}  // namespace

Result<ClusterReading> readClusterTopology(const std::vector<proxy::ShardEndpoint>& candidates,
                                           const std::optional<std::string>& password, int timeout_ms) {
  std::string why;
  for (const proxy::ShardEndpoint& node : candidates) {
    auto reading = askNode(node, password, timeout_ms);
    if (reading && reading->topology.coveredSlots() > 0) return reading;
    why += (why.empty() ? "" : "; ") +
           (reading ? node.address + ": its cluster has no slot assigned" : reading.message());
  }
  return makeError(why);
}

// ---- the monitor --------------------------------------------------------------

// One refresh on the thread pool: what it asks (copied, the pool thread
// touches nothing of the monitor's) and what it found.
struct ClusterMonitor::Work {
  uv_work_t req{};
  ClusterMonitor* monitor = nullptr;
  std::vector<proxy::ShardEndpoint> candidates;
  std::optional<std::string> password;
  std::optional<Result<ClusterReading>> result;
};

Result<std::unique_ptr<ClusterMonitor>> ClusterMonitor::create(proxy::Database& db) {
  auto reading = readClusterTopology(db.cluster_seeds, db.shard_password, kStartNodeTimeoutMs);
  if (!reading) return makeError("no seed answered with the cluster's slots: " + reading.message());
  auto map = proxy::shardMapFromTopology(reading->topology, db.shard_tls, nullptr, db.replica_reads);
  if (!map) return makeError("the topology from " + reading->node + ": " + map.message());
  db.shard_map = std::make_shared<proxy::ShardMapSource>(*map);
  spdlog::info("db {}: cluster discovered from {} ({}): {}; masters {}", db.name, reading->node,
               reading->command, reading->topology.describe(), describeMasters(**map));
  auto monitor = std::unique_ptr<ClusterMonitor>(new ClusterMonitor(db, std::move(*reading)));
  db.cluster_refresh = monitor.get();
  return monitor;
}

ClusterMonitor::ClusterMonitor(proxy::Database& db, ClusterReading first)
    : db_(db), topology_(std::move(first.topology)), logged_topology_(topology_) {}

ClusterMonitor::~ClusterMonitor() {
  // stop() closed the handles (they free themselves); a monitor never
  // started owns none.
}

void ClusterMonitor::start(uv_loop_t* loop) {
  loop_ = loop;
  tick_ = new uv_timer_t;
  soon_ = new uv_timer_t;
  log_timer_ = new uv_timer_t;
  auto* wake = new uv_async_t;
  uv_timer_init(loop, tick_);
  uv_timer_init(loop, soon_);
  uv_timer_init(loop, log_timer_);
  tick_->data = soon_->data = log_timer_->data = this;
  uv_async_init(loop, wake, [](uv_async_t* a) {
    auto* self = static_cast<ClusterMonitor*>(a->data);
    if (self->requested_.load(std::memory_order_acquire)) self->maybeRefresh();
  });
  wake->data = this;
  // Sequentially consistent, with requestRefresh(): a request made while
  // this runs is seen by one of the two (flag, then handle; handle, then flag).
  wake_.store(wake);
  const uint64_t every = db_.cluster_refresh_ms;
  uv_timer_start(tick_, [](uv_timer_t* t) {
    auto* self = static_cast<ClusterMonitor*>(t->data);
    self->requested_.store(true, std::memory_order_release);
    self->maybeRefresh();
  }, every, every);
  // Asked before the loop ran (workers serve from before start()).
  if (requested_.load()) uv_async_send(wake);
}

void ClusterMonitor::requestRefresh() {
  // Many workers may ask at once (a burst of MOVED): one flag, one wake-up.
  if (requested_.exchange(true)) return;
  if (uv_async_t* wake = wake_.load()) uv_async_send(wake);
}

void ClusterMonitor::stop() {
  if (stopped_ || loop_ == nullptr) {
    stopped_ = true;
    return;
  }
  stopped_ = true;
  // A refresh still queued is not started (the loop would wait for it);
  // one already running finishes, and is dropped.
  if (in_flight_work_ != nullptr) uv_cancel(reinterpret_cast<uv_req_t*>(&in_flight_work_->req));
  // A summary line still held back is written now, not lost.
  if (unlogged_changes_ > 0) logChanges();
  auto free_timer = [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); };
  uv_close(asHandle(tick_), free_timer);
  uv_close(asHandle(soon_), free_timer);
  uv_close(asHandle(log_timer_), free_timer);
  log_timer_ = nullptr;
  uv_close(asHandle(wake_.exchange(nullptr)), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
  tick_ = soon_ = nullptr;
}

void ClusterMonitor::maybeRefresh() {
  if (stopped_ || in_flight_) return;  // finishRefresh looks at requested_ again
  const uint64_t now = uv_now(loop_);
  if (last_start_ms_ != 0 && now - last_start_ms_ < kMinGapMs) {
    if (!uv_is_active(asHandle(soon_))) {
      uv_timer_start(soon_, [](uv_timer_t* t) { static_cast<ClusterMonitor*>(t->data)->maybeRefresh(); },
                     kMinGapMs - (now - last_start_ms_), 0);
    }
    return;
  }
  startRefresh();
}

std::vector<proxy::ShardEndpoint> ClusterMonitor::candidates() const {
  std::vector<proxy::ShardEndpoint> out;
  auto add = [&](const proxy::ShardEndpoint& e) {
    for (const auto& o : out) {
      if (o.address == e.address) return;
    }
    out.push_back(e);
  };
  for (const redis::NodeRole role : {redis::NodeRole::kMaster, redis::NodeRole::kReplica}) {
    for (const redis::ClusterNode& n : topology_.nodes()) {
      if (n.role != role || n.health == redis::NodeHealth::kFailed) continue;
      const std::string address = proxy::connectAddress(n, db_.shard_tls != nullptr);
      if (address.empty()) continue;
      auto parsed = net::parseSocketAddress(address);
      if (!parsed) continue;  // a name without an ip: the seeds may still do
      auto addr = net::toSockaddr(*parsed);
      if (!addr) continue;
      add(proxy::ShardEndpoint{address, *addr, proxy::nodeTls(db_.shard_tls, proxy::verifyName(n))});
    }
  }
  for (const auto& seed : db_.cluster_seeds) add(seed);
  return out;
}

void ClusterMonitor::logChanges() {
  if (unlogged_changes_ == 0) return;
  const std::string moves = redis::describeMoves(redis::changedSlots(logged_topology_, topology_));
  const std::string summed =
      unlogged_changes_ > 1 ? "; " + std::to_string(unlogged_changes_) + " changes since the last line" : "";
  spdlog::info("db {}: cluster topology changed ({}{}): {}; now {}; masters {}", db_.name, unlogged_source_, summed,
               moves, topology_.describe(), describeMasters(*db_.shard_map->current()));
  logged_topology_ = topology_;
  unlogged_changes_ = 0;
  last_log_ms_ = uv_now(loop_);
}

std::vector<proxy::ClusterRefresh::NodeState> ClusterMonitor::nodeStates() const {
  std::vector<NodeState> out;
  out.reserve(topology_.nodes().size());
  for (const redis::ClusterNode& n : topology_.nodes()) {
    std::string address = proxy::connectAddress(n, db_.shard_tls != nullptr);
    out.push_back(NodeState{address.empty() ? n.address() : std::move(address), n.role == redis::NodeRole::kMaster,
                            n.health != redis::NodeHealth::kFailed});
  }
  return out;
}

void ClusterMonitor::startRefresh() {
  requested_.store(false, std::memory_order_release);
  in_flight_ = true;
  last_start_ms_ = uv_now(loop_);
  auto* work = new Work;
  in_flight_work_ = work;
  work->req.data = work;
  work->monitor = this;
  work->candidates = candidates();
  work->password = db_.shard_password;
  const int rc = uv_queue_work(
      loop_, &work->req,
      [](uv_work_t* req) {
        auto* w = static_cast<Work*>(req->data);
        w->result.emplace(readClusterTopology(w->candidates, w->password, kRefreshNodeTimeoutMs));
      },
      [](uv_work_t* req, int) {  // also when cancelled by stop(): result stays empty
        std::unique_ptr<Work> w(static_cast<Work*>(req->data));
        w->monitor->in_flight_work_ = nullptr;
        w->monitor->finishRefresh(*w);
      });
  if (rc != 0) {
    delete work;
    in_flight_work_ = nullptr;
    in_flight_ = false;
    spdlog::error("db {}: cluster refresh not started: {}", db_.name, uv_strerror(rc));
  }
}

void ClusterMonitor::finishRefresh(Work& work) {
  in_flight_ = false;
  if (stopped_) return;
  if (!work.result || !*work.result) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    // Logged when it starts failing and when it recovers, not every tick.
    if (!failing_) {
      spdlog::warn("db {}: cluster refresh: no node answered ({}); routing by the last map", db_.name,
                   work.result ? work.result->message() : "cancelled");
    }
    failing_ = true;
  } else {
    ClusterReading& reading = **work.result;
    if (failing_) spdlog::info("db {}: cluster refresh: {} answers again", db_.name, reading.node);
    failing_ = false;
    // Said when the reading is adopted (then topology_ holds it), so once.
    auto logNodeChanges = [&] {
      if (const auto nodes = redis::nodeChanges(topology_, reading.topology); !nodes.empty()) {
        spdlog::info("db {}: cluster nodes changed ({} from {}): {}", db_.name, reading.command, reading.node,
                     redis::describeNodeChanges(nodes));
      }
    };
    const auto current = db_.shard_map->current();
    auto map = proxy::shardMapFromTopology(reading.topology, db_.shard_tls, current.get(), db_.replica_reads);
    if (!map) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("db {}: cluster refresh: the topology from {}: {}; routing by the last map", db_.name,
                   reading.node, map.message());
    } else if (!(*map)->sameRouting(*current)) {
      db_.shard_map->replace(*map);
      changed_.fetch_add(1, std::memory_order_relaxed);
      logNodeChanges();
      topology_ = std::move(reading.topology);
      ++unlogged_changes_;
      unlogged_source_ = reading.command + " from " + reading.node;
      const uint64_t now = uv_now(loop_);
      if (last_log_ms_ == 0 || now - last_log_ms_ >= kChangeLogGapMs) {
        logChanges();
      } else if (!uv_is_active(asHandle(log_timer_))) {
        uv_timer_start(log_timer_, [](uv_timer_t* t) { static_cast<ClusterMonitor*>(t->data)->logChanges(); },
                       kChangeLogGapMs - (now - last_log_ms_), 0);
      }
    } else {
      // Same routing; replicas or health may differ: remember them as candidates.
      unchanged_.fetch_add(1, std::memory_order_relaxed);
      logNodeChanges();
      topology_ = std::move(reading.topology);
    }
  }
  if (requested_.load(std::memory_order_acquire)) maybeRefresh();
}

}  // namespace shardgate::server
