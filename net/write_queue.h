// WriteQueue: bytes on their way into one socket, at most one uv_write in
// flight (as Node's TLSWrap does). The common case costs no copy and no
// allocation: send() first tries a direct uv_try_write from the caller's
// (worker-owned, reused) buffer, and only what the kernel would not take is
// copied into the queue. While anything is queued the owner stops reading
// from the other side, so the queue stays bounded by one read's worth.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>

#include "common/byte_buffer.h"

namespace shardgate::net {

class WriteQueue {
 public:
  // Called when the queue has fully drained (status 0) or a write failed,
  // with the stream written to: its owner is the handle's data (kept there
  // rather than here, as every socket's queue would repeat it).
  using DoneFn = void (*)(uv_stream_t* stream, int status);

  explicit WriteQueue(DoneFn on_drained) : on_drained_(on_drained) {}
  ~WriteQueue() { delete req_; }
  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;

  // Returns 0, or a libuv error (the socket is broken; the caller closes).
  int send(uv_stream_t* stream, const uint8_t* data, size_t len);
  // Queues without trying the socket (before it is connected).
  void hold(const uint8_t* data, size_t len) { pending_.append(data, len); }
  // Starts writing what hold() queued.
  int flush(uv_stream_t* stream);

  bool idle() const { return !writing_ && pending_.empty(); }
  size_t queued() const { return pending_.size() + inflight_.size(); }
  // Drops queued bytes and gives their memory back (the peer is gone).
  void discard();

 private:
  int startWrite(uv_stream_t* stream);
  static void onWrite(uv_write_t* req, int status);

  DoneFn on_drained_;
  // Only while a write is in flight: most writes complete in uv_try_write,
  // and an idle connection should not carry a request it is not using.
  uv_write_t* req_ = nullptr;
  ByteBuffer pending_;   // appended to while a write is in flight
  ByteBuffer inflight_;  // owned by uv_write until its callback
  bool writing_ = false;
};

}  // namespace shardgate::net
