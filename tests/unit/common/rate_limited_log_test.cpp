#include "common/rate_limited_log.h"

#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <uv.h>

#include <memory>
#include <sstream>
#include <string>

using shardgate::RateLimitedLog;
using shardgate::RateLimitedLogFlusher;

namespace {

// Routes the default logger into a string for the test's lifetime.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out_);
    auto logger = std::make_shared<spdlog::logger>("captured", sink);
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

}  // namespace

TEST_CASE("RateLimitedLog: one line an interval, the next carries the count") {
  CapturedLog log;
  RateLimitedLog site(spdlog::level::warn, "test events", 1000);
  auto first = site.admit(5000);
  CHECK(first);
  CHECK(first.held_back == 0);
  CHECK_FALSE(site.admit(5001));
  CHECK_FALSE(site.admit(5999));
  CHECK(site.heldBack() == 2);
  auto next = site.admit(6000);
  CHECK(next);
  CHECK(next.held_back == 2);
  CHECK(site.heldBack() == 0);
  CHECK_FALSE(site.admit(6999));
}

TEST_CASE("RateLimitedLog: the first event passes whatever the clock says") {
  CapturedLog log;
  RateLimitedLog site(spdlog::level::warn, "test events", 1000);
  CHECK(site.admit(0));
  CHECK_FALSE(site.admit(10));
}

TEST_CASE("RateLimitedLog: a level that is not logged counts nothing") {
  CapturedLog log;  // level info
  RateLimitedLog site(spdlog::level::debug, "test events", 1000);
  CHECK_FALSE(site.admit(1));
  CHECK_FALSE(site.admit(2));
  CHECK(site.heldBack() == 0);
}

TEST_CASE("RateLimitedLog::Pass formats as the line's suffix") {
  CHECK(fmt::format("x{}", RateLimitedLog::Pass{true, 0}) == "x");
  CHECK(fmt::format("x{}", RateLimitedLog::Pass{true, 3}) == "x (3 more since the last line)");
}

TEST_CASE("RateLimitedLogFlusher: a count no line carried is written after a quiet interval") {
  CapturedLog log;
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  RateLimitedLogFlusher flusher;
  flusher.start(&loop);
  RateLimitedLog site(spdlog::level::warn, "test events", 20);
  uv_update_time(&loop);
  uint64_t t0 = uv_now(&loop);
  REQUIRE(site.admit(t0));
  for (int i = 0; i < 5; ++i) CHECK_FALSE(site.admit(t0 + 1));
  CHECK(log.text().empty());

  uv_run(&loop, UV_RUN_DEFAULT);  // returns once the flusher's timer has nothing left to watch
  CHECK(uv_now(&loop) - t0 >= 40);  // two intervals after the last line
  CHECK(log.text() == "test events: 5 more since the last line\n");
  CHECK(site.heldBack() == 0);
  // The count line is this interval's line: the next event waits for the next.
  CHECK_FALSE(site.admit(uv_now(&loop)));

  flusher.stop();  // writes what is still held back
  CHECK(log.text() == "test events: 5 more since the last line\ntest events: 1 more since the last line\n");
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("RateLimitedLogFlusher: writes nothing when the next line carried the count") {
  CapturedLog log;
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  RateLimitedLogFlusher flusher;
  flusher.start(&loop);
  RateLimitedLog site(spdlog::level::warn, "test events", 20);
  uv_update_time(&loop);
  uint64_t t0 = uv_now(&loop);
  REQUIRE(site.admit(t0));
  CHECK_FALSE(site.admit(t0 + 1));
  auto carried = site.admit(t0 + 20);
  CHECK(carried);
  CHECK(carried.held_back == 1);

  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(log.text().empty());
  flusher.stop();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("RateLimitedLog: call sites are counted apart") {
  CapturedLog log;
  RateLimitedLog a(spdlog::level::warn, "a", 1000);
  RateLimitedLog b(spdlog::level::warn, "b", 1000);
  CHECK(a.admit(100));
  CHECK(b.admit(100));
  CHECK_FALSE(a.admit(200));
  CHECK(a.heldBack() == 1);
  CHECK(b.heldBack() == 0);
}
