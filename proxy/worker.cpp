#include "proxy/worker.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "proxy/client_connection.h"

namespace shardgate::proxy {

namespace {
// How often a draining worker looks for connections that went idle.
constexpr uint64_t kSweepIntervalMs = 50;

template <typename T>
uv_handle_t* asHandle(T* h) { return reinterpret_cast<uv_handle_t*>(h); }
}  // namespace

Worker::Worker(unsigned index, tls::TlsContextStore& tls_store, WorkerSettings settings)
    : index_(index), tls_store_(tls_store), settings_(settings), read_buf_(new char[kReadBufferSize]) {}

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
  for (auto& b : bindings) {
    auto listener = Listener::start(*this, *b.db, b.fd);
    if (!listener) {
      // Listener::start closed the fd; the loop is not running yet, so close
      // what was opened and let run() finish at once.
      for (auto* l : listeners_) l->close();
      listeners_.clear();
      drain_requested_ = true;
      thread_ = std::thread([this] { run(); });
      return makeError(listener.message());
    }
    listeners_.push_back(*listener);
  }
  thread_ = std::thread([this] { run(); });
  return {};
}

void Worker::run() {
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

void Worker::auditLog(const std::string& listen, const std::string& peer, std::string_view proto,
                      tls::TlsVersion audit) {
  uint64_t now = uv_now(&loop_);
  if (audit_logged_ms_ != 0 && now - audit_logged_ms_ < 1000) {
    ++audit_suppressed_;
    return;
  }
  spdlog::debug("{}: audit: {} negotiated {}, below tls.audit_min_version {}{}", listen, peer, proto,
                tls::toString(audit),
                audit_suppressed_ ? fmt::format(" ({} more since the last line)", audit_suppressed_) : "");
  audit_logged_ms_ = now;
  audit_suppressed_ = 0;
}

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
  if (draining_) maybeFinish();
}

void Worker::beginDrain() {
  if (draining_) return;
  draining_ = true;
  for (auto* l : listeners_) l->close();
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

void Worker::maybeFinish() {
  if (connection_count_ > 0 || handles_closed_) return;
  handles_closed_ = true;
  uv_close(asHandle(&wake_), nullptr);
  uv_close(asHandle(&drain_timer_), nullptr);
  uv_close(asHandle(&sweep_timer_), nullptr);
}

}  // namespace shardgate::proxy
