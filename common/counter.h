// Counter: a statistic with one writer thread and any number of readers. A
// bump is a relaxed load and store (no lock, no locked instruction), which is
// exact as long as only the owning thread writes.
#pragma once

#include <atomic>
#include <cstdint>

namespace shardgate {

class Counter {
 public:
  void add(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void sub(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
  // A value rather than a count (a timestamp): still one writer.
  void set(uint64_t v) { v_.store(v, std::memory_order_relaxed); }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

}  // namespace shardgate
