// MultiplexSession: pub/sub and MONITOR. RESP2 turns the connection into one
// stream of frames from the client's own shard connections; RESP3 delivers
// them as pushes between replies.
#include "proxy/multiplex_session.h"

#include <uv.h>

#include <algorithm>
#include <string>

#include "common/ascii.h"
#include "redis/hash_slot.h"
#include "redis/redis_text.h"
#include "redis/reply_merge.h"
#include "redis/resp_encoder.h"

namespace shardgate::proxy {

namespace {

// SSUBSCRIBE / SUNSUBSCRIBE (lower case), whose shard channels Redis keeps apart.
bool isShardKind(std::string_view kind) { return kind == "ssubscribe" || kind == "sunsubscribe"; }

}  // namespace

MultiplexSession::Next MultiplexSession::subscribe(redis::CommandRoute route, std::string_view frame) {
  (void)frame;
  const bool unsub = route == redis::CommandRoute::kUnsubscribe || route == redis::CommandRoute::kPunsubscribe;
  const bool pattern = route == redis::CommandRoute::kPsubscribe || route == redis::CommandRoute::kPunsubscribe;
  std::string kind = asciiLower(args_[0]);
  const bool shard_kind = isShardKind(kind);
  if (!subscribed()) {
    if (unsub) {
      // Not subscribed to anything: Redis answers each name with a count of 0.
      ByteBuffer& out = frame_scratch_;
      out.clear();
      auto confirm = [&](const std::string_view* name) {
        out.append(std::string_view(resp3_ ? ">3\r\n" : "*3\r\n"));
        redis::resp::appendBulk(out, kind);
        if (name) redis::resp::appendBulk(out, *name);
        else appendNull(out);
        redis::resp::appendInteger(out, 0);
      };
      if (args_.size() == 1) confirm(nullptr);
      for (size_t i = 1; i < args_.size(); ++i) confirm(&args_[i]);
      replyLocal(out.view());
      return Next::kContinue;
    }
    if (args_.size() < 2) {
      replyError("ERR wrong number of arguments for '" + kind + "' command");
      return Next::kContinue;
    }
    if (!resp3_) {
      // RESP2: the connection now carries only pub/sub frames; they form
      // one stream that starts behind every reply still due.
      if (in_flight_ > 0) return Next::kWaitIdle;
      stream_ = newRequest(ReplyMerge::kForward, LinkKind::kPrivate, 0);
      untimeStream();
      countInFlight(stream_);
      push(stream_);
    }
    // RESP3: any command may follow; messages arrive as pushes between
    // replies, confirmations in the place of the command's reply.
  }
  // The names this command is about, in the client's order: its arguments,
  // or for a bare UNSUBSCRIBE / PUNSUBSCRIBE everything subscribed so far.
  std::vector<std::string> names;
  if (args_.size() > 1) {
    for (size_t i = 1; i < args_.size(); ++i) names.emplace_back(args_[i]);
  } else {
    // Bare UNSUBSCRIBE leaves channels only, bare SUNSUBSCRIBE shard channels only.
    const auto& set = pattern ? patterns_ : shard_kind ? shard_channels_ : channels_;
    for (const std::string& n : set) names.push_back(n);
    if (names.empty()) {
      // Nothing to leave: one confirmation with a nil name, in its turn.
      expected_.push_back(Confirm{kind, std::string(), true});
      arrived_.push_back(Confirm{kind, std::string(), true});
      emitConfirmations();
      return Next::kContinue;
    }
  }
  for (const std::string& n : names) expected_.push_back(Confirm{kind, n, false});
  const size_t shards = map_->shardCount();
  ByteBuffer& cmd_bytes = frame_scratch_;
  if (pattern) {
    // Patterns match channels of every shard: (un)subscribe on all of them.
    cmd_bytes.clear();
    redis::resp::appendArrayHeader(cmd_bytes, names.size() + 1);
    redis::resp::appendBulk(cmd_bytes, args_[0]);
    for (const std::string& n : names) redis::resp::appendBulk(cmd_bytes, n);
    std::string command(cmd_bytes.view());
    for (size_t s = 0; s < shards; ++s) sendPubsub(static_cast<int>(s), command, s == 0, names, kind);
    return Next::kContinue;
  }
  // Channels go to the shard of their slot, where PUBLISH sends them too.
  // One in a slot no master serves is not confirmed: the client is told why.
  bool unserved = false;
  for (const std::string& n : names) {
    if (map_->shardOfKey(n) != ShardMap::kNoShard) continue;
    unserved = true;
    std::erase_if(expected_, [&](const Confirm& c) { return c.kind == kind && c.name == n; });
  }
  if (unserved) {
    const std::string line = "-" + std::string(ShardMap::kNotServedError) + "\r\n";
    appendToStream(reinterpret_cast<const uint8_t*>(line.data()), line.size());
    emitConfirmations();
  }
  // A cluster node takes shard channels of one slot per command
  // (-CROSSSLOT otherwise): on a cluster database they go one slot at a time.
  const bool by_slot = shard_kind && db_.cluster;
  struct Group {
    size_t shard;
    uint16_t slot;
    std::vector<std::string> names;
  };
  std::vector<Group> groups;  // in order of first name
  for (const std::string& n : names) {
    size_t s = map_->shardOfKey(n);
    if (by_slot && unsub) {
      // Subscribed again elsewhere after its slot moved: left there.
      auto home = shard_home_.find(n);
      if (home != shard_home_.end()) s = static_cast<size_t>(home->second);
    }
    if (s == ShardMap::kNoShard) continue;
    const uint16_t slot = by_slot ? redis::keyHashSlot(n) : 0;
    auto g = std::find_if(groups.begin(), groups.end(),
                          [&](const Group& x) { return x.shard == s && x.slot == slot; });
    if (g == groups.end()) {
      groups.push_back(Group{s, slot, {}});
      g = groups.end() - 1;
    }
    g->names.push_back(n);
  }
  for (const Group& g : groups) {
    cmd_bytes.clear();
    redis::resp::appendArrayHeader(cmd_bytes, g.names.size() + 1);
    redis::resp::appendBulk(cmd_bytes, args_[0]);
    for (const std::string& n : g.names) redis::resp::appendBulk(cmd_bytes, n);
    std::string command(cmd_bytes.view());
    sendPubsub(static_cast<int>(g.shard), command, true, g.names, kind);
  }
  return Next::kContinue;
}

void MultiplexSession::sendPubsub(int shard, std::string_view frame, bool confirms,
                               const std::vector<std::string>& names, const std::string& kind) {
  // A node past the map's shards (a shard channel's home after its slot
  // moved) has no shared link to say whether it is up: its own link says.
  if (static_cast<size_t>(shard) < map_->shardCount() && !sharedLink(shard).available()) {
    if (!confirms) return;
    // The names bound for this shard will not be confirmed: say why, and
    // stop waiting for those (only those).
    std::string line = unavailableLine(shard);
    std::erase_if(expected_, [&](const Confirm& c) {
      return c.kind == kind && std::find(names.begin(), names.end(), c.name) != names.end();
    });
    appendToStream(reinterpret_cast<const uint8_t*>(line.data()), line.size());
    emitConfirmations();
    return;
  }
  ShardLink& link = privateLink(shard);
  useForStream(shard, link);
  link.sendUnmatched(frame);
  if (confirms && !names.empty()) sent_pubsub_.push_back(SentPubsub{shard, kind, names, names.size()});
  if (db_.cluster && kind == "ssubscribe") {
    for (const std::string& n : names) shard_home_[n] = shard;
  }
}

bool MultiplexSession::settlePubsub(int shard, bool error, std::string_view line) {
  auto it = std::find_if(sent_pubsub_.begin(), sent_pubsub_.end(),
                         [&](const SentPubsub& p) { return p.shard == shard; });
  if (it == sent_pubsub_.end()) return false;
  if (!error) {
    if (--it->left == 0) sent_pubsub_.erase(it);
    return true;
  }
  // The shard refused the whole command (-CROSSSLOT, -MOVED, ...): none of
  // its names will be confirmed. The client hears the error, not a hang.
  SentPubsub refused = std::move(*it);
  sent_pubsub_.erase(it);
  for (const std::string& n : refused.names) {
    auto e = std::find_if(expected_.begin(), expected_.end(),
                          [&](const Confirm& c) { return c.kind == refused.kind && c.name == n && !c.null_name; });
    if (e != expected_.end()) expected_.erase(e);
  }
  appendToStream(reinterpret_cast<const uint8_t*>(line.data()), line.size());
  emitConfirmations();
  return true;
}

void MultiplexSession::useForStream(int shard, ShardLink& link) {
  link.setPushTarget(this);
  if (stream_links_.size() <= static_cast<size_t>(shard)) {
    stream_links_.resize(std::max(map_->shardCount(), static_cast<size_t>(shard) + 1));
  }
  stream_links_[static_cast<size_t>(shard)] = true;
}

void MultiplexSession::emitConfirmations() {
  // Shards answer in their own time; the client hears the confirmations in
  // the order it named the channels, with its total count over all shards.
  while (!expected_.empty()) {
    const Confirm& want = expected_.front();
    auto it = std::find_if(arrived_.begin(), arrived_.end(), [&](const Confirm& c) {
      return c.kind == want.kind && c.name == want.name && c.null_name == want.null_name;
    });
    if (it == arrived_.end()) return;
    const bool is_pattern = want.kind[0] == 'p';
    const bool is_unsub = want.kind.find("unsub") != std::string::npos;
    const bool is_shard = isShardKind(want.kind);
    auto& set = is_pattern ? patterns_ : is_shard ? shard_channels_ : channels_;
    if (!want.null_name) {
      if (is_unsub) {
        auto found = set.find(want.name);
        if (found != set.end()) set.erase(found);
        if (is_shard) shard_home_.erase(want.name);
      } else {
        set.insert(want.name);
      }
    }
    ByteBuffer out;
    out.append(std::string_view(resp3_ ? ">3\r\n" : "*3\r\n"));
    redis::resp::appendBulk(out, want.kind);
    if (want.null_name) appendNull(out);
    else redis::resp::appendBulk(out, want.name);
    // Redis counts shard channels apart: (s)(un)subscribe's count is its own kind's.
    redis::resp::appendInteger(out, static_cast<int64_t>(is_shard ? shard_channels_.size()
                                                                  : channels_.size() + patterns_.size()));
    arrived_.erase(it);
    expected_.pop_front();
    appendToStream(out.data(), out.size());
  }
  arrived_.clear();
  endPubsubIfDone();
}

// ---- MONITOR ---------------------------------------------------------------
//
// Every shard's feed, line by line, on the client's private links. One shard
// (the first one up, first_monitor_ok_) answers for the database: the client
// hears its +OK (the others' are dropped, and their lines wait until it has
// been heard), and the commands the client sends while monitoring go to that
// shard's monitoring connection as they are. redis-server treats a monitoring
// connection like any other (PING, CLIENT, SUBSCRIBE work, keyspace commands
// get "-ERR Replica can't interact with the keyspace", a second MONITOR is
// ignored) and feeds each command after its reply, so the client gets that
// shard's own answers, interleaved with the feed as redis-server interleaves
// them.
//
//   client ─ PING ─► shard 0's monitoring connection ─► +PONG, then its feed line
//   shard 1, 2 feeds ─────────────────────────────────► lines, as they come
//
// The proxy answers QUIT, RESET, AUTH and HELLO itself (they are the
// proxy's connection state). Their replies must come after those the shard
// still owes, so a sync marker goes first: an unknown command, which the
// shard answers with its error line in any state and never feeds.
// (P)(UN)SUBSCRIBE also go, as they are, to the other shards, so messages
// published there reach the client; their confirmations and the feed lines
// of those copies are the proxy's, dropped.

namespace {

constexpr std::string_view kMonitorSyncCommand = "*1\r\n$22\r\nSHARDGATE-MONITOR-SYNC\r\n";
constexpr std::string_view kMonitorSyncReply =
    "-ERR unknown command 'SHARDGATE-MONITOR-SYNC', with args beginning with: \r\n";

// A MONITOR feed line: "+<seconds>.<micros> [<db> <client>] "CMD" "arg" ...".
bool isFeedLine(std::string_view frame) {
  return frame.size() > 2 && frame[0] == '+' && frame[1] >= '0' && frame[1] <= '9';
}

// The command part of a feed line, after "] ", without CRLF.
std::string_view feedCommand(std::string_view frame) {
  size_t at = frame.find("] \"");
  if (at == std::string_view::npos) return {};
  std::string_view rest = frame.substr(at + 2);
  while (!rest.empty() && (rest.back() == '\n' || rest.back() == '\r')) rest.remove_suffix(1);
  return rest;
}

// How a feed line quotes a command: sdscatrepr() of each argument, joined
// by spaces (replicationFeedMonitors() in Redis's replication.c).
std::string feedRepr(const std::vector<std::string_view>& args) {
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (i > 0) out += ' ';
    out += '"';
    for (char c : args[i]) {
      switch (c) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\a': out += "\\a"; break;
        case '\b': out += "\\b"; break;
        default:
          if (c >= 0x20 && c <= 0x7e) {
            out += c;
          } else {
            static constexpr char kHex[] = "0123456789abcdef";
            auto b = static_cast<unsigned char>(c);
            out += "\\x";
            out += kHex[b >> 4];
            out += kHex[b & 15];
          }
      }
    }
    out += '"';
  }
  return out;
}

// A pub/sub message (not a confirmation): RESP2 array or RESP3 push whose
// first element is "message", "pmessage" or "smessage".
bool isPubsubMessage(std::string_view frame) {
  if (frame.empty() || (frame[0] != '*' && frame[0] != '>')) return false;
  auto v = redis::parseReply(frame);
  if (!v || v->elements.empty()) return false;
  std::string_view kind = v->elements[0].str;
  return redis::equalsLower(kind, "message") || redis::equalsLower(kind, "pmessage") ||
         redis::equalsLower(kind, "smessage");
}

bool arityAllows(const redis::CommandInfo& cmd, size_t argc) {
  return cmd.arity >= 0 ? argc == static_cast<size_t>(cmd.arity)
                        : argc >= static_cast<size_t>(-cmd.arity);
}

}  // namespace

MultiplexSession::Next MultiplexSession::monitor(std::string_view frame) {
  if (in_flight_ > 0) return Next::kWaitIdle;
  const size_t shards = map_->shardCount();
  int answering = -1;
  for (size_t s = 0; s < shards && answering < 0; ++s) {
    if (sharedLink(static_cast<int>(s)).available()) answering = static_cast<int>(s);
  }
  if (answering < 0) {
    replyLocal(unavailableLine(0));
    return Next::kContinue;
  }
  stream_ = newRequest(ReplyMerge::kForward, LinkKind::kPrivate, 0);
  untimeStream();
  countInFlight(stream_);
  push(stream_);
  monitoring_ = true;
  first_monitor_ok_ = answering;
  monitor_ = std::make_unique<MonitorState>();
  monitor_->ok_due.assign(shards, false);
  monitor_->echoes.resize(shards);
  for (size_t s = 0; s < shards; ++s) {
    int shard = static_cast<int>(s);
    if (!sharedLink(shard).available()) continue;  // its lines are missing, nothing else
    ShardLink& link = privateLink(shard);
    useForStream(shard, link);
    link.sendUnmatched(frame);
    monitor_->ok_due[s] = true;
  }
  return Next::kContinue;
}

void MultiplexSession::sendMonitorSync() {
  monitor_->sync_sent = true;
  privateLink(first_monitor_ok_).sendUnmatched(kMonitorSyncCommand);
}

MultiplexSession::Next MultiplexSession::dispatchInMonitor(const redis::CommandInfo* cmd, std::string_view frame) {
  MonitorState& m = *monitor_;
  const auto route = cmd ? static_cast<redis::CommandRoute>(cmd->route) : redis::CommandRoute::kDefault;
  switch (route) {
    case redis::CommandRoute::kMonitor:
      if (!arityAllows(*cmd, args_.size())) break;  // the shard's arity error
      return Next::kContinue;  // redis-server ignores it: no reply at all
    case redis::CommandRoute::kClient:
    case redis::CommandRoute::kUnsupported:
      // What the proxy refuses on any connection it refuses here too: sent
      // on, CLIENT KILL / PAUSE would act on the connections every client
      // shares, CLIENT REPLY OFF / SKIP would swallow the sync marker (and
      // the command waiting for it would never be answered), SHUTDOWN or
      // REPLICAOF would reach one shard of the database.
      if (route == redis::CommandRoute::kClient &&
          (args_.size() < 2 || !clientActsOnSharedConnections(args_[1]))) {
        break;
      }
      [[fallthrough]];
    case redis::CommandRoute::kQuit:
    case redis::CommandRoute::kReset:
    case redis::CommandRoute::kAuth:
    case redis::CommandRoute::kHello: {
      // A wrong argument count is the shard's to answer, in its turn.
      if (!db_.commands->checkCall(*cmd, args_)) break;
      if (!m.synced) {
        if (!m.sync_sent) sendMonitorSync();
        return Next::kWaitIdle;  // parsed again when the marker is back
      }
      m.synced = false;
      if (route == redis::CommandRoute::kQuit) {
        replySimple("OK");
        return Next::kStop;
      }
      if (route == redis::CommandRoute::kReset) return reset();
      if (route == redis::CommandRoute::kAuth) return auth();
      if (route == redis::CommandRoute::kClient) return client();
      if (route == redis::CommandRoute::kUnsupported) {
        replyError("ERR shardgate: " + asciiLower(args_[0]) + " is not supported on " +
                   multiplexKind());
        return Next::kContinue;
      }
      Next next = hello();
      if (next == Next::kWaitIdle) {
        // It would switch protocols, which waits for an idle connection; a
        // monitoring one never is.
        replyError("ERR shardgate: HELLO cannot switch protocols while monitoring (RESET first)");
        return Next::kContinue;
      }
      return next;
    }
    default:
      break;
  }
  // Everything else is the answering shard's to answer.
  privateLink(first_monitor_ok_).sendUnmatched(frame);
  const bool subscription = route == redis::CommandRoute::kSubscribe ||
                            route == redis::CommandRoute::kPsubscribe ||
                            route == redis::CommandRoute::kUnsubscribe ||
                            route == redis::CommandRoute::kPunsubscribe;
  if (subscription && arityAllows(*cmd, args_.size())) {
    std::string echo = feedRepr(args_);
    for (size_t s = 0; s < stream_links_.size(); ++s) {
      if (static_cast<int>(s) == first_monitor_ok_ || !stream_links_[s] || !private_[s]) continue;
      private_[s]->sendUnmatched(frame);
      m.echoes[s].push_back(echo);
    }
  }
  return Next::kContinue;
}

void MultiplexSession::onMonitorFrame(ShardLink& link, const ByteBuffer& frame) {
  MonitorState& m = *monitor_;
  const size_t s = link.shard();
  const auto bytes = frame.view();
  if (s < m.ok_due.size() && m.ok_due[s]) {
    m.ok_due[s] = false;  // the shard's reply to MONITOR
    if (static_cast<int>(s) != first_monitor_ok_) return;  // the client asked once, hears once
    appendToStream(frame.data(), frame.size());
    m.acked = true;
    if (!m.held.empty()) {
      appendToStream(m.held.data(), m.held.size());
      m.held.clear();
      m.held.release();
    }
    return;
  }
  if (static_cast<int>(s) == first_monitor_ok_) {
    if (m.sync_sent && bytes == kMonitorSyncReply) {
      m.sync_sent = false;
      m.synced = true;
      conn_.replyReady();  // the waiting command is dispatched again from there
      return;
    }
    appendToStream(frame.data(), frame.size());
    return;
  }
  // Another shard: its feed and the messages published on it; what answers
  // the copies of the client's subscription commands is the proxy's.
  if (isFeedLine(bytes)) {
    auto& echoes = m.echoes[s];
    if (!echoes.empty() && feedCommand(bytes) == echoes.front()) {
      echoes.erase(echoes.begin());
      return;
    }
  } else if (!isPubsubMessage(bytes)) {
    return;
  }
  if (!m.acked) {
    // Held like any reply, so limits.max_client_output bounds it: the
    // answering shard may be stopped while the others keep feeding.
    m.held.append(frame.data(), frame.size());
    conn_.replyReady();
    return;
  }
  appendToStream(frame.data(), frame.size());
}

MultiplexSession::Next MultiplexSession::dispatchInPubsub(const redis::CommandInfo* cmd, std::string_view frame) {
  if (monitoring_) return dispatchInMonitor(cmd, frame);
  if (!cmd) {
    std::string err = redis::unknownCommand(args_);
    err.insert(0, 1, '-');
    err += "\r\n";
    appendToStream(reinterpret_cast<const uint8_t*>(err.data()), err.size());
    return Next::kContinue;
  }
  auto route = static_cast<redis::CommandRoute>(cmd->route);
  switch (route) {
    case redis::CommandRoute::kSubscribe:
    case redis::CommandRoute::kPsubscribe:
    case redis::CommandRoute::kUnsubscribe:
    case redis::CommandRoute::kPunsubscribe:
      return subscribe(route, frame);
    case redis::CommandRoute::kPing: {
      ByteBuffer out;
      if (resp3_) {  // RESP3 answers PING as usual while subscribed
        if (args_.size() > 1) redis::resp::appendBulk(out, args_[1]);
        else redis::resp::appendSimple(out, "PONG");
        appendToStream(out.data(), out.size());
        return Next::kContinue;
      }
      redis::resp::appendArrayHeader(out, 2);
      redis::resp::appendBulk(out, "pong");
      redis::resp::appendBulk(out, args_.size() > 1 ? args_[1] : std::string_view());
      appendToStream(out.data(), out.size());
      return Next::kContinue;
    }
    case redis::CommandRoute::kQuit: {
      appendToStream(reinterpret_cast<const uint8_t*>("+OK\r\n"), 5);
      return Next::kStop;
    }
    case redis::CommandRoute::kReset:
      return reset();
    default: {
      std::string err = "-ERR Can't execute '" + cmd->name +
                        "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are "
                        "allowed in this context\r\n";
      appendToStream(reinterpret_cast<const uint8_t*>(err.data()), err.size());
      return Next::kContinue;
    }
  }
}

void MultiplexSession::onPush(ShardLink& link, const uint8_t* data, size_t len, bool done) {
  if (push_partial_.size() <= link.shard()) push_partial_.resize(std::max<size_t>(map_->shardCount(), link.shard() + 1));
  ByteBuffer& frame = push_partial_[link.shard()];
  frame.append(data, len);
  if (!done) return;
  ByteBuffer whole;
  whole.swap(frame);
  if (!stream_ && !resp3_) return;  // late confirmations after the last UNSUBSCRIBE
  if (!stream_) {
    // RESP3: subscription confirmations are put in order and counted like
    // RESP2's; messages and CLIENT TRACKING invalidations go between replies.
    if (!whole.empty() && whole.data()[0] == '-' &&
        ((db_.cluster && onShardChannelFrame(static_cast<int>(link.shard()), {}, {}, whole.view())) ||
         settlePubsub(static_cast<int>(link.shard()), true, whole.view()))) {
      return;
    }
    if (whole.empty() || whole.data()[0] != '>') return;
    auto v = redis::parseReply(whole.view());
    if (v && v->elements.size() == 3 && v->elements[2].type == redis::RespValue::Type::kInteger) {
      std::string kind = asciiLower(v->elements[0].str);
      if (kind.find("subscribe") != std::string::npos) {
        if (kind[0] == 'p' && link.shard() != 0) return;
        const redis::RespValue& name = v->elements[1];
        const bool null_name = name.type == redis::RespValue::Type::kNull;
        if (db_.cluster && !null_name && onShardChannelFrame(static_cast<int>(link.shard()), kind, name.str, {})) {
          return;
        }
        settlePubsub(static_cast<int>(link.shard()), false, {});
        arrived_.push_back(
            Confirm{kind, null_name ? std::string() : std::string(name.str), null_name});
        emitConfirmations();
        return;
      }
    }
    deliverOutOfBand(whole);
    return;
  }
  if (monitoring_) {
    onMonitorFrame(link, whole);
    return;
  }
  if (!whole.empty() && whole.data()[0] == '-' &&
      ((db_.cluster && onShardChannelFrame(static_cast<int>(link.shard()), {}, {}, whole.view())) ||
       settlePubsub(static_cast<int>(link.shard()), true, whole.view()))) {
    return;
  }
  auto v = redis::parseReply(whole.view());
  if (!v || (v->type != redis::RespValue::Type::kArray && v->type != redis::RespValue::Type::kPush) ||
      v->elements.size() != 3 ||
      v->elements[2].type != redis::RespValue::Type::kInteger) {
    appendToStream(whole.data(), whole.size());  // messages, pongs, errors
    return;
  }
  std::string kind = asciiLower(v->elements[0].str);
  const bool is_pattern = kind == "psubscribe" || kind == "punsubscribe";
  const bool is_channel = kind == "subscribe" || kind == "unsubscribe" ||
                          kind == "ssubscribe" || kind == "sunsubscribe";
  if (!is_pattern && !is_channel) {
    appendToStream(whole.data(), whole.size());
    return;
  }
  // Every shard confirms a pattern; the client asked once and hears once.
  if (is_pattern && link.shard() != 0) return;
  const redis::RespValue& name = v->elements[1];
  const bool null_name = name.type == redis::RespValue::Type::kNull;
  if (db_.cluster && !null_name && onShardChannelFrame(static_cast<int>(link.shard()), kind, name.str, {})) {
    return;
  }
  settlePubsub(static_cast<int>(link.shard()), false, {});
  arrived_.push_back(Confirm{kind, null_name ? std::string() : std::string(name.str), null_name});
  emitConfirmations();
}

void MultiplexSession::deliverOutOfBand(const ByteBuffer& frame) {
  // Between two replies, never inside one that is half written.
  if (head_ && head_->streamed && !head_->done) {
    oob_.append(frame.data(), frame.size());
    return;
  }
  conn_.replyOut().append(frame.data(), frame.size());
  conn_.replyReady();
}

void MultiplexSession::appendToStream(const uint8_t* data, size_t len) {
  if (!stream_) {
    replyLocal(std::string_view(reinterpret_cast<const char*>(data), len));
    return;
  }
  if (stream_ == head_) {
    conn_.replyOut().append(data, len);
    conn_.replyReady();
  } else {
    stream_->reply.append(data, len);
    buffered_ += len;
  }
}

void MultiplexSession::endPubsubIfDone() {
  if (!stream_ || !channels_.empty() || !patterns_.empty() || !shard_channels_.empty()) return;
  endStream();
}

void MultiplexSession::endStream() {
  if (!stream_) return;
  // The links that carried subscriptions may still deliver confirmations
  // nobody waits for (other shards' PUNSUBSCRIBE): they are retired, never
  // reused for commands whose replies must match. We may be inside one of
  // their callbacks, so they are deleted later, from dispatch().
  for (size_t i = 0; i < private_.size() && i < stream_links_.size(); ++i) {
    if (private_[i] && stream_links_[i]) retired_.push_back(std::move(private_[i]));
  }
  stream_links_.clear();
  Request* s = stream_;
  stream_ = nullptr;
  clearPubsub();
  s->done = true;
  uncount(s);
  complete(s);
}

}  // namespace shardgate::proxy
