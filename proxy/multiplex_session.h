// MultiplexSession: the multiplexed path of one client connection (a database with
// several shards or a password). It turns the client's plaintext into
// commands, sends each to the shard owning its key (or answers it, or fans it
// out), and hands replies back strictly in request order.
//
//   plaintext ─► RequestDecoder ─► dispatch ─┬─► local reply
//                                            ├─► shared BackendLink (per worker, per shard)
//                                            └─► private BackendLink (MULTI/WATCH,
//                                                blocking commands, pub/sub)
//   replies  ─► onReply ─► FIFO head complete ─► ReplySink::replyOut()
//
// The session never writes to a socket: it appends to its sink's reply
// buffer (the client connection's) and marks it dirty; the worker encrypts
// and writes once per loop turn. Links come from a LinkFactory (the worker),
// so the session runs with fake links and no loop in tests. Each pipeline
// batch is routed by the database's shard map current when it starts. Ordering across links: a command bound for a different kind of link
// (shared <-> private) than the requests still in flight waits until they are
// answered, so a client's commands reach the shards in the order it sent them.
//
// Files: multiplex_session.cpp (parsing, dispatch, sending, replies),
// multiplex_session_local.cpp (commands the proxy answers or combines),
// multiplex_session_multi.cpp (MULTI/WATCH), multiplex_session_pubsub.cpp
// (pub/sub, MONITOR, RESP3 pushes), multiplex_session_redirects.cpp (a
// cluster's redirects on the client's own links).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/byte_buffer.h"
#include "proxy/database.h"
#include "proxy/link_factory.h"
#include "proxy/reply_sink.h"
#include "proxy/request.h"
#include "proxy/shard_link.h"
#include "proxy/shard_map.h"
#include "redis/command_route.h"
#include "redis/request_decoder.h"

namespace shardgate::redis {
struct InfoAdditions;
}  // namespace shardgate::redis

namespace shardgate::proxy {

class MultiplexSession {
 public:
  MultiplexSession(LinkFactory& links, const Database& db, ReplySink& sink);
  // A database with client_auth: the client's verified certificate subject,
  // shown by CLIENT INFO / CLIENT LIST as cert-subject=. Set once, after
  // the handshake.
  void setCertSubject(std::string subject) { cert_subject_ = std::move(subject); }
  // A cluster database: the address the client connected to (its socket's
  // local address), which CLUSTER SLOTS/SHARDS/NODES show as every node's.
  void setFace(std::string host, uint16_t port) {
    face_host_ = std::move(host);
    face_port_ = port;
  }
  ~MultiplexSession();
  MultiplexSession(const MultiplexSession&) = delete;
  MultiplexSession& operator=(const MultiplexSession&) = delete;

  // Plaintext from the client.
  void onBytes(const uint8_t* data, size_t len);
  // Parses what an ordering wait or the in-flight limit held back.
  void resume();
  // Nothing in flight, nothing parsed and waiting, no subscription
  // confirmation owed (RESP3's come outside the FIFO).
  bool idle() const { return head_ == nullptr && in_.empty() && (expected_.empty() || stopped_); }
  // Whether the connection should read more from the client.
  bool acceptsInput() const { return in_flight_ < kMaxInFlight && !stopped_ && !waiting_; }
  bool stopped() const { return stopped_; }
  // Reply bytes held for this client inside the session (behind an earlier
  // reply still on its way, or MONITOR lines waiting for the answering
  // shard's +OK); the connection adds what it has not written.
  size_t bufferedBytes() const { return buffered_ + (monitor_ ? monitor_->held.size() : 0); }
  // Closes private links idle for limits.private_idle_ms that hold no
  // state the shard must keep (MULTI/WATCH, subscriptions, tracking), so a
  // client's one BLPOP does not cost the shard a connection for good.
  void closeIdleLinks(uint64_t now_ms);
  // The client's EOF (it may still read). redis-server answers every command
  // it read before an EOF, then frees the client: a blocked command ends
  // without a reply and without popping, subscriptions and MONITOR end. The
  // session does the same by passing the EOF on: each private link's write
  // side is shut after the last command it carries (BackendLink::closeWrite),
  // its shard answers what it read and closes, and the session ends when the
  // links it waits on have closed. Shared links' replies come as usual.
  void endInput();
  // The client is gone (it cannot read, or nothing is owed to it): ends the
  // session at once. Requests in flight are orphaned (their replies are
  // dropped), private links are closed. Nothing is dispatched afterwards.
  void abandon();

  // From links (through deliverReply / deliverFailure).
  void onReply(Request* r, uint16_t part, const uint8_t* data, size_t len, bool done);
  void onFailure(Request* r, uint16_t part, const std::string& line, bool partial);
  // Pub/sub frames from a private link.
  void onPush(ShardLink& link, const uint8_t* data, size_t len, bool done);
  // One of this session's private links failed (after its waiting requests
  // were answered with the error).
  void onPrivateLinkLost(ShardLink& link);
  // A cluster database: a node's error reply to part `part` of request r,
  // a command that link kept a copy of (`frame`) on this session's own
  // connection. True:
  // taken over (resent, now or later, or answered); false: the reply is the
  // client's as it is (multiplex_session_redirects.cpp).
  bool onNodeError(ShardLink& link, Request* r, uint16_t part, std::string_view frame, std::string_view reply);
  // The worker's timer: resends and re-subscriptions that are due.
  void onRedirectTimer();
  // A cluster node's error to a command of the proxy's own on this
  // session's link (a transaction's queued command, replayed at EXEC).
  void onDroppedError(std::string_view reply);
  // Bytes of queued commands a cluster transaction keeps to replay them on
  // another node; a command beyond it is refused and EXEC aborts.
  static constexpr size_t kMaxTransactionBytes = 1024 * 1024;

  // Requests in flight at most; beyond it the client is not read.
  static constexpr size_t kMaxInFlight = 1024;
  // Bytes of one command beyond its largest argument: the rest of its
  // arguments and their framing.
  static constexpr size_t kQueryBufferSlack = 1024 * 1024;

 private:
  enum class Next : uint8_t { kContinue, kWaitIdle, kStop };
  enum class LinkKind : uint8_t { kShared, kPrivate };

  void parse();
  // Before a pipeline batch: the database's current shard map, if it was
  // replaced and this session holds no state on the old map's links.
  // False: a new map waits for this session's requests in flight to be
  // answered first (adoptMap); parse nothing until then.
  bool refreshMap() {
    if (shared_.generation != db_.shard_map->generation()) links_host_.refreshSharedLinks(db_, shared_);
    return shared_.current == links_ || adoptMap();
  }
  bool adoptMap();
  // CLUSTER on a cluster database: answered as one node owning every slot.
  Next clusterCommand();
  size_t parseFrom(std::string_view data);  // returns the bytes consumed
  // After endInput(): once every command read is dispatched, the EOF goes to
  // the private links; before that, only to the link of a blocked command
  // the rest wait behind (it may never answer otherwise).
  void finishInput();
  Next dispatch(std::string_view frame);
  Next dispatchInPubsub(const redis::CommandInfo* cmd, std::string_view frame);
  Next dispatchInMulti(const redis::CommandInfo* cmd, std::string_view frame);

  // A command refused before it runs (unknown, wrong arity, NOAUTH): the
  // error, and inside MULTI an EXEC that will abort.
  Next refuse(std::string_view text);
  // EXEC refused before it runs: the transaction and WATCH end, as Redis's do.
  Next abortExec(std::string_view text);
  Status findKeys(const redis::CommandInfo& cmd);
  // The one shard keys_ live on (-1: no keys); false, with -CROSSSLOT sent,
  // when they span shards.
  bool singleShard(int* shard);
  bool orderedAfterInFlight(LinkKind kind, int shard) const;
  // What refusal messages call this database: why a command the shard would
  // take is refused here.
  const char* multiplexKind() const {
    return map_->shardCount() > 1 ? "a database with several shards"
                                 : "a multiplexed database (multiplex: true)";
  }

  // blocking: the command may wait for other clients (BLPOP, WAIT): after
  // the client's EOF its shard is told at once (see finishInput).
  Next forward(int shard, std::string_view frame, LinkKind kind, bool blocking = false);
  // MGET/MSET/DEL/...: one shard -> the frame as is; several -> one command
  // per shard, merged in key order.
  Next split(redis::CommandRoute route, std::string_view frame);
  Next fanOut(std::string_view frame, ReplyMerge merge);
  Next scan();
  Next info();
  Next hello();
  Next auth();
  Next client();
  Next clientList();
  // CLIENT subcommands refused on this path (KILL, PAUSE, REPLY, ...).
  static bool clientActsOnSharedConnections(std::string_view sub);
  // CLIENT INFO / LIST's line for this client; cmd: "client|info", ...
  std::string clientLine(std::string_view cmd) const;
  // AUTH's and HELLO AUTH's check: the "default" user and the database's password.
  bool passwordMatches(std::string_view user, std::string_view pass) const;
  Next select();
  Next reset();
  Next watch(const redis::CommandInfo& cmd, std::string_view frame);
  void startMultiOn(int shard);
  // EXEC or DISCARD of a cluster database's transaction, queued here
  // (multiplex_session_multi.cpp).
  Next endClusterTransaction(bool exec);
  Next queueClusterCommand(int shard, std::string_view frame);
  Next subscribe(redis::CommandRoute route, std::string_view frame);
  Next monitor(std::string_view frame);
  Next dispatchInMonitor(const redis::CommandInfo* cmd, std::string_view frame);
  void onMonitorFrame(ShardLink& link, const ByteBuffer& frame);
  void sendMonitorSync();
  // confirms: whether this shard's confirmations are the ones the client hears.
  void sendPubsub(int shard, std::string_view frame, bool confirms,
                  const std::vector<std::string>& names, const std::string& kind);
  void emitConfirmations();
  void appendToStream(const uint8_t* data, size_t len);
  void deliverOutOfBand(const ByteBuffer& frame);
  void useForStream(int shard, ShardLink& link);
  void endPubsubIfDone();
  // A confirmation (or, error, an error line) from `shard`: settle its oldest
  // command in sent_pubsub_. Returns false when none was waiting.
  bool settlePubsub(int shard, bool error, std::string_view line);
  // A null in the client's protocol: RESP3's "_", RESP2's null bulk.
  void appendNull(ByteBuffer& out) const {
    out.append(std::string_view(resp3_ ? "_\r\n" : "$-1\r\n"));
  }
  static bool isSubscription(redis::CommandRoute route) {
    return route == redis::CommandRoute::kSubscribe || route == redis::CommandRoute::kPsubscribe ||
           route == redis::CommandRoute::kUnsubscribe || route == redis::CommandRoute::kPunsubscribe;
  }
  bool subscribed() const {
    return stream_ || !channels_.empty() || !patterns_.empty() || !shard_channels_.empty() ||
           !expected_.empty();
  }
  void endStream();
  // Forget the pub/sub and MONITOR state (subscriptions, confirmations owed).
  void clearPubsub();
  // Forget MULTI/WATCH: queued commands, the pinned shard, lost-link flags.
  void clearMulti();
  void stop();  // no more commands: QUIT, a protocol error, a broken reply
  // The proxy's own INFO fields (shardgate_*), added to the shards' sections.
  redis::InfoAdditions ownInfo() const;

  // Replies from the proxy itself, in order behind what is in flight.
  void replyLocal(std::string_view bytes);
  void replyError(std::string_view text);  // "ERR ..." (no '-', no CRLF)
  void replySimple(std::string_view text);
  void replyInteger(int64_t value);
  void replyBulk(std::string_view value);
  void replyText(std::string_view text);  // RESP3 verbatim text, else bulk

  Request* newRequest(ReplyMerge merge, LinkKind kind, uint16_t parts);
  void countInFlight(Request* r);
  void uncount(Request* r);
  void push(Request* r);
  void orphanRequests();
  void complete(Request* r);
  void flushHead();
  void finishMerge(Request* r);

  ShardLink& sharedLink(int shard) { return *links_->links[static_cast<size_t>(shard)]; }
  // read_from replica_preferred, a read on the shared links: a usable
  // replica of `shard`'s master, or null (its master serves: a fallback).
  ShardLink* replicaFor(int shard);
  ShardLink& privateLink(int shard);
  void sendPrelude(ShardLink& link);  // HELLO 3 / SELECT, on a new private link
  // A cluster node by address: the shard of the session's map at that
  // address, or a position past the map's shards for a node the map does
  // not have (its link opened by LinkFactory::openNodeLink). -1: unusable.
  int nodeShard(const std::string& address);
  // The node owning `slot` now, by the worker's latest map (empty: none).
  std::string slotOwnerNow(uint16_t slot);
  // Part `part` of request r (a blocking command, a RESP3 client's command
  // or one slot's part of its split one), for `slot`, goes to the node at
  // address, on the session's own link there; asking: after ASKING.
  void resendToNode(const std::string& address, std::string_view frame, Request* r, uint16_t part, uint16_t slot,
                    bool asking);
  // The link that answered UNBLOCKED is being closed by its node: nothing
  // more is sent on it.
  void retireLink(ShardLink& link);
  void scheduleWake(uint64_t ms);
  // A cluster transaction: MULTI, its queued commands and EXEC (r) at once.
  void sendTransaction(ShardLink& link, Request* r, bool asking);
  // EXEC's answer, a node's refusal or EXECABORT: replayed elsewhere (true)
  // or the client's as it is.
  bool onExecError(ShardLink& link, Request* r, std::string_view reply);
  // Shard channels on a cluster database: a frame from `shard` the proxy
  // takes (true) -- a sunsubscribe the node sent because the channel's slot
  // left it, the confirmation or refusal of the proxy's re-subscription.
  bool onShardChannelFrame(int shard, std::string_view kind, std::string_view name, std::string_view error);
  void resubscribeLater(std::string name, int tries, bool confirm);
  // A stream link to a cluster node was lost: its shard channels are
  // subscribed again where their slots are served. False: the link held
  // more than that (channels, patterns, a command waiting), which is lost.
  bool resubscribeLost(int shard);
  void resubscribeDue(uint64_t now);
  ShardLink& linkFor(int shard, LinkKind kind);
  bool ownLinks() const { return db_index_ != 0 || resp3_; }
  void dropPrivateLinks();
  std::string unavailableLine(int shard);
  // *N, the command's name, then args_[index[i]] for each i.
  void appendArgs(ByteBuffer& out, size_t count, const uint32_t* index);
  // The metrics: one request of cur_kind_ dispatched; one reply handed over.
  void countRequest();
  void observeLatency(const Request* r);
  // A pub/sub or MONITOR stream lasts as long as the subscription: it is not
  // a latency; the command that opened it counts as answered at once.
  void untimeStream() {
    stream_->timed = false;
    cur_timed_ = false;
  }

  LinkFactory& links_host_;
  const Database& db_;
  ReplySink& conn_;
  RequestPool& pool_;
  ByteBuffer& frame_scratch_;
  ByteBuffer& reply_scratch_;
  std::vector<int>& int_scratch_;
  DbStats& db_stats_;  // this worker's counters of db_
  // The command being dispatched: its kind, the batch clock when its batch
  // was parsed, and whether a request of its own carries its latency (else
  // it was answered at once).
  RequestKind cur_kind_ = RequestKind::kOther;
  uint64_t batch_start_us_ = 0;
  bool cur_timed_ = false;
  // The command may be read from a replica (read_from replica_preferred,
  // readableFromReplica); always false otherwise.
  bool cur_replica_read_ = false;
  SharedLinks& shared_;                   // the worker's, for db_
  std::shared_ptr<SharedLinkSet> links_;  // the shared links (and map) this session routes by
  const ShardMap* map_;                   // links_->map
  redis::RequestDecoder decoder_;
  ByteBuffer in_;  // bytes of commands not dispatched yet
  std::vector<std::string_view> args_;
  std::string_view frame_;  // the command being dispatched, as the client sent it
  std::vector<uint32_t> keys_;  // indices into args_ of the command's keys
  std::vector<int> key_shard_;  // split(): the shard of each of keys_
  std::vector<uint16_t> key_slot_;  // ... and its slot
  std::vector<uint16_t> part_slot_;  // split() of a cluster database: each part's slot
  Request* head_ = nullptr;
  Request* tail_ = nullptr;
  size_t in_flight_ = 0;
  size_t buffered_ = 0;  // bytes in Request::reply / parts of this session's requests
  size_t on_shared_ = 0;   // requests waiting on shared links
  size_t on_private_ = 0;  // ... on private links
  size_t refused_ = 0;     // ... a node let go unrun and that wait to be retried (Request::refused)
  int private_shard_ = -1; // the shard of the last private request
  bool stopped_ = false;   // QUIT or protocol error: no more commands
  bool waiting_ = false;   // a command waits for in-flight requests to finish
  bool broken_ = false;    // a reply was cut mid-way: the client gets nothing more
  bool input_ended_ = false;  // the client's EOF: see endInput()
  bool authenticated_;
  uint64_t id_;
  std::string certSubjectField() const;
  std::string name_;  // CLIENT SETNAME
  std::string cert_subject_;  // the verified client certificate's subject (client_auth)
  std::string face_host_;     // setFace(): a cluster database's endpoint as the client sees it
  uint16_t face_port_ = 0;
  uint32_t db_index_ = 0;  // SELECT
  bool resp3_ = false;     // HELLO 3
  bool tracking_ = false;  // CLIENT TRACKING was sent: its state lives on the links

  // Private links, one per shard at most, opened when first needed; past
  // the map's shards, links to the cluster nodes in node_addresses_.
  std::vector<std::unique_ptr<ShardLink>> private_;
  std::vector<std::string> node_addresses_;
  // Commands (or parts) a node let go unrun, waiting to be resent (to the
  // slot's owner then).
  struct Resend {
    Request* request;
    uint16_t part;
    uint16_t slot;
    std::string frame;
    uint64_t due_ms;
  };
  std::vector<Resend> resends_;
  int32_t cur_slot_ = -1;  // the blocking command being dispatched: its key's slot
  uint8_t cur_tx_ = 0;     // ... a cluster WATCH: Request::kTxWatch
  // Shard channels to subscribe again (their slot moved, their node died).
  struct Resubscribe {
    std::string name;
    int tries;
    bool confirm;  // the client's SSUBSCRIBE, refused by a node whose slot moved
    uint64_t due_ms;
  };
  std::vector<Resubscribe> resubs_;
  // Where each shard channel is subscribed (a shard of the map or a node past it).
  std::unordered_map<std::string, int> shard_home_;
  // A redirect among the replies to a transaction's queued commands, until
  // its EXEC answers (EXECABORT, because of it).
  std::string tx_redirect_;
  int32_t tx_slot_ = -1;  // a cluster transaction's slot (its first key's)
  std::vector<std::unique_ptr<ShardLink>> retired_;  // pub/sub links, deleted soon

  // MULTI/WATCH: the transaction's shard once a key named it.
  bool in_multi_ = false;
  bool multi_dirty_ = false;      // an error was queued: EXEC aborts
  bool multi_on_shard_ = false;   // MULTI has been sent to pin_shard_
  bool watching_ = false;
  bool multi_lost_ = false;       // the link holding MULTI failed
  bool watch_lost_ = false;       // the link holding WATCH failed
  int pin_shard_ = -1;
  ByteBuffer multi_queue_;        // keyless commands queued before the shard is known
  size_t multi_queued_ = 0;

  // Pub/sub: one request that stays at the FIFO's tail and carries every
  // frame of every subscribed shard, whole frames only.
  Request* stream_ = nullptr;
  std::set<std::string, std::less<>> channels_;
  std::set<std::string, std::less<>> patterns_;
  // SSUBSCRIBE's: counted apart from channels and patterns, as Redis does.
  std::set<std::string, std::less<>> shard_channels_;
  std::vector<ByteBuffer> push_partial_;  // per shard: a frame being received
  std::vector<bool> stream_links_;        // per shard: its private link carries the stream
  ByteBuffer oob_;  // RESP3 pushes waiting for a reply being streamed to finish
  struct Confirm {
    std::string kind;  // "subscribe", "punsubscribe", ...
    std::string name;
    bool null_name;
  };
  bool monitoring_ = false;      // the stream carries MONITOR feeds
  // While monitoring: the shard whose +OK the client hears first and whose
  // connection answers the commands the client sends (multiplex_session_pubsub.cpp).
  int first_monitor_ok_ = -1;
  struct MonitorState {
    ByteBuffer held;  // other shards' lines that arrived before the client's +OK
    std::vector<bool> ok_due;  // per shard: its +OK to MONITOR has not arrived
    // Per shard other than first_monitor_ok_: the feed lines its own copy of
    // the client's (P)(UN)SUBSCRIBE commands will produce, to be dropped.
    std::vector<std::vector<std::string>> echoes;
    bool acked = false;      // the client has heard its +OK
    bool sync_sent = false;  // a sync marker is on its way to the answering shard
    bool synced = false;     // ... and came back: the proxy may answer now
  };
  std::unique_ptr<MonitorState> monitor_;  // only while monitoring
  // Confirmations owed, in the client's order. A list: it costs nothing
  // until a client subscribes (a deque allocates on construction).
  std::list<Confirm> expected_;
  std::vector<Confirm> arrived_;  // arrived before their turn
  // (Un)subscription commands sent and not wholly confirmed, oldest first:
  // a shard answers in order, so an error line from it is the answer to its
  // oldest one, whose confirmations will never come.
  struct SentPubsub {
    int shard;
    std::string kind;
    std::vector<std::string> names;
    size_t left;  // confirmations still due
    // >= 0: the proxy's own SSUBSCRIBE of a shard channel whose slot moved
    // (multiplex_session_redirects.cpp), its try; the client hears nothing of it.
    int resub_try = -1;
    bool confirm = false;  // ... of a client's SSUBSCRIBE a node refused: its confirmation is the client's
  };
  std::list<SentPubsub> sent_pubsub_;
};

// A link's reply piece for request r (whose session may be gone).
void deliverReply(RequestPool& pool, Request* r, uint16_t part, const uint8_t* data, size_t len,
                  bool done);
// A link failed with part `part` of r waiting; partial: some of its reply was delivered.
void deliverFailure(RequestPool& pool, Request* r, uint16_t part, const std::string& line, bool partial);

}  // namespace shardgate::proxy
