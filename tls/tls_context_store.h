// TlsContextStore: the one place a certificate's current server context is
// published (CertStore holds one per named certificate and is the only one
// that publishes). The control thread builds a context whole, then
// publish() swaps it in; workers take current() once per accepted
// connection, never per request. The swap cannot fail, and an old context
// lives on in the sessions that hold it until the last of them closes.
#pragma once

#include <cstdint>
#include <memory>

#include "common/shared_snapshot.h"
#include "tls/tls_context.h"

namespace shardgate::tls {

class TlsContextStore {
 public:
  TlsContextPtr current() const { return current_.load(); }
  void publish(TlsContextPtr ctx) {
    published_generation_ = ctx->generation();
    current_.store(std::move(ctx));
  }
  // No context any more (an optional certificate whose files were removed).
  // Generations keep counting from the last one published.
  void withdraw() { current_.store(nullptr); }
  // The generation the next built context should carry. Only the control
  // thread builds and publishes, and a context that fails to build is never
  // published, so generations count published contexts without gaps.
  uint64_t nextGeneration() const { return published_generation_ + 1; }

 private:
  SharedSnapshot<TlsContext> current_;
  uint64_t published_generation_ = 0;  // control thread only
};

}  // namespace shardgate::tls
