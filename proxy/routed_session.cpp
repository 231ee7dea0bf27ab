#include "proxy/routed_session.h"

#include <uv.h>

#include <atomic>
#include <algorithm>
#include <charconv>

#include "proxy/ascii.h"
#include "proxy/client_connection.h"
#include "proxy/hash_slot.h"
#include "proxy/reply_merge.h"
#include "proxy/resp_encoder.h"
#include "proxy/worker.h"

namespace shardgate::proxy {

namespace {

// CLIENT ID: unique across the process, as Redis's are across a server.
std::atomic<uint64_t> next_client_id{1};

constexpr std::string_view kCrossSlot = "CROSSSLOT Keys in request don't hash to the same slot";


bool equalsLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != lower[i]) return false;
  }
  return true;
}

// Redis's own text for a command it does not know (server.c, processCommand).
std::string unknownCommand(const std::vector<std::string_view>& args) {
  std::string list;
  for (size_t i = 1; i < args.size() && list.size() < 128; ++i) {
    size_t room = 128 - list.size();  // sdscatprintf's "'%.*s' " precision
    list += '\'';
    list += args[i].substr(0, room);
    list += "' ";
  }
  std::string text = "ERR unknown command '" + std::string(args[0].substr(0, 128)) +
                     "', with args beginning with: " + list;
  for (auto& c : text) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return text;
}

// Constant time in the length of the secret: no early exit on the first
// differing byte.
bool samePassword(std::string_view given, const std::string& secret) {
  unsigned diff = given.size() == secret.size() ? 0u : 1u;
  for (size_t i = 0; i < secret.size(); ++i) {
    unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= g ^ static_cast<unsigned char>(secret[i]);
  }
  return diff == 0;
}

bool parseInt(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

RoutedSession::RoutedSession(Worker& worker, const Database& db, ClientConnection& conn)
    : worker_(worker),
      db_(db),
      conn_(conn),
      shared_links_(worker.sharedLinks(db)),
      decoder_(db.limits),
      authenticated_(!db.password),
      id_(next_client_id.fetch_add(1, std::memory_order_relaxed)) {}

RoutedSession::~RoutedSession() {
  // Orphan what is in flight: links free those requests as their replies
  // arrive, and nothing reaches another client.
  for (Request* r = head_; r;) {
    Request* next = r->next;
    r->owner = nullptr;
    if (r->waiting == 0) worker_.requestPool().release(r);
    r = next;
  }
  head_ = tail_ = nullptr;
  private_.clear();  // their waiting parts are orphans now, freed as they fail
}

// ---- parsing -----------------------------------------------------------------

void RoutedSession::onBytes(const uint8_t* data, size_t len) {
  if (stopped_) return;
  if (!in_.empty() || waiting_) {
    if (in_.size() + len > db_.limits.max_bulk_len + kQueryBufferSlack) {
      // One command cannot be this large within the limits; like Redis's
      // client-query-buffer-limit, the client is answered and closed.
      replyError("ERR Protocol error: request larger than limits.max_bulk_len");
      stop();
      in_.clear();
      return;
    }
    in_.append(data, len);
    if (!waiting_) parse();
    return;
  }
  // The common case parses straight from the read buffer; only an incomplete
  // command's bytes are copied, to be completed by the next read.
  size_t used = parseFrom(std::string_view(reinterpret_cast<const char*>(data), len));
  if (!stopped_ && used < len) in_.append(data + used, len - used);
}

void RoutedSession::resume() {
  if (!waiting_ && (in_.empty() || in_flight_ >= kMaxInFlight)) return;
  waiting_ = false;
  parse();
}

void RoutedSession::parse() {
  size_t used = parseFrom(in_.view());
  if (stopped_) {
    in_.clear();
  } else {
    in_.consume(used);
  }
  if (in_.empty() && in_.capacity() > 64 * 1024) in_.release();
}

size_t RoutedSession::parseFrom(std::string_view data) {
  size_t used = 0;
  while (!stopped_ && used < data.size() && in_flight_ < kMaxInFlight) {
    std::string_view rest = data.substr(used);
    auto status = decoder_.decode(rest);
    if (status == RequestDecoder::Status::kNeedMore) break;
    if (status == RequestDecoder::Status::kError) {
      // Redis answers a protocol error and closes the connection.
      replyError(std::string_view(decoder_.errorText()).substr(1));
      stop();
      break;
    }
    std::string_view frame = rest.substr(0, decoder_.frameLength());
    args_.clear();
    for (size_t i = 0; i < decoder_.argCount(); ++i) args_.push_back(decoder_.arg(i));
    if (args_.empty()) {  // "*0" or an empty inline line: nothing to do
      used += frame.size();
      continue;
    }
    Next next = dispatch(frame);
    if (next == Next::kWaitIdle) {
      waiting_ = true;  // this command is parsed again once the wait is over
      break;
    }
    used += frame.size();
    if (next == Next::kStop) stop();
  }
  return used;
}

// ---- dispatch ----------------------------------------------------------------

RoutedSession::Next RoutedSession::dispatch(std::string_view frame) {
  frame_ = frame;
  if (!retired_.empty()) retired_.clear();
  const CommandInfo* cmd = db_.commands->find(args_[0]);
  auto route = cmd ? static_cast<CommandRoute>(cmd->route) : CommandRoute::kDefault;
  if (!authenticated_ && route != CommandRoute::kAuth && route != CommandRoute::kHello &&
      route != CommandRoute::kQuit && route != CommandRoute::kReset) {
    replyError("NOAUTH Authentication required.");
    return Next::kContinue;
  }
  if (stream_) return dispatchInPubsub(cmd, frame);
  if (!cmd) {
    if (in_multi_) multi_dirty_ = true;
    replyError(unknownCommand(args_));
    return Next::kContinue;
  }
  if (in_multi_) return dispatchInMulti(cmd, frame);

  switch (route) {
    case CommandRoute::kPing:
      if (auto st = findKeys(*cmd); !st) break;
      if (args_.size() == 1) replySimple("PONG");
      else replyBulk(args_[1]);
      return Next::kContinue;
    case CommandRoute::kEcho:
      if (auto st = findKeys(*cmd); !st) break;
      replyBulk(args_[1]);
      return Next::kContinue;
    case CommandRoute::kQuit:
      replySimple("OK");
      return Next::kStop;
    case CommandRoute::kHello: return hello();
    case CommandRoute::kAuth: return auth();
    case CommandRoute::kSelect: {
      if (auto st = findKeys(*cmd); !st) break;
      return select();
    }
    case CommandRoute::kClient: return client();
    case CommandRoute::kReset: return reset();
    case CommandRoute::kCluster:
      if (args_.size() == 3 && equalsLower(args_[1], "keyslot")) {
        replyInteger(keyHashSlot(args_[2]));
        return Next::kContinue;
      }
      break;  // the first shard says what a non-cluster Redis says
    case CommandRoute::kInfo: return info();
    case CommandRoute::kDbsize:
      if (auto st = findKeys(*cmd); !st) break;
      return fanOut(frame, ReplyMerge::kSumIntegers);
    case CommandRoute::kFlush:
      if (auto st = findKeys(*cmd); !st) break;
      return fanOut(frame, ReplyMerge::kAllOk);
    case CommandRoute::kKeys:
      if (auto st = findKeys(*cmd); !st) break;
      return fanOut(frame, ReplyMerge::kConcatArrays);
    case CommandRoute::kRandomKey:
      if (auto st = findKeys(*cmd); !st) break;
      return fanOut(frame, ReplyMerge::kRandomKey);
    case CommandRoute::kScript:
    case CommandRoute::kFunction: {
      if (auto st = findKeys(*cmd); !st) break;
      std::string sub = asciiLower(args_[1]);
      if (sub == "load") return fanOut(frame, ReplyMerge::kSameReply);
      if (sub == "kill") return fanOut(frame, ReplyMerge::kAnyOk);
      if (sub == "flush" || sub == "delete" || sub == "restore") {
        return fanOut(frame, ReplyMerge::kAllOk);
      }
      if (sub == "exists") return fanOut(frame, ReplyMerge::kAndArrays);
      break;  // DEBUG, HELP, LIST, DUMP, STATS: the first shard's answer
    }
    case CommandRoute::kEveryShard:
      if (auto st = findKeys(*cmd); !st) break;
      return fanOut(frame, ReplyMerge::kSameReply);  // persisting the database is every shard's
    case CommandRoute::kConfig: {
      if (auto st = findKeys(*cmd); !st) break;
      std::string sub = asciiLower(args_[1]);
      if (sub == "set" || sub == "resetstat" || sub == "rewrite") {
        return fanOut(frame, ReplyMerge::kAllOk);  // the database is every shard
      }
      break;  // GET, HELP: the first shard's answer
    }
    case CommandRoute::kPubsubInfo: {
      if (auto st = findKeys(*cmd); !st) break;
      std::string sub = asciiLower(args_[1]);
      if (sub == "channels" || sub == "shardchannels") {
        return fanOut(frame, ReplyMerge::kConcatArrays);  // a channel lives on its slot's shard
      }
      if ((sub == "numsub" || sub == "shardnumsub") && args_.size() > 2) {
        keys_.clear();
        for (uint32_t i = 2; i < args_.size(); ++i) keys_.push_back(i);
        return split(*cmd, route);
      }
      break;  // NUMPAT: every shard has every pattern; HELP
    }
    case CommandRoute::kScan:
      if (auto st = findKeys(*cmd); !st) break;
      return scan();
    case CommandRoute::kMget:
    case CommandRoute::kMset:
    case CommandRoute::kSumKeys: {
      if (auto st = findKeys(*cmd); !st) {
        replyError(st.message());
        return Next::kContinue;
      }
      int first = db_.shardOfSlot(keyHashSlot(args_[keys_[0]]));
      for (uint32_t k : keys_) {
        if (db_.shardOfSlot(keyHashSlot(args_[k])) != first) return split(*cmd, route);
      }
      return forward(first, frame, LinkKind::kShared);
    }
    case CommandRoute::kMulti:
      if (auto st = findKeys(*cmd); !st) break;
      if (pin_shard_ >= 0) {  // WATCH named the shard: MULTI goes there now
        if (!orderedAfterInFlight(LinkKind::kPrivate, pin_shard_)) return Next::kWaitIdle;
        if (!sharedLink(pin_shard_).available()) {
          replyLocal(unavailableLine(pin_shard_));
          return Next::kContinue;
        }
        forward(pin_shard_, frame, LinkKind::kPrivate);
        multi_on_shard_ = true;
      } else {
        replySimple("OK");
        multi_on_shard_ = false;
      }
      in_multi_ = true;
      multi_dirty_ = false;
      return Next::kContinue;
    case CommandRoute::kExec:
      replyError("ERR EXEC without MULTI");
      return Next::kContinue;
    case CommandRoute::kDiscard:
      replyError("ERR DISCARD without MULTI");
      return Next::kContinue;
    case CommandRoute::kWatch: return watch(*cmd, frame);
    case CommandRoute::kUnwatch:
      if (auto st = findKeys(*cmd); !st) break;
      if (watching_) {
        if (!orderedAfterInFlight(LinkKind::kPrivate, pin_shard_)) return Next::kWaitIdle;
        forward(pin_shard_, frame, LinkKind::kPrivate);
        watching_ = watch_lost_ = false;
        pin_shard_ = -1;
      } else {
        replySimple("OK");
      }
      return Next::kContinue;
    case CommandRoute::kSubscribe:
    case CommandRoute::kPsubscribe:
    case CommandRoute::kUnsubscribe:
    case CommandRoute::kPunsubscribe:
      return subscribe(route, frame);
    case CommandRoute::kPublish: {
      if (auto st = findKeys(*cmd); !st) break;
      int shard = db_.shardOfSlot(keyHashSlot(args_[1]));
      return forward(shard, frame, LinkKind::kShared);
    }
    case CommandRoute::kMonitor:
      if (auto st = findKeys(*cmd); !st) break;
      return monitor(frame);
    case CommandRoute::kUnsupported:
      replyError("ERR shardgate: " + asciiLower(args_[0]) +
                 " is not supported on a database with several shards");
      return Next::kContinue;
    case CommandRoute::kStalling:
    case CommandRoute::kDefault:
      break;
  }

  // The default: the shard of the command's keys, or the first shard.
  if (auto st = findKeys(*cmd); !st) {
    replyError(st.message());
    return Next::kContinue;
  }
  int shard = 0;
  if (!singleShard(&shard)) return Next::kContinue;
  if (shard < 0) shard = 0;
  if ((cmd->flags & CommandInfo::kBlocking) || route == CommandRoute::kStalling) {
    // A blocked command would stall every client behind it on a shared link.
    return forward(shard, frame, LinkKind::kPrivate);
  }
  return forward(shard, frame, LinkKind::kShared);
}

Status RoutedSession::findKeys(const CommandInfo& cmd) {
  keys_.clear();
  return db_.commands->keyPositions(cmd, args_, keys_);
}

bool RoutedSession::singleShard(int* shard) {
  *shard = -1;
  for (uint32_t k : keys_) {
    int s = db_.shardOfSlot(keyHashSlot(args_[k]));
    if (*shard >= 0 && s != *shard) {
      replyError(kCrossSlot);
      return false;
    }
    *shard = s;
  }
  return true;
}

bool RoutedSession::orderedAfterInFlight(LinkKind kind, int shard) const {
  if (kind == LinkKind::kShared) return on_private_ == 0;
  return on_shared_ == 0 && (on_private_ == 0 || private_shard_ == shard);
}

// ---- sending -----------------------------------------------------------------

BackendLink& RoutedSession::sharedLink(int shard) {
  return *shared_links_[static_cast<size_t>(shard)];
}

BackendLink& RoutedSession::privateLink(int shard) {
  if (private_.empty()) private_.resize(db_.shards.size());
  auto& link = private_[static_cast<size_t>(shard)];
  if (!link) {
    link = std::make_unique<BackendLink>(worker_, db_, static_cast<uint16_t>(shard), this);
    // The client's connection state goes first; the shard's answers to it
    // are the proxy's, dropped.
    ByteBuffer& prelude = worker_.replyScratch();
    if (resp3_) {
      link->setPushTarget(this);
      link->setOutOfBandPushes(true);
      prelude.clear();
      resp::appendCommand(prelude, {"HELLO", "3"});
      link->send(prelude.view(), nullptr, 0);
    }
    if (db_index_ != 0) {
      prelude.clear();
      std::string index = std::to_string(db_index_);
      resp::appendCommand(prelude, {"SELECT", index});
      link->send(prelude.view(), nullptr, 0);
    }
  }
  return *link;
}

BackendLink& RoutedSession::linkFor(int shard, LinkKind kind) {
  // A client whose connection state differs from the shared links' (another
  // database, RESP3) sends everything on links of its own.
  if (kind == LinkKind::kPrivate || ownLinks()) return privateLink(shard);
  return sharedLink(shard);
}

std::string RoutedSession::unavailableLine(int shard) {
  BackendLink& link = sharedLink(shard);
  return "-ERR shard " + link.address() + " unavailable: " + link.failure() + "\r\n";
}

RoutedSession::Next RoutedSession::forward(int shard, std::string_view frame, LinkKind kind) {
  if (!orderedAfterInFlight(kind, shard)) return Next::kWaitIdle;
  // The shared link knows whether the shard is up, whichever link we use.
  if (!sharedLink(shard).available()) {
    replyLocal(unavailableLine(shard));
    return Next::kContinue;
  }
  Request* r = newRequest(ReplyMerge::kForward, kind, 1);
  if (kind == LinkKind::kPrivate) private_shard_ = shard;
  push(r);
  BackendLink& link = linkFor(shard, kind);
  link.send(frame, r, 0);
  return Next::kContinue;
}

void RoutedSession::appendArgs(ByteBuffer& out, size_t count, const uint32_t* index) {
  resp::appendArrayHeader(out, count + 1);
  resp::appendBulk(out, args_[0]);
  for (size_t i = 0; i < count; ++i) resp::appendBulk(out, args_[index[i]]);
}

RoutedSession::Next RoutedSession::split(const CommandInfo& cmd, CommandRoute route) {
  (void)cmd;
  if (!orderedAfterInFlight(LinkKind::kShared, 0)) return Next::kWaitIdle;
  const bool pairs = route == CommandRoute::kMset;
  // PUBSUB NUMSUB: "PUBSUB NUMSUB" before each shard's channels.
  const size_t prefix = route == CommandRoute::kPubsubInfo ? 2 : 1;
  const size_t shards = db_.shards.size();
  // part_of_shard: -1 until the shard's first key; parts in order of first key.
  auto& part_of_shard = worker_.scratchInts(shards);
  std::vector<int> shard_of_part;
  std::vector<std::vector<uint32_t>> part_args;
  ReplyMerge merge = route == CommandRoute::kMget         ? ReplyMerge::kMget
                     : route == CommandRoute::kPubsubInfo ? ReplyMerge::kMgetPairs
                     : route == CommandRoute::kMset       ? ReplyMerge::kAllOk
                                                          : ReplyMerge::kSumIntegers;
  Request* r = newRequest(merge, LinkKind::kShared, 0);
  for (uint32_t k : keys_) {
    int s = db_.shardOfSlot(keyHashSlot(args_[k]));
    int& part = part_of_shard[static_cast<size_t>(s)];
    if (part < 0) {
      part = static_cast<int>(shard_of_part.size());
      shard_of_part.push_back(s);
      part_args.emplace_back();
    }
    part_args[static_cast<size_t>(part)].push_back(k);
    if (pairs) part_args[static_cast<size_t>(part)].push_back(k + 1);
    if (merge == ReplyMerge::kMget || merge == ReplyMerge::kMgetPairs) {
      r->key_part.push_back(static_cast<uint16_t>(part));
    }
  }
  r->parts.resize(shard_of_part.size());
  r->waiting = static_cast<uint16_t>(shard_of_part.size());
  countInFlight(r);
  push(r);
  ByteBuffer& cmd_bytes = worker_.frameScratch();
  for (size_t p = 0; p < shard_of_part.size(); ++p) {
    int s = shard_of_part[p];
    if (!sharedLink(s).available()) {
      std::string line = unavailableLine(s);
      onReply(r, static_cast<uint16_t>(p), reinterpret_cast<const uint8_t*>(line.data()), line.size(),
              true);
      continue;
    }
    cmd_bytes.clear();
    resp::appendArrayHeader(cmd_bytes, prefix + part_args[p].size());
    for (size_t i = 0; i < prefix; ++i) resp::appendBulk(cmd_bytes, args_[i]);
    for (uint32_t k : part_args[p]) resp::appendBulk(cmd_bytes, args_[k]);
    linkFor(s, LinkKind::kShared).send(cmd_bytes.view(), r, static_cast<uint16_t>(p));
  }
  return Next::kContinue;
}

RoutedSession::Next RoutedSession::fanOut(std::string_view frame, ReplyMerge merge) {
  if (!orderedAfterInFlight(LinkKind::kShared, 0)) return Next::kWaitIdle;
  const size_t shards = db_.shards.size();
  Request* r = newRequest(merge, LinkKind::kShared, 0);
  r->parts.resize(shards);
  r->waiting = static_cast<uint16_t>(shards);
  countInFlight(r);
  push(r);
  for (size_t s = 0; s < shards; ++s) {
    int shard = static_cast<int>(s);
    if (!sharedLink(shard).available()) {
      std::string line = unavailableLine(shard);
      onReply(r, static_cast<uint16_t>(s), reinterpret_cast<const uint8_t*>(line.data()), line.size(),
              true);
      continue;
    }
    linkFor(shard, LinkKind::kShared).send(frame, r, static_cast<uint16_t>(s));
  }
  return Next::kContinue;
}

RoutedSession::Next RoutedSession::scan() {
  if (!orderedAfterInFlight(LinkKind::kShared, 0)) return Next::kWaitIdle;
  const auto shards = static_cast<uint32_t>(db_.shards.size());
  auto pos = decodeScanCursor(args_[1], shards);
  if (!pos) {
    replyError("ERR invalid cursor");
    return Next::kContinue;
  }
  int shard = static_cast<int>(pos->shard);
  if (!sharedLink(shard).available()) {
    replyLocal(unavailableLine(shard));
    return Next::kContinue;
  }
  Request* r = newRequest(ReplyMerge::kScan, LinkKind::kShared, 0);
  r->parts.resize(1);
  r->waiting = 1;
  r->scan_shard = pos->shard;
  countInFlight(r);
  push(r);
  ByteBuffer& cmd_bytes = worker_.frameScratch();
  cmd_bytes.clear();
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, pos->cursor);
  (void)ec;
  resp::appendArrayHeader(cmd_bytes, args_.size());
  resp::appendBulk(cmd_bytes, args_[0]);
  resp::appendBulk(cmd_bytes, std::string_view(digits, static_cast<size_t>(end - digits)));
  for (size_t i = 2; i < args_.size(); ++i) resp::appendBulk(cmd_bytes, args_[i]);
  linkFor(shard, LinkKind::kShared).send(cmd_bytes.view(), r, 0);
  return Next::kContinue;
}

RoutedSession::Next RoutedSession::info() {
  // Sections: the proxy's own (server, clients, stats) and the shards'
  // keyspace summed. No argument, "default", "all" or "everything": all.
  uint32_t sections = 0;
  for (size_t i = 1; i < args_.size(); ++i) {
    std::string s = asciiLower(args_[i]);
    if (s == "default" || s == "all" || s == "everything") sections |= 0xF;
    else if (s == "server") sections |= 1;
    else if (s == "clients") sections |= 2;
    else if (s == "stats") sections |= 4;
    else if (s == "keyspace") sections |= 8;
  }
  if (args_.size() == 1) sections = 0xF;
  if (!(sections & 8)) {
    replyBulk(infoText(sections, ""));
    return Next::kContinue;
  }
  ByteBuffer& cmd_bytes = worker_.frameScratch();
  cmd_bytes.clear();
  resp::appendCommand(cmd_bytes, {"INFO", "keyspace"});
  std::string frame(cmd_bytes.view());
  Next next = fanOut(frame, ReplyMerge::kInfo);
  if (next == Next::kContinue && tail_ && tail_->merge == ReplyMerge::kInfo) {
    tail_->info_sections = sections;
  }
  return next;
}

std::string RoutedSession::infoText(uint32_t sections, const std::string& keyspace) const {
  std::string out;
  if (sections & 1) {
    out += "# Server\r\nshardgate_version:" SHARDGATE_VERSION "\r\nredis_mode:proxy\r\n";
    out += "process_id:" + std::to_string(uv_os_getpid()) + "\r\n";
    out += "shards:" + std::to_string(db_.shards.size()) + "\r\n";
    out += "database:" + db_.name + "\r\nlisten:" + db_.listen + "\r\n\r\n";
  }
  if (sections & 2) {
    out += "# Clients\r\nconnected_clients:" +
           std::to_string(worker_.stats().connections_current.get()) + "\r\n\r\n";
  }
  if (sections & 4) {
    out += "# Stats\r\ntotal_connections_received:" +
           std::to_string(worker_.stats().connections_total.get()) + "\r\n\r\n";
  }
  if (sections & 8) out += keyspace;
  return out;
}

// ---- commands the proxy answers ---------------------------------------------

RoutedSession::Next RoutedSession::select() {
  int64_t index = 0;
  if (!parseInt(args_[1], index)) {
    replyError("ERR value is not an integer or out of range");
    return Next::kContinue;
  }
  if (index < 0 || static_cast<uint64_t>(index) >= db_.shard_databases) {
    replyError("ERR DB index is out of range");
    return Next::kContinue;
  }
  if (static_cast<uint32_t>(index) != db_index_) {
    // Links of the old database must not carry another command of ours.
    if (in_flight_ > 0) return Next::kWaitIdle;
    db_index_ = static_cast<uint32_t>(index);
    dropPrivateLinks();
  }
  replySimple("OK");
  return Next::kContinue;
}

void RoutedSession::dropPrivateLinks() {
  // Only when nothing is in flight on them (callers wait for that first).
  private_.clear();
  watching_ = false;
  pin_shard_ = -1;
}

RoutedSession::Next RoutedSession::auth() {
  if (args_.size() < 2 || args_.size() > 3) {
    replyError(args_.size() < 2 ? "ERR wrong number of arguments for 'auth' command"
                                : "ERR syntax error");
    return Next::kContinue;
  }
  if (!db_.password) {
    replyError(
        "ERR AUTH <password> called without any password configured for the default user. "
        "Are you sure your configuration is correct?");
    return Next::kContinue;
  }
  std::string_view user = args_.size() == 3 ? args_[1] : "default";
  std::string_view pass = args_.back();
  if (user == "default" && samePassword(pass, *db_.password)) {
    authenticated_ = true;
    replySimple("OK");
  } else {
    replyError("WRONGPASS invalid username-password pair or user is disabled.");
  }
  return Next::kContinue;
}

RoutedSession::Next RoutedSession::hello() {
  size_t i = 1;
  int new_version = resp3_ ? 3 : 2;
  if (args_.size() >= 2) {
    int64_t version = 0;
    if (!parseInt(args_[1], version)) {
      replyError("ERR Protocol version is not an integer or out of range");
      return Next::kContinue;
    }
    if (version != 2 && version != 3) {
      replyError("NOPROTO sorry, this protocol version is not supported");
      return Next::kContinue;
    }
    // Switching protocol: the links of the old one carry nothing more.
    if ((version == 3) != resp3_ && in_flight_ > 0) return Next::kWaitIdle;
    new_version = static_cast<int>(version);
    i = 2;
  }
  std::string_view new_name;
  bool set_name = false;
  for (; i < args_.size(); ++i) {
    size_t more = args_.size() - i - 1;
    if (equalsLower(args_[i], "auth") && more >= 2) {
      std::string_view user = args_[i + 1];
      std::string_view pass = args_[i + 2];
      if (!db_.password || user != "default" || !samePassword(pass, *db_.password)) {
        replyError(db_.password
                       ? "WRONGPASS invalid username-password pair or user is disabled."
                       : "ERR AUTH <password> called without any password configured for the "
                         "default user. Are you sure your configuration is correct?");
        return Next::kContinue;
      }
      authenticated_ = true;
      i += 2;
    } else if (equalsLower(args_[i], "setname") && more >= 1) {
      new_name = args_[i + 1];
      set_name = true;
      i += 1;
    } else {
      replyError("ERR Syntax error in HELLO option '" + std::string(args_[i]) + "'");
      return Next::kContinue;
    }
  }
  if (!authenticated_) {
    replyError(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
        "<proto> AUTH <user> <pass> option can be used to authenticate the client and select "
        "the RESP protocol version at the same time");
    return Next::kContinue;
  }
  if (set_name) name_ = std::string(new_name);
  if ((new_version == 3) != resp3_) {
    resp3_ = new_version == 3;
    dropPrivateLinks();
  }
  ByteBuffer& out = worker_.frameScratch();
  out.clear();
  if (resp3_) {
    out.append(std::string_view("%7\r\n"));
  } else {
    resp::appendArrayHeader(out, 14);
  }
  resp::appendBulk(out, "server");
  resp::appendBulk(out, "redis");
  resp::appendBulk(out, "version");
  resp::appendBulk(out, db_.shard_version);
  resp::appendBulk(out, "proto");
  resp::appendInteger(out, resp3_ ? 3 : 2);
  resp::appendBulk(out, "id");
  resp::appendInteger(out, static_cast<int64_t>(id_));
  resp::appendBulk(out, "mode");
  resp::appendBulk(out, "standalone");
  resp::appendBulk(out, "role");
  resp::appendBulk(out, "master");
  resp::appendBulk(out, "modules");
  resp::appendArrayHeader(out, 0);
  replyLocal(out.view());
  return Next::kContinue;
}

RoutedSession::Next RoutedSession::client() {
  if (args_.size() < 2) {
    replyError("ERR wrong number of arguments for 'client' command");
    return Next::kContinue;
  }
  std::string sub = asciiLower(args_[1]);
  if (sub == "id" && args_.size() == 2) {
    replyInteger(static_cast<int64_t>(id_));
  } else if (sub == "getname" && args_.size() == 2) {
    if (name_.empty()) {
      replyLocal(resp3_ ? "_\r\n" : "$-1\r\n");
    } else {
      replyBulk(name_);
    }
  } else if (sub == "setname" && args_.size() == 3) {
    for (char c : args_[2]) {
      if (c < '!' || c > '~') {
        replyError("ERR Client names cannot contain spaces, newlines or special characters.");
        return Next::kContinue;
      }
    }
    name_ = std::string(args_[2]);
    replySimple("OK");
  } else if ((sub == "info" && args_.size() == 2) || (sub == "list" && args_.size() == 2)) {
    std::string line = "id=" + std::to_string(id_) + " name=" + name_ + " db=0 resp=2\n";
    replyBulk(line);
  } else if (sub == "tracking" || sub == "caching" || sub == "trackinginfo" ||
             sub == "getredir") {
    if (!resp3_) {
      // RESP2 tracking redirects to another connection's id; the shards'
      // connections are the proxy's, so only RESP3's pushes can reach the client.
      std::string name = sub;
      for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      replyError("ERR shardgate: CLIENT " + name +
                 " needs RESP3 (HELLO 3) on a database with several shards");
    } else if (sub == "trackinginfo" || sub == "getredir") {
      return forward(0, frame_, LinkKind::kShared);
    } else {
      // Every shard tracks the keys it serves; CACHING applies to the next
      // command on each shard's connection.
      if (sub == "tracking") tracking_ = true;
      return fanOut(frame_, ReplyMerge::kAllOk);
    }
  } else if (sub == "setinfo" && args_.size() == 4) {
    replySimple("OK");  // library name/version: nothing to route
  } else if (sub == "id" || sub == "getname" || sub == "setname" || sub == "info" ||
             sub == "list" || sub == "setinfo") {
    replyError("ERR wrong number of arguments for 'client|" + sub + "' command");
  } else {
    replyError("ERR shardgate: CLIENT " + asciiLower(args_[1]) +
               " is not supported on a database with several shards");
  }
  return Next::kContinue;
}

RoutedSession::Next RoutedSession::reset() {
  endStream();
  if (in_flight_ > 0) return Next::kWaitIdle;
  private_.clear();
  retired_.clear();
  push_partial_.clear();
  expected_.clear();
  arrived_.clear();
  stream_links_.clear();
  oob_.clear();
  monitoring_ = false;
  first_monitor_ok_ = -1;
  channels_.clear();
  patterns_.clear();
  in_multi_ = multi_dirty_ = multi_on_shard_ = watching_ = false;
  multi_lost_ = watch_lost_ = false;
  pin_shard_ = -1;
  multi_queue_.clear();
  multi_queue_.release();
  name_.clear();
  authenticated_ = !db_.password;
  db_index_ = 0;
  resp3_ = false;
  tracking_ = false;
  replySimple("RESET");
  return Next::kContinue;
}

// ---- MULTI / WATCH -----------------------------------------------------------

RoutedSession::Next RoutedSession::watch(const CommandInfo& cmd, std::string_view frame) {
  if (auto st = findKeys(cmd); !st) {
    replyError(st.message());
    return Next::kContinue;
  }
  int shard = 0;
  if (!singleShard(&shard)) return Next::kContinue;
  if (pin_shard_ >= 0 && shard != pin_shard_) {
    replyError(kCrossSlot);
    return Next::kContinue;
  }
  if (!orderedAfterInFlight(LinkKind::kPrivate, shard)) return Next::kWaitIdle;
  if (!sharedLink(shard).available()) {
    replyLocal(unavailableLine(shard));
    return Next::kContinue;
  }
  forward(shard, frame, LinkKind::kPrivate);
  pin_shard_ = shard;
  watching_ = true;
  return Next::kContinue;
}

RoutedSession::Next RoutedSession::dispatchInMulti(const CommandInfo* cmd, std::string_view frame) {
  auto route = static_cast<CommandRoute>(cmd->route);
  switch (route) {
    case CommandRoute::kMulti:
      replyError("ERR MULTI calls can not be nested");
      return Next::kContinue;
    case CommandRoute::kWatch:
      replyError("ERR WATCH inside MULTI is not allowed");
      return Next::kContinue;
    case CommandRoute::kSelect:
    case CommandRoute::kHello:
    case CommandRoute::kAuth:
    case CommandRoute::kClient:
    case CommandRoute::kCluster:
    case CommandRoute::kSubscribe:
    case CommandRoute::kPsubscribe:
    case CommandRoute::kUnsubscribe:
    case CommandRoute::kPunsubscribe:
    case CommandRoute::kMonitor:
    case CommandRoute::kUnsupported:
    case CommandRoute::kStalling:
      // What the proxy answers or refuses outside a transaction must not
      // reach the shard inside one (a password, a connection mode, a
      // database switch would change the transaction's link for good).
      multi_dirty_ = true;
      replyError("ERR shardgate: " + asciiLower(args_[0]) + " inside MULTI is not supported");
      return Next::kContinue;
    case CommandRoute::kQuit:
      replySimple("OK");
      return Next::kStop;
    case CommandRoute::kReset:
      return reset();
    case CommandRoute::kExec:
    case CommandRoute::kDiscard: {
      const bool exec = route == CommandRoute::kExec;
      int shard = pin_shard_ >= 0 ? pin_shard_ : 0;
      if (multi_on_shard_ || (exec && !multi_dirty_)) {
        if (!orderedAfterInFlight(LinkKind::kPrivate, shard)) return Next::kWaitIdle;
      }
      const bool up = sharedLink(shard).available();
      if (exec && !multi_dirty_ && !multi_on_shard_ && !up) {
        replyLocal(unavailableLine(shard));  // nothing was sent: nothing to undo
      } else if (exec && (multi_dirty_ || watch_lost_)) {
        // The transaction cannot be trusted: an error was queued, the
        // shard connection that held MULTI was lost, or the one that held
        // WATCH was (so a change to a watched key may have gone unseen).
        if (multi_on_shard_ && !multi_lost_) {
          ByteBuffer& discard = worker_.frameScratch();
          discard.clear();
          resp::appendCommand(discard, {"DISCARD"});
          privateLink(shard).send(discard.view(), nullptr, 0);
        }
        if (multi_dirty_) {
          replyError("EXECABORT Transaction discarded because of previous errors.");
        } else {
          replyLocal("*-1\r\n");  // as when a watched key changed: the client retries
        }
      } else if (multi_on_shard_ && multi_lost_) {
        replySimple("OK");  // DISCARD: the shard's MULTI went with its connection
      } else if (multi_on_shard_) {
        forward(shard, frame, LinkKind::kPrivate);
      } else if (exec) {
        startMultiOn(shard);
        forward(shard, frame, LinkKind::kPrivate);
      } else {
        replySimple("OK");
      }
      in_multi_ = multi_dirty_ = multi_on_shard_ = watching_ = false;
      multi_lost_ = watch_lost_ = false;
      pin_shard_ = -1;
      multi_queue_.clear();
      multi_queue_.release();
      multi_queued_ = 0;
      return Next::kContinue;
    }
    default:
      break;
  }
  // Everything else is queued on the transaction's shard. Commands the proxy
  // would fan out have no atomic meaning across shards: they follow their
  // keys like any other command (or go to the transaction's shard).
  if (auto st = findKeys(*cmd); !st) {
    multi_dirty_ = true;
    replyError(st.message());
    return Next::kContinue;
  }
  int shard = -1;
  if (route == CommandRoute::kPublish) {
    keys_.assign(1, 1);
  }
  if (!singleShard(&shard)) {
    multi_dirty_ = true;
    return Next::kContinue;
  }
  if (shard >= 0 && pin_shard_ >= 0 && shard != pin_shard_) {
    multi_dirty_ = true;
    replyError(kCrossSlot);
    return Next::kContinue;
  }
  if (multi_lost_) {
    replyLocal(unavailableLine(pin_shard_));  // never run outside the lost MULTI
    return Next::kContinue;
  }
  if (multi_on_shard_) return forward(pin_shard_, frame, LinkKind::kPrivate);
  if (shard < 0) {
    // No shard named yet: queue it here and answer as Redis would.
    multi_queue_.append(frame);
    ++multi_queued_;
    replySimple("QUEUED");
    return Next::kContinue;
  }
  if (!orderedAfterInFlight(LinkKind::kPrivate, shard)) return Next::kWaitIdle;
  if (!sharedLink(shard).available()) {
    multi_dirty_ = true;
    replyLocal(unavailableLine(shard));
    return Next::kContinue;
  }
  pin_shard_ = shard;
  startMultiOn(shard);
  return forward(shard, frame, LinkKind::kPrivate);
}

void RoutedSession::startMultiOn(int shard) {
  // MULTI and the commands queued before the shard was known were already
  // answered (+OK, +QUEUED); the shard's own answers to them are dropped.
  BackendLink& link = privateLink(shard);
  ByteBuffer& multi = worker_.frameScratch();
  multi.clear();
  resp::appendCommand(multi, {"MULTI"});
  multi.append(multi_queue_.data(), multi_queue_.size());
  link.send(multi.view(), nullptr, 0);
  for (size_t i = 0; i < multi_queued_; ++i) link.expectDropped();
  multi_queue_.clear();
  multi_queued_ = 0;
  multi_on_shard_ = true;
  pin_shard_ = shard;
}

// ---- pub/sub -----------------------------------------------------------------

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
    for (const std::string& n : names) count += db_.shardOfSlot(keyHashSlot(n)) == s;
    if (count == 0) continue;
    cmd_bytes.clear();
    resp::appendArrayHeader(cmd_bytes, count + 1);
    resp::appendBulk(cmd_bytes, args_[0]);
    for (const std::string& n : names) {
      if (db_.shardOfSlot(keyHashSlot(n)) == s) resp::appendBulk(cmd_bytes, n);
    }
    std::string command(cmd_bytes.view());
    std::vector<std::string> mine;
    for (const std::string& n : names) {
      if (db_.shardOfSlot(keyHashSlot(n)) == s) mine.push_back(n);
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
    std::string err = "-" + unknownCommand(args_) + "\r\n";
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

void RoutedSession::closeIdleLinks(uint64_t now_ms) {
  retired_.clear();  // from a timer: no link callback is on the stack
  if (tracking_) return;
  for (size_t s = 0; s < private_.size(); ++s) {
    auto& link = private_[s];
    if (!link || !link->idle() || now_ms - link->lastUsedMs() < db_.private_idle_ms) continue;
    if (pin_shard_ == static_cast<int>(s)) continue;                  // MULTI / WATCH
    if (s < stream_links_.size() && stream_links_[s]) continue;       // pub/sub, MONITOR
    link.reset();  // a later command opens a new one (with SELECT / HELLO 3 first)
  }
}

void RoutedSession::onPrivateLinkLost(BackendLink& link) {
  // A private link holds connection state the shard has now forgotten; a
  // fresh connection must not silently stand in for it.
  const int shard = link.shard();
  if (in_multi_ && multi_on_shard_ && pin_shard_ == shard) {
    multi_dirty_ = true;
    multi_lost_ = true;
  }
  if (watching_ && pin_shard_ == shard) watch_lost_ = true;
  if (subscribed() && link.shard() < stream_links_.size() && stream_links_[link.shard()]) {
    std::string line = "-ERR shard " + link.address() + " unavailable: " + link.failure() +
                       (monitoring_ ? " (MONITOR ended)" : " (subscriptions on it are lost)") +
                       "\r\n";
    appendToStream(reinterpret_cast<const uint8_t*>(line.data()), line.size());
    stop();  // the client reconnects and subscribes again
  }
}

void RoutedSession::stop() {
  stopped_ = true;
  // A subscriber or monitor that quits: its stream ends with what it was
  // sent, so the connection can close.
  endStream();
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

// ---- replies -----------------------------------------------------------------

void RoutedSession::replyLocal(std::string_view bytes) {
  if (stream_) {
    appendToStream(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    return;
  }
  if (head_ == nullptr) {
    conn_.replyOut().append(bytes);
    conn_.replyReady();
    return;
  }
  Request* r = newRequest(ReplyMerge::kLocal, LinkKind::kShared, 0);
  r->reply.append(bytes);
  buffered_ += bytes.size();
  r->done = true;
  push(r);
}

void RoutedSession::replyError(std::string_view text) {
  ByteBuffer& out = worker_.replyScratch();
  out.clear();
  resp::appendError(out, text);
  replyLocal(out.view());
}

void RoutedSession::replySimple(std::string_view text) {
  ByteBuffer& out = worker_.replyScratch();
  out.clear();
  resp::appendSimple(out, text);
  replyLocal(out.view());
}

void RoutedSession::replyInteger(int64_t value) {
  ByteBuffer& out = worker_.replyScratch();
  out.clear();
  resp::appendInteger(out, value);
  replyLocal(out.view());
}

void RoutedSession::replyBulk(std::string_view value) {
  ByteBuffer& out = worker_.replyScratch();
  out.clear();
  resp::appendBulk(out, value);
  replyLocal(out.view());
}

Request* RoutedSession::newRequest(ReplyMerge merge, LinkKind kind, uint16_t parts) {
  Request* r = worker_.requestPool().acquire(this, merge);
  r->on_private = kind == LinkKind::kPrivate;
  r->waiting = parts;
  if (parts > 0) countInFlight(r);
  return r;
}

void RoutedSession::countInFlight(Request* r) {
  if (r->on_private) ++on_private_;
  else ++on_shared_;
}

void RoutedSession::uncount(Request* r) {
  if (r->on_private) --on_private_;
  else --on_shared_;
}

void RoutedSession::push(Request* r) {
  if (tail_) tail_->next = r;
  else head_ = r;
  tail_ = r;
  ++in_flight_;
}

void RoutedSession::onReply(Request* r, uint16_t part, const uint8_t* data, size_t len, bool done) {
  if (broken_) len = 0;  // the client's stream ended mid-reply: nothing more reaches it
  if (r->merge == ReplyMerge::kForward) {
    if (r == head_ && r->reply.empty()) {
      conn_.replyOut().append(data, len);
      conn_.replyReady();
      r->streamed = true;
    } else {
      r->reply.append(data, len);
      buffered_ += len;
    }
    if (done) {
      r->waiting = 0;
      r->done = true;
      uncount(r);
      if (r == head_) flushHead();
    }
    return;
  }
  r->parts[part].append(reinterpret_cast<const char*>(data), len);
  buffered_ += len;
  if (!done || --r->waiting > 0) return;
  for (const std::string& p : r->parts) buffered_ -= p.size();
  finishMerge(r);
  buffered_ += r->reply.size();
  r->done = true;
  uncount(r);
  if (r == head_) flushHead();
}

void RoutedSession::onFailure(Request* r, uint16_t part, const std::string& line, bool partial) {
  if (partial && r->merge == ReplyMerge::kForward && r->streamed) {
    // Part of this reply already went out: the client's stream cannot be
    // repaired, so it ends here, after what it was sent; no error line
    // lands inside the half-sent value.
    broken_ = true;
    stop();
    conn_.replyReady();
  }
  if (partial && r->merge != ReplyMerge::kForward) r->parts[part].clear();
  if (partial && r->merge == ReplyMerge::kForward && !r->streamed) r->reply.clear();
  onReply(r, part, reinterpret_cast<const uint8_t*>(line.data()), line.size(), true);
}

void RoutedSession::complete(Request* r) {
  r->done = true;
  if (r == head_) flushHead();
}

void RoutedSession::flushHead() {
  ByteBuffer& out = conn_.replyOut();
  bool changed = false;
  while (head_) {
    Request* r = head_;
    if (!r->reply.empty()) buffered_ -= r->reply.size();
    if (broken_) r->reply.clear();
    if (!r->reply.empty()) {
      out.append(r->reply.data(), r->reply.size());
      r->reply.clear();
      r->streamed = true;
      changed = true;
    }
    if (!r->done) break;
    if (!oob_.empty()) {  // pushes held while this reply was streamed
      out.append(oob_.data(), oob_.size());
      oob_.clear();
    }
    head_ = r->next;
    if (!head_) tail_ = nullptr;
    --in_flight_;
    worker_.requestPool().release(r);
    changed = true;
  }
  if (changed) conn_.replyReady();
}

void RoutedSession::finishMerge(Request* r) {
  ByteBuffer& out = r->reply;
  switch (r->merge) {
    case ReplyMerge::kMget: mergeMget(r->parts, r->key_part, out); break;
    case ReplyMerge::kMgetPairs: mergeMget(r->parts, r->key_part, out, 2); break;
    case ReplyMerge::kAllOk: mergeAllOk(r->parts, out); break;
    case ReplyMerge::kAnyOk: mergeAnyOk(r->parts, out); break;
    case ReplyMerge::kSumIntegers: mergeSumIntegers(r->parts, out); break;
    case ReplyMerge::kConcatArrays: mergeConcatArrays(r->parts, out); break;
    case ReplyMerge::kRandomKey:
      mergeRandomKey(r->parts, static_cast<size_t>(uv_hrtime() % r->parts.size()), out);
      break;
    case ReplyMerge::kSameReply: mergeSameReply(r->parts, out); break;
    case ReplyMerge::kAndArrays: mergeAndArrays(r->parts, out); break;
    case ReplyMerge::kScan:
      rewriteScanReply(r->parts[0], r->scan_shard, static_cast<uint32_t>(db_.shards.size()), out);
      break;
    case ReplyMerge::kInfo: {
      for (const std::string& p : r->parts) {
        if (!p.empty() && p[0] == '-') {
          out.append(p);
          return;
        }
      }
      resp::appendBulk(out, infoText(r->info_sections, sumKeyspace(r->parts)));
      break;
    }
    case ReplyMerge::kForward:
    case ReplyMerge::kLocal:
    case ReplyMerge::kSwallow:
      break;
  }
}

// ---- from links --------------------------------------------------------------

void deliverReply(Worker& worker, Request* r, uint16_t part, const uint8_t* data, size_t len,
                  bool done) {
  if (r->owner) {
    r->owner->onReply(r, part, data, len, done);
    return;
  }
  if (done && --r->waiting == 0) worker.requestPool().release(r);
}

void deliverFailure(Worker& worker, Request* r, uint16_t part, const std::string& line, bool partial) {
  if (r->owner) {
    r->owner->onFailure(r, part, line, partial);
    return;
  }
  if (--r->waiting == 0) worker.requestPool().release(r);
}

}  // namespace shardgate::proxy
