// keyHashSlot against Redis Cluster's own answer: known vectors from the
// cluster spec, then 10,000 random binary keys compared with CLUSTER KEYSLOT
// of a real redis-server started here.
#include "proxy/hash_slot.h"

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
#include <cstring>
#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "tests/unit/temp_dir.h"

namespace shardgate::proxy {
namespace {

constexpr const char* kRedisServer = "/usr/bin/redis-server";
constexpr int kRandomKeys = 10000;

// Owns the redis-server child: stops and reaps it however the test ends
// (a failed REQUIRE throws through here), so no server outlives the test.
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

struct FdGuard {
  int fd = -1;
  explicit FdGuard(int f) : fd(f) {}
  FdGuard(FdGuard&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
  FdGuard& operator=(FdGuard&&) = delete;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

sockaddr_in loopback(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// n distinct ports the kernel just handed out for 127.0.0.1 and nobody holds
// now (all held open together while picking, so they differ).
std::vector<uint16_t> freePorts(size_t n) {
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

int connectTo(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr = loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// True once the server on port answers PING: a bare connect is not enough,
// the kernel accepts for a listener whose process is about to exit.
bool answersPing(uint16_t port) {
  FdGuard s(connectTo(port));
  if (s.fd < 0) return false;
  timeval timeout{2, 0};
  ::setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  constexpr std::string_view kPing = "*1\r\n$4\r\nPING\r\n";
  const ssize_t sent = ::send(s.fd, kPing.data(), kPing.size(), MSG_NOSIGNAL);
  if (sent != static_cast<ssize_t>(kPing.size())) return false;
  char buf[16];
  const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
  return n > 0 && std::string_view(buf, static_cast<size_t>(n)) == "+PONG\r\n";
}

// redis-server in cluster mode (CLUSTER KEYSLOT needs it; no slots need to be
// assigned for it to answer), on free ports, with its files in a temp dir.
class ClusterRedis {
 public:
  ClusterRedis() {
    // A missing server is a broken test environment, not a reason to skip.
    if (::access(kRedisServer, X_OK) != 0) {
      FAIL(kRedisServer << " not found: install redis-server (apt-get install redis-server)");
    }
    // A port picked here can be taken by someone else before the server binds
    // it; the server then exits, and another pair of ports is tried.
    std::string log;
    for (int attempt = 0; attempt < 5; ++attempt) {
      log = dir_.path + "/redis-" + std::to_string(attempt) + ".log";
      if (start(log)) return;
    }
    FAIL("redis-server did not start (5 attempts); its last log: " << readFile(log));
  }

  uint16_t port() const { return port_; }

 private:
  bool start(const std::string& log) {
    // The cluster bus port is given too: by default it is port + 10000,
    // which may be taken, or above 65535.
    const std::vector<uint16_t> ports = freePorts(2);
    port_ = ports[0];
    std::vector<std::string> argv = {
        kRedisServer, "--cluster-enabled", "yes", "--port", std::to_string(ports[0]),
        "--cluster-port", std::to_string(ports[1]), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--cluster-config-file", dir_.path + "/nodes.conf",
        "--dir", dir_.path, "--logfile", log, "--daemonize", "no"};
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

  testing::TempDir dir_;  // destroyed after child_: the server is gone first
  ChildGuard child_;
  uint16_t port_ = 0;
};

// Binary-safe RESP2 multibulk.
void appendCommand(std::string& out, const std::vector<std::string>& args) {
  out += '*' + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) {
    out += '$' + std::to_string(a.size()) + "\r\n";
    out += a;
    out += "\r\n";
  }
}

void sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) FAIL("send to redis-server failed: " << std::strerror(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Reads n replies that must each be ":<integer>\r\n".
std::vector<int64_t> readIntegers(int fd, size_t n) {
  std::vector<int64_t> values;
  std::string buf;
  size_t pos = 0;
  char chunk[65536];
  while (values.size() < n) {
    const size_t eol = buf.find("\r\n", pos);
    if (eol == std::string::npos) {
      const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
      if (got <= 0) FAIL("no more replies from redis-server after " << values.size());
      buf.append(chunk, static_cast<size_t>(got));
      continue;
    }
    const std::string line = buf.substr(pos, eol - pos);
    if (line.empty() || line[0] != ':') {
      FAIL("reply " << values.size() << " is not an integer: " << line);
    }
    values.push_back(std::stoll(line.substr(1)));
    pos = eol + 2;
  }
  return values;
}

std::string hexOf(const std::string& s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
  }
  return out;
}

// Random bytes (all 256 values, '{' and '}' included), 0..40 long; half get
// a hash tag in some position: empty, nested, doubled, unterminated.
std::string randomKey(std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  auto bytes = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += static_cast<char>(byte(rng));
    return s;
  };
  if (rng() % 2 == 0) return bytes(rng() % 41);
  const std::string inner = bytes(rng() % 8);
  static const char* const kShapes[] = {"{%}", "{}", "{{%}}", "{%}{%}", "{}{%}", "{%", "%}{%}",
                                        "{{}}", "{%{%}%}"};
  std::string tag;
  for (const char* p = kShapes[rng() % std::size(kShapes)]; *p; ++p) {
    if (*p == '%') {
      tag += inner;
    } else {
      tag += *p;
    }
  }
  std::string key = bytes(rng() % (41 - tag.size()));
  key.insert(rng() % (key.size() + 1), tag);
  return key;
}

}  // namespace

TEST_CASE("crc16 is Redis's CRC16-XMODEM") {
  CHECK(crc16("") == 0);
  CHECK(crc16("123456789") == 0x31C3);
  CHECK(crc16(std::string_view("\0", 1)) == 0);
  CHECK(crc16("foo") == 0xAF96);
}

TEST_CASE("keyHashSlot follows Redis Cluster's hash tag rule") {
  CHECK(keyHashSlot("foo") == 12182);
  CHECK(keyHashSlot("bar") == 5061);
  CHECK(keyHashSlot("") == 0);
  CHECK(keyHashSlot("123456789") == (0x31C3 & 16383));
  CHECK(keyHashSlot("{user1000}.following") == keyHashSlot("{user1000}.followers"));
  CHECK(keyHashSlot("{user1000}.following") == keyHashSlot("user1000"));
  // Empty first tag: the whole key, not the second tag.
  CHECK(keyHashSlot("foo{}{bar}") == (crc16("foo{}{bar}") & 16383));
  CHECK(keyHashSlot("foo{}{bar}") != keyHashSlot("bar"));
  // First '{', first '}' after it: the tag is "{bar".
  CHECK(keyHashSlot("foo{{bar}}zap") == keyHashSlot("{bar"));
  CHECK(keyHashSlot("foo{{bar}}zap") == (crc16("{bar") & 16383));
  CHECK(keyHashSlot("foo{bar}{zap}") == keyHashSlot("bar"));
  // No closing brace, or a '}' only before the '{': the whole key.
  CHECK(keyHashSlot("foo{bar") == (crc16("foo{bar") & 16383));
  CHECK(keyHashSlot("}foo{") == (crc16("}foo{") & 16383));
  CHECK(keyHashSlot("a}b{c}") == keyHashSlot("c"));
  // Binary keys: NUL is an ordinary byte.
  CHECK(keyHashSlot(std::string_view("{\0}x", 4)) == (crc16(std::string_view("\0", 1)) & 16383));
}

TEST_CASE("keyHashSlot equals CLUSTER KEYSLOT of redis-server for 10,000 random keys") {
  ClusterRedis server;
  FdGuard conn(connectTo(server.port()));
  REQUIRE_MESSAGE(conn.fd >= 0, "cannot connect to redis-server on port " << server.port());
  timeval timeout{10, 0};  // a stuck server fails the test instead of hanging it
  ::setsockopt(conn.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

  std::mt19937 rng(20240521);
  std::vector<std::string> keys;
  std::string pipeline;
  for (int i = 0; i < kRandomKeys; ++i) {
    keys.push_back(randomKey(rng));
    appendCommand(pipeline, {"CLUSTER", "KEYSLOT", keys.back()});
  }
  // All at once: the server buffers its replies while we are still writing.
  sendAll(conn.fd, pipeline);
  const std::vector<int64_t> slots = readIntegers(conn.fd, keys.size());

  int mismatches = 0;
  int tagged = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].find('{') != std::string::npos) ++tagged;
    if (keyHashSlot(keys[i]) != slots[i] && ++mismatches <= 10) {
      FAIL_CHECK("key 0x" << hexOf(keys[i]) << ": keyHashSlot " << keyHashSlot(keys[i])
                          << ", CLUSTER KEYSLOT " << slots[i]);
    }
  }
  CHECK(mismatches == 0);
  CHECK(tagged >= kRandomKeys / 2);  // the tag rule was really exercised
}

}  // namespace shardgate::proxy
