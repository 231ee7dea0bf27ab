#include "redis/cluster_redirect.h"

#include "redis/hash_slot.h"

namespace shardgate::redis {
namespace {

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// Digits only, no sign, no leading zeros beyond "0", value <= max.
bool parseBounded(std::string_view s, uint32_t max, uint32_t* out) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

// "<slot> <host>:<port>", exactly (Redis writes "%s %d %s:%d").
bool parseTarget(std::string_view rest, ClusterRedirect* r) {
  const size_t space = rest.find(' ');
  if (space == std::string_view::npos) return false;
  uint32_t slot = 0;
  if (!parseBounded(rest.substr(0, space), kHashSlots - 1, &slot)) return false;
  const std::string_view endpoint = rest.substr(space + 1);
  // The last ':' splits: an IPv6 address is written unbracketed ("::1:6381").
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string_view::npos) return false;
  uint32_t port = 0;
  if (!parseBounded(endpoint.substr(colon + 1), 65535, &port) || port == 0) return false;
  const std::string_view host = endpoint.substr(0, colon);
  if (host.find(' ') != std::string_view::npos) return false;
  r->slot = static_cast<uint16_t>(slot);
  r->host = host;
  r->port = static_cast<uint16_t>(port);
  return true;
}

}  // namespace

ClusterRedirect classifyReply(std::string_view reply) {
  ClusterRedirect r;
  // The common case, every non-error reply: one comparison.
  if (reply.size() < 4 || reply[0] != '-') return r;
  std::string_view line = reply.substr(1);
  const size_t cr = line.find('\r');
  if (cr != std::string_view::npos) line = line.substr(0, cr);
  if (line.empty()) return r;
  switch (line[0]) {
    case 'M':
      if (startsWith(line, "MOVED ") && parseTarget(line.substr(6), &r)) {
        r.kind = RedirectKind::kMoved;
      }
      break;
    case 'A':
      if (startsWith(line, "ASK ") && parseTarget(line.substr(4), &r)) {
        r.kind = RedirectKind::kAsk;
      }
      break;
    case 'T':
      if (line == "TRYAGAIN" || startsWith(line, "TRYAGAIN ")) {
        r.kind = RedirectKind::kTryAgain;
        r.message = line.substr(line.size() > 8 ? 9 : 8);
      }
      break;
    case 'C':
      if (line == "CLUSTERDOWN" || startsWith(line, "CLUSTERDOWN ")) {
        r.kind = RedirectKind::kClusterDown;
        r.message = line.substr(line.size() > 11 ? 12 : 11);
      }
      break;
    default:
      break;
  }
  return r;
}

const char* redirectKindName(RedirectKind kind) {
  switch (kind) {
    case RedirectKind::kNone: return "none";
    case RedirectKind::kMoved: return "moved";
    case RedirectKind::kAsk: return "ask";
    case RedirectKind::kTryAgain: return "tryagain";
    case RedirectKind::kClusterDown: return "clusterdown";
  }
  return "none";
}

}  // namespace shardgate::redis
