// RedisServer: a real /usr/bin/redis-server child for unit tests that compare
// with what Redis itself answers. It listens on free loopback ports, keeps its
// files in its own TempDir, and is stopped and reaped when the object goes,
// also when a REQUIRE throws (every started process stopped).
// Beside it, the few blocking-socket helpers such tests use to talk RESP to it.
#pragma once

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "tests/unit/temp_dir.h"

namespace shardgate::testing {

inline constexpr const char* kRedisServer = "/usr/bin/redis-server";

// Closes the socket it holds when the scope ends.
struct FdGuard {
  int fd = -1;
  explicit FdGuard(int f) : fd(f) {}
  FdGuard(FdGuard&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
  FdGuard& operator=(FdGuard&&) = delete;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

inline sockaddr_in loopback(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// n distinct ports the kernel just handed out for 127.0.0.1 and nobody holds
// now (all held open together while picking, so they differ).
inline std::vector<uint16_t> freePorts(size_t n) {
  std::vector<FdGuard> held;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < n; ++i) {
    held.emplace_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(held.back().fd >= 0);
    sockaddr_in addr = loopback(0);
    REQUIRE(::bind(held.back().fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(held.back().fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    ports.push_back(ntohs(addr.sin_port));
  }
  return ports;
}

// A blocking TCP connection to 127.0.0.1:port, or -1.
inline int connectTo(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr = loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A stuck server then fails the test (recv returns -1) instead of hanging it.
inline void setReceiveTimeout(int fd, int seconds) {
  timeval timeout{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
}

inline void sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) FAIL("send to redis-server failed: " << std::strerror(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Binary-safe RESP2 multibulk.
inline void appendCommand(std::string& out, const std::vector<std::string_view>& args) {
  out += '*' + std::to_string(args.size()) + "\r\n";
  for (const auto a : args) {
    out += '$' + std::to_string(a.size()) + "\r\n";
    out += a;
    out += "\r\n";
  }
}

inline std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// True once the server on port answers PING: a bare connect is not enough,
// the kernel accepts for a listener whose process is about to exit.
inline bool answersPing(uint16_t port) {
  FdGuard s(connectTo(port));
  if (s.fd < 0) return false;
  setReceiveTimeout(s.fd, 2);
  constexpr std::string_view kPing = "*1\r\n$4\r\nPING\r\n";
  const ssize_t sent = ::send(s.fd, kPing.data(), kPing.size(), MSG_NOSIGNAL);
  if (sent != static_cast<ssize_t>(kPing.size())) return false;
  char buf[16];
  const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
  return n > 0 && std::string_view(buf, static_cast<size_t>(n)) == "+PONG\r\n";
}

class RedisServer {
 public:
  // kCluster: cluster mode, which CLUSTER KEYSLOT needs (it answers without
  // any slot assigned).
  enum class Mode { kPlain, kCluster };

  // Returns once the server answers PING; fails the test if it never does.
  explicit RedisServer(Mode mode = Mode::kPlain) : mode_(mode) {
    // A missing server is a broken test environment, not a reason to skip.
    if (::access(kRedisServer, X_OK) != 0) {
      FAIL(kRedisServer << " not found: install redis-server (apt-get install redis-server)");
    }
    // A port picked here can be taken by someone else before the server binds
    // it; the server then exits, and other ports are tried.
    std::string log;
    for (int attempt = 0; attempt < 5; ++attempt) {
      log = dir_.path + "/redis-" + std::to_string(attempt) + ".log";
      if (start(log)) return;
    }
    FAIL("redis-server did not start (5 attempts); its last log: " << readFile(log));
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  uint16_t port() const { return port_; }

 private:
  // Owns the child: stops and reaps it however the test ends (a failed
  // REQUIRE throws through here), so no server outlives the test.
  struct ChildGuard {
    pid_t pid = -1;
    ChildGuard() = default;
    ChildGuard(const ChildGuard&) = delete;
    ChildGuard& operator=(const ChildGuard&) = delete;
    ~ChildGuard() {
      if (pid <= 0) return;
      ::kill(pid, SIGTERM);
      // --save "" makes shutdown immediate; SIGKILL only if it hangs anyway.
      for (int i = 0; i < 200; ++i) {
        if (::waitpid(pid, nullptr, WNOHANG) == pid) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  };

  bool start(const std::string& log) {
    const std::vector<uint16_t> ports = freePorts(mode_ == Mode::kCluster ? 2 : 1);
    port_ = ports[0];
    std::vector<std::string> argv = {kRedisServer, "--port", std::to_string(port_), "--bind",
                                     "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                                     dir_.path, "--logfile", log, "--daemonize", "no"};
    if (mode_ == Mode::kCluster) {
      // The cluster bus port is given too: by default it is port + 10000,
      // which may be taken, or above 65535.
      argv.insert(argv.end(), {"--cluster-enabled", "yes", "--cluster-port",
                               std::to_string(ports[1]), "--cluster-config-file",
                               dir_.path + "/nodes.conf"});
    }
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    child_.pid = ::fork();
    REQUIRE(child_.pid >= 0);
    if (child_.pid == 0) {
      ::execv(kRedisServer, cargv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 1000; ++i) {  // 10 s
      if (::waitpid(child_.pid, nullptr, WNOHANG) == child_.pid) {
        child_.pid = -1;
        return false;
      }
      if (answersPing(port_)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL("redis-server did not answer PING on port " << port_ << ": " << readFile(log));
    return false;
  }

  Mode mode_;
  TempDir dir_;  // destroyed after child_: the server is gone first
  ChildGuard child_;
  uint16_t port_ = 0;
};

}  // namespace shardgate::testing
