// Listening sockets and the Listener: the port the kernel picked, an
// address another socket holds, and every accepted socket reaching the
// handler.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/net/loop_fixture.h"

using namespace shardgate;
using namespace shardgate::net;
using namespace shardgate::net::testing;

namespace {

struct Counting : AcceptHandler {
  int accepted = 0;
  void onAccepted(int fd) override {
    ++accepted;
    ::close(fd);
  }
};

int connectTo(uint16_t port) {
  auto addr = parseSocketAddress("127.0.0.1:" + std::to_string(port));
  auto ss = toSockaddr(*addr);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&*ss), sizeof(sockaddr_in)) == 0);
  return fd;
}

}  // namespace

TEST_CASE("bindListenSocket: port 0 gets a free port; a held address is refused, named") {
  LoopFixture f;
  uint16_t port = f.listen();
  CHECK(port != 0);
  auto again = bindListenSocket(*parseSocketAddress("127.0.0.1:" + std::to_string(port)));
  REQUIRE_FALSE(again.ok());
  CHECK(again.message().find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  CHECK(again.message().find("bind") != std::string::npos);
}

TEST_CASE("toSockaddr: IPv4 and IPv6 literals") {
  auto v4 = toSockaddr(*parseSocketAddress("127.0.0.1:6380"));
  REQUIRE(v4.ok());
  CHECK(v4->ss_family == AF_INET);
  auto v6 = toSockaddr(*parseSocketAddress("[::1]:6380"));
  REQUIRE(v6.ok());
  CHECK(v6->ss_family == AF_INET6);
}

TEST_CASE("Listener: every connection reaches the handler") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  auto fd = bindListenSocket(*parseSocketAddress("127.0.0.1:0", true));
  REQUIRE(fd.ok());
  uint16_t port = *boundPort(*fd);
  Counting handler;
  auto listener = Listener::start(&loop, *fd, "127.0.0.1:0", handler);
  REQUIRE(listener.ok());
  std::vector<int> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(connectTo(port));
  for (int i = 0; i < 100 && handler.accepted < 3; ++i) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(handler.accepted == 3);
  CHECK_FALSE((*listener)->paused());
  (*listener)->close();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  for (int c : clients) ::close(c);
}
