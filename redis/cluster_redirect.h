// What a Redis Cluster node's error reply asks of the proxy: go elsewhere
// (MOVED: the slot has a new owner; ASK: this one key, once, at the importing
// node), wait and retry (TRYAGAIN: a multi-key command during a slot's
// migration; CLUSTERDOWN: the cluster cannot serve the slot right now), or
// nothing (any other reply, which goes to the client unchanged).
// https://redis.io/docs/reference/cluster-spec/#redirection-and-resharding
//
// classifyReply runs on every reply of a cluster database, so it reads the
// first byte and returns for anything but an error, and never allocates: the
// host is a view into the reply.
#pragma once

#include <cstdint>
#include <string_view>

namespace shardgate::redis {

enum class RedirectKind : uint8_t {
  kNone,         // not a cluster redirect: pass the reply on
  kMoved,        // -MOVED <slot> <host>:<port>
  kAsk,          // -ASK <slot> <host>:<port>
  kTryAgain,     // -TRYAGAIN ...
  kClusterDown,  // -CLUSTERDOWN ...
};

struct ClusterRedirect {
  RedirectKind kind = RedirectKind::kNone;
  // MOVED and ASK only.
  uint16_t slot = 0;
  // Where the slot (MOVED) or the key (ASK) is served. Redis 7 with
  // `cluster-preferred-endpoint-type unknown-endpoint` sends an empty host
  // ("-MOVED 3999 :6381"): the same host as the node that answered, see
  // sameHostAsSender(). "?" is a node whose preferred endpoint (a hostname)
  // is not known: only a topology refresh can tell where it is.
  std::string_view host;
  uint16_t port = 0;
  // The error text after the code, for TRYAGAIN and CLUSTERDOWN (what the
  // client gets if retries run out).
  std::string_view message;

  bool isRedirect() const { return kind == RedirectKind::kMoved || kind == RedirectKind::kAsk; }
  bool sameHostAsSender() const { return isRedirect() && host.empty(); }
  bool hostUnknown() const { return isRedirect() && host == "?"; }
};

// `reply` is one reply frame as read from a node, or at least its whole first
// line: "-MOVED 3999 127.0.0.1:6381\r\n". A line cut short would be misread
// ("...:63" is a port too), so a caller holding a partial frame that starts
// with '-' waits for the rest (error lines are short). A MOVED or ASK line that does not parse
// (slot out of range, no port, trailing text) is kNone: the proxy does not
// act on a redirect it cannot read, and the client sees the node's error.
ClusterRedirect classifyReply(std::string_view reply);

const char* redirectKindName(RedirectKind kind);

}  // namespace shardgate::redis
