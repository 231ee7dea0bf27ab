#include "proxy/listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "proxy/client_connection.h"
#include "common/rate_limited_log.h"
#include "common/uv_handle.h"
#include "proxy/worker.h"

namespace shardgate::proxy {

namespace {

constexpr int kBacklog = 1024;

Result<int> makeSocket(const sockaddr_storage& ss, bool reuse_port, const std::string& name) {
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return makeError(name + ": cannot create socket: " + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    int err = errno;
    ::close(fd);
    return makeError(name + ": cannot set SO_REUSEPORT: " + std::strerror(err));
  }
  if (ss.ss_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  socklen_t len = ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
    int err = errno;
    ::close(fd);
    return makeError(name + ": cannot bind: " + std::strerror(err));
  }
  return fd;
}

}  // namespace

Result<int> bindListenSocket(const net::SocketAddress& address) {
  auto ss = toSockaddr(address);
  if (!ss) return makeError(address.toString() + ": " + ss.message());
  // SO_REUSEPORT would let us share the port with another running process
  // (a second shardgate, a stale test) and silently split its traffic. A probe
  // bound without it fails if anyone else holds the address.
  if (address.port != 0) {
    auto probe = makeSocket(*ss, false, address.toString());
    if (!probe) return probe;
    ::close(*probe);
  }
  return makeSocket(*ss, true, address.toString());
}

Result<uint16_t> boundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return makeError(std::string("cannot read the bound port: ") + std::strerror(errno));
  }
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

Result<Listener*> Listener::start(Worker& worker, const Database& db, int fd) {
  if (::listen(fd, kBacklog) != 0) {
    int err = errno;
    ::close(fd);
    return makeError(db.listen + ": cannot listen: " + std::strerror(err));
  }
  // Accepted sockets inherit TCP_NODELAY from the listening one (Linux), so
  // no connection needs a setsockopt of its own: requests and replies are
  // small and must not wait for Nagle.
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto* self = new Listener(worker, db, fd);
  if (int rc = uv_poll_init(worker.loop(), &self->poll_, fd); rc != 0) {
    ::close(fd);
    delete self;
    return makeError(db.listen + ": cannot watch the listening socket: " + uv_strerror(rc));
  }
  uv_timer_init(worker.loop(), &self->retry_timer_);
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
      ClientConnection::accept(worker_, db_, fd);
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
        if (auto pass = aborted.admit(uv_now(worker_.loop()))) {
          spdlog::debug("{}: accept: {}{}", db_.listen, std::strerror(errno), pass);
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
  worker_.listenerPaused();
  static thread_local RateLimitedLog failed(spdlog::level::warn, "failed accepts");
  if (auto pass = failed.admit(uv_now(worker_.loop()))) {
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
                 db_.listen, std::strerror(err), why, kRetryMs, pass);
  }
}

void Listener::resume() {
  if (!paused_ || closing_) return;
  paused_ = false;
  uv_timer_stop(&retry_timer_);
  uv_poll_start(&poll_, UV_READABLE, &Listener::onReadable);
}

}  // namespace shardgate::proxy
