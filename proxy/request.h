// Request: one client command on the multiplexed path, from the moment it is
// parsed until its reply has been handed to the client's output.
//
//   client FIFO (MultiplexSession)          BackendLink FIFOs (one per shard)
//   head ─► [GET a] ─► [MGET a b] ─► …   shard 0: (GET a,0) (MGET a b,0) …
//                                         shard 2: (MGET a b,1) …
//
// A request is answered by one or more parts (one per shard it was sent to).
// Its owner is the session that queued it; a session that closes orphans its
// requests (owner = nullptr) and the links free them as their parts arrive,
// so a reply is never written to another client. Requests come from a
// per-worker pool: nothing is allocated per command once the pool is warm.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/byte_buffer.h"

namespace shardgate::proxy {

class MultiplexSession;

// How a request's parts become the client's one reply.
enum class ReplyMerge : uint8_t {
  kForward,      // one part, passed through byte for byte
  kLocal,        // answered by the proxy; reply is complete when queued
  kMget,         // arrays from each shard, re-ordered into the client's key order
  kMgetPairs,    // PUBSUB NUMSUB: as kMget, two elements (name, count) per key
  kAllOk,        // MSET, FLUSHALL, FLUSHDB, SCRIPT FLUSH: +OK when every shard said so
  kAnyOk,        // SCRIPT KILL, FUNCTION KILL: +OK if some shard had one to kill
  kSumIntegers,  // DEL, UNLINK, EXISTS, TOUCH, DBSIZE
  kConcatArrays, // KEYS
  kScan,         // one shard's SCAN page, its cursor re-encoded with the shard index
  kRandomKey,    // a random non-nil answer of all shards
  kSameReply,    // SCRIPT LOAD: every shard answers the same; pass one on
  kAndArrays,    // SCRIPT EXISTS: element-wise AND of integer arrays
  kInfo,         // every shard's INFO combined, the proxy's own fields added
};

struct Request {
  MultiplexSession* owner = nullptr;  // null once the client is gone
  Request* next = nullptr;         // the owner's FIFO
  ReplyMerge merge = ReplyMerge::kForward;
  uint16_t waiting = 0;  // parts not answered yet
  bool done = false;     // reply is complete
  bool streamed = false; // forward reply bytes went straight to the client
  bool on_private = false; // waits on a private link (ordering across link kinds)
  bool blocking = false;   // may wait for other clients (BLPOP, WAIT): ends with its client
  bool timed = false;      // its latency is observed when its reply is handed over
  uint8_t kind = 0;        // RequestKind, for the latency histogram
  // A cluster database: MOVED/ASK followed, TRYAGAIN/CLUSTERDOWN retried (bounded).
  uint16_t redirects = 0;  // over all its parts
  uint8_t retries = 0;
  bool refused = false;  // retried after a node let it go unrun: what follows waits for it
  // A blocking command on a cluster database: its key's slot, where it is
  // resent when the node that held it lets it go unrun (-1: none).
  int32_t slot = -1;
  // A cluster database's WATCH or EXEC (kTxWatch, kTxExec), followed when a
  // node refuses it; an EXEC carries what replays its transaction elsewhere:
  // MULTI and the queued commands (replay_count of them).
  static constexpr uint8_t kTxWatch = 1;
  static constexpr uint8_t kTxExec = 2;
  uint8_t tx = 0;
  bool watched = false;  // kTxExec: WATCH was in effect (it cannot be moved)
  uint32_t replay_count = 0;
  std::string replay;
  uint64_t start_us = 0;   // the batch clock when it was parsed
  uint32_t scan_shard = 0;     // kScan: the shard that was asked
  // A cluster database's command split by slot on a client's own links
  // (RESP3): each part's slot, where a part a node let go unrun is resent.
  std::vector<uint16_t> part_slot;
  ByteBuffer reply;                     // the complete (or buffered partial) reply
  std::vector<std::string> parts;       // merges: one reply per part, in part order
  std::vector<uint16_t> key_part;       // kMget: the part holding each key, in key order
};

// A free list of Requests, one per worker (single thread, no lock).
class RequestPool {
 public:
  RequestPool() = default;
  ~RequestPool() {
    for (Request* r : free_) delete r;
  }
  RequestPool(const RequestPool&) = delete;
  RequestPool& operator=(const RequestPool&) = delete;

  Request* acquire(MultiplexSession* owner, ReplyMerge merge) {
    Request* r;
    if (free_.empty()) {
      r = new Request;
    } else {
      r = free_.back();
      free_.pop_back();
    }
    r->owner = owner;
    r->merge = merge;
    return r;
  }

  void release(Request* r) {
    r->next = nullptr;
    r->waiting = 0;
    r->done = false;
    r->streamed = false;
    r->on_private = false;
    r->blocking = false;
    r->timed = false;
    r->redirects = 0;
    r->retries = 0;
    r->refused = false;
    r->slot = -1;
    r->tx = 0;
    r->watched = false;
    r->replay_count = 0;
    if (r->replay.capacity() > kKeepBytes) r->replay = std::string();
    r->replay.clear();
    r->reply.clear();
    // A big reply's memory goes back; the common small one is kept for reuse.
    if (r->reply.capacity() > kKeepBytes) r->reply.release();
    r->parts.clear();
    r->key_part.clear();
    r->part_slot.clear();
    if (free_.size() >= kMaxFree) {
      delete r;
      return;
    }
    free_.push_back(r);
  }

 private:
  // What an idle worker keeps after a burst: at most kMaxFree requests of
  // at most kKeepBytes each (4 MiB), not the burst's worth.
  static constexpr size_t kKeepBytes = 4 * 1024;
  static constexpr size_t kMaxFree = 1024;
  std::vector<Request*> free_;
};

}  // namespace shardgate::proxy
