// BackendLink: one pipelined connection from a worker to one shard, shared by
// every client of that worker (or, for a client in a stateful mode, owned by
// that client alone). Commands are appended to one buffer and written with one
// syscall per event-loop turn, however many clients they came from; replies
// come back in order and are matched to the FIFO of parts waiting for them.
//
//   MultiplexSession ─send()─► out_ ──flush() at the end of the loop turn──► shard
//   shard ─► ReplyScanner ─► frame pieces ─► fifo_.front().request's session
//
// States: idle (never connected) ─► connecting (TCP, and the TLS handshake
// when the shard has tls on) ─► ready; a failure (refused,
// lost, AUTH rejected, or -- shared links -- nothing received for
// limits.shard_timeout_ms while a reply is owed) fails every waiting part
// with an error at once and, for a shared link, retries with exponential
// backoff; while failing, send() is refused so callers answer
// "-ERR shard … unavailable" without waiting.
//
// A cluster database's shared link also keeps a copy of each command until
// its reply arrives (sent_, one reused buffer) and holds an error reply
// until its line is whole, so that a MOVED / ASK / TRYAGAIN / CLUSTERDOWN
// is followed (ClusterRedirects) instead of reaching the client. A private
// link does the same for a blocking command, a WATCH and an EXEC (its
// session follows them), and hands its session the errors answering the
// proxy's own commands (a transaction's queued ones).
//
// Lifetime: the owner deletes a link directly; its stream (net/) and timer
// close, and free themselves, in the background.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "common/byte_buffer.h"
#include "net/stream.h"
#include "net/tls_stream.h"
#include "proxy/database.h"
#include "proxy/request.h"
#include "proxy/shard_link.h"
#include "proxy/shard_map.h"
#include "proxy/stats.h"
#include "redis/reply_scanner.h"

namespace shardgate::proxy {

class Worker;
class MultiplexSession;

class BackendLink final : public ShardLink, private net::StreamOwner {
 public:
  // shared: owned by the worker, reconnects by itself; otherwise private to
  // one session (push_to, if set, receives frames no request waits for:
  // pub/sub messages).
  // owner: the session of a private link (told when the link fails), or
  // nullptr for a shared one, which reconnects by itself.
  BackendLink(Worker& worker, const Database& db, std::shared_ptr<const ShardMap> map, uint16_t shard,
              MultiplexSession* owner);
  ~BackendLink() override;
  BackendLink(const BackendLink&) = delete;
  BackendLink& operator=(const BackendLink&) = delete;

  const std::string& address() const override { return map_->endpoint(shard_).address; }
  // A shared link carried over to a new shard map where its endpoint is
  // endpoint `shard` (the same address): its connection, queue and in-flight
  // requests carry on; its counters move to that shard's. A master that
  // became a replica (a failover) is sent READONLY now.
  void rebind(std::shared_ptr<const ShardMap> map, uint16_t shard);
  // Why the last connection failed ("connection refused"), for error lines.
  const std::string& failure() const override { return failure_; }

  // Queues one command (bytes of a complete RESP request) whose reply is part
  // `part` of request r; r == nullptr: the reply is dropped (the proxy's own).
  void send(std::string_view frame, Request* r, uint16_t part) override;
  // Queues a command whose replies nobody waits for: they reach the push
  // target (pub/sub subscriptions, whose confirmations are push frames).
  void sendUnmatched(std::string_view frame) override;
  // One more reply on the way that is dropped (commands sent inside one
  // send() frame beyond its first).
  void expectDropped() override { fifo_.push_back(Pending{nullptr, 0, false, 0, 0, false, false}); }
  // Writes what send() queued; the worker calls it once per loop turn.
  void flush();
  // Requests waiting for a reply on this link.
  size_t inFlight() const { return fifo_.size(); }
  // Pub/sub: frames with no request waiting go to this session.
  void setPushTarget(MultiplexSession* s) override { push_to_ = s; }
  MultiplexSession* pushTarget() const { return push_to_; }
  // RESP3: push frames ('>') go to the push target even while replies are
  // awaited (CLIENT TRACKING invalidations arrive between replies).
  void setOutOfBandPushes(bool on) override { oob_pushes_ = on; }
  bool idle() const override { return fifo_.empty() && out_.empty(); }
  // A replica link: up, and its ROLE said it is connected to its master
  // (a replica just restarted holds no data until its first sync). Until
  // then, and for a while after it refused a read, false: the master
  // serves; a ROLE is sent when it is due.
  bool readable(uint64_t now_us) override;
  uint64_t lastUsedMs() const override { return last_used_ms_; }
  // Connected or connecting: a close will be reported (onPrivateLinkLost).
  bool open() const override { return state_ == State::kConnecting || state_ == State::kReady; }
  // Passes a client's EOF on (a private link's owner, once it sends nothing
  // more here): the connection's write side is shut once what was queued
  // has been written. The shard answers what it read before the EOF, then
  // frees its client as it frees one of its own -- a blocked command ends
  // without popping, subscriptions and MONITOR end -- and closes, which the
  // owner hears as a lost link (not logged: it was asked for).
  void closeWrite() override;
  bool writeClosed() const override { return write_closed_; }

  bool dirty = false;  // in the worker's flush list

 private:
  struct Pending {
    Request* request;  // null: the proxy's own command, reply dropped
    uint16_t part;
    bool auth;         // the link's own AUTH: a failure fails the link
    uint64_t sent_ms;  // loop time it was queued (shared links' watchdog)
    uint32_t frame_len;  // its bytes at the front of sent_ (0: none kept)
    bool replica_read;   // a read sent to a replica: its master may serve it instead
    bool probe;          // the link's own ROLE: is the replica in sync?
  };
  enum class State : uint8_t { kIdle, kConnecting, kReady, kDown };

  void connect();
  void onConnected(int status);
  void onData(const uint8_t* data, size_t len);
  void deliver(const uint8_t* data, size_t len, bool done);
  void fail(const std::string& why);
  // resend: a replica link's reads go to their master instead (a read may
  // run twice); otherwise each waiting request gets `line`.
  void failWaiting(const std::string& line, bool resend = false);
  // A replica refused a read (replicaRefusal): left out for a while.
  void pauseReplica(std::string_view why);
  void probeReplica();
  void onProbeReply();
  static ShardStats* statsOf(Worker& worker, const Database& db, const ShardMap& map, uint16_t shard);
  void markAvailable();  // a connection is ready (and AUTHed): the shard is up
  void scheduleRetry();
  void startWatchdog();
  bool repliesWaitingInSocket() const;
  void shutdownIfDrained();  // closeWrite()'s shutdown, once out_ is written
  void dropIdle();
  void startTimer(uint64_t ms);
  void onTimer();
  void markDirty();
  void reportInFlight();  // the shard's in-flight gauge follows fifo_

  // The shard stream.
  void onStreamData(const uint8_t* data, size_t len) override { onData(data, len); }
  void onStreamEnd(int status) override;
  void onStreamDrained(int status) override;
  void onStreamConnected(int status) override;
  // TLS shards: the link is ready once the handshake completes; a failed
  // handshake fails it like a refused connection, with the TLS reason.
  void onStreamHandshake() override;
  void onStreamTlsFailed() override;

  Worker& worker_;
  const Database& db_;
  std::shared_ptr<const ShardMap> map_;  // the map shard_ indexes
  MultiplexSession* owner_;
  ShardStats* shard_stats_;        // this worker's counters of the shard (rebind moves them)
  size_t reported_in_flight_ = 0;  // what shard_stats_.in_flight holds of this link
  bool reported_down_ = false;     // counted in shard_stats_.down
  State state_ = State::kIdle;
  bool logged_down_ = false;  // this outage was counted by the rate-limited warning
  bool said_down_ = false;    // and its line was written: its end is said too
  std::string failure_;
  uint64_t backoff_ms_ = 0;
  net::Stream* socket_ = nullptr;  // one connection at a time; a new one after a failure
  net::TlsStream* tls_ = nullptr;  // socket_, when the shard has tls on
  bool shard_spoke_ = false;       // bytes arrived on this connection
  bool tcp_connected_ = false;     // over TLS: TCP is up, the handshake under way
  // A TLS connection lost before the shard said anything: with TLS 1.3 the
  // shard refuses a client certificate after our side of the handshake.
  bool lostBeforeAnswer() const;
  uv_timer_t* timer_ = nullptr;  // connect deadline, retry backoff, or request watchdog
  ByteBuffer out_;
  std::deque<Pending> fifo_;
  size_t partial_bytes_ = 0;  // bytes of the front reply already delivered
  redis::ReplyScanner scanner_;
  MultiplexSession* push_to_ = nullptr;
  bool oob_pushes_ = false;
  uint64_t last_used_ms_ = 0;  // loop time of the last send
  // Loop time the shard last showed it is working for this link: it
  // connected, or bytes of a reply arrived. The watchdog times silence from
  // here (or from the oldest request, if that is later), so a shard sending
  // a long reply slowly is never taken for a stopped one.
  uint64_t last_progress_ms_ = 0;
  bool in_push_ = false;  // the frame being delivered is an out-of-band push
  bool write_closed_ = false;   // closeWrite() was called on this connection
  bool shutdown_sent_ = false;  // ... and its shutdown is under way
  // A cluster database's shared link: redirects are followed.
  bool follow_redirects_;
  // A shared link to a replica (read_from replica_preferred): READONLY when
  // it connects, refusals and failures sent on to the master.
  bool replica_ = false;
  bool readonly_sent_ = false;      // on this connection
  bool replica_synced_ = false;     // its last ROLE: connected to its master; no refusal since
  bool probing_ = false;            // a ROLE is on its way
  uint8_t in_sync_answers_ = 0;     // ROLE answers "connected" in a row (two, kConfirmMs apart, to use it)
  uint64_t probe_due_us_ = 0;       // the next ROLE not before (worker clock)
  uint64_t replica_pause_ms_ = 0;   // the last pause (nextReplicaPauseMs)
  std::string probe_reply_;
  ByteBuffer sent_;        // the commands awaiting replies, in fifo_ order (frame_len each)
  ByteBuffer held_;        // an error reply being received, not yet whole
  bool holding_ = false;   // held_ is in use: the front reply is an error line
  void followOrDeliver(const Pending& p);
};

}  // namespace shardgate::proxy
