#include "proxy/node_query.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "common/byte_buffer.h"
#include "redis/reply_scanner.h"
#include "redis/resp_encoder.h"
#include "tls/tls_session.h"

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

// The connection's bytes, plain or over TLS (client role, as the worker's
// shard connections speak it), blocking with poll() up to the deadline.
class Channel {
 public:
  Channel(int fd, Clock::time_point deadline) : fd_(fd), deadline_(deadline) {}

  // The handshake, done before anything is sent.
  Status startTls(const ShardTls& shard) {
    tls::TlsContextPtr ctx = shard.currentContext();
    if (!ctx) return makeError("TLS: no client context for this shard");
    tls_ = tls::TlsSession::create(std::move(ctx), tls::TlsSession::Role::kClient);
    if (!tls_) return makeError("TLS: cannot create a session (out of memory?)");
    if (!tls_->setServerName(shard.verify_name)) {
      return makeError("TLS: cannot use \"" + shard.verify_name + "\" as the server name");
    }
    cipher_.clear();
    tls_->startHandshake(cipher_);
    if (auto st = sendRaw(cipher_.data(), cipher_.size()); !st) return st;
    std::string ignored;
    while (tls_->state() == tls::TlsSession::State::kHandshaking) {
      if (auto st = receive(ignored); !st) {
        return tls_->state() == tls::TlsSession::State::kFailed ? st : makeError("TLS handshake failed: " + st.message());
      }
    }
    if (!tls_->isOpen()) return makeError(tls_->failureReason());
    return {};
  }

  Status send(const uint8_t* data, size_t len) {
    if (!tls_) return sendRaw(data, len);
    cipher_.clear();
    if (auto st = tls_->encrypt(data, len, cipher_); !st) return st;
    return sendRaw(cipher_.data(), cipher_.size());
  }

  // Appends what arrives next (plaintext) to in.
  Status receive(std::string& in) {
    char buf[64 * 1024];
    while (true) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno == EAGAIN) {
        if (auto st = waitFor(fd_, POLLIN, deadline_); !st) return makeError("reply: " + st.message());
        continue;
      }
      if (n < 0) return makeError(std::string("reply: ") + std::strerror(errno));
      if (n == 0) return makeError("the shard closed the connection before replying");
      if (!tls_) {
        in.append(buf, static_cast<size_t>(n));
        return {};
      }
      plain_.clear();
      cipher_.clear();
      tls_->feed(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n), plain_, cipher_);
      // Best effort: an alert or a key update; a failure shows at the next read.
      if (!cipher_.empty()) (void)sendRaw(cipher_.data(), cipher_.size());
      if (tls_->state() == tls::TlsSession::State::kFailed) {
        // TLS 1.3: a refused client certificate shows as an alert after our
        // side of the handshake completed, before any reply.
        const std::string& why = tls_->failureReason();
        if (!spoke_ && why.rfind("TLS handshake failed", 0) != 0) {
          return makeError("TLS handshake failed: " + tls_->failureCode());
        }
        return makeError(why);
      }
      if (!plain_.empty()) spoke_ = true;
      in.append(reinterpret_cast<const char*>(plain_.data()), plain_.size());
      return {};
    }
  }

 private:
  Status sendRaw(const uint8_t* data, size_t len) {
    size_t sent = 0;
    while (sent < len) {
      ssize_t n = ::send(fd_, data + sent, len - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN) {
        if (auto st = waitFor(fd_, POLLOUT, deadline_); !st) return makeError("send: " + st.message());
        continue;
      }
      if (n < 0) return makeError(std::string("send: ") + std::strerror(errno));
      sent += static_cast<size_t>(n);
    }
    return {};
  }

  int fd_;
  Clock::time_point deadline_;
  std::unique_ptr<tls::TlsSession> tls_;
  bool spoke_ = false;  // plaintext came from the shard
  ByteBuffer plain_;
  ByteBuffer cipher_;
};

std::string errorText(std::string_view reply) {
  std::string text(reply.substr(1));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

}  // namespace

Result<NodeReplies> queryNode(const ShardEndpoint& node, const std::optional<std::string>& password,
                              const std::vector<std::vector<std::string>>& commands, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  Fd fd(::socket(node.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return makeError(std::strerror(errno));
  const socklen_t len = node.addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&node.addr), len) != 0) {
    if (errno != EINPROGRESS) return makeError(std::string("connect: ") + std::strerror(errno));
    if (auto st = waitFor(fd.get(), POLLOUT, deadline); !st) return makeError("connect: " + st.message());
    int err = 0;
    socklen_t err_len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
    if (err != 0) return makeError(std::string("connect: ") + std::strerror(err));
  }
  Channel channel(fd.get(), deadline);
  if (node.tls) {
    if (auto st = channel.startTls(*node.tls); !st) return makeError(st.message());
  }

  ByteBuffer request;
  if (password) redis::resp::appendCommand(request, {"AUTH", *password});
  for (const auto& command : commands) {
    redis::resp::appendArrayHeader(request, command.size());
    for (const std::string& arg : command) redis::resp::appendBulk(request, arg);
  }
  const size_t expected = commands.size() + (password ? 1 : 0);
  if (auto st = channel.send(request.data(), request.size()); !st) return makeError(st.message());

  NodeReplies out;
  redis::ReplyScanner scanner;
  size_t scanned = 0;
  while (out.ends_.size() < expected) {
    if (auto st = channel.receive(out.bytes_); !st) return makeError(st.message());
    while (scanned < out.bytes_.size() && out.ends_.size() < expected) {
      bool done = false;
      const size_t used = scanner.feed(reinterpret_cast<const uint8_t*>(out.bytes_.data()) + scanned,
                                       out.bytes_.size() - scanned, &done);
      if (scanner.failed()) return makeError("malformed reply: " + scanner.error());
      scanned += used;
      if (done) out.ends_.push_back(scanned);
    }
  }
  if (password) {
    // The first reply is AUTH's: checked here, then cut off.
    const size_t cut = out.ends_.front();
    if (out.bytes_[0] == '-') {
      Error e = makeError(std::string(kAuthRefused) + errorText(std::string_view(out.bytes_).substr(0, cut)));
      return e;
    }
    out.bytes_.erase(0, cut);
    out.ends_.erase(out.ends_.begin());
    for (size_t& end : out.ends_) end -= cut;
  }
  return out;
}

}  // namespace shardgate::proxy
