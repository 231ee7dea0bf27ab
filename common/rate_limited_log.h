// RateLimitedLog: at most one log line a second for one kind of event (one
// call site) on one thread, and the count of the events it did not log. An
// event on the data path (a failed accept, a refused shard connection) can
// happen thousands of times a second; the log must not grow with it.
//
//   static thread_local RateLimitedLog refused(spdlog::level::warn, "refused shard connections");
//   if (auto pass = refused.admit(uv_now(loop))) {
//     spdlog::warn("db {}: shard {} unavailable: {}{}", name, shard, why, pass);
//   }
//
// The line that passes carries " (N more since the last line)" when events
// were held back. If no later event comes to carry the count, the thread's
// RateLimitedLogFlusher writes "<what>: N more since the last line" once the
// site has been quiet for a further interval, so no count is lost.
//
// One limiter per call site, `static thread_local`: a worker is one thread, so
// the state is the worker's own, with no lock. Holding an event back is a
// compare and an increment: no allocation, no syscall, and the line's
// arguments are not even evaluated. Time is the event loop's (uv_now).
#pragma once

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <cstdint>
#include <string_view>

namespace shardgate {

class RateLimitedLogFlusher;

class RateLimitedLog {
 public:
  static constexpr uint64_t kIntervalMs = 1000;

  // What admit() answers: whether to write the line, and how many events
  // were held back since the previous line (formatted as the line's suffix).
  struct Pass {
    bool write = false;
    uint64_t held_back = 0;
    explicit operator bool() const { return write; }
  };

  // what: the events, as the count line names them ("refused shard connections").
  constexpr RateLimitedLog(spdlog::level::level_enum level, std::string_view what,
                           uint64_t interval_ms = kIntervalMs)
      : level_(level), what_(what), interval_ms_(interval_ms) {}

  // One event at loop time now_ms: write its line if the answer says so.
  // Nothing is counted while the level is not logged.
  Pass admit(uint64_t now_ms) {
    if (!spdlog::should_log(level_)) return {};
    if (written_ && now_ms - last_line_ms_ < interval_ms_) {
      if (held_back_++ == 0 && !pending_) holdBackFirst(now_ms);
      return {};
    }
    Pass pass{true, held_back_};
    written_ = true;
    last_line_ms_ = now_ms;
    held_back_ = 0;
    return pass;
  }

  uint64_t heldBack() const { return held_back_; }

 private:
  friend class RateLimitedLogFlusher;
  void holdBackFirst(uint64_t now_ms);  // asks the thread's flusher to watch this site

  spdlog::level::level_enum level_;
  std::string_view what_;
  uint64_t interval_ms_;
  uint64_t last_line_ms_ = 0;
  uint64_t held_back_ = 0;
  bool written_ = false;
  bool pending_ = false;                    // on the flusher's list
  RateLimitedLog* next_pending_ = nullptr;  // intrusive: no allocation to list a site
};

// One per event-loop thread (each worker has one): writes the counts that no
// later line carried. Its timer runs only while some site holds events back.
class RateLimitedLogFlusher {
 public:
  RateLimitedLogFlusher() = default;
  RateLimitedLogFlusher(const RateLimitedLogFlusher&) = delete;
  RateLimitedLogFlusher& operator=(const RateLimitedLogFlusher&) = delete;

  // On the thread that runs loop, before it runs: this thread's limiters
  // report to this flusher from now on.
  void start(uv_loop_t* loop);
  // Writes every count still held back, closes the timer (freed with the
  // loop's last turn) and detaches from the thread. Idempotent.
  void stop();

 private:
  friend class RateLimitedLog;
  void watch(RateLimitedLog* site, uint64_t now_ms);
  void onTimer();
  void writeCount(RateLimitedLog& site);
  static uint64_t dueMs(const RateLimitedLog& site) { return site.last_line_ms_ + 2 * site.interval_ms_; }

  uv_loop_t* loop_ = nullptr;
  uv_timer_t timer_{};
  RateLimitedLog* pending_ = nullptr;
};

}  // namespace shardgate

// " (N more since the last line)", or nothing when no event was held back.
template <>
struct fmt::formatter<shardgate::RateLimitedLog::Pass> {
  constexpr auto parse(format_parse_context& ctx) { return ctx.begin(); }
  template <typename Ctx>
  auto format(const shardgate::RateLimitedLog::Pass& p, Ctx& ctx) const {
    if (p.held_back == 0) return ctx.out();
    return fmt::format_to(ctx.out(), " ({} more since the last line)", p.held_back);
  }
};
