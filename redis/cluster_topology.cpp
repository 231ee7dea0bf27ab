// CLUSTER SHARDS and CLUSTER SLOTS -> ClusterTopology.
//
// The two replies, as redis-server 7.0 writes them (RESP2; RESP3 turns every
// "flat key/value array" below into a map):
//
//   CLUSTER SHARDS: [ shard, ... ]
//     shard: ["slots", [first, last, first, last, ...], "nodes", [node, ...]]
//     node:  ["id", <40 hex>, "port", <int>, "tls-port", <int>, "ip", <str>,
//             "endpoint", <str>, "hostname", <str>, "role", "master"|"replica",
//             "replication-offset", <int>, "health", "online"|"failed"|"loading"]
//            (port/tls-port/hostname only when the node has them)
//   CLUSTER SLOTS:  [ [first, last, master, replica, ...], ... ]
//     node:  [<endpoint>, <port>, <id>, {hostname/ip metadata}]   (id and the
//            metadata since Redis 4 and 7; a range per contiguous run of slots)
//
// https://redis.io/commands/cluster-shards/, https://redis.io/commands/cluster-slots/
#include "redis/cluster_topology.h"

#include <algorithm>
#include <cassert>
#include <string>

#include "redis/hash_slot.h"
#include "redis/resp_value.h"

namespace shardgate::redis {

const char* nodeRoleName(NodeRole role) {
  return role == NodeRole::kMaster ? "master" : "replica";
}

const char* nodeHealthName(NodeHealth health) {
  switch (health) {
    case NodeHealth::kOnline: return "online";
    case NodeHealth::kFailed: return "failed";
    case NodeHealth::kLoading: return "loading";
    case NodeHealth::kUnknown: return "unknown";
  }
  return "unknown";
}

std::string ClusterNode::key() const {
  return id.empty() ? address() : id;
}

std::string ClusterNode::address() const {
  return host + ":" + std::to_string(port != 0 ? port : tls_port);
}

std::string formatSlotRanges(const std::vector<SlotRange>& ranges) {
  std::string out;
  for (const auto& r : ranges) {
    if (!out.empty()) out += ',';
    out += std::to_string(r.first);
    if (r.last != r.first) out += '-' + std::to_string(r.last);
  }
  return out;
}

namespace {

// Consecutive slots for which pred(slot) holds, as ranges.
template <typename Pred>
std::vector<SlotRange> rangesWhere(Pred pred) {
  std::vector<SlotRange> out;
  for (uint32_t s = 0; s < kHashSlots; ++s) {
    if (!pred(static_cast<uint16_t>(s))) continue;
    if (!out.empty() && out.back().last + 1u == s) {
      out.back().last = static_cast<uint16_t>(s);
    } else {
      out.push_back({static_cast<uint16_t>(s), static_cast<uint16_t>(s)});
    }
  }
  return out;
}

bool isText(const RespValue& v) {
  return v.type == RespValue::Type::kBulkString || v.type == RespValue::Type::kSimpleString ||
         v.type == RespValue::Type::kVerbatim;
}

// RESP2 sends a map as a flat array of key, value, ...; RESP3 as a map.
bool isPairs(const RespValue& v) {
  return v.type == RespValue::Type::kMap ||
         (v.type == RespValue::Type::kArray && v.elements.size() % 2 == 0);
}

const RespValue* field(const RespValue& pairs, std::string_view name) {
  for (size_t i = 0; i + 1 < pairs.elements.size(); i += 2) {
    const RespValue& k = pairs.elements[i];
    if (isText(k) && k.str == name) return &pairs.elements[i + 1];
  }
  return nullptr;
}


Result<uint16_t> slotNumber(const RespValue& v, const std::string& where) {
  if (v.type != RespValue::Type::kInteger) {
    return makeError(where + ": a slot number must be an integer, got " +
                     std::string(typeName(v.type)));
  }
  if (v.integer < 0 || v.integer >= kHashSlots) {
    return makeError(where + ": slot " + std::to_string(v.integer) + " is out of range 0-16383");
  }
  return static_cast<uint16_t>(v.integer);
}

Result<uint16_t> portNumber(const RespValue& v, const std::string& where) {
  if (v.type != RespValue::Type::kInteger || v.integer < 0 || v.integer > 65535) {
    return makeError(where + ": port must be an integer 0-65535");
  }
  return static_cast<uint16_t>(v.integer);
}

// An error reply as a topology error: the node's own words.
std::string nodeSaid(std::string_view what, const RespValue& v) {
  return std::string(what) + ": the node answered -" + std::string(v.str);
}

}  // namespace

// Collects nodes (deduplicated by identity) and slot owners, and refuses
// contradictions: one slot claimed by two masters, one node listed as master
// and as replica.
class TopologyBuilder {
 public:
  explicit TopologyBuilder(std::string what) : what_(std::move(what)) {}

  // Adds or finds the node; returns its index, or an error if it contradicts
  // an earlier listing of the same node.
  Result<int> addNode(ClusterNode node, const std::string& where) {
    const std::string key = node.key();
    const int found = topo_.find(key);
    if (found >= 0) {
      ClusterNode& have = topo_.nodes_[static_cast<size_t>(found)];
      if (have.role != node.role) {
        return makeError(what_ + ": " + where + ": node " + key + " is listed as " +
                         nodeRoleName(node.role) + " here and as " + nodeRoleName(have.role) +
                         " before");
      }
      return found;
    }
    topo_.nodes_.push_back(std::move(node));
    return static_cast<int>(topo_.nodes_.size() - 1);
  }

  Status assign(uint16_t first, uint16_t last, int master, const std::string& where) {
    if (first > last) {
      return makeError(what_ + ": " + where + ": slot range " + std::to_string(first) + "-" +
                       std::to_string(last) + " is backwards");
    }
    for (uint32_t s = first; s <= last; ++s) {
      int16_t& owner = topo_.owner_[s];
      if (owner != ClusterTopology::kNoOwner && owner != master) {
        return makeError(what_ + ": slot " + std::to_string(s) + " owned by two masters (" +
                         topo_.nodes_[static_cast<size_t>(owner)].address() + " and " +
                         topo_.nodes_[static_cast<size_t>(master)].address() + ")");
      }
      owner = static_cast<int16_t>(master);
    }
    return {};
  }

  ClusterNode& node(int i) { return topo_.nodes_[static_cast<size_t>(i)]; }
  const std::string& what() const { return what_; }
  ClusterTopology take() { return std::move(topo_); }

 private:
  std::string what_;
  ClusterTopology topo_;
};

ClusterTopology::ClusterTopology() : owner_(kHashSlots, static_cast<int16_t>(kNoOwner)) {}

int ClusterTopology::find(std::string_view key) const {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].id == key || nodes_[i].key() == key) return static_cast<int>(i);
  }
  return -1;
}

std::vector<int> ClusterTopology::masters() const {
  std::vector<bool> owns(nodes_.size(), false);
  for (int16_t o : owner_) {
    if (o != kNoOwner) owns[static_cast<size_t>(o)] = true;
  }
  std::vector<int> out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (owns[i]) out.push_back(static_cast<int>(i));
  }
  return out;
}

std::vector<int> ClusterTopology::replicasOf(int master) const {
  std::vector<int> out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].role == NodeRole::kReplica && nodes_[i].master == master) {
      out.push_back(static_cast<int>(i));
    }
  }
  return out;
}

std::vector<SlotRange> ClusterTopology::slotsOf(int node) const {
  return rangesWhere([&](uint16_t s) { return owner_[s] == node; });
}

std::vector<SlotRange> ClusterTopology::uncovered() const {
  return rangesWhere([&](uint16_t s) { return owner_[s] == kNoOwner; });
}

size_t ClusterTopology::coveredSlots() const {
  return static_cast<size_t>(
      std::count_if(owner_.begin(), owner_.end(), [](int16_t o) { return o != kNoOwner; }));
}

std::string ClusterTopology::describe() const {
  size_t masters = 0, replicas = 0, failed = 0;
  for (const auto& n : nodes_) {
    if (n.health == NodeHealth::kFailed) {
      ++failed;
      continue;
    }
    (n.role == NodeRole::kMaster ? masters : replicas) += 1;
  }
  auto plural = [](size_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
  };
  std::string out = plural(masters, "master", "masters") + ", " +
                    plural(replicas, "replica", "replicas") + ", " +
                    plural(coveredSlots(), "slot", "slots") + " covered";
  if (failed > 0) out += ", " + plural(failed, "failed node", "failed nodes");
  const auto holes = uncovered();
  if (!holes.empty()) {
    std::vector<SlotRange> shown(holes.begin(),
                                 holes.begin() + static_cast<long>(std::min<size_t>(holes.size(), 4)));
    out += ", slots " + formatSlotRanges(shown);
    if (holes.size() > shown.size()) {
      out += " and " + std::to_string(holes.size() - shown.size()) + " more ranges";
    }
    out += " not covered";
  }
  return out;
}

// ---------------------------------------------------------------------------
// CLUSTER SHARDS

namespace {

Result<ClusterNode> shardNode(const RespValue& v, std::string_view answering_host,
                              const std::string& where) {
  if (!isPairs(v)) return makeError(where + ": expected a map of fields");
  ClusterNode node;
  auto text = [&](std::string_view name, std::string* out) -> Status {
    const RespValue* f = field(v, name);
    if (f == nullptr) return {};
    if (!isText(*f)) return makeError(where + ": \"" + std::string(name) + "\" must be a string");
    *out = std::string(f->str);
    return {};
  };
  std::string endpoint, role, health;
  for (auto [name, out] : {std::pair<std::string_view, std::string*>{"id", &node.id},
                           {"ip", &node.ip},
                           {"endpoint", &endpoint},
                           {"hostname", &node.hostname},
                           {"role", &role},
                           {"health", &health}}) {
    if (Status s = text(name, out); !s) return Error{s.message()};
  }
  if (const RespValue* f = field(v, "port")) {
    auto p = portNumber(*f, where);
    if (!p) return p.error();
    node.port = *p;
  }
  if (const RespValue* f = field(v, "tls-port")) {
    auto p = portNumber(*f, where);
    if (!p) return p.error();
    node.tls_port = *p;
  }
  if (const RespValue* f = field(v, "replication-offset")) {
    if (f->type == RespValue::Type::kInteger) node.replication_offset = f->integer;
  }
  if (node.port == 0 && node.tls_port == 0) {
    return makeError(where + ": no \"port\" or \"tls-port\"");
  }
  if (role == "master") {
    node.role = NodeRole::kMaster;
  } else if (role == "replica") {
    node.role = NodeRole::kReplica;
  } else {
    return makeError(where + ": \"role\" is \"" + role + "\", expected master or replica");
  }
  if (health == "online") {
    node.health = NodeHealth::kOnline;
  } else if (health == "failed" || health == "fail") {
    node.health = NodeHealth::kFailed;
  } else if (health == "loading") {
    node.health = NodeHealth::kLoading;
  } else {
    node.health = NodeHealth::kUnknown;
  }
  // "endpoint" is the preferred endpoint; "" (unknown-endpoint) means the
  // host that answered, "?" a hostname that is not set: the ip then.
  node.host = endpoint.empty() || endpoint == "?" ? node.ip : endpoint;
  if (node.host.empty()) node.host = std::string(answering_host);
  if (node.host.empty()) return makeError(where + ": no \"endpoint\" or \"ip\"");
  return node;
}

}  // namespace

Result<ClusterTopology> ClusterTopology::fromShards(std::string_view reply,
                                                    std::string_view answering_host) {
  TopologyBuilder b("CLUSTER SHARDS reply");
  auto parsed = parseReply(reply);
  if (!parsed) return makeError(b.what() + ": " + parsed.message());
  const RespValue& top = *parsed;
  if (top.type == RespValue::Type::kError) return makeError(nodeSaid(b.what(), top));
  if (top.type != RespValue::Type::kArray) {
    return makeError(b.what() + ": expected an array of shards, got " +
                     std::string(typeName(top.type)));
  }
  for (size_t si = 0; si < top.elements.size(); ++si) {
    const std::string shard_where = "shard " + std::to_string(si + 1);
    const RespValue& shard = top.elements[si];
    if (!isPairs(shard)) return makeError(b.what() + ": " + shard_where + " is not a map");
    const RespValue* slots = field(shard, "slots");
    const RespValue* nodes = field(shard, "nodes");
    if (slots == nullptr || slots->type != RespValue::Type::kArray) {
      return makeError(b.what() + ": " + shard_where + " has no \"slots\" array");
    }
    if (nodes == nullptr || nodes->type != RespValue::Type::kArray) {
      return makeError(b.what() + ": " + shard_where + " has no \"nodes\" array");
    }
    if (slots->elements.size() % 2 != 0) {
      return makeError(b.what() + ": " + shard_where +
                       " \"slots\" has an odd number of bounds (expected first, last pairs)");
    }
    int master = -1;
    std::vector<int> replicas;
    for (size_t ni = 0; ni < nodes->elements.size(); ++ni) {
      const std::string where = shard_where + " node " + std::to_string(ni + 1);
      auto node = shardNode(nodes->elements[ni], answering_host, where);
      if (!node) return makeError(b.what() + ": " + node.message());
      const NodeRole role = node->role;
      auto index = b.addNode(std::move(*node), where);
      if (!index) return index.error();
      if (role == NodeRole::kReplica) {
        replicas.push_back(*index);
      } else if (master >= 0) {
        return makeError(b.what() + ": " + shard_where + " has two masters (" +
                         b.node(master).address() + " and " + b.node(*index).address() + ")");
      } else {
        master = *index;
      }
    }
    if (master < 0) {
      if (slots->elements.empty() && replicas.empty()) continue;  // an empty shard
      return makeError(b.what() + ": " + shard_where + " has no master");
    }
    for (int r : replicas) b.node(r).master = master;
    for (size_t i = 0; i + 1 < slots->elements.size(); i += 2) {
      auto first = slotNumber(slots->elements[i], b.what() + ": " + shard_where);
      if (!first) return first.error();
      auto last = slotNumber(slots->elements[i + 1], b.what() + ": " + shard_where);
      if (!last) return last.error();
      if (Status s = b.assign(*first, *last, master, shard_where); !s) return Error{s.message()};
    }
  }
  return b.take();
}

// ---------------------------------------------------------------------------
// CLUSTER SLOTS

namespace {

Result<ClusterNode> slotsNode(const RespValue& v, NodeRole role, std::string_view answering_host,
                              const std::string& where) {
  if (v.type != RespValue::Type::kArray || v.elements.size() < 2) {
    return makeError(where + ": expected [host, port, id, ...]");
  }
  ClusterNode node;
  node.role = role;
  const RespValue& host = v.elements[0];
  if (!isText(host)) return makeError(where + ": the host must be a string");
  auto port = portNumber(v.elements[1], where);
  if (!port) return port.error();
  node.port = *port;
  if (v.elements.size() >= 3) {
    if (!isText(v.elements[2])) return makeError(where + ": the node id must be a string");
    node.id = std::string(v.elements[2].str);
  }
  if (v.elements.size() >= 4 && isPairs(v.elements[3])) {
    const RespValue& meta = v.elements[3];
    if (const RespValue* f = field(meta, "ip"); f != nullptr && isText(*f)) {
      node.ip = std::string(f->str);
    }
    if (const RespValue* f = field(meta, "hostname"); f != nullptr && isText(*f)) {
      node.hostname = std::string(f->str);
    }
  }
  const std::string_view endpoint = host.str;
  if (node.ip.empty() && endpoint != "?") node.ip = std::string(endpoint);
  node.host = endpoint.empty() || endpoint == "?" ? node.ip : std::string(endpoint);
  if (node.host.empty()) node.host = std::string(answering_host);
  if (node.host.empty()) return makeError(where + ": the node has no host or ip");
  return node;
}

}  // namespace

Result<ClusterTopology> ClusterTopology::fromSlots(std::string_view reply,
                                                   std::string_view answering_host) {
  TopologyBuilder b("CLUSTER SLOTS reply");
  auto parsed = parseReply(reply);
  if (!parsed) return makeError(b.what() + ": " + parsed.message());
  const RespValue& top = *parsed;
  if (top.type == RespValue::Type::kError) return makeError(nodeSaid(b.what(), top));
  if (top.type != RespValue::Type::kArray) {
    return makeError(b.what() + ": expected an array of slot ranges, got " +
                     std::string(typeName(top.type)));
  }
  for (size_t ri = 0; ri < top.elements.size(); ++ri) {
    const std::string where = "range " + std::to_string(ri + 1);
    const RespValue& range = top.elements[ri];
    if (range.type != RespValue::Type::kArray || range.elements.size() < 3) {
      return makeError(b.what() + ": " + where + ": expected [first, last, master, replicas...]");
    }
    auto first = slotNumber(range.elements[0], b.what() + ": " + where);
    if (!first) return first.error();
    auto last = slotNumber(range.elements[1], b.what() + ": " + where);
    if (!last) return last.error();
    auto master_node = slotsNode(range.elements[2], NodeRole::kMaster, answering_host,
                                 b.what() + ": " + where + " master");
    if (!master_node) return master_node.error();
    auto master = b.addNode(std::move(*master_node), where);
    if (!master) return master.error();
    for (size_t i = 3; i < range.elements.size(); ++i) {
      const std::string rwhere = where + " replica " + std::to_string(i - 2);
      auto replica = slotsNode(range.elements[i], NodeRole::kReplica, answering_host,
                               b.what() + ": " + rwhere);
      if (!replica) return replica.error();
      auto index = b.addNode(std::move(*replica), rwhere);
      if (!index) return index.error();
      ClusterNode& r = b.node(*index);
      if (r.master >= 0 && r.master != *master) {
        return makeError(b.what() + ": " + rwhere + ": " + r.address() +
                         " is listed as the replica of two masters (" +
                         b.node(r.master).address() + " and " + b.node(*master).address() + ")");
      }
      r.master = *master;
    }
    if (Status s = b.assign(*first, *last, *master, where); !s) return Error{s.message()};
  }
  return b.take();
}

// ---------------------------------------------------------------------------
// What moved

std::vector<SlotMove> changedSlots(const ClusterTopology& before, const ClusterTopology& after) {
  std::vector<SlotMove> out;
  auto address = [](const ClusterTopology& t, uint16_t slot) -> std::string {
    const ClusterNode* n = t.ownerOf(slot);
    return n == nullptr ? std::string() : n->address();
  };
  auto key = [](const ClusterTopology& t, uint16_t slot) -> std::string {
    const ClusterNode* n = t.ownerOf(slot);
    return n == nullptr ? std::string() : n->key();
  };
  for (uint32_t s32 = 0; s32 < kHashSlots; ++s32) {
    const auto s = static_cast<uint16_t>(s32);
    // Same owner by identity: not a move, even if the node changed index.
    if (key(before, s) == key(after, s) && address(before, s) == address(after, s)) continue;
    std::string from = address(before, s), to = address(after, s);
    if (!out.empty() && out.back().slots.last + 1u == s && out.back().from == from &&
        out.back().to == to) {
      out.back().slots.last = s;
    } else {
      out.push_back({{s, s}, std::move(from), std::move(to)});
    }
  }
  return out;
}

std::string describeMoves(const std::vector<SlotMove>& moves, size_t limit) {
  if (moves.empty()) return "no slot moved";
  std::string out;
  const size_t shown = std::min(limit, moves.size());
  for (size_t i = 0; i < shown; ++i) {
    const SlotMove& m = moves[i];
    if (!out.empty()) out += "; ";
    out += m.slots.first == m.slots.last ? "slot " : "slots ";
    out += formatSlotRanges({m.slots});
    out += ' ';
    out += m.from.empty() ? "none" : m.from;
    out += " -> ";
    out += m.to.empty() ? "none" : m.to;
  }
  if (moves.size() > shown) out += "; and " + std::to_string(moves.size() - shown) + " more";
  return out;
}

namespace {

// "master", "replica of 127.0.0.1:7000", or "replica" when its master is not listed.
std::string roleText(const ClusterTopology& t, const ClusterNode& n) {
  if (n.role == NodeRole::kMaster) return "master";
  if (n.master < 0) return "replica";
  return "replica of " + t.nodes()[static_cast<size_t>(n.master)].address();
}

}  // namespace

std::vector<std::string> nodeChanges(const ClusterTopology& before, const ClusterTopology& after) {
  std::vector<std::string> out;
  for (const ClusterNode& n : after.nodes()) {
    const int was = before.find(n.key());
    if (was < 0) {
      out.push_back(n.address() + " joined as " + roleText(after, n));
      continue;
    }
    const ClusterNode& old = before.nodes()[static_cast<size_t>(was)];
    const bool failed = n.health == NodeHealth::kFailed, had_failed = old.health == NodeHealth::kFailed;
    const std::string role = roleText(after, n);
    if (failed && !had_failed) {
      out.push_back(n.address() + " failed");
    } else if (!failed && had_failed) {
      out.push_back(n.address() + " is back as " + role);
    } else if (!failed && role != roleText(before, old)) {
      out.push_back(n.address() + " is now " + role);
    }
  }
  for (const ClusterNode& old : before.nodes()) {
    if (after.find(old.key()) < 0) out.push_back(old.address() + " left");
  }
  return out;
}

std::string describeNodeChanges(const std::vector<std::string>& changes, size_t limit) {
  std::string out;
  const size_t shown = std::min(limit, changes.size());
  for (size_t i = 0; i < shown; ++i) out += (i ? "; " : "") + changes[i];
  if (changes.size() > shown) out += "; and " + std::to_string(changes.size() - shown) + " more";
  return out;
}

}  // namespace shardgate::redis
