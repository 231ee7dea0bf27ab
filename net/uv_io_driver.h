// UvIoDriver: the libuv IoDriver. Its streams are TcpStreams on the
// worker's loop; it lends them its one read buffer (see io_driver.h for
// what a batched backend would do instead).
#pragma once

#include <uv.h>

#include <memory>

#include "net/io_driver.h"

namespace shardgate::net {

class UvIoDriver final : public IoDriver {
 public:
  static constexpr unsigned kReadBufferSize = 64 * 1024;

  // loop may still be uninitialized; it is used from the first stream on.
  explicit UvIoDriver(uv_loop_t* loop) : loop_(loop), read_buf_(new char[kReadBufferSize]) {}

  int adopt(int fd, StreamOwner* owner, Stream** out) override;
  int connect(const sockaddr& addr, StreamOwner* owner, const ConnectOptions& options,
              Stream** out) override;

  uv_loop_t* loop() const { return loop_; }
  // Every read of this loop lands here: it is consumed before the read
  // callback returns, so streams share it.
  uv_buf_t readBuffer() { return uv_buf_init(read_buf_.get(), kReadBufferSize); }

 private:
  uv_loop_t* loop_;
  std::unique_ptr<char[]> read_buf_;
};

}  // namespace shardgate::net
