#include "proxy/command_fetch.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>

#include "redis/reply_scanner.h"
#include "redis/resp_encoder.h"

namespace shardgate::proxy {

namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

Status waitFor(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  int rc = ::poll(&p, 1, remainingMs(deadline));
  if (rc == 0) return makeError("timed out");
  if (rc < 0) return makeError(std::strerror(errno));
  return {};
}

}  // namespace

Result<ShardFacts> fetchShardFacts(const ShardEndpoint& shard,
                                   const std::optional<std::string>& password, int timeout_ms) {
  auto fail = [&](const std::string& what) {
    return makeError("shard " + shard.address + ": COMMAND: " + what);
  };
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  Fd fd(::socket(shard.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return fail(std::strerror(errno));
  socklen_t len = shard.addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&shard.addr), len) != 0) {
    if (errno != EINPROGRESS) return fail(std::string("connect: ") + std::strerror(errno));
    if (auto st = waitFor(fd.get(), POLLOUT, deadline); !st) return fail("connect: " + st.message());
    int err = 0;
    socklen_t err_len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
    if (err != 0) return fail(std::string("connect: ") + std::strerror(err));
  }

  ByteBuffer request;
  size_t replies = 1;
  if (password) {
    redis::resp::appendCommand(request, {"AUTH", *password});
    ++replies;
  }
  redis::resp::appendCommand(request, {"COMMAND"});
  redis::resp::appendCommand(request, {"CONFIG", "GET", "databases"});
  redis::resp::appendCommand(request, {"INFO", "server"});
  replies += 2;
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
      if (auto st = waitFor(fd.get(), POLLOUT, deadline); !st) return fail("send: " + st.message());
      continue;
    }
    if (n < 0) return fail(std::string("send: ") + std::strerror(errno));
    sent += static_cast<size_t>(n);
  }

  // Read until the last reply is complete; remember where each one starts.
  std::string in;
  std::vector<size_t> frame_end;
  redis::ReplyScanner scanner;
  size_t scanned = 0;
  char buf[64 * 1024];
  while (frame_end.size() < replies) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) {
      if (auto st = waitFor(fd.get(), POLLIN, deadline); !st) return fail("reply: " + st.message());
      continue;
    }
    if (n < 0) return fail(std::string("reply: ") + std::strerror(errno));
    if (n == 0) return fail("the shard closed the connection before replying");
    in.append(buf, static_cast<size_t>(n));
    while (scanned < in.size() && frame_end.size() < replies) {
      bool done = false;
      size_t used = scanner.feed(reinterpret_cast<const uint8_t*>(in.data()) + scanned,
                                 in.size() - scanned, &done);
      if (scanner.failed()) return fail("malformed reply: " + scanner.error());
      scanned += used;
      if (done) frame_end.push_back(scanned);
    }
  }
  if (password) {
    std::string_view auth(in.data(), frame_end[0]);
    if (!auth.empty() && auth[0] == '-') {
      std::string text(auth.substr(1));
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
      return makeError("shard " + shard.address + ": AUTH with shard_password was refused: " + text);
    }
  }
  const size_t first = password ? 1 : 0;
  auto frame = [&](size_t i) {
    size_t start = i == 0 ? 0 : frame_end[i - 1];
    return std::string_view(in).substr(start, frame_end[i] - start);
  };
  auto value = redis::parseReply(frame(first));
  if (!value) return fail("malformed reply: " + value.message());
  if (value->type == redis::RespValue::Type::kError) {
    // The proxy's shared shard connections carry no client's AUTH: only
    // shard_password can open them.
    if (!password && value->str.starts_with("NOAUTH"))
      return fail(std::string(value->str) +
                  " (the shard has a password: set this database's shard_password)");
    return fail(std::string(value->str));
  }
  auto table = redis::CommandTable::fromCommandReply(*value);
  if (!table) return fail(table.message());
  ShardFacts facts{std::move(*table)};
  // CONFIG may be renamed or refused by ACL: then Redis's default of 16.
  if (auto config = redis::parseReply(frame(first + 1));
      config && config->type == redis::RespValue::Type::kArray && config->elements.size() == 2) {
    uint64_t n = 0;
    std::string_view text = config->elements[1].str;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec == std::errc() && end == text.data() + text.size() && n > 0) facts.databases = n;
  }
  if (auto info = redis::parseReply(frame(first + 2)); info && !info->str.empty()) {
    std::string_view text = info->str;
    size_t at = text.find("redis_version:");
    if (at != std::string_view::npos) {
      text = text.substr(at + 14);
      facts.version = std::string(text.substr(0, text.find_first_of("\r\n")));
    }
  }
  return facts;
}

}  // namespace shardgate::proxy
