#include "server/service_notify.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "tests/unit/temp_dir.h"

using shardgate::server::ServiceNotify;
using shardgate::testing::TempDir;

namespace {

// What systemd does for a Type=notify unit: a datagram socket, named in
// $NOTIFY_SOCKET for the test's lifetime.
struct NotifySocket {
  TempDir dir;
  int fd = -1;
  NotifySocket() {
    fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = dir.path + "/notify";
    REQUIRE(path.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  }
  ~NotifySocket() {
    ::unsetenv("NOTIFY_SOCKET");
    ::close(fd);
  }
  std::string receive() {
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    REQUIRE(n >= 0);
    return std::string(buf, static_cast<size_t>(n));
  }
};

uint64_t nowUsec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

}  // namespace

TEST_CASE("ServiceNotify::message: state lines, then one STATUS= line") {
  CHECK(ServiceNotify::message("READY=1", "") == "READY=1");
  CHECK(ServiceNotify::message("READY=1", "serving db1") == "READY=1\nSTATUS=serving db1");
  CHECK(ServiceNotify::message("", "only status") == "STATUS=only status");
  CHECK(ServiceNotify::message("STOPPING=1", "two\nlines\r") == "STOPPING=1\nSTATUS=two lines ");
  CHECK(ServiceNotify::reloadingMessage(42, "reloading x") ==
        "RELOADING=1\nMONOTONIC_USEC=42\nSTATUS=reloading x");
}

TEST_CASE("ServiceNotify sends READY, RELOADING with MONOTONIC_USEC, STOPPING to $NOTIFY_SOCKET") {
  NotifySocket manager;
  ServiceNotify notify;
  notify.ready("serving db1");
  CHECK(manager.receive() == "READY=1\nSTATUS=serving db1");

  uint64_t before = nowUsec();
  notify.reloading("reloading");
  uint64_t after = nowUsec();
  std::string reloading = manager.receive();
  const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
  REQUIRE(reloading.rfind(prefix, 0) == 0);
  size_t end = reloading.find('\n', prefix.size());
  REQUIRE(end != std::string::npos);
  uint64_t usec = std::stoull(reloading.substr(prefix.size(), end - prefix.size()));
  CHECK(usec >= before);
  CHECK(usec <= after);
  CHECK(reloading.substr(end) == "\nSTATUS=reloading");

  notify.ready("serving again");
  CHECK(manager.receive() == "READY=1\nSTATUS=serving again");
  notify.stopping("draining");
  CHECK(manager.receive() == "STOPPING=1\nSTATUS=draining");
  notify.status("just a status");
  CHECK(manager.receive() == "STATUS=just a status");
}

TEST_CASE("ServiceNotify without $NOTIFY_SOCKET does nothing") {
  ::unsetenv("NOTIFY_SOCKET");
  ServiceNotify notify;
  notify.ready("nobody listens");
  notify.stopping("nobody listens");
  CHECK(true);
}
