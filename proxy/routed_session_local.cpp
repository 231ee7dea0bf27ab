// RoutedSession: the commands the proxy answers itself or combines from
// every shard (INFO, SELECT, AUTH, HELLO, CLIENT, RESET).
#include "proxy/routed_session.h"

#include <uv.h>

#include <string>

#include "proxy/ascii.h"
#include "proxy/client_connection.h"
#include "proxy/hash_slot.h"
#include "proxy/redis_text.h"
#include "proxy/reply_merge.h"
#include "proxy/resp_encoder.h"
#include "proxy/worker.h"

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
      replyError("ERR shardgate: CLIENT " + name + " needs RESP3 (HELLO 3) on " +
                 routedKind());
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
    replyError("ERR shardgate: CLIENT " + asciiLower(args_[1]) + " is not supported on " +
               routedKind());
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

}  // namespace shardgate::proxy
