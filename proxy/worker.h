// Worker: one event-loop thread serving every database through its own
// SO_REUSEPORT listening sockets. It shares nothing mutable with other
// workers: its buffers, its connections and its counters are its own; the
// TLS context comes from the store once per accepted connection.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "net/listener.h"
#include "net/uv_io_driver.h"
#include "proxy/backend_link.h"
#include "proxy/cluster_redirects.h"
#include "proxy/database.h"
#include "proxy/deadline_list.h"
#include "proxy/link_factory.h"
#include "common/rate_limited_log.h"
#include "proxy/request.h"
#include "proxy/stats.h"
#include "common/byte_buffer.h"
#include "tls/resumption_slot.h"
#include "tls/tls_context_store.h"

namespace shardgate::proxy {

class ClientConnection;

// Built by the server from the config: tls.handshake_timeout_ms and
// drain_timeout_ms; zero means "not set yet", never a default of its own.
struct WorkerSettings {
  uint32_t handshake_timeout_ms = 0;
  uint32_t drain_timeout_ms = 0;
  size_t databases = 0;  // how many databases to keep counters for (Database::index)
};

class Worker final : public LinkFactory {
 public:
  struct Binding {
    const Database* db;
    int fd;  // bound listening socket, owned by the worker from start()
  };

  Worker(unsigned index, tls::TlsContextStore& tls_store, WorkerSettings settings);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread; it listens on every binding.
  Status start(std::vector<Binding> bindings);
  // Thread-safe: stop accepting, let connections finish, force them at the deadline.
  void requestDrain();
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  void join();

  // For connections, on this worker's thread only.
  uv_loop_t* loop() { return &loop_; }
  // Every socket of this worker: client streams, shard streams.
  net::IoDriver& io() { return io_; }
  tls::TlsContextPtr tlsContext() const { return tls_store_.current(); }
  const WorkerSettings& settings() const { return settings_; }
  Stats& stats() { return stats_; }
  const Stats& stats() const override { return stats_; }
  DbStats& dbStats(const Database& db) override { return stats_.db(db.index); }
  uint64_t refreshClock() override {
    clock_us_ = uv_hrtime() / 1000;
    return clock_us_;
  }
  uint64_t clockUs() const override { return clock_us_; }
  bool draining() const { return draining_; }
  void add(ClientConnection* c);
  void remove(ClientConnection* c);
  // A listener ran out of descriptors: the next connection to close (which
  // gives one back) resumes it.
  void listenerPaused() { listener_paused_ = true; }

  // the multiplexed path. Shared links: one per shard of each multiplexed database,
  // created at first use. Dirty lists: links with commands to write and
  // clients with replies to write, flushed once per loop turn (uv_check),
  // so many clients' commands share one write to a shard.
  // A shard map replaced at run time gets a new set of shared links that
  // reuses the link of every endpoint both maps have; the old set is freed
  // once no session holds it and the links only it holds are idle (upkeep).
  SharedLinks& sharedLinks(const Database& db) override;
  void refreshSharedLinks(const Database& db, SharedLinks& links) override;
  // A cluster database: this worker's links set for `map`, db's map with a
  // MOVED applied (ClusterRedirects); the generation stays, so the
  // database's next published map replaces it.
  void patchSharedLinks(const Database& db, SharedLinks& links, std::shared_ptr<const ShardMap> map);
  ClusterRedirects& clusterRedirects() { return cluster_redirects_; }
  std::unique_ptr<ShardLink> openPrivateLink(const Database& db, std::shared_ptr<const ShardMap> map,
                                             uint16_t shard, MultiplexSession* owner) override;
  std::unique_ptr<ShardLink> openNodeLink(const Database& db, const std::string& address, uint16_t position,
                                          MultiplexSession* owner) override;
  void noteMoved(const Database& db, const std::string& address, uint16_t slot) override {
    cluster_redirects_.noteMoved(db, address, slot);
  }
  void wakeLater(MultiplexSession* session, uint64_t ms) override { cluster_redirects_.wakeLater(session, ms); }
  void cancelWake(MultiplexSession* session) override { cluster_redirects_.cancelWake(session); }
  RequestPool& requestPool() override { return request_pool_; }
  void markDirty(BackendLink* link);
  void forgetLink(BackendLink* link);
  void markDirty(ClientConnection* c);
  void forgetClient(ClientConnection* c);
  // One timer for every connection's deadline (see DeadlineList).
  void startDeadline(Deadline<ClientConnection>& d, DeadlineKind kind, uint64_t ms);
  void stopDeadline(Deadline<ClientConnection>& d) {
    if (d.list) d.list->remove(d);
  }
  // Reply buffers lent to multiplexed clients only while they have replies to
  // send: an idle client holds none, and a busy worker reuses them instead of
  // allocating per request.
  void lendBuffer(ByteBuffer& into) {
    if (spare_buffers_.empty()) return;
    into.swap(spare_buffers_.back());
    spare_buffers_.pop_back();
  }
  void takeBackBuffer(ByteBuffer& from);
  // This worker's latest TLS session with a shard, offered on its next
  // connection there (made on first use; looked up per connection only).
  std::shared_ptr<tls::ResumptionSlot> resumptionSlot(const ShardTls& shard);
  ByteBuffer& frameScratch() override { return frame_scratch_; }
  ByteBuffer& replyScratch() override { return reply_scratch_; }
  std::vector<int>& intScratch() override { return scratch_ints_; }

 private:
  // One database's listener on this worker: what it accepts becomes a
  // client of that database.
  struct Acceptor final : net::AcceptHandler {
    Acceptor(Worker& w, const Database& d) : worker(w), db(d) {}
    void onAccepted(int fd) override;
    void onAcceptPaused() override { worker.listenerPaused(); }
    Worker& worker;
    const Database& db;
    net::Listener* listener = nullptr;
  };

  void installSharedLinks(const Database& db, SharedLinks& links, std::shared_ptr<const ShardMap> map);
  void run();
  void beginDrain();
  void sweepIdle();
  void closeAll();
  void maybeFinish();
  void flushDirty();
  void upkeep();
  void onDeadlineTimer();
  void armDeadlineTimer();
  void resumeListeners();

  unsigned index_;
  tls::TlsContextStore& tls_store_;
  WorkerSettings settings_;
  uv_loop_t loop_{};
  uv_async_t wake_{};
  uv_timer_t drain_timer_{};
  uv_timer_t sweep_timer_{};
  uv_check_t flush_check_{};
  uv_prepare_t flush_prepare_{};  // what timer callbacks queued, written before the loop blocks
  uv_timer_t upkeep_timer_{};  // idle private shard connections
  uv_timer_t deadline_timer_{};
  uint64_t deadline_armed_ms_ = 0;  // when deadline_timer_ fires; 0: not armed
  DeadlineList<ClientConnection> handshake_deadlines_;
  DeadlineList<ClientConnection> flush_deadlines_;
  std::thread thread_;
  net::UvIoDriver io_{&loop_};
  std::vector<std::unique_ptr<Acceptor>> listeners_;
  ClientConnection* connections_ = nullptr;
  size_t connection_count_ = 0;
  Stats stats_;
  uint64_t clock_us_ = 0;
  RequestPool request_pool_;
  std::unordered_map<const Database*, SharedLinks> shared_links_;
  std::vector<std::shared_ptr<SharedLinkSet>> retired_links_;  // of replaced shard maps
  std::vector<BackendLink*> dirty_links_;
  std::vector<ClientConnection*> dirty_clients_;
  std::vector<ByteBuffer> spare_buffers_;
  std::unordered_map<const ShardTls*, std::shared_ptr<tls::ResumptionSlot>> resumption_slots_;
  ByteBuffer frame_scratch_;
  ByteBuffer reply_scratch_;
  std::vector<int> scratch_ints_;
  std::atomic<bool> drain_requested_{false};
  std::atomic<bool> finished_{false};
  bool draining_ = false;
  bool listener_paused_ = false;
  bool handles_closed_ = false;
  RateLimitedLogFlusher log_flusher_;
  // Last: its links (ASK targets) go before the loop's other members.
  ClusterRedirects cluster_redirects_{*this};
};

}  // namespace shardgate::proxy
