// MultiplexSession: the commands the proxy answers itself or combines from
// every shard (INFO, SELECT, AUTH, HELLO, CLIENT, RESET). Each answers as
// redis-server 7.0 does, errors included; the command's existence and arity
// were checked before (CommandTable::checkCall in dispatch).
#include "proxy/multiplex_session.h"

#include <uv.h>

#include <cstdint>
#include <string>

#include "common/ascii.h"
#include "redis/hash_slot.h"
#include "redis/info_merge.h"
#include "redis/redis_text.h"
#include "redis/reply_merge.h"
#include "redis/resp_encoder.h"

namespace shardgate::proxy {

namespace {

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

}  // namespace

MultiplexSession::Next MultiplexSession::info() {
  // Every shard answers the client's own INFO (any sections, any case);
  // mergeInfo (info_merge.h) combines them and adds the proxy's fields.
  return fanOut(frame_, ReplyMerge::kInfo);
}

redis::InfoAdditions MultiplexSession::ownInfo() const {
  // Named shardgate_*: never one of Redis's fields, so a client reading
  // connected_clients or process_id gets the shards' meaning of them.
  redis::InfoAdditions own;
  own.server = "shardgate_version:" SHARDGATE_VERSION "\r\nshardgate_process_id:" +
               std::to_string(uv_os_getpid()) + "\r\nshardgate_database:" + db_.name +
               "\r\nshardgate_listen:" + db_.listen +
               "\r\nshardgate_shards:" + std::to_string(map_->shardCount()) + "\r\n";
  // The counters of the worker thread serving this connection (one per
  // worker, across all its databases).
  own.clients = "shardgate_worker_connected_clients:" +
                std::to_string(links_host_.stats().connectionsCurrent()) + "\r\n";
  own.stats = "shardgate_worker_total_connections_received:" +
              std::to_string(links_host_.stats().connectionsAccepted()) + "\r\n";
  return own;
}

MultiplexSession::Next MultiplexSession::select() {
  // db.c selectCommand: getIntFromObjectOrReply, then the database range.
  int64_t index = 0;
  if (!redis::parseLongLong(args_[1], &index)) {
    replyError("ERR value is not an integer or out of range");
    return Next::kContinue;
  }
  if (index < INT32_MIN || index > INT32_MAX) {
    replyError("ERR value is out of range, value must between -2147483648 and 2147483647");
    return Next::kContinue;
  }
  if (db_.cluster && index != 0) {
    // A cluster node has only database 0 and refuses the SELECT (same check,
    // same place, in db.c selectCommand); accepting it here would let the
    // client's writes land in database 0 while it believes itself elsewhere.
    replyError("ERR SELECT is not allowed in cluster mode");
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

void MultiplexSession::dropPrivateLinks() {
  // Only when nothing is in flight on them (callers wait for that first).
  private_.clear();
  watching_ = false;
  pin_shard_ = -1;
}

bool MultiplexSession::passwordMatches(std::string_view user, std::string_view pass) const {
  // The database's one user is Redis's "default"; with no password it is
  // "nopass", which any password satisfies (acl.c ACLCheckUserCredentials).
  if (user != "default") return false;
  return !db_.password || samePassword(pass, *db_.password);
}

MultiplexSession::Next MultiplexSession::auth() {
  // acl.c authCommand (arity -2 is checked before).
  if (args_.size() > 3) {
    replyError("ERR syntax error");
    return Next::kContinue;
  }
  if (args_.size() == 2 && !db_.password) {
    replyError(
        "ERR AUTH <password> called without any password configured for the default user. "
        "Are you sure your configuration is correct?");
    return Next::kContinue;
  }
  std::string_view user = args_.size() == 3 ? args_[1] : "default";
  if (passwordMatches(user, args_.back())) {
    authenticated_ = true;
    replySimple("OK");
  } else {
    replyError("WRONGPASS invalid username-password pair or user is disabled.");
  }
  return Next::kContinue;
}

namespace {

// networking.c clientSetName: printable ASCII without spaces (or empty,
// which removes the name).
bool validClientName(std::string_view name) {
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < '!' || u > '~') return false;
  }
  return true;
}

constexpr std::string_view kBadClientName =
    "ERR Client names cannot contain spaces, newlines or special characters.";

}  // namespace

MultiplexSession::Next MultiplexSession::hello() {
  // networking.c helloCommand (7.0): the version, then each option in turn,
  // taking effect at once (an AUTH that fails stops there; a SETNAME before
  // a bad option stays set), then the need to be authenticated.
  int new_version = resp3_ ? 3 : 2;
  size_t i = 1;
  if (args_.size() >= 2) {
    int64_t version = 0;
    if (!redis::parseLongLong(args_[1], &version)) {
      replyError("ERR Protocol version is not an integer or out of range");
      return Next::kContinue;
    }
    if (version != 2 && version != 3) {
      replyError("NOPROTO unsupported protocol version");
      return Next::kContinue;
    }
    new_version = static_cast<int>(version);
    i = 2;
  }
  // Switching protocol: the links of the old one carry nothing more. (The
  // options below are parsed again after the wait; applying them twice is
  // the same as once.)
  if ((new_version == 3) != resp3_ && in_flight_ > 0) return Next::kWaitIdle;
  for (; i < args_.size(); ++i) {
    const size_t more = args_.size() - i - 1;
    if (redis::equalsLower(args_[i], "auth") && more >= 2) {
      if (!passwordMatches(args_[i + 1], args_[i + 2])) {
        replyError("WRONGPASS invalid username-password pair or user is disabled.");
        return Next::kContinue;
      }
      authenticated_ = true;
      i += 2;
    } else if (redis::equalsLower(args_[i], "setname") && more >= 1) {
      if (!validClientName(args_[i + 1])) {
        replyError(kBadClientName);
        return Next::kContinue;
      }
      name_ = std::string(args_[i + 1]);
      i += 1;
    } else {
      replyError("ERR Syntax error in HELLO option '" + std::string(args_[i]) + "'");
      return Next::kContinue;
    }
  }
  if (!authenticated_) {
    replyError(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
        "AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
        "protocol version at the same time");
    return Next::kContinue;
  }
  if ((new_version == 3) != resp3_) {
    resp3_ = new_version == 3;
    dropPrivateLinks();
  }
  ByteBuffer& out = frame_scratch_;
  out.clear();
  if (resp3_) {
    out.append(std::string_view("%7\r\n"));
  } else {
    redis::resp::appendArrayHeader(out, 14);
  }
  redis::resp::appendBulk(out, "server");
  redis::resp::appendBulk(out, "redis");
  redis::resp::appendBulk(out, "version");
  redis::resp::appendBulk(out, db_.shard_version);
  redis::resp::appendBulk(out, "proto");
  redis::resp::appendInteger(out, resp3_ ? 3 : 2);
  redis::resp::appendBulk(out, "id");
  redis::resp::appendInteger(out, static_cast<int64_t>(id_));
  redis::resp::appendBulk(out, "mode");
  redis::resp::appendBulk(out, "standalone");
  redis::resp::appendBulk(out, "role");
  redis::resp::appendBulk(out, "master");
  redis::resp::appendBulk(out, "modules");
  redis::resp::appendArrayHeader(out, 0);
  replyLocal(out.view());
  return Next::kContinue;
}

std::string MultiplexSession::clientLine(std::string_view cmd) const {
  // The fields of Redis's CLIENT LIST line (networking.c catClientInfoString)
  // that the proxy knows for its own client; the connection-level ones (fd,
  // buffers, ...) describe the shard's connections, not this one, and are left out.
  std::string flags;
  if (subscribed()) flags += 'P';
  if (in_multi_) flags += 'x';
  if (flags.empty()) flags = "N";
  return "id=" + std::to_string(id_) + " laddr=" + db_.listen + " name=" + name_ +
         " flags=" + flags + " db=" + std::to_string(db_index_) +
         " sub=" + std::to_string(channels_.size()) + " psub=" + std::to_string(patterns_.size()) +
         " multi=-1 cmd=" + std::string(cmd) + " user=default resp=" + (resp3_ ? "3" : "2") +
         certSubjectField() + "\n";
}

std::string MultiplexSession::certSubjectField() const {
  // Only on databases with client_auth; empty when the client sent no
  // certificate. The line's fields are split at spaces (redis-py does), so
  // a subject's spaces, '%' and control characters are percent-encoded.
  if (db_.client_auth == config::ClientAuth::kNone) return {};
  std::string field = " cert-subject=";
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : cert_subject_) {
    if (c <= ' ' || c == '%' || c == 0x7f) {
      field += '%';
      field += kHex[c >> 4];
      field += kHex[c & 15];
    } else {
      field += static_cast<char>(c);
    }
  }
  return field;
}

void MultiplexSession::replyText(std::string_view text) {
  // INFO, CLIENT INFO, CLIENT LIST: RESP3 verbatim text, else a bulk string.
  ByteBuffer& out = reply_scratch_;
  out.clear();
  if (resp3_) redis::resp::appendVerbatimText(out, text);
  else redis::resp::appendBulk(out, text);
  replyLocal(out.view());
}

MultiplexSession::Next MultiplexSession::client() {
  // The subcommand exists and its arity fits (CommandTable::checkCall); what
  // is left is each subcommand's own parsing (networking.c clientCommand).
  std::string sub = asciiLower(args_[1]);
  // A table from a shard whose COMMAND lists no subcommands (Redis 6) left
  // their arity unchecked: Redis 7.0's, for the ones answered here.
  static constexpr std::pair<std::string_view, int> kArity[] = {
      {"id", 2},   {"getname", 2}, {"setname", 3}, {"info", 2},      {"list", -2},
      {"help", 2}, {"setinfo", 4}, {"caching", 3}, {"tracking", -3}, {"trackinginfo", 2},
      {"getredir", 2}};
  for (const auto& [name, arity] : kArity) {
    const size_t n = args_.size();
    if (sub == name && (arity > 0 ? n != static_cast<size_t>(arity)
                                  : n < static_cast<size_t>(-arity))) {
      replyError(redis::arityErrorText("client|" + sub));
      return Next::kContinue;
    }
  }
  if (sub == "id") {
    replyInteger(static_cast<int64_t>(id_));
  } else if (sub == "getname") {
    if (name_.empty()) {
      replyLocal(resp3_ ? "_\r\n" : "$-1\r\n");
    } else {
      replyBulk(name_);
    }
  } else if (sub == "setname") {
    if (!validClientName(args_[2])) {
      replyError(kBadClientName);
      return Next::kContinue;
    }
    name_ = std::string(args_[2]);
    replySimple("OK");
  } else if (sub == "info") {
    replyText(clientLine("client|info"));
  } else if (sub == "list") {
    return clientList();
  } else if (sub == "help") {
    return forward(0, frame_, LinkKind::kShared);  // the shard's own text
  } else if (sub == "tracking" || sub == "caching" || sub == "trackinginfo" ||
             sub == "getredir") {
    if (!resp3_) {
      // RESP2 tracking redirects to another connection's id; the shards'
      // connections are the proxy's, so only RESP3's pushes can reach the client.
      std::string name = sub;
      for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      replyError("ERR shardgate: CLIENT " + name + " needs RESP3 (HELLO 3) on " +
                 multiplexKind());
    } else if (sub == "trackinginfo" || sub == "getredir") {
      return forward(0, frame_, LinkKind::kShared);
    } else {
      // Every shard tracks the keys it serves; CACHING applies to the next
      // command on each shard's connection.
      if (sub == "tracking") tracking_ = true;
      return fanOut(frame_, ReplyMerge::kAllOk);
    }
  } else if (sub == "setinfo") {
    replySimple("OK");  // library name/version (Redis 7.2's shards): nothing to route
  } else {
    // KILL, PAUSE, UNPAUSE, UNBLOCK, REPLY, NO-EVICT (clientActsOnSharedConnections).
    replyError("ERR shardgate: CLIENT " + sub + " is not supported on " + multiplexKind());
  }
  return Next::kContinue;
}

bool MultiplexSession::clientActsOnSharedConnections(std::string_view sub) {
  // They act on the shards' connections, which are shared by every client
  // of the proxy, or (REPLY) on replies the proxy must match to commands.
  for (std::string_view name : {"kill", "pause", "unpause", "unblock", "reply", "no-evict"}) {
    if (redis::equalsLower(sub, name)) return true;
  }
  return false;
}

MultiplexSession::Next MultiplexSession::clientList() {
  // CLIENT LIST [TYPE type | ID id ...]: this client only.
  std::string text;
  if (args_.size() == 4 && redis::equalsLower(args_[2], "type")) {
    const std::string type = asciiLower(args_[3]);
    if (type != "normal" && type != "slave" && type != "replica" && type != "pubsub" &&
        type != "master") {
      replyError("ERR Unknown client type '" + std::string(args_[3]) + "'");
      return Next::kContinue;
    }
    if (type == (subscribed() ? "pubsub" : "normal")) text = clientLine("client|list");
  } else if (args_.size() > 3 && redis::equalsLower(args_[2], "id")) {
    for (size_t i = 3; i < args_.size(); ++i) {
      int64_t id = 0;
      if (!redis::parseLongLong(args_[i], &id)) {
        replyError("ERR Invalid client ID");
        return Next::kContinue;
      }
      if (static_cast<uint64_t>(id) == id_) text += clientLine("client|list");
    }
  } else if (args_.size() != 2) {
    replyError("ERR syntax error");
    return Next::kContinue;
  } else {
    text = clientLine("client|list");
  }
  replyText(text);
  return Next::kContinue;
}

MultiplexSession::Next MultiplexSession::reset() {
  endStream();
  if (in_flight_ > 0) return Next::kWaitIdle;
  private_.clear();
  node_addresses_.clear();
  retired_.clear();
  push_partial_.clear();
  stream_links_.clear();
  oob_.clear();
  clearPubsub();
  clearMulti();
  name_.clear();
  authenticated_ = !db_.password;
  db_index_ = 0;
  resp3_ = false;
  tracking_ = false;
  replySimple("RESET");
  return Next::kContinue;
}

}  // namespace shardgate::proxy
