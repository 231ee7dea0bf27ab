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
#include <memory>

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
    tls::TlsContextPtr ctx = shard.contexts.current();
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
  Channel channel(fd.get(), deadline);
  if (shard.tls) {
    if (auto st = channel.startTls(*shard.tls); !st) return fail(st.message());
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
  if (auto st = channel.send(request.data(), request.size()); !st) return fail(st.message());

  // Read until the last reply is complete; remember where each one starts.
  std::string in;
  std::vector<size_t> frame_end;
  redis::ReplyScanner scanner;
  size_t scanned = 0;
  while (frame_end.size() < replies) {
    if (auto st = channel.receive(in); !st) return fail(st.message());
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
