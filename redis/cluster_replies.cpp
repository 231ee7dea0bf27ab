// The cluster shardgate shows its clients, in the shapes redis-server 7.0
// writes (cluster.c: clusterReplyMultiBulkSlots, clusterReplyShards,
// clusterGenNodesDescription, genClusterInfoString).
#include "redis/cluster_replies.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "redis/hash_slot.h"
#include "redis/redis_text.h"
#include "redis/resp_encoder.h"

namespace shardgate::redis {
namespace {

constexpr std::string_view kNotAnInteger = "ERR value is not an integer or out of range";

void appendMapHeader(ByteBuffer& out, size_t pairs, bool resp3) {
  if (resp3) {
    out.append("%");
    out.append(std::to_string(pairs));
    out.append("\r\n");
  } else {
    resp::appendArrayHeader(out, pairs * 2);
  }
}

void appendText(ByteBuffer& out, std::string_view text, bool resp3) {
  if (resp3) {
    resp::appendVerbatimText(out, text);
  } else {
    resp::appendBulk(out, text);
  }
}

uint64_t fnv1a(std::string_view s, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t mix(uint64_t z) {  // splitmix64's finalizer: every input bit reaches every output bit
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// An argument quoted in an error line: CR and LF would end the line early.
std::string oneLine(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return out;
}

// 1..16384: every node shown owns at least one slot.
uint16_t nodeCount(const ClusterFace& face) {
  return std::clamp<uint16_t>(face.nodes, 1, kHashSlots);
}

void appendSlotsNode(ByteBuffer& out, const ClusterFace& face, uint16_t i, bool resp3) {
  resp::appendArrayHeader(out, 4);
  resp::appendBulk(out, face.host);
  resp::appendInteger(out, face.port);
  resp::appendBulk(out, faceNodeId(face.host, face.port, i));
  appendMapHeader(out, 0, resp3);  // no hostname: the client uses the address it has
}

}  // namespace

SlotRange ClusterFace::slotsOf(uint16_t index) const {
  // redis-cli's clusterManagerCommandCreate: node i ends at the slot its
  // running cursor of i * (16384 / n) slots rounds to (redis-cli adds the
  // step n times; multiplying gives the same cursors without the loop), the
  // last node at 16383.
  const uint16_t n = nodeCount(*this);
  const double per_node = static_cast<double>(kHashSlots) / n;
  auto lastOf = [&](long i) {
    long last = std::lround(static_cast<double>(i) * per_node + per_node - 1);
    return i == n - 1 || last > kHashSlots - 1 ? long{kHashSlots - 1} : last;
  };
  const long i = std::min<long>(index, n - 1);
  const long first = i == 0 ? 0 : lastOf(i - 1) + 1;
  const long last = std::max(first, lastOf(i));
  return {static_cast<uint16_t>(first), static_cast<uint16_t>(last)};
}

std::string faceNodeId(std::string_view host, uint16_t port, uint16_t index) {
  const std::string name = std::string(host) + ":" + std::to_string(port) + "#" +
                           std::to_string(index);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  id.reserve(48);
  for (uint64_t seed = 1; id.size() < 40; ++seed) {
    uint64_t h = mix(fnv1a(name, seed * 0x9e3779b97f4a7c15ULL));
    for (int nibble = 0; nibble < 16; ++nibble, h >>= 4) id += kHex[h & 0xf];
  }
  id.resize(40);
  return id;
}

void appendClusterSlots(ByteBuffer& out, const ClusterFace& face, bool resp3) {
  const uint16_t n = nodeCount(face);
  resp::appendArrayHeader(out, n);
  for (uint16_t i = 0; i < n; ++i) {
    const SlotRange r = face.slotsOf(i);
    resp::appendArrayHeader(out, 3);
    resp::appendInteger(out, r.first);
    resp::appendInteger(out, r.last);
    appendSlotsNode(out, face, i, resp3);
  }
}

void appendClusterShards(ByteBuffer& out, const ClusterFace& face, bool resp3) {
  const uint16_t n = nodeCount(face);
  resp::appendArrayHeader(out, n);
  for (uint16_t i = 0; i < n; ++i) {
    const SlotRange r = face.slotsOf(i);
    appendMapHeader(out, 2, resp3);
    resp::appendBulk(out, "slots");
    resp::appendArrayHeader(out, 2);
    resp::appendInteger(out, r.first);
    resp::appendInteger(out, r.last);
    resp::appendBulk(out, "nodes");
    resp::appendArrayHeader(out, 1);
    appendMapHeader(out, 7, resp3);
    resp::appendBulk(out, "id");
    resp::appendBulk(out, faceNodeId(face.host, face.port, i));
    // A TLS-only redis-server reports only "tls-port"; a plaintext one only "port".
    resp::appendBulk(out, face.tls ? "tls-port" : "port");
    resp::appendInteger(out, face.port);
    resp::appendBulk(out, "ip");
    resp::appendBulk(out, face.host);
    resp::appendBulk(out, "endpoint");
    resp::appendBulk(out, face.host);
    resp::appendBulk(out, "role");
    resp::appendBulk(out, "master");
    resp::appendBulk(out, "replication-offset");
    resp::appendInteger(out, 0);
    resp::appendBulk(out, "health");
    resp::appendBulk(out, "online");
  }
}

std::string clusterNodesText(const ClusterFace& face) {
  const uint16_t n = nodeCount(face);
  std::string text;
  for (uint16_t i = 0; i < n; ++i) {
    const SlotRange r = face.slotsOf(i);
    // <id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...
    // No cluster bus behind it: cport 0.
    text += faceNodeId(face.host, face.port, i);
    text += ' ';
    text += face.host;
    text += ':' + std::to_string(face.port) + "@0 ";
    text += i == 0 ? "myself,master" : "master";
    text += " - 0 0 " + std::to_string(i + 1) + " connected ";
    text += std::to_string(r.first);
    if (r.last != r.first) text += '-' + std::to_string(r.last);
    text += '\n';
  }
  return text;
}

std::string clusterInfoText(const ClusterFace& face) {
  const std::string n = std::to_string(nodeCount(face));
  std::string text;
  auto line = [&](std::string_view name, std::string_view value) {
    text += name;
    text += ':';
    text += value;
    text += "\r\n";
  };
  line("cluster_state", "ok");
  line("cluster_slots_assigned", "16384");
  line("cluster_slots_ok", "16384");
  line("cluster_slots_pfail", "0");
  line("cluster_slots_fail", "0");
  line("cluster_known_nodes", n);
  line("cluster_size", n);
  line("cluster_current_epoch", n);
  line("cluster_my_epoch", "1");
  line("cluster_stats_messages_sent", "0");
  line("cluster_stats_messages_received", "0");
  line("total_cluster_links_buffer_limit_exceeded", "0");
  return text;
}

void appendClusterNodes(ByteBuffer& out, const ClusterFace& face, bool resp3) {
  appendText(out, clusterNodesText(face), resp3);
}

void appendClusterInfo(ByteBuffer& out, const ClusterFace& face, bool resp3) {
  appendText(out, clusterInfoText(face), resp3);
}

void appendClusterMyId(ByteBuffer& out, const ClusterFace& face) {
  resp::appendBulk(out, faceNodeId(face.host, face.port, 0));
}

ClusterCommandResult answerClusterCommand(const std::vector<std::string_view>& args,
                                          const ClusterFace& face, bool resp3, ByteBuffer& out) {
  ClusterCommandResult result;
  if (args.size() < 2) {
    resp::appendError(out, arityErrorText("cluster"));
    return result;
  }
  const std::string_view sub = args[1];
  auto is = [&](std::string_view lower) { return equalsLower(sub, lower); };
  auto arity = [&](size_t want, std::string_view name) {
    if (args.size() == want) return true;
    resp::appendError(out, arityErrorText("cluster|" + std::string(name)));
    return false;
  };
  if (is("slots")) {
    if (arity(2, "slots")) appendClusterSlots(out, face, resp3);
  } else if (is("shards")) {
    if (arity(2, "shards")) appendClusterShards(out, face, resp3);
  } else if (is("nodes")) {
    if (arity(2, "nodes")) appendClusterNodes(out, face, resp3);
  } else if (is("info")) {
    if (arity(2, "info")) appendClusterInfo(out, face, resp3);
  } else if (is("myid")) {
    if (arity(2, "myid")) appendClusterMyId(out, face);
  } else if (is("keyslot")) {
    if (arity(3, "keyslot")) resp::appendInteger(out, keyHashSlot(args[2]));
  } else if (is("countkeysinslot") || is("getkeysinslot")) {
    const bool get = is("getkeysinslot");
    if (!arity(get ? 4 : 3, get ? "getkeysinslot" : "countkeysinslot")) return result;
    int64_t slot = 0, count = 0;
    if (!parseLongLong(args[2], &slot) || (get && !parseLongLong(args[3], &count))) {
      resp::appendError(out, kNotAnInteger);
      return result;
    }
    if (slot < 0 || slot >= kHashSlots || count < 0) {
      resp::appendError(out, get ? "ERR Invalid slot or number of keys" : "ERR Invalid slot");
      return result;
    }
    result.kind = ClusterCommandResult::Kind::kRouteToSlot;
    result.slot = static_cast<uint16_t>(slot);
  } else if (is("replicas") || is("slaves")) {
    if (!arity(3, is("replicas") ? "replicas" : "slaves")) return result;
    for (uint16_t i = 0; i < nodeCount(face); ++i) {
      if (args[2] == faceNodeId(face.host, face.port, i)) {
        resp::appendArrayHeader(out, 0);  // the nodes shown have no replicas
        return result;
      }
    }
    resp::appendError(out, "ERR Unknown node " + oneLine(args[2].substr(0, 128)));
  } else if (is("addslots") || is("addslotsrange") || is("bumpepoch") ||
             is("count-failure-reports") || is("delslots") || is("delslotsrange") ||
             is("failover") || is("flushslots") || is("forget") || is("meet") ||
             is("replicate") || is("reset") || is("saveconfig") || is("set-config-epoch") ||
             is("setslot") || is("links")) {
    std::string name(sub);
    for (auto& c : name) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    resp::appendError(out, "ERR CLUSTER " + name +
                               " is not served by the proxy: run it on the cluster's own nodes");
  } else {
    resp::appendError(out, "ERR unknown subcommand '" + oneLine(sub.substr(0, 128)) +
                               "'. Try CLUSTER HELP.");
  }
  return result;
}

}  // namespace shardgate::redis
