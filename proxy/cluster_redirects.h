// ClusterRedirects: one worker's handling of the replies a Redis Cluster
// node gives instead of an answer, so that the client never sees them.
// https://redis.io/docs/reference/cluster-spec/#redirection-and-resharding
//
//   shared BackendLink of a cluster database ─ error frame, whole ─► onErrorReply
//     -MOVED slot host:port ─► refresh requested; this worker's map patched
//                              (slot ─► that node) at once; the command
//                              resent on the shared link to that node
//     -ASK slot host:port   ─► ASKING + the command on that node's link, in
//                              order; the map unchanged
//     -TRYAGAIN, -CLUSTERDOWN ─► the command sent again to the same node
//                              after a back-off (a timer), ~2 s in all
//     anything else         ─► the client's reply, as it came
//
// What is resent is only ever a command a node refused without running it
// (those four replies say so). A command written to a node whose connection
// then failed is never resent -- it may have run -- its client gets the
// link's "unavailable" error (BackendLink::failWaiting). Redirects per
// request are bounded (kMaxRedirects), then the client gets an error naming
// the slot. The request keeps its place in the client's FIFO throughout,
// so the client's replies stay in order.
//
// Nothing here runs unless a node redirected: the steady state costs the
// link's copy of each command (a reused buffer) and a first-byte check.
//
// A client's own connections (blocking commands, SSUBSCRIBE, transactions)
// are followed by its session (multiplex_session_redirects.cpp), with
// planStatefulRedirect's decision and this worker's map patch and timer.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/byte_buffer.h"
#include "proxy/request.h"
#include "proxy/shard_link.h"
#include "proxy/shard_map.h"

namespace shardgate::proxy {

class Worker;
struct Database;
class BackendLink;
class MultiplexSession;

// What to do with one error reply of a cluster node -- the decision alone,
// no I/O, so it is tested with bytes.
struct RedirectPlan {
  enum class Action : uint8_t {
    kPass,      // the client gets the reply as it is
    kMoved,     // the slot is `address`'s now: route it there, send there
    kAsk,       // ASKING, then the command, at `address`
    kRetry,     // the same node again after delay_ms
    kTooMany,   // redirected too often: the client gets `error`
  };
  Action action = Action::kPass;
  uint16_t slot = 0;
  std::string address;  // kMoved, kAsk: "host:port" ("[::1]:port" for IPv6)
  uint64_t delay_ms = 0;
  bool refresh = false;  // ask for a topology refresh (MOVED, CLUSTERDOWN)
  std::string error;     // kTooMany: the whole error line
};

// reply: one whole error frame from the node at from_address; redirects,
// retries: what the request had so far; parts: how many parts it has.
RedirectPlan planRedirect(std::string_view reply, std::string_view from_address, uint16_t redirects,
                          uint8_t retries, size_t parts);

// The same decision for a command on a client's own connection to a node
// that did not run it: a blocking command the node unblocked, or a command
// of a transaction. On top of planRedirect's: -UNBLOCKED (the node turned
// replica while the command was blocked, replication.c
// disconnectAllBlockedClients) is retried, `reroute` set, and so are TRYAGAIN
// and CLUSTERDOWN -- resent to whichever node owns `slot` by then, the
// topology being refreshed meanwhile. Running out of retries or redirects
// gives an error naming the slot, never the node's redirect.
struct StatefulPlan {
  RedirectPlan plan;
  bool reroute = false;    // kRetry: resend to the slot's owner then, not to the same node
  bool link_lost = false;  // the node closes this connection after its reply (UNBLOCKED)
};
// parts: as planRedirect's (a RESP3 client's split command).
StatefulPlan planStatefulRedirect(std::string_view reply, std::string_view from_address, uint16_t slot,
                                  uint16_t redirects, uint8_t retries, size_t parts = 1);

class ClusterRedirects {
 public:
  explicit ClusterRedirects(Worker& worker) : worker_(worker) {}
  ~ClusterRedirects();
  ClusterRedirects(const ClusterRedirects&) = delete;
  ClusterRedirects& operator=(const ClusterRedirects&) = delete;

  // Per part of a request (a split MGET's parts may each be redirected).
  static constexpr uint16_t kMaxRedirects = 5;
  // TRYAGAIN / CLUSTERDOWN: back-off 25, 50, 100, 200, 400, then 500 ms:
  // about 2.2 s in all before the node's error reaches the client.
  static constexpr uint8_t kMaxRetries = 8;
  static uint64_t retryDelayMs(uint8_t attempt) { return attempt >= 5 ? 500 : uint64_t{25} << attempt; }
  // A stateful command (blocking, or a transaction) waits through a failover,
  // which takes cluster-node-timeout and an election: 25 ... 500 ms, then
  // every 500 ms, about 10 s in all.
  static constexpr uint8_t kMaxStatefulRetries = 24;

  // A MOVED seen on a client's own connection: this worker's map says so
  // from now on, as for one on a shared link, and a refresh is asked for.
  void noteMoved(const Database& db, const std::string& address, uint16_t slot);
  // A map whose shard `position` is the cluster node at `address` (the
  // positions before it repeat it and are never used): a session's
  // connection to a node its own map does not have, named apart from the
  // map's shards by its position. Null: not a numeric host:port.
  static std::shared_ptr<const ShardMap> nodeMap(const Database& db, const std::string& address,
                                                 uint16_t position);
  // Calls session->onRedirectTimer() after ms (sessions with a resend or a
  // re-subscription waiting); cancelWake when the session goes.
  void wakeLater(MultiplexSession* session, uint64_t ms);
  void cancelWake(MultiplexSession* session);

  // Where a link copies a command and a held error reply before calling
  // onErrorReply (reused: no allocation once warm).
  ByteBuffer& frameScratch() { return frame_; }
  ByteBuffer& replyScratch() { return reply_; }

  // Part `part` of r, the command frameScratch() sent to `from_address`,
  // was answered with the error frame replyScratch(). True: taken over
  // (resent now or later, or answered with an error of the proxy's); false:
  // the reply goes to the client as it is.
  bool onErrorReply(const Database& db, const std::string& from_address, Request* r, uint16_t part);

  // read_from replica_preferred: part `part` of r, the read `frame`, which a
  // replica refused or whose replica link failed, goes to the replica's
  // master at `master_address` (counted as a fallback). False: no link to
  // it can be made; the caller answers the part.
  bool readFallback(const Database& db, const std::string& master_address, std::string_view frame, Request* r,
                    uint16_t part);

  // The worker is stopping: retries still waiting are answered with an error.
  void close();

  // Worker upkeep: closes the links to nodes outside the map (see extra_)
  // that carried nothing for kExtraLinkIdleMs. Once a slot's migration is
  // over the node is in the map, reached by its own shared link, and this
  // one would otherwise stay open for the worker's life.
  void closeIdleExtraLinks(uint64_t now_ms);
  static constexpr uint64_t kExtraLinkIdleMs = 10000;

 private:
  struct Retry {
    const Database* db;
    std::string address;  // the node that said TRYAGAIN / CLUSTERDOWN
    std::string frame;
    std::string reply;    // its error: the client's if the node is gone by then
    Request* request;
    uint16_t part;
    uint64_t due_ms;
  };

  // The shared link to `address` for db. moved_slot >= 0: that slot is now
  // the node's -- this worker's map says so from now on (the node added to
  // it if new). Null: the address cannot be connected to.
  // `named`: as the redirect named it, "ip:port" or an alias's "name:port".
  ShardLink* linkTo(const Database& db, const std::string& named, int moved_slot);
  // MOVED/ASK to a node the map cannot reach yet: retried later, or an error.
  bool waitForTopology(const Database& db, const std::string& from_address, Request* r, uint16_t part,
                       const RedirectPlan& plan);
  void resend(const Database& db, ShardLink& to, std::string_view frame, Request* r, uint16_t part, bool asking);
  void answer(Request* r, uint16_t part, std::string_view frame);
  void armTimer();
  void onTimer();

  Worker& worker_;
  ByteBuffer frame_;
  ByteBuffer reply_;
  std::vector<Retry> retries_;
  struct Wake {
    MultiplexSession* session;
    uint64_t due_ms;
  };
  std::vector<Wake> wakes_;
  uv_timer_t* timer_ = nullptr;
  // Links to nodes an ASK named that this worker's map does not have (a
  // new master being filled), by database index and address; closed once
  // idle (closeIdleExtraLinks).
  std::unordered_map<std::string, std::shared_ptr<BackendLink>> extra_;
};

}  // namespace shardgate::proxy
