#include "common/rate_limited_log.h"

#include <algorithm>

#include "common/uv_handle.h"

namespace shardgate {

namespace {
// The flusher of the loop running on this thread, if any.
thread_local RateLimitedLogFlusher* t_flusher = nullptr;
}  // namespace

void RateLimitedLog::holdBackFirst(uint64_t now_ms) {
  if (t_flusher) t_flusher->watch(this, now_ms);
}

void RateLimitedLogFlusher::start(uv_loop_t* loop) {
  loop_ = loop;
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  t_flusher = this;
}

void RateLimitedLogFlusher::stop() {
  if (!loop_) return;
  for (RateLimitedLog* site = pending_; site;) {
    RateLimitedLog* next = site->next_pending_;
    if (site->held_back_ > 0) writeCount(*site);
    site->pending_ = false;
    site->next_pending_ = nullptr;
    site = next;
  }
  pending_ = nullptr;
  uv_close(asHandle(&timer_), nullptr);
  if (t_flusher == this) t_flusher = nullptr;
  loop_ = nullptr;
}

void RateLimitedLogFlusher::watch(RateLimitedLog* site, uint64_t now_ms) {
  site->pending_ = true;
  site->next_pending_ = pending_;
  pending_ = site;
  uint64_t in = dueMs(*site) - now_ms;
  if (!uv_is_active(asHandle(&timer_)) || uv_timer_get_due_in(&timer_) > in) {
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<RateLimitedLogFlusher*>(t->data)->onTimer(); },
                   in, 0);
  }
}

void RateLimitedLogFlusher::onTimer() {
  // A site's count is written here only when no line of its own carried it
  // for a whole further interval: while events keep coming, the lines that
  // pass carry the counts, and each second shows a real event.
  uint64_t now = uv_now(loop_);
  uint64_t next_due = UINT64_MAX;
  RateLimitedLog* still = nullptr;
  for (RateLimitedLog* site = pending_; site;) {
    RateLimitedLog* next = site->next_pending_;
    if (site->held_back_ > 0 && now < dueMs(*site)) {
      site->next_pending_ = still;
      still = site;
      next_due = std::min(next_due, dueMs(*site));
    } else {
      if (site->held_back_ > 0) writeCount(*site);
      site->pending_ = false;
      site->next_pending_ = nullptr;
    }
    site = next;
  }
  pending_ = still;
  if (still) {
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<RateLimitedLogFlusher*>(t->data)->onTimer(); },
                   next_due - now, 0);
  }
}

void RateLimitedLogFlusher::writeCount(RateLimitedLog& site) {
  spdlog::log(site.level_, "{}: {} more since the last line", site.what_, site.held_back_);
  site.written_ = true;
  site.last_line_ms_ = uv_now(loop_);
  site.held_back_ = 0;
}

}  // namespace shardgate
