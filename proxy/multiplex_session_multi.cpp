// MultiplexSession: MULTI/EXEC/DISCARD and WATCH on the transaction's shard,
// over the client's own connection to it.
#include "proxy/multiplex_session.h"

#include <uv.h>

#include <string>

#include "common/ascii.h"
#include "redis/hash_slot.h"
#include "redis/redis_text.h"
#include "redis/reply_merge.h"
#include "redis/resp_encoder.h"

namespace shardgate::proxy {

MultiplexSession::Next MultiplexSession::watch(const redis::CommandInfo& cmd, std::string_view frame) {
  if (auto st = findKeys(cmd); !st) {
    replyError(st.message());
    return Next::kContinue;
  }
  int shard = 0;
  if (!singleShard(&shard)) return Next::kContinue;
  if (pin_shard_ >= 0 && shard != pin_shard_) {
    replyError(redis::kCrossSlot);
    return Next::kContinue;
  }
  if (!orderedAfterInFlight(LinkKind::kPrivate, shard)) return Next::kWaitIdle;
  if (!sharedLink(shard).available()) {
    replyLocal(unavailableLine(shard));
    return Next::kContinue;
  }
  if (db_.cluster && !keys_.empty()) {
    // The slot's owner by the worker's latest map, as the transaction's
    // commands will be. A node that refuses the WATCH (its slot moved) did
    // not watch: it is sent where the slot is (multiplex_session_redirects.cpp).
    cur_slot_ = redis::keyHashSlot(args_[keys_[0]]);
    cur_tx_ = Request::kTxWatch;
    const std::string owner = slotOwnerNow(static_cast<uint16_t>(cur_slot_));
    const int node = owner.empty() ? -1 : nodeShard(owner);
    if (node >= 0 && (pin_shard_ < 0 || node == pin_shard_)) shard = node;
  }
  forward(shard, frame, LinkKind::kPrivate);
  cur_slot_ = -1;
  cur_tx_ = 0;
  pin_shard_ = shard;
  watching_ = true;
  return Next::kContinue;
}

MultiplexSession::Next MultiplexSession::dispatchInMulti(const redis::CommandInfo* cmd, std::string_view frame) {
  auto route = static_cast<redis::CommandRoute>(cmd->route);
  switch (route) {
    case redis::CommandRoute::kMulti:
      replyError("ERR MULTI calls can not be nested");
      return Next::kContinue;
    case redis::CommandRoute::kWatch:
      replyError("ERR WATCH inside MULTI is not allowed");
      return Next::kContinue;
    case redis::CommandRoute::kSelect:
    case redis::CommandRoute::kHello:
    case redis::CommandRoute::kAuth:
    case redis::CommandRoute::kClient:
    case redis::CommandRoute::kCluster:
    case redis::CommandRoute::kSubscribe:
    case redis::CommandRoute::kPsubscribe:
    case redis::CommandRoute::kUnsubscribe:
    case redis::CommandRoute::kPunsubscribe:
    case redis::CommandRoute::kMonitor:
    case redis::CommandRoute::kUnsupported:
      // What the proxy answers or refuses outside a transaction must not
      // reach the shard inside one (a password, a connection mode, a
      // database switch would change the transaction's link for good).
      multi_dirty_ = true;
      replyError("ERR shardgate: " + asciiLower(args_[0]) + " inside MULTI is not supported");
      return Next::kContinue;
    case redis::CommandRoute::kQuit:
      replySimple("OK");
      return Next::kStop;
    case redis::CommandRoute::kReset:
      return reset();
    case redis::CommandRoute::kExec:
    case redis::CommandRoute::kDiscard: {
      const bool exec = route == redis::CommandRoute::kExec;
      if (db_.cluster) return endClusterTransaction(exec);
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
          ByteBuffer& discard = frame_scratch_;
          discard.clear();
          redis::resp::appendCommand(discard, {"DISCARD"});
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
      clearMulti();
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
  if (route == redis::CommandRoute::kPublish) {
    keys_.assign(1, 1);
  }
  if (!singleShard(&shard)) {
    multi_dirty_ = true;
    return Next::kContinue;
  }
  if (db_.cluster) return queueClusterCommand(shard, frame);
  if (shard >= 0 && pin_shard_ >= 0 && shard != pin_shard_) {
    multi_dirty_ = true;
    replyError(redis::kCrossSlot);
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

void MultiplexSession::startMultiOn(int shard) {
  // MULTI and the commands queued before the shard was known were already
  // answered (+OK, +QUEUED); the shard's own answers to them are dropped.
  ShardLink& link = privateLink(shard);
  ByteBuffer& multi = frame_scratch_;
  multi.clear();
  redis::resp::appendCommand(multi, {"MULTI"});
  multi.append(multi_queue_.data(), multi_queue_.size());
  link.send(multi.view(), nullptr, 0);
  for (size_t i = 0; i < multi_queued_; ++i) link.expectDropped();
  multi_queue_.clear();
  multi_queued_ = 0;
  multi_on_shard_ = true;
  pin_shard_ = shard;
}

MultiplexSession::Next MultiplexSession::queueClusterCommand(int shard, std::string_view frame) {
  // Queued here, all sent at EXEC: a slot that moves meanwhile is found
  // there, and the whole transaction replayed on the new owner, since none
  // of it ran. The node is the slot's owner by the worker's latest map (the
  // session's may be older: it keeps it while the client holds state), as
  // WATCH's is. The bound keeps what a client can make the proxy hold.
  if (multi_queue_.size() + frame.size() > kMaxTransactionBytes) {
    multi_dirty_ = true;
    replyError("ERR shardgate: a transaction on a cluster database queues at most " +
               std::to_string(kMaxTransactionBytes) + " bytes of commands");
    return Next::kContinue;
  }
  if (shard >= 0 && !keys_.empty()) {
    const uint16_t slot = redis::keyHashSlot(args_[keys_[0]]);
    const std::string owner = slotOwnerNow(slot);
    const int node = owner.empty() ? -1 : nodeShard(owner);
    if (node < 0) {
      multi_dirty_ = true;
      replyError(ShardMap::kNotServedError);
      return Next::kContinue;
    }
    if (pin_shard_ >= 0 && node != pin_shard_) {
      multi_dirty_ = true;
      replyError(redis::kCrossSlot);
      return Next::kContinue;
    }
    pin_shard_ = node;
    if (tx_slot_ < 0) tx_slot_ = slot;
  }
  multi_queue_.append(frame);
  ++multi_queued_;
  replySimple("QUEUED");
  return Next::kContinue;
}

MultiplexSession::Next MultiplexSession::endClusterTransaction(bool exec) {
  const int shard = pin_shard_ >= 0 ? pin_shard_ : 0;
  const bool watch_on_node = watching_ && !watch_lost_;
  const bool send = watch_on_node || (exec && !multi_dirty_);
  if (send && !orderedAfterInFlight(LinkKind::kPrivate, shard)) return Next::kWaitIdle;
  const bool mapped = static_cast<size_t>(shard) < map_->shardCount();
  if (!exec || multi_dirty_ || watch_lost_ || (mapped && !sharedLink(shard).available())) {
    // Nothing of the transaction reached a node; a WATCH did, and ends.
    if (watch_on_node) {
      ByteBuffer& unwatch = frame_scratch_;
      unwatch.clear();
      redis::resp::appendCommand(unwatch, {"UNWATCH"});
      privateLink(shard).send(unwatch.view(), nullptr, 0);
    }
    if (!exec) {
      replySimple("OK");
    } else if (multi_dirty_) {
      replyError("EXECABORT Transaction discarded because of previous errors.");
    } else if (watch_lost_) {
      replyLocal(resp3_ ? "_\r\n" : "*-1\r\n");  // as when a watched key changed: the client retries
    } else {
      replyLocal(unavailableLine(shard));
    }
    clearMulti();
    tx_slot_ = -1;
    return Next::kContinue;
  }
  Request* r = newRequest(ReplyMerge::kForward, LinkKind::kPrivate, 1);
  r->tx = Request::kTxExec;
  r->slot = tx_slot_;
  r->watched = watching_;
  r->replay.assign("*1\r\n$5\r\nMULTI\r\n");
  r->replay.append(multi_queue_.view());
  r->replay_count = static_cast<uint32_t>(multi_queued_);
  private_shard_ = shard;
  push(r);
  sendTransaction(privateLink(shard), r, false);
  clearMulti();
  tx_slot_ = -1;
  return Next::kContinue;
}

}  // namespace shardgate::proxy
