// tls_floor_server: the least a TLS endpoint can do per connection, for
// bench/run's handshake floor. One thread, blocking sockets, no event loop,
// no backend: accept, complete the handshake through tls/ (the same
// TlsContext and TlsSession shardgate uses), answer one read with nothing,
// close. Its CPU per handshake is what the TLS layer costs on this machine;
// the rest of shardgate's figure is the proxy around it.
//   tls_floor_server CERT_DIR PORT
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench/floor/floor_context.h"
#include "tls/tls_session.h"

using namespace shardgate;

static void serve(int fd, const tls::TlsContextPtr& ctx) {
  auto session = tls::TlsSession::create(ctx, tls::TlsSession::Role::kServer);
  ByteBuffer plain, cipher;
  uint8_t buf[16384];
  while (session && session->state() == tls::TlsSession::State::kHandshaking) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return;
    session->feed(buf, static_cast<size_t>(n), plain, cipher);
    if (!cipher.empty()) {
      if (::write(fd, cipher.data(), cipher.size()) < 0) return;
      cipher.clear();
    }
  }
  // s_time closes right after the handshake; read its close_notify or EOF.
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

int main(int argc, char** argv) {
  tls::TlsContextPtr ctx = bench::contextFromArgs(argc, argv, "tls_floor_server");
  if (!ctx) return 1;
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(lfd, 1024) != 0) {
    std::perror("bind/listen");
    return 1;
  }
  for (;;) {
    int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) continue;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    serve(fd, ctx);
    ::close(fd);
  }
}
