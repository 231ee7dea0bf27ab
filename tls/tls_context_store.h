// TlsContextStore: the one place the current server context is published.
// The control thread builds a context whole, then publish() swaps it in;
// workers take current() once per accepted connection, never per request.
// The swap cannot fail, and an old context lives on in the sessions that
// hold it until the last of them closes (DESIGN.md, rule 3).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "tls/tls_context.h"

namespace shardgate::tls {

class TlsContextStore {
 public:
  TlsContextPtr current() const { return current_.load(std::memory_order_acquire); }
  void publish(TlsContextPtr ctx) { current_.store(std::move(ctx), std::memory_order_release); }
  // The generation the next built context should carry.
  uint64_t nextGeneration() { return next_generation_.fetch_add(1) + 1; }

 private:
  std::atomic<TlsContextPtr> current_;
  std::atomic<uint64_t> next_generation_{0};
};

}  // namespace shardgate::tls
