#include "proxy/listener.h"

#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proxy/client_connection.h"
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

Result<int> bindListenSocket(const SocketAddress& address) {
  auto ss = toSockaddr(address);
  if (!ss) return makeError(address.toString() + ": " + ss.message());
  // SO_REUSEPORT would let us share the port with another running process
  // (a second shardgate, a stale test) and silently split its traffic. A probe
  // bound without it fails if anyone else holds the address.
  auto probe = makeSocket(*ss, false, address.toString());
  if (!probe) return probe;
  ::close(*probe);
  return makeSocket(*ss, true, address.toString());
}

Result<Listener*> Listener::start(Worker& worker, const Database& db, int fd) {
  auto* self = new Listener(worker, db);
  uv_tcp_init(worker.loop(), &self->handle_);
  self->handle_.data = self;
  int rc = uv_tcp_open(&self->handle_, fd);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&self->handle_), kBacklog,
                              &Listener::onConnection);
  if (rc != 0) {
    self->close();
    return makeError(db.listen + ": cannot listen: " + uv_strerror(rc));
  }
  return self;
}

void Listener::close() {
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_),
           [](uv_handle_t* h) { delete static_cast<Listener*>(h->data); });
}

void Listener::onConnection(uv_stream_t* server, int status) {
  auto* self = static_cast<Listener*>(server->data);
  if (status < 0) {
    spdlog::warn("{}: accept failed: {}", self->db_.listen, uv_strerror(status));
    return;
  }
  ClientConnection::accept(self->worker_, self->db_, server);
}

}  // namespace shardgate::proxy
