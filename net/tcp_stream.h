// TcpStream: a Stream over one libuv TCP handle, the socket side of every
// connection. Reads land in the driver's one read buffer (consumed before
// the read callback returns, so an idle stream holds no read memory);
// writes go through a WriteQueue (a direct uv_try_write first, at most one
// uv_write in flight).
//
// Lifetime: created by UvIoDriver (adopt, connect); freed in the uv_close
// callback that close() starts, and nowhere else. Requests still in flight
// at close (write, connect, shutdown) complete with ECANCELED before that
// callback and find no owner: they are no-ops by design.
#pragma once

#include <uv.h>

#include "net/io_driver.h"
#include "net/stream.h"
#include "net/write_queue.h"

namespace shardgate::net {

class UvIoDriver;

class TcpStream final : public Stream {
 public:
  void setOwner(StreamOwner* owner) override { owner_ = owner; }
  void setReading(bool on) override;
  int write(const uint8_t* data, size_t len) override;
  bool writeIdle() const override { return queue_.idle(); }
  size_t writeQueued() const override { return queue_.queued(); }
  void discardWrites() override { queue_.discard(); }
  int shutdownWrite() override;
  void close(ClosedFn closed = nullptr, void* arg = nullptr) override;
  std::string peerName() const override;
  size_t bytesWaiting() const override;
  void countBytesIn(Counter* counter) override { bytes_in_ = counter; }

 private:
  friend class UvIoDriver;

  TcpStream(UvIoDriver& driver, StreamOwner* owner);
  ~TcpStream() override = default;

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  void applyReading();
  void onConnect(int status);

  static void onAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onDrained(uv_stream_t* stream, int status);

  uv_tcp_t tcp_{};
  UvIoDriver& driver_;
  StreamOwner* owner_;
  Counter* bytes_in_ = nullptr;
  WriteQueue queue_;
  ClosedFn closed_ = nullptr;
  void* closed_arg_ = nullptr;
  unsigned keepalive_s_ = 0;
  bool connecting_ = false;
  bool want_reading_ = false;
  bool reading_ = false;
  bool closing_ = false;
};

}  // namespace shardgate::net
