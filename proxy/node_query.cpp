#include "proxy/node_query.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/byte_buffer.h"
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

Status waitFor(int fd, short events, Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  pollfd p{fd, events, 0};
  const int rc = ::poll(&p, 1, left > 0 ? static_cast<int>(left) : 0);
  if (rc == 0) return makeError("timed out");
  if (rc < 0) return makeError(std::strerror(errno));
  return {};
}

std::string errorText(std::string_view reply) {
  std::string text(reply.substr(1));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

}  // namespace

Result<NodeReplies> queryNode(const ShardEndpoint& node, const std::optional<std::string>& password,
                              const std::vector<std::vector<std::string>>& commands, int timeout_ms) {
  auto fail = [&](const std::string& what) { return makeError(node.address + ": " + what); };
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  Fd fd(::socket(node.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return fail(std::strerror(errno));
  const socklen_t len = node.addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&node.addr), len) != 0) {
    if (errno != EINPROGRESS) return fail(std::string("connect: ") + std::strerror(errno));
    if (auto st = waitFor(fd.get(), POLLOUT, deadline); !st) return fail("connect: " + st.message());
    int err = 0;
    socklen_t err_len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
    if (err != 0) return fail(std::string("connect: ") + std::strerror(err));
  }

  ByteBuffer request;
  if (password) redis::resp::appendCommand(request, {"AUTH", *password});
  for (const auto& command : commands) {
    redis::resp::appendArrayHeader(request, command.size());
    for (const std::string& arg : command) redis::resp::appendBulk(request, arg);
  }
  const size_t expected = commands.size() + (password ? 1 : 0);
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
      if (auto st = waitFor(fd.get(), POLLOUT, deadline); !st) return fail("send: " + st.message());
      continue;
    }
    if (n < 0) return fail(std::string("send: ") + std::strerror(errno));
    sent += static_cast<size_t>(n);
  }

  NodeReplies out;
  redis::ReplyScanner scanner;
  size_t scanned = 0;
  char buf[64 * 1024];
  while (out.ends_.size() < expected) {
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) {
      if (auto st = waitFor(fd.get(), POLLIN, deadline); !st) return fail("reply: " + st.message());
      continue;
    }
    if (n < 0) return fail(std::string("reply: ") + std::strerror(errno));
    if (n == 0) return fail("the node closed the connection before replying");
    out.bytes_.append(buf, static_cast<size_t>(n));
    while (scanned < out.bytes_.size() && out.ends_.size() < expected) {
      bool done = false;
      const size_t used = scanner.feed(reinterpret_cast<const uint8_t*>(out.bytes_.data()) + scanned,
                                       out.bytes_.size() - scanned, &done);
      if (scanner.failed()) return fail("malformed reply: " + scanner.error());
      scanned += used;
      if (done) out.ends_.push_back(scanned);
    }
  }
  if (password) {
    // The first reply is AUTH's: checked here, then cut off.
    const size_t cut = out.ends_.front();
    if (out.bytes_[0] == '-') {
      return fail("AUTH with shard_password was refused: " + errorText(std::string_view(out.bytes_).substr(0, cut)));
    }
    out.bytes_.erase(0, cut);
    out.ends_.erase(out.ends_.begin());
    for (size_t& end : out.ends_) end -= cut;
  }
  return out;
}

}  // namespace shardgate::proxy
