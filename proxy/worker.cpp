#include "proxy/worker.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "proxy/client_connection.h"
#include "common/uv_handle.h"

namespace shardgate::proxy {

namespace {
// How often a draining worker looks for connections that went idle.
constexpr uint64_t kSweepIntervalMs = 50;
// How often idle private shard connections are looked for, at most.
constexpr uint64_t kUpkeepIntervalMs = 5000;

}  // namespace

Worker::Worker(unsigned index, tls::TlsContextStore& tls_store, WorkerSettings settings)
    : index_(index), tls_store_(tls_store), settings_(settings), stats_(settings.databases) {}

Worker::~Worker() { join(); }

Status Worker::start(std::vector<Binding> bindings) {
  int rc = uv_loop_init(&loop_);
  if (rc != 0) {
    for (auto& b : bindings) ::close(b.fd);
    return makeError(std::string("worker: cannot create event loop: ") + uv_strerror(rc));
  }
  loop_.data = this;
  uv_async_init(&loop_, &wake_, [](uv_async_t* a) {
    auto* self = static_cast<Worker*>(a->data);
    if (self->drain_requested_.load(std::memory_order_acquire)) self->beginDrain();
  });
  wake_.data = this;
  uv_timer_init(&loop_, &drain_timer_);
  uv_timer_init(&loop_, &sweep_timer_);
  drain_timer_.data = sweep_timer_.data = this;
  uv_check_init(&loop_, &flush_check_);
  flush_check_.data = this;
  uv_check_start(&flush_check_, [](uv_check_t* c) { static_cast<Worker*>(c->data)->flushDirty(); });
  // Timers run before the poll and the check after it: what a timer
  // callback queued (a watchdog's errors, a retry, a deadline's close)
  // would wait for the next wake-up. Flushing again just before the loop
  // blocks writes it at once; with nothing dirty it is two empty checks.
  uv_prepare_init(&loop_, &flush_prepare_);
  flush_prepare_.data = this;
  uv_prepare_start(&flush_prepare_, [](uv_prepare_t* p) { static_cast<Worker*>(p->data)->flushDirty(); });
  uv_timer_init(&loop_, &upkeep_timer_);
  upkeep_timer_.data = this;
  uv_timer_init(&loop_, &deadline_timer_);
  deadline_timer_.data = this;
  uint64_t every = kUpkeepIntervalMs;
  for (const auto& b : bindings) {
    if (b.db->multiplex) every = std::min<uint64_t>(every, std::max<uint64_t>(b.db->private_idle_ms / 2, 50));
  }
  uv_timer_start(&upkeep_timer_, [](uv_timer_t* t) { static_cast<Worker*>(t->data)->upkeep(); },
                 every, every);
  uv_unref(reinterpret_cast<uv_handle_t*>(&upkeep_timer_));
  for (auto& b : bindings) {
    auto acceptor = std::make_unique<Acceptor>(*this, *b.db);
    auto listener = net::Listener::start(&loop_, b.fd, b.db->listen, *acceptor);
    if (!listener) {
      // Listener::start closed the fd; the loop is not running yet, so close
      // what was opened and let run() finish at once.
      for (auto& a : listeners_) a->listener->close();
      listeners_.clear();
      drain_requested_ = true;
      thread_ = std::thread([this] { run(); });
      return makeError(listener.message());
    }
    acceptor->listener = *listener;
    listeners_.push_back(std::move(acceptor));
  }
  thread_ = std::thread([this] { run(); });
  return {};
}

void Worker::run() {
  log_flusher_.start(&loop_);
  if (drain_requested_.load()) beginDrain();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  finished_.store(true, std::memory_order_release);
}

void Worker::requestDrain() {
  drain_requested_.store(true, std::memory_order_release);
  uv_async_send(&wake_);
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::Acceptor::onAccepted(int fd) { ClientConnection::accept(worker, db, fd); }

void Worker::add(ClientConnection* c) {
  c->prev = nullptr;
  c->next = connections_;
  if (connections_) connections_->prev = c;
  connections_ = c;
  ++connection_count_;
}

void Worker::remove(ClientConnection* c) {
  if (c->prev) c->prev->next = c->next;
  else connections_ = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  --connection_count_;
  if (listener_paused_) resumeListeners();
  if (draining_) maybeFinish();
}

void Worker::resumeListeners() {
  // Called before the connection's sockets are closed; a resumed listener
  // only polls again, and accepts in the next loop turn, when they are.
  listener_paused_ = false;
  for (auto& a : listeners_) a->listener->resume();
}

void Worker::beginDrain() {
  if (draining_) return;
  draining_ = true;
  // A closed listener calls its acceptor no more: both can go now.
  for (auto& a : listeners_) a->listener->close();
  listeners_.clear();
  uv_timer_start(&drain_timer_, [](uv_timer_t* t) {
    auto* self = static_cast<Worker*>(t->data);
    if (self->connection_count_ > 0) {
      spdlog::info("worker {}: drain time is up, closing {} connection(s)", self->index_,
                   self->connection_count_);
    }
    self->closeAll();
  }, settings_.drain_timeout_ms, 0);
  uv_timer_start(&sweep_timer_, [](uv_timer_t* t) { static_cast<Worker*>(t->data)->sweepIdle(); },
                 0, kSweepIntervalMs);
  maybeFinish();
}

void Worker::sweepIdle() {
  uint64_t now = uv_now(&loop_);
  for (ClientConnection* c = connections_; c;) {
    ClientConnection* next = c->next;  // closeIfIdle may unlink c
    c->closeIfIdle(now);
    c = next;
  }
}

void Worker::closeAll() {
  for (ClientConnection* c = connections_; c;) {
    ClientConnection* next = c->next;
    c->closeNow();
    c = next;
  }
}

SharedLinks& Worker::sharedLinks(const Database& db) {
  SharedLinks& links = shared_links_[&db];
  if (!links.current) refreshSharedLinks(db, links);
  return links;
}

void Worker::refreshSharedLinks(const Database& db, SharedLinks& links) {
  // The generation first: the map loaded after it is at least that new.
  const uint64_t generation = db.shard_map->generation();
  installSharedLinks(db, links, db.shard_map->current());
  links.generation = generation;
}

void Worker::patchSharedLinks(const Database& db, SharedLinks& links, std::shared_ptr<const ShardMap> map) {
  // The generation stays: the database's next map replaces this one.
  installSharedLinks(db, links, std::move(map));
}

void Worker::installSharedLinks(const Database& db, SharedLinks& links, std::shared_ptr<const ShardMap> map) {
  // Links to endpoints the new map keeps carry on, with the requests in
  // flight on them; those to endpoints it dropped retire with the old set.
  auto set = carryOverLinks(
      links.current.get(), map,
      [&](uint16_t shard) { return std::make_shared<BackendLink>(*this, db, map, shard, nullptr); },
      // Every shared link is one this worker made: a BackendLink.
      [&](ShardLink& link, uint16_t shard) { static_cast<BackendLink&>(link).rebind(map, shard); });
  if (links.current) retired_links_.push_back(std::move(links.current));
  links.current = std::move(set);
}

std::unique_ptr<ShardLink> Worker::openPrivateLink(const Database& db,
                                                   std::shared_ptr<const ShardMap> map,
                                                   uint16_t shard, MultiplexSession* owner) {
  return std::make_unique<BackendLink>(*this, db, std::move(map), shard, owner);
}

std::unique_ptr<ShardLink> Worker::openNodeLink(const Database& db, const std::string& address,
                                                uint16_t position, MultiplexSession* owner) {
  auto map = ClusterRedirects::nodeMap(db, address, position);
  if (!map) return nullptr;
  return std::make_unique<BackendLink>(*this, db, std::move(map), position, owner);
}

void Worker::markDirty(BackendLink* link) {
  link->dirty = true;
  dirty_links_.push_back(link);
}

void Worker::forgetLink(BackendLink* link) {
  std::replace(dirty_links_.begin(), dirty_links_.end(), link, static_cast<BackendLink*>(nullptr));
  link->dirty = false;
}

void Worker::markDirty(ClientConnection* c) {
  c->dirty = true;
  dirty_clients_.push_back(c);
}

void Worker::takeBackBuffer(ByteBuffer& from) {
  // A buffer grown by a big reply is not kept; nor more spares than a
  // loop turn with many busy clients needs.
  static constexpr size_t kMaxSpares = 256;
  static constexpr size_t kMaxSpareCapacity = 64 * 1024;
  if (from.capacity() == 0) return;
  if (from.capacity() > kMaxSpareCapacity || spare_buffers_.size() >= kMaxSpares) {
    from.release();
    return;
  }
  from.clear();
  spare_buffers_.emplace_back();
  spare_buffers_.back().swap(from);
}

void Worker::forgetClient(ClientConnection* c) {
  std::replace(dirty_clients_.begin(), dirty_clients_.end(), c,
               static_cast<ClientConnection*>(nullptr));
  c->dirty = false;
}

void Worker::flushDirty() {
  // Writing to a link can fail it, which answers clients; answering a client
  // can let it send more: loop until both lists stay empty. Indexes, not
  // iterators: the lists grow while they are walked.
  while (!dirty_links_.empty() || !dirty_clients_.empty()) {
    for (size_t i = 0; i < dirty_links_.size(); ++i) {
      BackendLink* link = dirty_links_[i];
      if (!link) continue;
      link->dirty = false;
      dirty_links_[i] = nullptr;
      link->flush();
    }
    dirty_links_.clear();
    for (size_t i = 0; i < dirty_clients_.size(); ++i) {
      ClientConnection* c = dirty_clients_[i];
      if (!c) continue;
      c->dirty = false;
      dirty_clients_[i] = nullptr;
      c->flushReplies();
    }
    dirty_clients_.clear();
  }
}

void Worker::startDeadline(Deadline<ClientConnection>& d, DeadlineKind kind, uint64_t ms) {
  const uint64_t due = uv_now(&loop_) + ms;
  (kind == DeadlineKind::kHandshake ? handshake_deadlines_ : flush_deadlines_).add(d, due);
  // Only an earlier deadline than the one armed moves the timer.
  if (deadline_armed_ms_ == 0 || due < deadline_armed_ms_) armDeadlineTimer();
}

void Worker::armDeadlineTimer() {
  if (handles_closed_) return;  // the last connection closed while draining
  uint64_t due = 0;
  for (const auto* list : {&handshake_deadlines_, &flush_deadlines_}) {
    if (const auto* d = list->front(); d && (due == 0 || d->due_ms < due)) due = d->due_ms;
  }
  deadline_armed_ms_ = due;
  if (due == 0) {
    uv_timer_stop(&deadline_timer_);
    return;
  }
  const uint64_t now = uv_now(&loop_);
  uv_timer_start(&deadline_timer_, [](uv_timer_t* t) { static_cast<Worker*>(t->data)->onDeadlineTimer(); },
                 due > now ? due - now : 0, 0);
}

void Worker::onDeadlineTimer() {
  const uint64_t now = uv_now(&loop_);
  // A connection's deadline callback closes it, which takes it off its
  // list: the front is read again each time.
  for (auto* list : {&handshake_deadlines_, &flush_deadlines_}) {
    while (Deadline<ClientConnection>* d = list->front()) {
      if (d->due_ms > now) break;
      list->remove(*d);
      d->owner().onDeadline();
    }
  }
  armDeadlineTimer();
}

void Worker::upkeep() {
  uint64_t now = uv_now(&loop_);
  for (ClientConnection* c = connections_; c; c = c->next) c->closeIdleLinks(now);
  cluster_redirects_.closeIdleExtraLinks(now);
  // A replaced shard map's links: kept while a session routes by them or a
  // request waits on them. A link the newer map reuses lives on there,
  // whatever it carries.
  std::erase_if(retired_links_, [](const std::shared_ptr<SharedLinkSet>& set) {
    if (set.use_count() > 1) return false;
    for (const auto& link : set->links) {
      if (link.use_count() == 1 && !link->idle()) return false;
    }
    return true;
  });
}

void Worker::maybeFinish() {
  if (connection_count_ > 0 || handles_closed_) return;
  handles_closed_ = true;
  cluster_redirects_.close();
  shared_links_.clear();  // their sockets and timers close in the background
  retired_links_.clear();
  dirty_links_.clear();
  uv_close(asHandle(&flush_check_), nullptr);
  uv_close(asHandle(&flush_prepare_), nullptr);
  uv_close(asHandle(&upkeep_timer_), nullptr);
  uv_close(asHandle(&deadline_timer_), nullptr);
  uv_close(asHandle(&wake_), nullptr);
  uv_close(asHandle(&drain_timer_), nullptr);
  uv_close(asHandle(&sweep_timer_), nullptr);
  log_flusher_.stop();  // the counts still held back are written now
}

std::shared_ptr<tls::ResumptionSlot> Worker::resumptionSlot(const ShardTls& shard) {
  auto& slot = resumption_slots_[&shard];
  if (!slot) slot = std::make_shared<tls::ResumptionSlot>();
  return slot;
}

}  // namespace shardgate::proxy
