#include "net/listen_socket.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace shardgate::net {

namespace {

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

}  // namespace shardgate::net
