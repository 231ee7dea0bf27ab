#include "net/listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/rate_limited_log.h"
#include "common/uv_handle.h"

namespace shardgate::net {

namespace {
constexpr int kBacklog = 1024;
}  // namespace


Result<Listener*> Listener::start(uv_loop_t* loop, int fd, std::string name, AcceptHandler& handler) {
  if (::listen(fd, kBacklog) != 0) {
    int err = errno;
    ::close(fd);
    return makeError(name + ": cannot listen: " + std::strerror(err));
  }
  // Accepted sockets inherit TCP_NODELAY from the listening one (Linux), so
  // no connection needs a setsockopt of its own: requests and replies are
  // small and must not wait for Nagle.
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto* self = new Listener(loop, fd, std::move(name), handler);
  if (int rc = uv_poll_init(loop, &self->poll_, fd); rc != 0) {
    ::close(fd);
    std::string what = self->name_;
    delete self;
    return makeError(what + ": cannot watch the listening socket: " + uv_strerror(rc));
  }
  uv_timer_init(loop, &self->retry_timer_);
  self->poll_.data = self->retry_timer_.data = self;
  self->open_handles_ = 2;
  uv_poll_start(&self->poll_, UV_READABLE, &Listener::onReadable);
  return self;
}

void Listener::close() {
  if (closing_) return;
  closing_ = true;
  auto on_closed = [](uv_handle_t* h) {
    auto* self = static_cast<Listener*>(h->data);
    if (--self->open_handles_ == 0) delete self;
  };
  uv_close(asHandle(&poll_), on_closed);
  uv_close(asHandle(&retry_timer_), on_closed);
  // The poll handle is stopped and out of epoll by now: close the socket at
  // once, so no new connection queues on a worker that no longer accepts.
  ::close(fd_);
  fd_ = -1;
}

void Listener::onReadable(uv_poll_t* poll, int status, int) {
  auto* self = static_cast<Listener*>(poll->data);
  if (self->closing_ || self->paused_) return;
  if (status < 0) {
    self->pause(-status);
    return;
  }
  self->acceptBatch();
}

void Listener::acceptBatch() {
  // The same call and flags as libuv's accept; the socket goes to its
  // connection with uv_tcp_open.
  for (int n = 0; n < kAcceptBatch; ++n) {
    int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      handler_.onAccepted(fd);
      if (closing_) return;  // the handler closed us
      continue;
    }
    switch (errno) {
      case EAGAIN:
        return;
      // The connection failed before we took it, or a pending network error
      // is reported on it (accept(2), "Error handling"): the next one may be fine.
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case EPERM:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case EOPNOTSUPP:
      case ENETUNREACH: {
        static thread_local RateLimitedLog aborted(spdlog::level::debug, "connections lost before accept");
        if (auto pass = aborted.admit(uv_now(loop_))) {
          spdlog::debug("{}: accept: {}{}", name_, std::strerror(errno), pass);
        }
        continue;
      }
      default:
        // Out of descriptors (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM),
        // or something unexpected: retrying now would fail the same way.
        pause(errno);
        return;
    }
  }
}

void Listener::pause(int err) {
  paused_ = true;
  uv_poll_stop(&poll_);
  uv_timer_start(&retry_timer_, [](uv_timer_t* t) { static_cast<Listener*>(t->data)->resume(); },
                 kRetryMs, 0);
  handler_.onAcceptPaused();
  static thread_local RateLimitedLog failed(spdlog::level::warn, "failed accepts");
  if (auto pass = failed.admit(uv_now(loop_))) {
    std::string why;
    if (err == EMFILE) {
      rlimit lim{};
      ::getrlimit(RLIMIT_NOFILE, &lim);
      why = fmt::format(" (the open-file limit, {}, is reached: see the start-up line about how many "
                        "clients fit)", lim.rlim_cur);
    } else if (err == ENFILE) {
      why = " (the system-wide limit fs.file-max is reached)";
    }
    spdlog::warn("{}: accept failed: {}{}; accepting again when a connection closes, or in {} ms{}",
                 name_, std::strerror(err), why, kRetryMs, pass);
  }
}

void Listener::resume() {
  if (!paused_ || closing_) return;
  paused_ = false;
  uv_timer_stop(&retry_timer_);
  uv_poll_start(&poll_, UV_READABLE, &Listener::onReadable);
}

}  // namespace shardgate::net
