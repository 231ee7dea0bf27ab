#include "proxy/multiplex_session.h"

#include <uv.h>

#include <algorithm>
#include <atomic>
#include <charconv>

#include "common/ascii.h"
#include "proxy/replica_reads.h"
#include "redis/cluster_replies.h"
#include "redis/hash_slot.h"
#include "redis/info_merge.h"
#include "redis/redis_text.h"
#include "redis/reply_merge.h"
#include "redis/resp_encoder.h"

namespace shardgate::proxy {

namespace {
// CLIENT ID: unique across the process, as Redis's are across a server.
std::atomic<uint64_t> next_client_id{1};
}  // namespace

MultiplexSession::MultiplexSession(LinkFactory& links, const Database& db, ReplySink& sink)
    : links_host_(links),
      db_(db),
      conn_(sink),
      pool_(links.requestPool()),
      frame_scratch_(links.frameScratch()),
      reply_scratch_(links.replyScratch()),
      int_scratch_(links.intScratch()),
      db_stats_(links.dbStats(db)),
      shared_(links.sharedLinks(db)),
      links_(shared_.current),
      map_(links_->map.get()),
      decoder_(db.limits),
      authenticated_(!db.password),
      id_(next_client_id.fetch_add(1, std::memory_order_relaxed)) {}

MultiplexSession::~MultiplexSession() {
  links_host_.cancelWake(this);
  orphanRequests();
  private_.clear();  // their waiting parts are orphans now, freed as they fail
}

void MultiplexSession::orphanRequests() {
  // Links free orphaned requests as their replies arrive (or fail), and
  // nothing reaches another client. One waiting to be resent waits on no link.
  // A split command's other parts may still be on links: one part each.
  for (Resend& w : resends_) --w.request->waiting;
  resends_.clear();
  for (Request* r = head_; r;) {
    Request* next = r->next;
    r->owner = nullptr;
    if (r->waiting == 0) pool_.release(r);
    r = next;
  }
  head_ = tail_ = nullptr;
  stream_ = nullptr;  // was in the FIFO (released above)
  in_flight_ = on_shared_ = on_private_ = refused_ = 0;
  buffered_ = 0;
}

void MultiplexSession::clearPubsub() {
  monitoring_ = false;
  first_monitor_ok_ = -1;
  monitor_.reset();
  channels_.clear();
  patterns_.clear();
  shard_channels_.clear();
  shard_home_.clear();
  resubs_.clear();
  expected_.clear();
  arrived_.clear();
  sent_pubsub_.clear();
}

void MultiplexSession::clearMulti() {
  in_multi_ = multi_dirty_ = multi_on_shard_ = watching_ = false;
  multi_lost_ = watch_lost_ = false;
  pin_shard_ = -1;
  multi_queue_.clear();
  multi_queue_.release();
  multi_queued_ = 0;
  tx_slot_ = -1;
}

void MultiplexSession::abandon() {
  // Called from the connection's read or flush path, never from inside a
  // link's callback, so links may be deleted here.
  orphanRequests();
  stopped_ = true;
  waiting_ = false;
  in_.clear();
  oob_.clear();
  clearPubsub();
  stream_links_.clear();
  push_partial_.clear();
  private_.clear();
  node_addresses_.clear();
  retired_.clear();
  links_host_.cancelWake(this);
}

// ---- parsing -----------------------------------------------------------------

void MultiplexSession::onBytes(const uint8_t* data, size_t len) {
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

void MultiplexSession::resume() {
  if (waiting_ || (!in_.empty() && in_flight_ < kMaxInFlight)) {
    waiting_ = false;
    parse();
  }
  if (input_ended_) finishInput();
}

void MultiplexSession::endInput() {
  input_ended_ = true;
  finishInput();
}

void MultiplexSession::finishInput() {
  // Stopped (QUIT): nothing more is dispatched, but a command sent before
  // may still be blocked on its shard.
  if (stopped_ || (!waiting_ && in_flight_ < kMaxInFlight)) {
    in_.clear();  // a command the EOF cut short
    // Indexed: a link that fails at once may end the stream, which moves
    // stream links out of private_.
    for (size_t s = 0; s < private_.size(); ++s) {
      if (private_[s]) private_[s]->closeWrite();
    }
    return;
  }
  // Commands wait behind a blocked one: redis-server would leave them
  // unread and free the client; whatever its shard answers before the close
  // comes first, and lets them run.
  if (head_ && head_->blocking && !head_->done && private_shard_ >= 0 &&
      static_cast<size_t>(private_shard_) < private_.size() && private_[private_shard_]) {
    private_[private_shard_]->closeWrite();
  }
}

void MultiplexSession::parse() {
  size_t used = parseFrom(in_.view());
  if (stopped_) {
    in_.clear();
  } else {
    in_.consume(used);
  }
  if (in_.empty() && in_.capacity() > 64 * 1024) in_.release();
}

size_t MultiplexSession::parseFrom(std::string_view data) {
  if (!refreshMap()) {
    waiting_ = true;  // resume() parses again as the replies come in
    return 0;
  }
  // One clock read for the whole batch: every command in it starts now.
  batch_start_us_ = links_host_.refreshClock();
  size_t used = 0;
  while (!stopped_ && used < data.size() && in_flight_ < kMaxInFlight) {
    std::string_view rest = data.substr(used);
    auto status = decoder_.decode(rest);
    if (status == redis::RequestDecoder::Status::kNeedMore) break;
    if (status == redis::RequestDecoder::Status::kError) {
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
    cur_timed_ = false;
    Next next = dispatch(frame);
    if (next == Next::kWaitIdle) {
      waiting_ = true;  // this command is parsed again once the wait is over
      break;
    }
    countRequest();
    used += frame.size();
    if (next == Next::kStop) stop();
  }
  return used;
}

bool MultiplexSession::adoptMap() {
  // State a shard keeps for this client -- a transaction, WATCH,
  // subscriptions, MONITOR, tracking -- stays on the old map until it ends,
  // and so does a command waiting on a private link.
  // (A RESP3 subscriber has no stream_: its subscriptions count.)
  if (in_multi_ || watching_ || stream_ || subscribed() || tracking_ || on_private_ > 0) return true;
  for (const auto& link : private_) {
    if (link && !link->idle()) return true;
  }
  // The new map only once every request sent by the old one is answered:
  // one still in flight to a slot's old owner may yet be redirected and
  // resent to the new one, and a later command sent there directly would
  // overtake it (two writes of one key applied out of order). A map changes
  // seldom; the wait is one round trip of this client's pipeline.
  if (in_flight_ > 0) return false;
  // Idle private links hold only SELECT / HELLO 3, which a new one is sent first.
  private_.clear();
  node_addresses_.clear();
  links_ = shared_.current;
  map_ = links_->map.get();
  return true;
}

// ---- dispatch ----------------------------------------------------------------

MultiplexSession::Next MultiplexSession::dispatch(std::string_view frame) {
  frame_ = frame;
  if (!retired_.empty()) retired_.clear();
  const redis::CommandInfo* cmd = db_.commands->find(args_[0]);
  cur_kind_ = cmd ? classifyRequest(cmd->flags) : RequestKind::kOther;
  // One flag test unless the database reads from replicas. MULTI/WATCH,
  // pub/sub and blocking commands go to private links, never to a replica.
  cur_replica_read_ = db_.replica_reads && cmd != nullptr && readableFromReplica(cmd->flags) && !watching_ && !ownLinks();
  if (monitoring_) return dispatchInPubsub(cmd, frame);
  // redis-server's order (server.c processCommand): the command must exist
  // and its arguments fit its arity, whoever answers it; then the client
  // must be authenticated; then its mode (pub/sub, MULTI) decides. Each
  // refusal inside MULTI makes EXEC abort.
  auto route = cmd ? static_cast<redis::CommandRoute>(cmd->route) : redis::CommandRoute::kDefault;
  // Subscription confirmations come from the shards in their own time. A
  // command after a (P)(UN)SUBSCRIBE is answered after its confirmations, as
  // redis-server answers in order; only more (un)subscriptions go ahead
  // (their confirmations queue behind). Parsing resumes once they are out.
  // A bare UNSUBSCRIBE / PUNSUBSCRIBE waits too: what it leaves is every
  // subscription made before it, which channels_ / patterns_ hold only once
  // confirmed.
  if (!expected_.empty() && (!isSubscription(route) || args_.size() == 1)) {
    return Next::kWaitIdle;
  }
  if (cmd == nullptr) return refuse(redis::unknownCommand(args_));
  if (Status call = db_.commands->checkCall(*cmd, args_); !call) {
    if (route == redis::CommandRoute::kExec) return abortExec(call.message());
    return refuse(call.message());
  }
  // PING counts its own arguments (arity -1, at most one message); inside
  // MULTI that is the queued command's error, at EXEC.
  if (route == redis::CommandRoute::kPing && args_.size() > 2 && !in_multi_) {
    return refuse(redis::arityErrorText("ping"));
  }
  if (!authenticated_ && route != redis::CommandRoute::kAuth && route != redis::CommandRoute::kHello &&
      route != redis::CommandRoute::kQuit && route != redis::CommandRoute::kReset) {
    return refuse("NOAUTH Authentication required.");
  }
  if (stream_) return dispatchInPubsub(cmd, frame);
  if (in_multi_) return dispatchInMulti(cmd, frame);

  switch (route) {
    case redis::CommandRoute::kPing:
      if (args_.size() == 1) replySimple("PONG");
      else replyBulk(args_[1]);
      return Next::kContinue;
    case redis::CommandRoute::kEcho:
      replyBulk(args_[1]);
      return Next::kContinue;
    case redis::CommandRoute::kQuit:
      replySimple("OK");
      return Next::kStop;
    case redis::CommandRoute::kHello: return hello();
    case redis::CommandRoute::kAuth: return auth();
    case redis::CommandRoute::kSelect: return select();
    case redis::CommandRoute::kClient: return client();
    case redis::CommandRoute::kReset: return reset();
    case redis::CommandRoute::kCluster:
      if (db_.cluster) return clusterCommand();
      if (args_.size() == 3 && redis::equalsLower(args_[1], "keyslot")) {
        replyInteger(redis::keyHashSlot(args_[2]));
        return Next::kContinue;
      }
      break;  // the first shard says what a non-cluster Redis says
    case redis::CommandRoute::kInfo: return info();
    case redis::CommandRoute::kDbsize:
      if (auto st = findKeys(*cmd); !st) break;
      return fanOut(frame, ReplyMerge::kSumIntegers);
    case redis::CommandRoute::kFlush:
      if (auto st = findKeys(*cmd); !st) break;
      return fanOut(frame, ReplyMerge::kAllOk);
    case redis::CommandRoute::kKeys:
      if (auto st = findKeys(*cmd); !st) break;
      return fanOut(frame, ReplyMerge::kConcatArrays);
    case redis::CommandRoute::kRandomKey:
      if (auto st = findKeys(*cmd); !st) break;
      return fanOut(frame, ReplyMerge::kRandomKey);
    case redis::CommandRoute::kScript:
    case redis::CommandRoute::kFunction: {
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
    case redis::CommandRoute::kEveryShard:
      if (auto st = findKeys(*cmd); !st) break;
      return fanOut(frame, ReplyMerge::kSameReply);  // persisting the database is every shard's
    case redis::CommandRoute::kConfig: {
      if (auto st = findKeys(*cmd); !st) break;
      std::string sub = asciiLower(args_[1]);
      if (sub == "set" || sub == "resetstat" || sub == "rewrite") {
        return fanOut(frame, ReplyMerge::kAllOk);  // the database is every shard
      }
      break;  // GET, HELP: the first shard's answer
    }
    case redis::CommandRoute::kPubsubInfo: {
      if (auto st = findKeys(*cmd); !st) break;
      std::string sub = asciiLower(args_[1]);
      if (sub == "channels" || sub == "shardchannels") {
        return fanOut(frame, ReplyMerge::kConcatArrays);  // a channel lives on its slot's shard
      }
      if ((sub == "numsub" || sub == "shardnumsub") && args_.size() > 2) {
        keys_.clear();
        for (uint32_t i = 2; i < args_.size(); ++i) keys_.push_back(i);
        return split(route, frame);
      }
      break;  // NUMPAT: every shard has every pattern; HELP
    }
    case redis::CommandRoute::kScan:
      if (auto st = findKeys(*cmd); !st) break;
      return scan();
    case redis::CommandRoute::kMget:
    case redis::CommandRoute::kMset:
    case redis::CommandRoute::kSumKeys: {
      if (auto st = findKeys(*cmd); !st) {
        replyError(st.message());
        return Next::kContinue;
      }
      return split(route, frame);
    }
    case redis::CommandRoute::kMulti:
      if (auto st = findKeys(*cmd); !st) break;
      // A cluster database queues the transaction here until EXEC
      // (multiplex_session_multi.cpp); elsewhere, once WATCH named the
      // shard, MULTI goes there now.
      if (pin_shard_ >= 0 && !db_.cluster) {
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
    case redis::CommandRoute::kExec:
      replyError("ERR EXEC without MULTI");
      return Next::kContinue;
    case redis::CommandRoute::kDiscard:
      replyError("ERR DISCARD without MULTI");
      return Next::kContinue;
    case redis::CommandRoute::kWatch: return watch(*cmd, frame);
    case redis::CommandRoute::kUnwatch:
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
    case redis::CommandRoute::kSubscribe:
    case redis::CommandRoute::kPsubscribe:
    case redis::CommandRoute::kUnsubscribe:
    case redis::CommandRoute::kPunsubscribe:
      return subscribe(route, frame);
    case redis::CommandRoute::kPublish: {
      if (auto st = findKeys(*cmd); !st) break;
      const uint16_t shard = map_->shardOfKey(args_[1]);
      if (shard == ShardMap::kNoShard) {
        replyError(ShardMap::kNotServedError);
        return Next::kContinue;
      }
      return forward(shard, frame, LinkKind::kShared);
    }
    case redis::CommandRoute::kMonitor:
      if (auto st = findKeys(*cmd); !st) break;
      return monitor(frame);
    case redis::CommandRoute::kUnsupported:
      replyError("ERR shardgate: " + asciiLower(args_[0]) + " is not supported on " +
                 multiplexKind());
      return Next::kContinue;
    case redis::CommandRoute::kStalling:
    case redis::CommandRoute::kDefault:
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
  if ((cmd->flags & redis::CommandInfo::kBlocking) || route == redis::CommandRoute::kStalling) {
    // A blocked command would stall every client behind it on a shared link.
    // On a cluster its slot goes with it: a node that lets it go unrun
    // (the slot moved, a failover) names where to resend it.
    cur_slot_ = db_.cluster && !keys_.empty() ? redis::keyHashSlot(args_[keys_[0]]) : -1;
    Next next = forward(shard, frame, LinkKind::kPrivate, true);
    cur_slot_ = -1;
    return next;
  }
  if (db_.cluster && ownLinks() && !keys_.empty()) {
    // A RESP3 client's commands go on links of its own: a node's redirect
    // is followed there (multiplex_session_redirects.cpp), as on the shared ones.
    cur_slot_ = redis::keyHashSlot(args_[keys_[0]]);
    Next next = forward(shard, frame, LinkKind::kShared);
    cur_slot_ = -1;
    return next;
  }
  return forward(shard, frame, LinkKind::kShared);
}

MultiplexSession::Next MultiplexSession::clusterCommand() {
  // A cluster-aware client sees one node, this endpoint, owning every slot
  // (or cluster.shown_masters of them, all this endpoint): it sends
  // everything here and the proxy routes it; the real cluster's nodes and
  // moves stay behind (redis/cluster_replies.h).
  const redis::ClusterFace face{face_host_, face_port_, db_.tls, db_.cluster_shown_masters};
  ByteBuffer out;  // CLUSTER is rare: its own buffer
  auto result = redis::answerClusterCommand(args_, face, resp3_, out);
  if (result.kind == redis::ClusterCommandResult::Kind::kAnswered) {
    replyLocal(out.view());
    return Next::kContinue;
  }
  // COUNTKEYSINSLOT, GETKEYSINSLOT: the master that owns the slot.
  const uint16_t shard = map_->shardOfSlot(result.slot);
  if (shard == ShardMap::kNoShard) {
    replyError(ShardMap::kNotServedError);
    return Next::kContinue;
  }
  return forward(shard, frame_, LinkKind::kShared);
}

MultiplexSession::Next MultiplexSession::refuse(std::string_view text) {
  if (in_multi_) multi_dirty_ = true;  // server.c rejectCommand -> flagTransaction
  replyError(text);
  return Next::kContinue;
}

MultiplexSession::Next MultiplexSession::abortExec(std::string_view text) {
  // multi.c execCommandAbort: a refused EXEC discards the transaction and
  // forgets the WATCHed keys, in MULTI or not. The shard's copy of that state
  // goes too; its answer is the proxy's, dropped.
  const bool on_shard = (multi_on_shard_ && !multi_lost_) || (watching_ && !watch_lost_);
  if (on_shard && !orderedAfterInFlight(LinkKind::kPrivate, pin_shard_)) return Next::kWaitIdle;
  if (on_shard) {
    ByteBuffer& undo = frame_scratch_;
    undo.clear();
    // DISCARD also unwatches; UNWATCH alone when only WATCH reached the shard.
    redis::resp::appendCommand(undo, {multi_on_shard_ && !multi_lost_ ? "DISCARD" : "UNWATCH"});
    privateLink(pin_shard_).send(undo.view(), nullptr, 0);
  }
  clearMulti();
  replyError(text);
  return Next::kContinue;
}

Status MultiplexSession::findKeys(const redis::CommandInfo& cmd) {
  keys_.clear();
  return db_.commands->keyPositions(cmd, args_, keys_);
}

bool MultiplexSession::singleShard(int* shard) {
  *shard = -1;
  for (uint32_t k : keys_) {
    const uint16_t owner = map_->shardOfKey(args_[k]);
    if (owner == ShardMap::kNoShard) {
      replyError(ShardMap::kNotServedError);
      return false;
    }
    const int s = owner;
    if (*shard >= 0 && s != *shard) {
      replyError(redis::kCrossSlot);
      return false;
    }
    *shard = s;
  }
  return true;
}

bool MultiplexSession::orderedAfterInFlight(LinkKind kind, int shard) const {
  // A command a node let go unrun is retried (TRYAGAIN, a failover) until
  // answered: nothing the client sends meanwhile may run before it.
  if (refused_ > 0) return false;
  if (kind == LinkKind::kShared) return on_private_ == 0;
  return on_shared_ == 0 && (on_private_ == 0 || private_shard_ == shard);
}

// ---- sending -----------------------------------------------------------------

ShardLink& MultiplexSession::privateLink(int shard) {
  if (private_.size() < map_->shardCount() + node_addresses_.size()) {
    private_.resize(map_->shardCount() + node_addresses_.size());
  }
  auto& link = private_[static_cast<size_t>(shard)];
  // Its shard was told of the client's EOF, but a blocked command it held
  // was answered and what waited behind it runs: on a connection of its own.
  if (link && link->writeClosed()) retired_.push_back(std::move(link));
  if (!link) {
    const size_t shards = map_->shardCount();
    if (static_cast<size_t>(shard) >= shards) {
      // nodeShard() checked the address can be used.
      link = links_host_.openNodeLink(db_, node_addresses_[static_cast<size_t>(shard) - shards],
                                      static_cast<uint16_t>(shard), this);
    } else {
      link = links_host_.openPrivateLink(db_, links_->map, static_cast<uint16_t>(shard), this);
    }
    sendPrelude(*link);
  }
  return *link;
}

void MultiplexSession::sendPrelude(ShardLink& link) {
  // The client's connection state goes first; the shard's answers to it
  // are the proxy's, dropped.
  ByteBuffer& prelude = reply_scratch_;
  if (resp3_) {
    link.setPushTarget(this);
    link.setOutOfBandPushes(true);
    prelude.clear();
    redis::resp::appendCommand(prelude, {"HELLO", "3"});
    link.send(prelude.view(), nullptr, 0);
  }
  if (db_index_ != 0) {
    prelude.clear();
    std::string index = std::to_string(db_index_);
    redis::resp::appendCommand(prelude, {"SELECT", index});
    link.send(prelude.view(), nullptr, 0);
  }
}

ShardLink& MultiplexSession::linkFor(int shard, LinkKind kind) {
  // A client whose connection state differs from the shared links' (another
  // database, RESP3) sends everything on links of its own.
  if (kind == LinkKind::kPrivate || ownLinks()) return privateLink(shard);
  return sharedLink(shard);
}

ShardLink* MultiplexSession::replicaFor(int shard) {
  const auto s = static_cast<size_t>(shard);
  const uint64_t now_us = links_host_.clockUs();
  const int pick = pickReplica(map_->replicaBegin(s), map_->replicaEnd(s), links_->next_replica,
                               [&](size_t i) { return links_->links[i]->readable(now_us); });
  if (pick < 0) {
    db_stats_.cluster_replica_fallbacks.add();
    return nullptr;
  }
  return links_->links[static_cast<size_t>(pick)].get();
}

std::string MultiplexSession::unavailableLine(int shard) {
  ShardLink& link = sharedLink(shard);
  return "-ERR shard " + link.address() + " unavailable: " + link.failure() + "\r\n";
}

MultiplexSession::Next MultiplexSession::forward(int shard, std::string_view frame, LinkKind kind,
                                           bool blocking) {
  if (!orderedAfterInFlight(kind, shard)) return Next::kWaitIdle;
  // A read a replica takes needs its replica up, not its master.
  ShardLink* replica = cur_replica_read_ && kind == LinkKind::kShared ? replicaFor(shard) : nullptr;
  // The shared link knows whether the shard is up, whichever link we use.
  if (replica == nullptr && !sharedLink(shard).available()) {
    replyLocal(unavailableLine(shard));
    return Next::kContinue;
  }
  Request* r = newRequest(ReplyMerge::kForward, kind, 1);
  r->blocking = blocking;
  r->slot = cur_slot_;
  r->tx = cur_tx_;
  if (kind == LinkKind::kPrivate) private_shard_ = shard;
  push(r);
  ShardLink& link = replica != nullptr ? *replica : linkFor(shard, kind);
  link.send(frame, r, 0);
  return Next::kContinue;
}

void MultiplexSession::appendArgs(ByteBuffer& out, size_t count, const uint32_t* index) {
  redis::resp::appendArrayHeader(out, count + 1);
  redis::resp::appendBulk(out, args_[0]);
  for (size_t i = 0; i < count; ++i) redis::resp::appendBulk(out, args_[index[i]]);
}

MultiplexSession::Next MultiplexSession::split(redis::CommandRoute route, std::string_view frame) {
  // Each key's shard, computed once; all in one part (the common case) is
  // sent as the client wrote it. A part is one shard's keys -- or, for a
  // cluster database, one slot's: a cluster node refuses keys of several
  // slots in one command (CROSSSLOT), even slots it owns all of.
  const bool by_slot = db_.cluster;
  key_shard_.clear();
  key_slot_.clear();
  bool one_part = true;
  for (uint32_t k : keys_) {
    const uint16_t slot = by_slot ? redis::keyHashSlot(args_[k]) : 0;
    const uint16_t owner = by_slot ? map_->shardOfSlot(slot) : map_->shardOfKey(args_[k]);
    if (owner == ShardMap::kNoShard) {
      // Redis Cluster refuses the whole command; so does the proxy, before
      // any part of it is sent.
      replyError(ShardMap::kNotServedError);
      return Next::kContinue;
    }
    key_shard_.push_back(owner);
    key_slot_.push_back(slot);
    one_part = one_part && (by_slot ? key_slot_.back() == key_slot_.front()
                                    : key_shard_.back() == key_shard_.front());
  }
  if (one_part) {
    // On a client's own links its slot goes with it, where a redirect is
    // followed (multiplex_session_redirects.cpp).
    if (by_slot && ownLinks()) cur_slot_ = key_slot_.front();
    const Next next = forward(key_shard_.front(), frame, LinkKind::kShared);
    cur_slot_ = -1;
    return next;
  }
  if (!orderedAfterInFlight(LinkKind::kShared, 0)) return Next::kWaitIdle;
  const bool pairs = route == redis::CommandRoute::kMset;
  // PUBSUB NUMSUB: "PUBSUB NUMSUB" before each shard's channels.
  const size_t prefix = route == redis::CommandRoute::kPubsubInfo ? 2 : 1;
  const size_t shards = map_->shardCount();
  // part_of_shard: -1 until the shard's first key; parts in order of first key.
  std::vector<int>& part_of_shard = int_scratch_;
  part_of_shard.assign(shards, -1);
  std::vector<int> shard_of_part;
  std::vector<std::vector<uint32_t>> part_args;
  ReplyMerge merge = route == redis::CommandRoute::kMget         ? ReplyMerge::kMget
                     : route == redis::CommandRoute::kPubsubInfo ? ReplyMerge::kMgetPairs
                     : route == redis::CommandRoute::kMset       ? ReplyMerge::kAllOk
                                                          : ReplyMerge::kSumIntegers;
  Request* r = newRequest(merge, LinkKind::kShared, 0);
  std::vector<uint16_t>& slot_of_part = part_slot_;  // by_slot: each part's slot
  slot_of_part.clear();
  for (size_t i = 0; i < keys_.size(); ++i) {
    const uint32_t k = keys_[i];
    const int s = key_shard_[i];
    int by_slot_part = -1;
    if (by_slot) {
      // Few slots per command as a rule: a scan beats a 16384-entry table.
      const auto found = std::find(slot_of_part.begin(), slot_of_part.end(), key_slot_[i]);
      by_slot_part = found == slot_of_part.end() ? -1 : static_cast<int>(found - slot_of_part.begin());
    }
    int& part = by_slot ? by_slot_part : part_of_shard[static_cast<size_t>(s)];
    if (part < 0) {
      part = static_cast<int>(shard_of_part.size());
      shard_of_part.push_back(s);
      if (by_slot) slot_of_part.push_back(key_slot_[i]);
      part_args.emplace_back();
    }
    part_args[static_cast<size_t>(part)].push_back(k);
    if (pairs) part_args[static_cast<size_t>(part)].push_back(k + 1);
    if (merge == ReplyMerge::kMget || merge == ReplyMerge::kMgetPairs) {
      r->key_part.push_back(static_cast<uint16_t>(part));
    }
  }
  r->parts.resize(shard_of_part.size());
  // On the client's own links a part's redirect is followed by the session,
  // which needs its slot (on shared links the worker reads it off the node's reply).
  if (by_slot && ownLinks()) r->part_slot.assign(slot_of_part.begin(), slot_of_part.end());
  r->waiting = static_cast<uint16_t>(shard_of_part.size());
  countInFlight(r);
  push(r);
  ByteBuffer& cmd_bytes = frame_scratch_;
  for (size_t p = 0; p < shard_of_part.size(); ++p) {
    int s = shard_of_part[p];
    ShardLink* replica = cur_replica_read_ ? replicaFor(s) : nullptr;
    if (replica == nullptr && !sharedLink(s).available()) {
      std::string line = unavailableLine(s);
      onReply(r, static_cast<uint16_t>(p), reinterpret_cast<const uint8_t*>(line.data()), line.size(),
              true);
      continue;
    }
    cmd_bytes.clear();
    redis::resp::appendArrayHeader(cmd_bytes, prefix + part_args[p].size());
    for (size_t i = 0; i < prefix; ++i) redis::resp::appendBulk(cmd_bytes, args_[i]);
    for (uint32_t k : part_args[p]) redis::resp::appendBulk(cmd_bytes, args_[k]);
    (replica != nullptr ? *replica : linkFor(s, LinkKind::kShared)).send(cmd_bytes.view(), r, static_cast<uint16_t>(p));
  }
  return Next::kContinue;
}

MultiplexSession::Next MultiplexSession::fanOut(std::string_view frame, ReplyMerge merge) {
  if (!orderedAfterInFlight(LinkKind::kShared, 0)) return Next::kWaitIdle;
  const size_t shards = map_->shardCount();
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

MultiplexSession::Next MultiplexSession::scan() {
  if (!orderedAfterInFlight(LinkKind::kShared, 0)) return Next::kWaitIdle;
  const auto shards = static_cast<uint32_t>(map_->shardCount());
  auto pos = redis::decodeScanCursor(args_[1], shards);
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
  ByteBuffer& cmd_bytes = frame_scratch_;
  cmd_bytes.clear();
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, pos->cursor);
  (void)ec;
  redis::resp::appendArrayHeader(cmd_bytes, args_.size());
  redis::resp::appendBulk(cmd_bytes, args_[0]);
  redis::resp::appendBulk(cmd_bytes, std::string_view(digits, static_cast<size_t>(end - digits)));
  for (size_t i = 2; i < args_.size(); ++i) redis::resp::appendBulk(cmd_bytes, args_[i]);
  linkFor(shard, LinkKind::kShared).send(cmd_bytes.view(), r, 0);
  return Next::kContinue;
}

void MultiplexSession::closeIdleLinks(uint64_t now_ms) {
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

void MultiplexSession::onPrivateLinkLost(ShardLink& link) {
  // A private link holds connection state the shard has now forgotten; a
  // fresh connection must not silently stand in for it.
  const int shard = link.shard();
  // A link no longer the session's (retired: its state was given up
  // already) changes nothing.
  if (link.shard() >= private_.size() || private_[link.shard()].get() != &link) return;
  if (in_multi_ && multi_on_shard_ && pin_shard_ == shard) {
    multi_dirty_ = true;
    multi_lost_ = true;
  }
  if (watching_ && pin_shard_ == shard) watch_lost_ = true;
  if (input_ended_ && subscribed() && link.shard() < stream_links_.size() &&
      stream_links_[link.shard()]) {
    // A shard freed the client at the EOF passed on; once every shard of the
    // stream has, nothing more comes.
    for (size_t s = 0; s < stream_links_.size() && s < private_.size(); ++s) {
      if (stream_links_[s] && private_[s] && private_[s]->open()) return;
    }
    stop();
    clearPubsub();
    conn_.replyReady();
    return;
  }
  if (subscribed() && link.shard() < stream_links_.size() && stream_links_[link.shard()]) {
    if (db_.cluster && resubscribeLost(shard)) return;
    std::string line = "-ERR shard " + link.address() + " unavailable: " + link.failure() +
                       (monitoring_ ? " (MONITOR ended)" : " (subscriptions on it are lost)") +
                       "\r\n";
    appendToStream(reinterpret_cast<const uint8_t*>(line.data()), line.size());
    stop();  // the client reconnects and subscribes again
  }
}

void MultiplexSession::stop() {
  stopped_ = true;
  // A subscriber or monitor that quits: its stream ends with what it was
  // sent, so the connection can close.
  endStream();
}

// ---- replies -----------------------------------------------------------------

void MultiplexSession::replyLocal(std::string_view bytes) {
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

void MultiplexSession::replyError(std::string_view text) {
  ByteBuffer& out = reply_scratch_;
  out.clear();
  redis::resp::appendError(out, text);
  // A client's argument quoted in an error (an unknown subcommand, a HELLO
  // option) must not end the line early: Redis maps CR and LF to spaces
  // (networking.c addReplyErrorFormat), so does the proxy.
  uint8_t* body = out.data() + 1;
  for (size_t i = 0; i + 3 < out.size(); ++i) {
    if (body[i] == '\r' || body[i] == '\n') body[i] = ' ';
  }
  replyLocal(out.view());
}

void MultiplexSession::replySimple(std::string_view text) {
  ByteBuffer& out = reply_scratch_;
  out.clear();
  redis::resp::appendSimple(out, text);
  replyLocal(out.view());
}

void MultiplexSession::replyInteger(int64_t value) {
  ByteBuffer& out = reply_scratch_;
  out.clear();
  redis::resp::appendInteger(out, value);
  replyLocal(out.view());
}

void MultiplexSession::replyBulk(std::string_view value) {
  ByteBuffer& out = reply_scratch_;
  out.clear();
  redis::resp::appendBulk(out, value);
  replyLocal(out.view());
}

void MultiplexSession::countRequest() {
  const auto k = static_cast<size_t>(cur_kind_);
  db_stats_.requests[k].add();
  // Answered at once, with nothing ahead of it: no time passed in the proxy
  // worth a clock read.
  if (!cur_timed_) db_stats_.latency[k].observe(0);
}

void MultiplexSession::observeLatency(const Request* r) {
  const uint64_t now = links_host_.clockUs();
  db_stats_.latency[r->kind].observe(now > r->start_us ? now - r->start_us : 0);
}

Request* MultiplexSession::newRequest(ReplyMerge merge, LinkKind kind, uint16_t parts) {
  Request* r = pool_.acquire(this, merge);
  if (!cur_timed_) {  // the command's first request carries its latency
    cur_timed_ = true;
    r->timed = true;
    r->kind = static_cast<uint8_t>(cur_kind_);
    r->start_us = batch_start_us_;
  }
  r->on_private = kind == LinkKind::kPrivate;
  r->waiting = parts;
  if (parts > 0) countInFlight(r);
  return r;
}

void MultiplexSession::countInFlight(Request* r) {
  if (r->on_private) ++on_private_;
  else ++on_shared_;
}

void MultiplexSession::uncount(Request* r) {
  if (r->refused) --refused_;
  if (r->on_private) --on_private_;
  else --on_shared_;
}

void MultiplexSession::push(Request* r) {
  if (tail_) tail_->next = r;
  else head_ = r;
  tail_ = r;
  ++in_flight_;
}

void MultiplexSession::onReply(Request* r, uint16_t part, const uint8_t* data, size_t len, bool done) {
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

void MultiplexSession::onFailure(Request* r, uint16_t part, const std::string& line, bool partial) {
  if (input_ended_ && (r->on_private || ownLinks())) {
    // After the client's EOF a private link ends because its shard freed the
    // client (or died): what it had not answered gets nothing, as from
    // redis-server, and nothing after it is sent.
    broken_ = true;
    stop();
    conn_.replyReady();
    static constexpr uint8_t kNothing = 0;
    onReply(r, part, &kNothing, 0, true);
    return;
  }
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

void MultiplexSession::complete(Request* r) {
  r->done = true;
  if (r == head_) flushHead();
}

void MultiplexSession::flushHead() {
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
    if (r->timed) observeLatency(r);
    pool_.release(r);
    changed = true;
  }
  if (changed) conn_.replyReady();
}

void MultiplexSession::finishMerge(Request* r) {
  ByteBuffer& out = r->reply;
  switch (r->merge) {
    case ReplyMerge::kMget: redis::mergeMget(r->parts, r->key_part, out); break;
    case ReplyMerge::kMgetPairs: redis::mergeMget(r->parts, r->key_part, out, 2); break;
    case ReplyMerge::kAllOk: redis::mergeAllOk(r->parts, out); break;
    case ReplyMerge::kAnyOk: redis::mergeAnyOk(r->parts, out); break;
    case ReplyMerge::kSumIntegers: redis::mergeSumIntegers(r->parts, out); break;
    case ReplyMerge::kConcatArrays: redis::mergeConcatArrays(r->parts, out); break;
    case ReplyMerge::kRandomKey:
      redis::mergeRandomKey(r->parts, static_cast<size_t>(uv_hrtime() % r->parts.size()), out);
      break;
    case ReplyMerge::kSameReply: redis::mergeSameReply(r->parts, out); break;
    case ReplyMerge::kAndArrays: redis::mergeAndArrays(r->parts, out); break;
    case ReplyMerge::kScan:
      redis::rewriteScanReply(r->parts[0], r->scan_shard, static_cast<uint32_t>(map_->shardCount()), out);
      break;
    case ReplyMerge::kInfo: redis::mergeInfo(r->parts, ownInfo(), out); break;
    case ReplyMerge::kForward:
    case ReplyMerge::kLocal:
      break;
  }
}

// ---- from links --------------------------------------------------------------

void deliverReply(RequestPool& pool, Request* r, uint16_t part, const uint8_t* data, size_t len,
                  bool done) {
  if (r->owner) {
    r->owner->onReply(r, part, data, len, done);
    return;
  }
  if (done && --r->waiting == 0) pool.release(r);
}

void deliverFailure(RequestPool& pool, Request* r, uint16_t part, const std::string& line, bool partial) {
  if (r->owner) {
    r->owner->onFailure(r, part, line, partial);
    return;
  }
  if (--r->waiting == 0) pool.release(r);
}

}  // namespace shardgate::proxy
