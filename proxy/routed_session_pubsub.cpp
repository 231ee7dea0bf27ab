// RoutedSession: pub/sub and MONITOR. RESP2 turns the connection into one
// stream of frames from the client's own shard connections; RESP3 delivers
// them as pushes between replies.
#include "proxy/routed_session.h"

#include <uv.h>

#include <algorithm>
#include <string>

#include "proxy/ascii.h"
#include "proxy/client_connection.h"
#include "proxy/hash_slot.h"
#include "proxy/redis_text.h"
#include "proxy/reply_merge.h"
#include "proxy/resp_encoder.h"
#include "proxy/worker.h"

namespace shardgate::proxy {

RoutedSession::Next RoutedSession::subscribe(CommandRoute route, std::string_view frame) {
  (void)frame;
  const bool unsub = route == CommandRoute::kUnsubscribe || route == CommandRoute::kPunsubscribe;
  const bool pattern = route == CommandRoute::kPsubscribe || route == CommandRoute::kPunsubscribe;
  std::string kind = asciiLower(args_[0]);
  if (!subscribed()) {
    if (unsub) {
      // Not subscribed to anything: Redis answers each name with a count of 0.
      ByteBuffer& out = worker_.frameScratch();
      out.clear();
      auto confirm = [&](const std::string_view* name) {
        out.append(std::string_view(resp3_ ? ">3\r\n" : "*3\r\n"));
        resp::appendBulk(out, kind);
        if (name) resp::appendBulk(out, *name);
        else resp::appendNullBulk(out);
        resp::appendInteger(out, 0);
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
    const auto& set = pattern ? patterns_ : channels_;
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
  const size_t shards = db_.shards.size();
  ByteBuffer& cmd_bytes = worker_.frameScratch();
  if (pattern) {
    // Patterns match channels of every shard: (un)subscribe on all of them.
    cmd_bytes.clear();
    resp::appendArrayHeader(cmd_bytes, names.size() + 1);
    resp::appendBulk(cmd_bytes, args_[0]);
    for (const std::string& n : names) resp::appendBulk(cmd_bytes, n);
    std::string command(cmd_bytes.view());
    for (size_t s = 0; s < shards; ++s) sendPubsub(static_cast<int>(s), command, s == 0, names, kind);
    return Next::kContinue;
  }
  // Channels go to the shard of their slot, where PUBLISH sends them too.
  for (size_t s = 0; s < shards; ++s) {
    size_t count = 0;
    for (const std::string& n : names) count += db_.shardOfKey(n) == s;
    if (count == 0) continue;
    cmd_bytes.clear();
    resp::appendArrayHeader(cmd_bytes, count + 1);
    resp::appendBulk(cmd_bytes, args_[0]);
    for (const std::string& n : names) {
      if (db_.shardOfKey(n) == s) resp::appendBulk(cmd_bytes, n);
    }
    std::string command(cmd_bytes.view());
    std::vector<std::string> mine;
    for (const std::string& n : names) {
      if (db_.shardOfKey(n) == s) mine.push_back(n);
    }
    sendPubsub(static_cast<int>(s), command, true, mine, kind);
  }
  return Next::kContinue;
}

void RoutedSession::sendPubsub(int shard, std::string_view frame, bool confirms,
                               const std::vector<std::string>& names, const std::string& kind) {
  if (!sharedLink(shard).available()) {
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
  BackendLink& link = privateLink(shard);
  useForStream(shard, link);
  link.sendUnmatched(frame);
}

void RoutedSession::useForStream(int shard, BackendLink& link) {
  link.setPushTarget(this);
  if (stream_links_.size() < db_.shards.size()) stream_links_.resize(db_.shards.size());
  stream_links_[static_cast<size_t>(shard)] = true;
}

void RoutedSession::emitConfirmations() {
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
    auto& set = is_pattern ? patterns_ : channels_;
    if (!want.null_name) {
      if (is_unsub) {
        auto found = set.find(want.name);
        if (found != set.end()) set.erase(found);
      } else {
        set.insert(want.name);
      }
    }
    ByteBuffer out;
    out.append(std::string_view(resp3_ ? ">3\r\n" : "*3\r\n"));
    resp::appendBulk(out, want.kind);
    if (want.null_name) resp::appendNullBulk(out);
    else resp::appendBulk(out, want.name);
    resp::appendInteger(out, static_cast<int64_t>(channels_.size() + patterns_.size()));
    arrived_.erase(it);
    expected_.pop_front();
    appendToStream(out.data(), out.size());
  }
  arrived_.clear();
  endPubsubIfDone();
}

RoutedSession::Next RoutedSession::monitor(std::string_view frame) {
  // Every shard's feed, line by line, on the client's private links; the
  // client hears one +OK. Like Redis, only QUIT and RESET end it.
  if (in_flight_ > 0) return Next::kWaitIdle;
  stream_ = newRequest(ReplyMerge::kForward, LinkKind::kPrivate, 0);
  countInFlight(stream_);
  push(stream_);
  monitoring_ = true;
  for (size_t s = 0; s < db_.shards.size(); ++s) {
    int shard = static_cast<int>(s);
    if (!sharedLink(shard).available()) continue;  // its lines are missing, nothing else
    BackendLink& link = privateLink(shard);
    useForStream(shard, link);
    link.sendUnmatched(frame);
  }
  return Next::kContinue;
}

RoutedSession::Next RoutedSession::dispatchInPubsub(const CommandInfo* cmd, std::string_view frame) {
  if (monitoring_) {
    auto route = cmd ? static_cast<CommandRoute>(cmd->route) : CommandRoute::kDefault;
    if (route == CommandRoute::kQuit) {
      appendToStream(reinterpret_cast<const uint8_t*>("+OK\r\n"), 5);
      return Next::kStop;
    }
    if (route == CommandRoute::kReset) return reset();
    return Next::kContinue;  // Redis ignores what a monitoring client sends
  }
  if (!cmd) {
    std::string err = unknownCommand(args_);
    err.insert(0, 1, '-');
    err += "\r\n";
    appendToStream(reinterpret_cast<const uint8_t*>(err.data()), err.size());
    return Next::kContinue;
  }
  auto route = static_cast<CommandRoute>(cmd->route);
  switch (route) {
    case CommandRoute::kSubscribe:
    case CommandRoute::kPsubscribe:
    case CommandRoute::kUnsubscribe:
    case CommandRoute::kPunsubscribe:
      return subscribe(route, frame);
    case CommandRoute::kPing: {
      ByteBuffer out;
      if (resp3_) {  // RESP3 answers PING as usual while subscribed
        if (args_.size() > 1) resp::appendBulk(out, args_[1]);
        else resp::appendSimple(out, "PONG");
        appendToStream(out.data(), out.size());
        return Next::kContinue;
      }
      resp::appendArrayHeader(out, 2);
      resp::appendBulk(out, "pong");
      resp::appendBulk(out, args_.size() > 1 ? args_[1] : std::string_view());
      appendToStream(out.data(), out.size());
      return Next::kContinue;
    }
    case CommandRoute::kQuit: {
      appendToStream(reinterpret_cast<const uint8_t*>("+OK\r\n"), 5);
      return Next::kStop;
    }
    case CommandRoute::kReset:
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

void RoutedSession::onPush(BackendLink& link, const uint8_t* data, size_t len, bool done) {
  if (push_partial_.size() <= link.shard()) push_partial_.resize(db_.shards.size());
  ByteBuffer& frame = push_partial_[link.shard()];
  frame.append(data, len);
  if (!done) return;
  ByteBuffer whole;
  whole.swap(frame);
  if (!stream_ && !resp3_) return;  // late confirmations after the last UNSUBSCRIBE
  if (!stream_) {
    // RESP3: subscription confirmations are put in order and counted like
    // RESP2's; messages and CLIENT TRACKING invalidations go between replies.
    if (whole.empty() || whole.data()[0] != '>') return;
    auto v = parseReply(whole.view());
    if (v && v->elements.size() == 3 && v->elements[2].type == RespValue::Type::kInteger) {
      std::string kind = asciiLower(v->elements[0].str);
      if (kind.find("subscribe") != std::string::npos) {
        if (kind[0] == 'p' && link.shard() != 0) return;
        const RespValue& name = v->elements[1];
        const bool null_name = name.type == RespValue::Type::kNull;
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
    // Each shard says +OK once; the client asked once.
    if (link.shard() != first_monitor_ok_ && whole.view() == "+OK\r\n") {
      if (first_monitor_ok_ < 0) first_monitor_ok_ = link.shard();
      else return;
    }
    appendToStream(whole.data(), whole.size());
    return;
  }
  auto v = parseReply(whole.view());
  if (!v || (v->type != RespValue::Type::kArray && v->type != RespValue::Type::kPush) ||
      v->elements.size() != 3 ||
      v->elements[2].type != RespValue::Type::kInteger) {
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
  const RespValue& name = v->elements[1];
  const bool null_name = name.type == RespValue::Type::kNull;
  arrived_.push_back(Confirm{kind, null_name ? std::string() : std::string(name.str), null_name});
  emitConfirmations();
}

void RoutedSession::deliverOutOfBand(const ByteBuffer& frame) {
  // Between two replies, never inside one that is half written.
  if (head_ && head_->streamed && !head_->done) {
    oob_.append(frame.data(), frame.size());
    return;
  }
  conn_.replyOut().append(frame.data(), frame.size());
  conn_.replyReady();
}

void RoutedSession::appendToStream(const uint8_t* data, size_t len) {
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

void RoutedSession::endPubsubIfDone() {
  if (!stream_ || !channels_.empty() || !patterns_.empty()) return;
  endStream();
}

void RoutedSession::endStream() {
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
  monitoring_ = false;
  first_monitor_ok_ = -1;
  channels_.clear();
  patterns_.clear();
  expected_.clear();
  arrived_.clear();
  s->done = true;
  uncount(s);
  complete(s);
}

}  // namespace shardgate::proxy
