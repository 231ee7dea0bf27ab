// ByteBuffer: one contiguous, growable run of bytes with a read and a write end.
// It is what TlsSession reads from and writes into, and what a connection keeps
// for bytes the socket could not take yet. Memory is held only while bytes are
// (release() gives it back), so an idle connection costs nothing here.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>

namespace shardgate {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ~ByteBuffer() { std::free(data_); }
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ByteBuffer(ByteBuffer&& o) noexcept { swap(o); }
  ByteBuffer& operator=(ByteBuffer&& o) noexcept { swap(o); return *this; }

  uint8_t* data() { return data_ + head_; }
  const uint8_t* data() const { return data_ + head_; }
  size_t size() const { return tail_ - head_; }
  bool empty() const { return tail_ == head_; }
  size_t capacity() const { return cap_; }
  std::string_view view() const {
    return {reinterpret_cast<const char*>(data()), size()};
  }

  // Room for at least n more bytes at the write end; returns where to write.
  uint8_t* prepare(size_t n) {
    if (cap_ - tail_ < n) grow(n);
    return data_ + tail_;
  }
  size_t writable() const { return cap_ - tail_; }
  void commit(size_t n) { tail_ += n; }

  void append(const void* p, size_t n) {
    if (n == 0) return;
    std::memcpy(prepare(n), p, n);
    tail_ += n;
  }
  void append(std::string_view s) { append(s.data(), s.size()); }

  void consume(size_t n) {
    assert(n <= size());
    head_ += n;
    if (head_ >= tail_) head_ = tail_ = 0;
  }
  void clear() { head_ = tail_ = 0; }
  // Gives the memory back; the buffer must be empty.
  void release() {
    assert(empty());
    std::free(data_);
    data_ = nullptr;
    head_ = tail_ = cap_ = 0;
  }
  void swap(ByteBuffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(head_, o.head_);
    std::swap(tail_, o.tail_);
    std::swap(cap_, o.cap_);
  }

 private:
  void grow(size_t n) {
    size_t live = tail_ - head_;
    if (head_ > 0 && cap_ - live >= n && live <= cap_ / 2) {
      // Enough room once the consumed front is dropped.
      std::memmove(data_, data_ + head_, live);
      head_ = 0;
      tail_ = live;
      return;
    }
    size_t want = cap_ ? cap_ : 4096;
    while (want - live < n) want *= 2;
    auto* fresh = static_cast<uint8_t*>(std::malloc(want));
    if (!fresh) throw std::bad_alloc();
    if (live) std::memcpy(fresh, data_ + head_, live);
    std::free(data_);
    data_ = fresh;
    head_ = 0;
    tail_ = live;
    cap_ = want;
  }

  uint8_t* data_ = nullptr;
  size_t head_ = 0;
  size_t tail_ = 0;
  size_t cap_ = 0;
};

}  // namespace shardgate
