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
  forward(shard, frame, LinkKind::kPrivate);
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

}  // namespace shardgate::proxy
