#include "server/admin_auth.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "common/uv_handle.h"
#include "server/admin_api.h"

namespace shardgate::server {

namespace {

http::Response unauthorized(const std::string& description) {
  http::Response r = http::errorResponse(401, "unauthorized", description);
  r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"shardgate\", charset=\"UTF-8\"");
  return r;
}

// The address without its port: failures are counted per client host.
std::string hostOf(const std::string& peer) {
  size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

std::optional<std::string> decodeBase64(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

}  // namespace

std::optional<std::pair<std::string, std::string>> parseBasicAuth(const std::string& header_value) {
  // The scheme is case-insensitive (RFC 9110 section 11.1).
  if (header_value.size() < 6) return std::nullopt;
  std::string scheme = header_value.substr(0, 6);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (scheme != "basic ") return std::nullopt;
  std::string_view token(header_value);
  token.remove_prefix(6);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  auto decoded = decodeBase64(token);
  if (!decoded) return std::nullopt;
  size_t colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  return std::make_pair(decoded->substr(0, colon), decoded->substr(colon + 1));
}

struct AdminAuth::Pending {
  AdminAuth* auth;
  std::shared_ptr<bool> alive;
  std::string host;
  std::string user;
  std::string password;
  tls::PasswordHash hash;
  bool known_user = false;
  bool ok = false;
  Done done;
  uv_work_t work{};
};

AdminAuth::AdminAuth(uv_loop_t* loop) : loop_(loop), alive_(std::make_shared<bool>(true)) {
  // A hash of nothing anyone knows, with the default cost.
  if (auto text = tls::hashPassword("\x01unknown user\x01")) {
    if (auto parsed = tls::parsePasswordHash(*text)) dummy_ = std::move(*parsed);
  }
}

AdminAuth::~AdminAuth() { *alive_ = false; }

void AdminAuth::setUsers(const std::vector<config::AdminUser>& users) {
  users_.clear();
  for (const config::AdminUser& u : users) {
    if (auto parsed = tls::parsePasswordHash(u.password_hash)) users_[u.name] = std::move(*parsed);
  }
}

uint64_t AdminAuth::delayFor(unsigned failures) {
  if (failures == 0) return 0;
  uint64_t delay = kFirstDelayMs;
  for (unsigned i = 1; i < failures && delay < kMaxDelayMs; ++i) delay *= 2;
  return std::min(delay, kMaxDelayMs);
}

void AdminAuth::authenticate(const http::Request& request, Done done) {
  if (!request.client_cert_subject.empty()) {
    done(Outcome{true, "cert " + request.client_cert_subject, {}});
    return;
  }
  const std::string* header = request.header("authorization");
  if (header == nullptr) {
    done(Outcome{false, "", unauthorized("credentials are required: HTTP basic auth, or a client certificate "
                                         "issued by a CA in mtls_trusted_ca.pem")});
    return;
  }
  auto credentials = parseBasicAuth(*header);
  if (!credentials) {
    done(Outcome{false, "", unauthorized("the Authorization header is not valid HTTP basic auth")});
    return;
  }
  auto pending = std::make_unique<Pending>();
  pending->auth = this;
  pending->alive = alive_;
  pending->host = hostOf(request.peer);
  pending->user = credentials->first;
  pending->password = std::move(credentials->second);
  auto it = users_.find(pending->user);
  pending->known_user = it != users_.end();
  pending->hash = pending->known_user ? it->second : dummy_;
  pending->done = std::move(done);

  auto [turn, first] = turns_.try_emplace(pending->host);
  if (!first) {
    turn->second.waiting.push_back(std::move(pending));
    return;
  }
  schedule(std::move(pending));
}

void AdminAuth::next(const std::string& host) {
  auto turn = turns_.find(host);
  if (turn == turns_.end()) return;
  if (turn->second.waiting.empty()) {
    turns_.erase(turn);
    return;
  }
  std::unique_ptr<Pending> p = std::move(turn->second.waiting.front());
  turn->second.waiting.pop_front();
  schedule(std::move(p));
}

void AdminAuth::schedule(std::unique_ptr<Pending> pending) {
  uint64_t wait = 0;
  if (auto f = failures_.find(pending->host); f != failures_.end()) {
    const uint64_t due = f->second.last_ms + delayFor(f->second.count);
    const uint64_t now = uv_now(loop_);
    wait = due > now ? due - now : 0;
  }
  if (wait == 0) {
    verify(std::move(pending));
    return;
  }
  struct Delay {
    uv_timer_t timer{};
    std::unique_ptr<Pending> pending;
  };
  auto* delay = new Delay{{}, std::move(pending)};
  uv_timer_init(loop_, &delay->timer);
  delay->timer.data = delay;
  uv_timer_start(&delay->timer, [](uv_timer_t* t) {
    auto* d = static_cast<Delay*>(t->data);
    std::unique_ptr<Pending> p = std::move(d->pending);
    uv_close(asHandle(t), [](uv_handle_t* h) { delete static_cast<Delay*>(h->data); });
    if (*p->alive) p->auth->verify(std::move(p));
  }, wait, 0);
}

void AdminAuth::verify(std::unique_ptr<Pending> pending) {
  Pending* p = pending.release();
  p->work.data = p;
  int rc = uv_queue_work(
      loop_, &p->work,
      [](uv_work_t* w) {
        // On a thread of libuv's pool: the slow part, with no shared state.
        auto* self = static_cast<Pending*>(w->data);
        self->ok = tls::verifyPassword(self->password, self->hash) && self->known_user;
      },
      [](uv_work_t* w, int) {
        std::unique_ptr<Pending> self(static_cast<Pending*>(w->data));
        std::fill(self->password.begin(), self->password.end(), '\0');
        if (*self->alive) self->auth->finished(*self, self->ok);
      });
  if (rc != 0) {
    std::unique_ptr<Pending> self(p);
    finished(*self, false);
  }
}

void AdminAuth::finished(Pending& pending, bool ok) {
  // The host is copied: done() may free what pending points into.
  const std::string host = pending.host;
  if (ok) {
    failures_.erase(host);
    pending.done(Outcome{true, "user " + pending.user, {}});
    next(host);
    return;
  }
  auto it = failures_.find(pending.host);
  if (it == failures_.end()) {
    if (failures_.size() >= kMaxTrackedAddresses) {
      // Full: the address whose last failure is oldest makes room.
      const std::string* victim = nullptr;
      uint64_t oldest = UINT64_MAX;
      for (const auto& [address, f] : failures_) {
        if (f.last_ms < oldest) {
          oldest = f.last_ms;
          victim = &address;
        }
      }
      if (victim != nullptr) failures_.erase(std::string(*victim));
    }
    it = failures_.emplace(pending.host, Failures{}).first;
  }
  ++it->second.count;
  it->second.last_ms = uv_now(loop_);
  spdlog::warn("admin API: failed login for user \"{}\" from {} ({} failure(s) in a row from that address; "
               "its next attempt waits {} ms)",
               logSafe(pending.user), pending.host, it->second.count, delayFor(it->second.count));
  pending.done(Outcome{false, "user " + pending.user, unauthorized("wrong user name or password")});
  next(host);
}

}  // namespace shardgate::server
