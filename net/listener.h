// Listener: one listening socket on one loop, handing each accepted socket
// to its handler. Every worker binds its own socket to the same address
// with SO_REUSEPORT (listen_socket.h), so the kernel spreads new
// connections across workers and no accept lock is shared.
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
//   readable ─► accept4 ×≤kAcceptBatch ─► AcceptHandler::onAccepted(fd)
//                  │ EMFILE/ENFILE
//                  ▼
//               paused ──(kRetryMs, or resume(): a connection of the loop closed)──► polling again
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "common/result.h"

namespace shardgate::net {

class AcceptHandler {
 public:
  virtual ~AcceptHandler() = default;
  // fd: an accepted non-blocking socket, the handler's from here on.
  virtual void onAccepted(int fd) = 0;
  // Accepting paused for want of descriptors: call resume() on the
  // listener when one is given back (a connection closed).
  virtual void onAcceptPaused() {}
};

class Listener {
 public:
  // How long a listener that ran out of descriptors waits before it tries again.
  static constexpr uint64_t kRetryMs = 100;
  // Connections accepted per readiness event at most, so one busy listener
  // returns to the loop (its timers, its other sockets) between batches.
  static constexpr int kAcceptBatch = 64;

  // Listens on fd and takes ownership of it; name ("127.0.0.1:6380") is for
  // log lines. handler must outlive close(). The Listener frees itself after close().
  static Result<Listener*> start(uv_loop_t* loop, int fd, std::string name, AcceptHandler& handler);
  // Stops accepting at once (the socket is closed here); frees itself later.
  void close();

  // A descriptor was given back on this loop: a paused listener polls again.
  void resume();
  bool paused() const { return paused_; }

 private:
  Listener(uv_loop_t* loop, int fd, std::string name, AcceptHandler& handler)
      : loop_(loop), fd_(fd), name_(std::move(name)), handler_(handler) {}
  static void onReadable(uv_poll_t* poll, int status, int events);
  void acceptBatch();
  void pause(int err);

  uv_loop_t* loop_;
  int fd_;
  std::string name_;
  AcceptHandler& handler_;
  uv_poll_t poll_{};
  uv_timer_t retry_timer_{};
  int open_handles_ = 0;
  bool paused_ = false;
  bool closing_ = false;
};

}  // namespace shardgate::net
