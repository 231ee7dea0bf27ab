// Listener: one database's listening socket on one worker. Every worker binds
// its own socket to the same address with SO_REUSEPORT, so the kernel spreads
// new connections across workers and no accept lock is shared.
//
// The listener accepts by itself (a uv_poll_t on the socket, accept4 in
// bounded batches) instead of through uv_listen, for the descriptor limit:
// at EMFILE libuv's accept loop closes a reserved descriptor to accept and
// drop the pending connections; when another thread of the process takes the
// freed descriptor first, the reserve is lost and the loop retries accept
// forever without returning to the event loop (libuv src/unix/stream.c,
// uv__server_io and uv__emfile_trick): no timer, no shutdown request, one
// log line per spin. libuv has no call to stop listening for a while. Here, at EMFILE or ENFILE the listener stops
// polling and tries again after kRetryMs, or sooner when a connection of its
// worker closes and gives a descriptor back. New connections wait in the
// kernel's backlog meanwhile; the clients being served are not touched.
//
//   readable ─► accept4 ×≤kAcceptBatch ─► ClientConnection::accept(fd)
//                  │ EMFILE/ENFILE
//                  ▼
//               paused ──(kRetryMs, or a connection of the worker closed)──► polling again
#pragma once

#include <uv.h>

#include "config/config.h"
#include "proxy/database.h"
#include "common/result.h"

namespace shardgate::proxy {

class Worker;

// Creates a socket bound to address with SO_REUSEPORT. Fails when another
// process holds the address, naming the address and the reason.
// Port 0: the kernel picks a free port (no probe needed: nobody holds it);
// boundPort() tells which, for the other workers and the log.
Result<int> bindListenSocket(const net::SocketAddress& address);
Result<uint16_t> boundPort(int fd);

class Listener {
 public:
  // How long a listener that ran out of descriptors waits before it tries again.
  static constexpr uint64_t kRetryMs = 100;
  // Connections accepted per readiness event at most, so one busy listener
  // returns to the loop (its timers, its other sockets) between batches.
  static constexpr int kAcceptBatch = 64;

  // Listens on fd and takes ownership of it. The Listener frees itself after close().
  static Result<Listener*> start(Worker& worker, const Database& db, int fd);
  // Stops accepting at once (the socket is closed here); frees itself later.
  void close();

  // A descriptor was given back on this worker: a paused listener polls again.
  void resume();
  bool paused() const { return paused_; }

 private:
  Listener(Worker& worker, const Database& db, int fd) : worker_(worker), db_(db), fd_(fd) {}
  static void onReadable(uv_poll_t* poll, int status, int events);
  void acceptBatch();
  void pause(int err);

  Worker& worker_;
  const Database& db_;
  int fd_;
  uv_poll_t poll_{};
  uv_timer_t retry_timer_{};
  int open_handles_ = 0;
  bool paused_ = false;
  bool closing_ = false;
};

}  // namespace shardgate::proxy
