// SharedSnapshot<T>: an immutable T that a writer replaces whole and any
// thread copies. A copy is a pointer and a reference count taken under a
// mutex held for just that: nothing is ever done with the T under the lock,
// so it is never held across a handshake or any crypto, and a reader that
// copied the old T keeps it alive until it lets go.
//
// Not std::atomic<std::shared_ptr<T>>: libstdc++ 12 releases that type's
// internal lock after load() with a relaxed store (bits/shared_ptr_atomic.h,
// _Sp_atomic::load), which leaves a load's read of the pointer unordered with
// the next store's write. That is a data race by the C++ memory model, and
// ThreadSanitizer reports it between a certificate publish and a worker's
// accept. A mutex is correct on every standard library; it is taken once per
// accepted connection or per handshake, never per request.
#pragma once

#include <memory>
#include <mutex>
#include <utility>

namespace shardgate {

template <typename T>
class SharedSnapshot {
 public:
  std::shared_ptr<const T> load() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return value_;
  }

  void store(std::shared_ptr<const T> value) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      value_.swap(value);
    }
    // `value` now holds the old T. Released here, outside the lock: if this
    // was its last reference, its destructor (SSL_CTX_free) does not delay
    // the readers.
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const T> value_;
};

}  // namespace shardgate
