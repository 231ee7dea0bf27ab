// IoDriver: what moves a loop's bytes between sockets and streams. A worker
// has one; every plain stream comes from it (adopt an accepted socket,
// connect to a shard), and TLS streams are layered on those. Layers above
// see only Stream and StreamOwner, so the driver can change under them.
//
// Today's driver is libuv (UvIoDriver): one readiness event and one read or
// write syscall per socket. A batched submission backend (io_uring) plugs in
// as a second driver with its own plain stream:
//   - adopt()/connect() return its stream; write() appends a send to the
//     ring's submission queue instead of calling uv_try_write/uv_write, and
//     setReading(true) arms a multishot receive into a provided-buffer ring
//     (the equivalent of readBuffer() lending: no stream holds read memory
//     while idle);
//   - the submissions of one loop turn go to the kernel in one
//     io_uring_enter at the end of the turn (where the worker already
//     flushes its dirty links and clients), and completions are read back
//     in one pass, each one turned into the same StreamOwner callbacks;
//   - close() cancels what is in flight and frees the stream on the last
//     completion, as a libuv handle is freed in its close callback.
// TlsStream, ClientConnection and BackendLink do not change: they already
// write once per batch and are told of data, drain and end by callback.
#pragma once

#include <sys/socket.h>

#include "common/byte_buffer.h"
#include "net/stream.h"

namespace shardgate::net {

struct ConnectOptions {
  // TCP keepalive probes after this many idle seconds (0: off), so a peer
  // that vanished without a FIN or RST is noticed by the kernel.
  unsigned keepalive_s = 0;
};

class IoDriver {
 public:
  virtual ~IoDriver() = default;

  // Wraps fd, a connected non-blocking socket, owned from here on (closed
  // on failure). Returns 0 and the stream, or a libuv error.
  virtual int adopt(int fd, StreamOwner* owner, Stream** out) = 0;
  // Starts connecting; the result arrives as owner->onStreamConnected().
  // Returns 0 and the stream, or a libuv error (then no stream exists and
  // the owner hears nothing).
  virtual int connect(const sockaddr& addr, StreamOwner* owner, const ConnectOptions& options,
                      Stream** out) = 0;

  // Scratch space for TLS streams of this loop: used within one call and
  // left empty, so one pair serves every stream of the thread.
  ByteBuffer& plainScratch() { return plain_scratch_; }
  ByteBuffer& cipherScratch() { return cipher_scratch_; }

 private:
  ByteBuffer plain_scratch_;
  ByteBuffer cipher_scratch_;
};

}  // namespace shardgate::net
