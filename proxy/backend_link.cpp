#include "proxy/backend_link.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <memory>

#include "redis/resp_encoder.h"
#include "proxy/multiplex_session.h"
#include "proxy/replica_reads.h"
#include "proxy/shard_connect.h"
#include "common/ascii.h"
#include "common/rate_limited_log.h"
#include "common/uv_handle.h"
#include "proxy/worker.h"

namespace shardgate::proxy {

namespace {

// A shard that stopped answering is retried after 50 ms, then twice as long
// each time up to 1 s: a restarted shard is served again within about a
// second, and a dead one costs one refused connect a second per worker.
constexpr uint64_t kFirstBackoffMs = 50;
constexpr uint64_t kMaxBackoffMs = 1000;
// A connect that neither succeeds nor fails (a host that drops SYNs), or a
// TLS handshake that never completes, fails the link after this long, so
// waiting requests get their error.
constexpr uint64_t kConnectTimeoutMs = kShardConnectTimeoutMs;
// A shard host that vanishes without a FIN or RST is noticed by the
// kernel, not only by the request watchdog.
constexpr unsigned kKeepaliveDelayS = 30;
// Lets a replica serve reads of its master's slots (the cluster spec's
// READONLY); its +OK is dropped.
constexpr std::string_view kReadonly = "*1\r\n$8\r\nREADONLY\r\n";
// Whether a replica is in sync (its replication state "connected").
constexpr std::string_view kRole = "*1\r\n$4\r\nROLE\r\n";

}  // namespace

BackendLink::BackendLink(Worker& worker, const Database& db, std::shared_ptr<const ShardMap> map,
                         uint16_t shard, MultiplexSession* owner)
    : ShardLink(shard),
      worker_(worker),
      db_(db),
      map_(std::move(map)),
      owner_(owner),
      shard_stats_(statsOf(worker, db, *map_, shard)),
      follow_redirects_(db.cluster && owner == nullptr),
      replica_(owner == nullptr && map_->isReplica(shard)) {}

ShardStats* BackendLink::statsOf(Worker& worker, const Database& db, const ShardMap& map, uint16_t shard) {
  DbStats& stats = worker.stats().db(db.index);
  return map.isReplica(shard) ? &stats.replica_links : &stats.shard(shard);
}

void BackendLink::rebind(std::shared_ptr<const ShardMap> map, uint16_t shard) {
  assert(owner_ == nullptr && map->endpoint(shard).address == address());
  ShardStats* next = statsOf(worker_, db_, *map, shard);
  if (next != shard_stats_) {
    // The gauges this link holds up move with it; totals stay where counted.
    if (reported_in_flight_ > 0) {
      shard_stats_->in_flight.sub(reported_in_flight_);
      next->in_flight.add(reported_in_flight_);
    }
    if (reported_down_) {
      shard_stats_->down.sub();
      next->down.add();
    }
    shard_stats_ = next;
  }
  map_ = std::move(map);
  shard_ = shard;
  replica_ = map_->isReplica(shard);
  // A master turned replica by a failover, its connection kept: READONLY
  // now, or it would redirect every read to its new master. (A connection
  // opened later sends it in onConnected.)
  if (replica_ && state_ == State::kReady && !readonly_sent_) {
    readonly_sent_ = true;
    replica_synced_ = false;  // ROLE says when it has caught up
    in_sync_answers_ = 0;
    send(kReadonly, nullptr, 0);
  }
}

BackendLink::~BackendLink() {
  if (dirty) worker_.forgetLink(this);
  failWaiting("-ERR shard " + address() + " unavailable: the connection was closed\r\n");
  reportInFlight();
  if (reported_down_) shard_stats_->down.sub();
  if (socket_) socket_->close();
  if (timer_) {
    uv_close(asHandle(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
}

void BackendLink::send(std::string_view frame, Request* r, uint16_t part) {
  if (!owner_ && fifo_.empty() && state_ == State::kReady) startWatchdog();
  last_used_ms_ = uv_now(worker_.loop());
  // A blocking command on a client's own link to a cluster node is kept too
  // (and a RESP3 client's command, or a part of its split one): the node may
  // let it go unrun (MOVED, UNBLOCKED) and the session resends it.
  const bool keep = r != nullptr && (follow_redirects_ ||
                                     (db_.cluster && (r->slot >= 0 || r->tx != 0 || part < r->part_slot.size())));
  fifo_.push_back(Pending{r, part, false, last_used_ms_, keep ? static_cast<uint32_t>(frame.size()) : 0,
                          replica_ && r != nullptr, false});
  if (keep) sent_.append(frame);
  out_.append(frame);
  if (state_ == State::kIdle) connect();
  markDirty();
}

void BackendLink::sendUnmatched(std::string_view frame) {
  last_used_ms_ = uv_now(worker_.loop());
  out_.append(frame);
  if (state_ == State::kIdle) connect();
  markDirty();
}

void BackendLink::markDirty() {
  if (!dirty && state_ == State::kReady) worker_.markDirty(this);
}

void BackendLink::reportInFlight() {
  // Once per batch (a flush, a read), not per request: the gauge moves by
  // the difference since the last report.
  const size_t now = fifo_.size();
  if (now > reported_in_flight_) shard_stats_->in_flight.add(now - reported_in_flight_);
  else if (now < reported_in_flight_) shard_stats_->in_flight.sub(reported_in_flight_ - now);
  reported_in_flight_ = now;
}

void BackendLink::flush() {
  reportInFlight();
  if (state_ != State::kReady || out_.empty()) return;
  int rc = socket_->write(out_.data(), out_.size());
  out_.clear();
  if (rc != 0) {
    fail(lostBeforeAnswer() ? "TLS handshake failed: " + asciiLower(uv_strerror(rc))
                            : std::string("write failed: ") + asciiLower(uv_strerror(rc)));
    return;
  }
  shutdownIfDrained();
}

void BackendLink::closeWrite() {
  if (!open() || write_closed_) return;
  write_closed_ = true;
  shutdownIfDrained();  // else from flush() or onDrained(), after the last bytes
}

void BackendLink::shutdownIfDrained() {
  if (!write_closed_ || shutdown_sent_ || state_ != State::kReady || !out_.empty() ||
      !socket_->writeIdle()) {
    return;
  }
  shutdown_sent_ = true;
  // Its result is not waited for: the shard's close is the answer.
  if (int rc = socket_->shutdownWrite(); rc != 0) {
    fail(std::string("shutdown failed: ") + asciiLower(uv_strerror(rc)));
  }
}

void BackendLink::connect() {
  state_ = State::kConnecting;
  const ShardEndpoint& shard = map_->endpoint(shard_);
  auto conn = connectShard(worker_, shard.addr, shard.tls.get(), this, net::ConnectOptions{kKeepaliveDelayS});
  if (!conn) {
    fail(conn.message());
    return;
  }
  socket_ = conn->stream;
  tls_ = conn->tls;
  shard_spoke_ = false;
  tcp_connected_ = false;
  // Bounds the TLS handshake too: a shard that accepts and never answers.
  startTimer(kConnectTimeoutMs);
}

void BackendLink::onStreamConnected(int status) {
  // Over TLS the link waits for the handshake (onStreamHandshake).
  if (status == 0 && tls_ != nullptr) {
    tcp_connected_ = true;
    return;
  }
  onConnected(status);
}

bool BackendLink::lostBeforeAnswer() const {
  return tls_ != nullptr && !shard_spoke_ && mayBeRefusedAfterHandshake(*tls_);
}

void BackendLink::onStreamHandshake() {
  countShardHandshake(*shard_stats_, *tls_);
  onConnected(0);
}

void BackendLink::onStreamTlsFailed() {
  const tls::TlsSession& session = tls_->session();
  // During the handshake the reason says it ("TLS handshake failed:
  // certificate verify failed (hostname mismatch)"). With TLS 1.3 a shard
  // refuses our client certificate only after our side of the handshake
  // completed: an alert before the shard said anything is still the
  // handshake failing.
  if (state_ == State::kReady && lostBeforeAnswer()) {
    fail("TLS handshake failed: " + session.failureCode());
    return;
  }
  fail(session.failureReason());
}

void BackendLink::onConnected(int status) {
  if (status != 0) {
    fail(asciiLower(uv_strerror(status)));
    return;
  }
  if (timer_) uv_timer_stop(timer_);
  state_ = State::kReady;
  // Requests queued while connecting could not have been answered sooner.
  last_progress_ms_ = uv_now(worker_.loop());
  // TCP_NODELAY and keepalive are set by the stream.
  socket_->setReading(true);
  readonly_sent_ = false;
  if (replica_) {
    // After AUTH (prepended below), ahead of every read queued.
    ByteBuffer rest;
    rest.swap(out_);
    out_.append(kReadonly);
    out_.append(rest.data(), rest.size());
    fifo_.push_front(Pending{nullptr, 0, false, uv_now(worker_.loop()), 0, false, false});
    readonly_sent_ = true;
  }
  if (db_.shard_password) {
    // AUTH goes first, ahead of everything queued while connecting.
    ByteBuffer auth;
    redis::resp::appendCommand(auth, {"AUTH", *db_.shard_password});
    fifo_.push_front(Pending{nullptr, 0, true, uv_now(worker_.loop()), 0, false, false});
    ByteBuffer rest;
    rest.swap(out_);
    out_.append(auth.data(), auth.size());
    out_.append(rest.data(), rest.size());
  }
  if (tls_ != nullptr && !db_.shard_password) {
    // Over TLS 1.3 a completed handshake does not yet mean the shard took
    // our certificate (see onStreamTlsFailed): the shard is available once
    // it answers. A PING of our own, first, so that it answers even when
    // nothing else is queued (a shared link reconnecting after a failure).
    ByteBuffer rest;
    rest.swap(out_);
    out_.append(std::string_view("*1\r\n$4\r\nPING\r\n"));
    out_.append(rest.data(), rest.size());
    fifo_.push_front(Pending{nullptr, 0, false, uv_now(worker_.loop()), 0, false, false});
  } else if (!db_.shard_password) {
    markAvailable();  // else once AUTH is accepted, or over TLS the first reply
  }
  if (!out_.empty()) markDirty();
  if (!owner_ && !fifo_.empty()) startWatchdog();
  shutdownIfDrained();  // closeWrite() while connecting, nothing left to write
}

void BackendLink::onStreamEnd(int status) {
  if (state_ == State::kConnecting) {
    // Over TLS: the shard closed during the handshake (a plaintext shard
    // reading our ClientHello as a bad command, a shard at maxclients).
    fail(std::string(tls_ ? "TLS handshake failed: " : "") +
         (status == UV_EOF ? "the shard closed the connection" : asciiLower(uv_strerror(status))));
    return;
  }
  if (lostBeforeAnswer()) {
    // Closed after the handshake before saying anything: a client
    // certificate refused (TLS 1.3), its alert lost to the reset our
    // first write drew; as good as a failed handshake.
    fail("TLS handshake failed: " + std::string(status == UV_EOF ? "the shard closed the connection"
                                                                 : asciiLower(uv_strerror(status))));
    return;
  }
  if (!owner_ && fifo_.empty() && out_.empty()) {
    // An idle shared link closed by the shard (its `timeout`, CLIENT
    // KILL): nothing was lost, the shard is not down; connect again when
    // next needed.
    dropIdle();
    return;
  }
  fail(status == UV_EOF ? "the shard closed the connection" : asciiLower(uv_strerror(status)));
}

void BackendLink::dropIdle() {
  spdlog::debug("db {}: shard {} closed an idle connection; reconnecting when needed", db_.name,
                address());
  socket_->close();
  socket_ = nullptr;
  tls_ = nullptr;
  scanner_ = redis::ReplyScanner();
  state_ = State::kIdle;
  // A replica that closed may be back restarted, empty until it syncs: ROLE again.
  replica_synced_ = probing_ = false;
  in_sync_answers_ = 0;
  if (timer_) uv_timer_stop(timer_);
}

void BackendLink::onStreamDrained(int status) {
  if (status != 0) {
    fail(lostBeforeAnswer() ? "TLS handshake failed: " + asciiLower(uv_strerror(status))
                            : std::string("write failed: ") + asciiLower(uv_strerror(status)));
    return;
  }
  shutdownIfDrained();
}

void BackendLink::onData(const uint8_t* data, size_t len) {
  worker_.stats().bytes_from_backends.add(len);
  if (!shard_spoke_) {
    shard_spoke_ = true;
    // Over TLS (without AUTH to wait for) the shard's first answer is what
    // makes it available (onConnected).
    if (tls_ != nullptr && !db_.shard_password) markAvailable();
  }
  // The replies of this read are handed over now: one clock read for all.
  worker_.refreshClock();
  last_progress_ms_ = uv_now(worker_.loop());
  net::Stream* socket = socket_;
  while (len > 0) {
    bool done = false;
    size_t n = scanner_.feed(data, len, &done);
    if (scanner_.failed()) {
      fail("malformed reply: " + scanner_.error());
      return;
    }
    deliver(data, n, done);
    if (socket_ != socket) return;  // delivering failed the link
    data += n;
    len -= n;
  }
  reportInFlight();
}

void BackendLink::deliver(const uint8_t* data, size_t len, bool done) {
  if (in_push_ || (oob_pushes_ && push_to_ && partial_bytes_ == 0 && len > 0 && data[0] == '>')) {
    in_push_ = !done;
    push_to_->onPush(*this, data, len, done);
    return;
  }
  if (fifo_.empty()) {
    if (push_to_) {
      push_to_->onPush(*this, data, len, done);
      return;
    }
    fail("the shard sent a reply nobody asked for");
    return;
  }
  Pending p = fifo_.front();
  if (p.frame_len > 0 && (holding_ || (partial_bytes_ == 0 && len > 0 && data[0] == '-'))) {
    // An error reply: held until its line is whole (a MOVED cut short
    // would name the wrong port), then followed or passed on.
    held_.append(data, len);
    holding_ = !done;
    if (done) {
      fifo_.pop_front();
      followOrDeliver(p);
    }
    return;
  }
  if (p.request == nullptr && !p.auth && owner_ != nullptr && db_.cluster &&
      (holding_ || (partial_bytes_ == 0 && len > 0 && data[0] == '-'))) {
    // The proxy's own command on a client's link to a cluster node (a
    // transaction's MULTI and queued commands): its reply is dropped, but a
    // redirect among them says why EXEC will abort.
    held_.append(data, len);
    holding_ = !done;
    if (done) {
      fifo_.pop_front();
      partial_bytes_ = 0;
      sent_.consume(p.frame_len);
      owner_->onDroppedError(held_.view());
      held_.clear();
    }
    return;
  }
  if (done) {
    fifo_.pop_front();
    partial_bytes_ = 0;
    sent_.consume(p.frame_len);
  } else {
    partial_bytes_ += len;
  }
  if (p.probe) {
    probe_reply_.append(reinterpret_cast<const char*>(data), len);
    if (done) onProbeReply();
    return;
  }
  if (p.auth) {
    // Replies to AUTH are short; a frame split here is only its tail.
    if (len > 0 && data[0] == '-') {
      std::string text(reinterpret_cast<const char*>(data) + 1, len - 1);
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
      fail("AUTH with shard_password was refused: " + text);
      return;
    }
    if (done) markAvailable();
    return;
  }
  if (p.request) {
    if (p.replica_read && done) worker_.stats().db(db_.index).cluster_replica_reads.add();
    deliverReply(worker_.requestPool(), p.request, p.part, data, len, done);
  }
}

void BackendLink::followOrDeliver(const Pending& p) {
  // Both copied out first: following may send on this link (its sent_
  // grows) or fail it (both are cleared).
  ClusterRedirects& redirects = worker_.clusterRedirects();
  ByteBuffer& frame = redirects.frameScratch();
  ByteBuffer& reply = redirects.replyScratch();
  frame.clear();
  reply.clear();
  frame.append(sent_.data(), p.frame_len);
  sent_.consume(p.frame_len);
  reply.append(held_.data(), held_.size());
  held_.clear();
  if (p.replica_read && replica_ && replicaRefusal(reply.view())) {
    // Not run (loading, master link down): its master serves it, the
    // client sees no error, and this replica is left out for a while.
    pauseReplica(reply.view());
    // A copy: finding the master's link may carry this link to a newer map.
    const std::string master = map_->shard(map_->masterOf(shard_)).address;
    if (redirects.readFallback(db_, master, frame.view(), p.request, p.part)) return;
  } else if (owner_ != nullptr) {
    // A client's own link: the session decides (its state is on this link).
    if (p.request->owner == owner_ && owner_->onNodeError(*this, p.request, p.part, frame.view(), reply.view())) return;
  } else if (redirects.onErrorReply(db_, address(), p.request, p.part)) {
    return;
  } else if (p.replica_read) {
    worker_.stats().db(db_.index).cluster_replica_reads.add();  // its own answer (WRONGTYPE, ...)
  }
  deliverReply(worker_.requestPool(), p.request, p.part, reply.data(), reply.size(), true);
}

void BackendLink::fail(const std::string& why) {
  failure_ = why;
  // After closeWrite() the shard's close is the answer asked for, not an outage.
  const bool expected = write_closed_;
  write_closed_ = shutdown_sent_ = false;
  if (!logged_down_ && !expected) {
    // Once per outage for a shared link; private links (one per client in a
    // stateful mode) can fail by the thousand, hence the limit per worker.
    static thread_local RateLimitedLog down(spdlog::level::warn,
                                           "failed shard connections (shared links)");
    if (auto pass = down.admit(uv_now(worker_.loop()))) {
      spdlog::warn("db {}: {} {} unavailable: {}{}{}", db_.name, replica_ ? "replica" : "shard", address(), why,
                   replica_ ? " (its master serves its reads)" : "", pass);
      said_down_ = true;
    }
    logged_down_ = true;
  }
  if (!expected) {
    worker_.stats().backend_connect_failures.add();
    shard_stats_->errors.add();
    // A node of a cluster that stopped answering may have been failed
    // over: the topology says, sooner than the next periodic refresh.
    if (db_.cluster_refresh != nullptr) db_.cluster_refresh->requestRefresh();
    if (!owner_ && !reported_down_) {
      shard_stats_->down.add();
      shard_stats_->down_changed_ms.set(ShardStats::wallClockMs());
      reported_down_ = true;
    }
  }
  // Requests failed by a timer: their latency ends now, not at the last read.
  worker_.refreshClock();
  failing_ = true;
  replica_synced_ = probing_ = false;  // a replica is checked again once reconnected
  in_sync_answers_ = 0;
  if (socket_) {
    socket_->close();
    socket_ = nullptr;
    tls_ = nullptr;
  }
  scanner_ = redis::ReplyScanner();
  in_push_ = false;
  out_.clear();
  out_.release();
  state_ = State::kDown;
  // A replica's reads go to its master: a read has no effect, so one the
  // replica may have run is safe to run again.
  failWaiting("-ERR shard " + address() + " unavailable: " + why + "\r\n", replica_);
  reportInFlight();
  if (!owner_) {
    scheduleRetry();
  } else {
    // A private link reconnects when next used; whether the shard is up is
    // the shared link's to say.
    state_ = State::kIdle;
    failing_ = false;
    if (timer_) uv_timer_stop(timer_);
    owner_->onPrivateLinkLost(*this);
  }
}

void BackendLink::markAvailable() {
  if (!failing_) return;
  failing_ = false;
  backoff_ms_ = 0;
  if (reported_down_) {
    shard_stats_->down.sub();
    shard_stats_->down_changed_ms.set(ShardStats::wallClockMs());
    reported_down_ = false;
  }
  // Said only when the outage was: a shard that accepts and drops every
  // connection (maxclients reached) recovers as often as it fails, and the
  // limiter above already holds most of those outages back.
  if (said_down_) {
    spdlog::info("db {}: {} {} is available again", db_.name, replica_ ? "replica" : "shard", address());
  }
  logged_down_ = false;
  said_down_ = false;
}

void BackendLink::failWaiting(const std::string& line, bool resend) {
  // Moved out first: a session told of its failure may send again (to
  // another link, or this one once it is back).
  std::deque<Pending> waiting;
  waiting.swap(fifo_);
  // What the connection carried is answered with the error, never resent:
  // a command written to it may have run. (Before the loop: a session told
  // of a failure may send here again.) Reads sent to a replica are the
  // exception: they go to its master.
  ByteBuffer frames;
  if (resend) frames.swap(sent_);
  sent_.clear();
  held_.clear();
  holding_ = false;
  // A copy: finding the master's link may carry this link to a newer map.
  const bool to_master = resend && replica_;
  const std::string master_address = to_master ? map_->shard(map_->masterOf(shard_)).address : std::string();
  const std::string* master = to_master ? &master_address : nullptr;
  bool first = true;
  size_t offset = 0;
  for (const Pending& p : waiting) {
    const std::string_view frame(reinterpret_cast<const char*>(frames.data()) + offset,
                                 master != nullptr ? p.frame_len : 0);
    offset += master != nullptr ? p.frame_len : 0;
    if (p.request) {
      const bool partial = first && partial_bytes_ > 0;  // part of its reply reached the client
      if (master != nullptr && p.replica_read && !partial && p.frame_len > 0 &&
          worker_.clusterRedirects().readFallback(db_, *master, frame, p.request, p.part)) {
        first = false;
        continue;
      }
      deliverFailure(worker_.requestPool(), p.request, p.part, line, partial);
    }
    first = false;
  }
  partial_bytes_ = 0;
}

bool BackendLink::readable(uint64_t now_us) {
  if (failing_) return false;
  if (replica_synced_) return true;
  if (replica_ && !probing_ && now_us >= probe_due_us_) probeReplica();
  return false;
}

void BackendLink::probeReplica() {
  // Queued like a command; a link not connected yet connects now, and
  // onConnected puts AUTH and READONLY ahead of it.
  probing_ = true;
  probe_reply_.clear();
  if (!owner_ && fifo_.empty() && state_ == State::kReady) startWatchdog();
  last_used_ms_ = uv_now(worker_.loop());
  fifo_.push_back(Pending{nullptr, 0, false, last_used_ms_, 0, false, true});
  out_.append(kRole);
  if (state_ == State::kIdle) connect();
  markDirty();
}

void BackendLink::onProbeReply() {
  probing_ = false;
  if (!replica_) return;  // a master by now (rebind): not a replica's to check
  // ROLE of a replica: *5 "slave" host port state offset, state "connected"
  // once in sync ("connect", "connecting", "sync" before). A node that is a
  // master by now serves its own slots (or redirects).
  const bool in_sync = probe_reply_.starts_with("*") && (probe_reply_.find("\r\nconnected\r\n") != std::string::npos ||
                                                        probe_reply_.find("\r\nmaster\r\n") != std::string::npos);
  if (in_sync) {
    if (++in_sync_answers_ >= 2) {
      replica_synced_ = true;
      replica_pause_ms_ = 0;
    } else {
      probe_due_us_ = worker_.clockUs() + kReplicaConfirmMs * 1000;
    }
    return;
  }
  in_sync_answers_ = 0;
  std::string why = "ROLE: ";
  for (char c : probe_reply_) why += c == '\r' || c == '\n' ? ' ' : c;
  pauseReplica(why);
}

void BackendLink::pauseReplica(std::string_view why) {
  replica_synced_ = false;
  in_sync_answers_ = 0;
  replica_pause_ms_ = nextReplicaPauseMs(replica_pause_ms_);
  probe_due_us_ = worker_.clockUs() + replica_pause_ms_ * 1000;
  static thread_local RateLimitedLog refused(spdlog::level::warn, "replicas not serving reads");
  if (auto pass = refused.admit(uv_now(worker_.loop()))) {
    std::string_view text = why.substr(why.starts_with("-") ? 1 : 0);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
    if (text.size() > 120) text = text.substr(0, 120);
    spdlog::warn("db {}: replica {} is not serving reads ({}); its master {} serves them, checked again in {} ms{}",
                 db_.name, address(), text, map_->shard(map_->masterOf(shard_)).address, replica_pause_ms_, pass);
  }
}

void BackendLink::scheduleRetry() {
  backoff_ms_ = backoff_ms_ == 0 ? kFirstBackoffMs : std::min(backoff_ms_ * 2, kMaxBackoffMs);
  startTimer(backoff_ms_);
}

void BackendLink::startTimer(uint64_t ms) {
  if (!timer_) {
    timer_ = new uv_timer_t;
    uv_timer_init(worker_.loop(), timer_);
    timer_->data = this;
  }
  uv_timer_start(timer_, [](uv_timer_t* t) { static_cast<BackendLink*>(t->data)->onTimer(); }, ms, 0);
}

void BackendLink::startWatchdog() {
  // Left running while requests are waiting; stopped when it finds none.
  if (timer_ && uv_is_active(reinterpret_cast<uv_handle_t*>(timer_))) return;
  if (!timer_) {
    timer_ = new uv_timer_t;
    uv_timer_init(worker_.loop(), timer_);
    timer_->data = this;
  }
  uint64_t every = std::max<uint64_t>(db_.shard_timeout_ms / 4, 10);
  uv_timer_start(timer_, [](uv_timer_t* t) { static_cast<BackendLink*>(t->data)->onTimer(); },
                 every, every);
}

void BackendLink::onTimer() {
  if (state_ == State::kReady) {
    // The request watchdog of a shared link: a shard that accepts and
    // reads but never answers (stopped, swapping, deadlocked), or stops in
    // the middle of a reply, is failed, so its clients get an error instead
    // of waiting forever. What counts is silence while a reply is owed, not
    // the age of the oldest request: a shard streaming a reply that takes
    // minutes (a client pipelining GETs of big values) is alive, and the
    // clients queued behind it get their replies.
    if (fifo_.empty()) {
      uv_timer_stop(timer_);
      return;
    }
    const uint64_t now = uv_now(worker_.loop());
    const uint64_t silent_since = std::max(fifo_.front().sent_ms, last_progress_ms_);
    if (now - silent_since <= db_.shard_timeout_ms) return;
    if (repliesWaitingInSocket()) {
      // The shard did send; this loop was late to read it (timers run
      // before the poll for I/O). Its bytes count as progress.
      last_progress_ms_ = now;
      return;
    }
    fail("no reply within " + std::to_string(db_.shard_timeout_ms) + " ms");
    return;
  }
  if (state_ == State::kConnecting) {
    fail(std::string(tcp_connected_ ? "TLS handshake timed out" : "connect timed out") + " after " +
         std::to_string(kConnectTimeoutMs) + " ms");
  } else if (state_ == State::kDown) {
    shard_stats_->reconnects.add();
    connect();
  }
}

// One ioctl, only when the watchdog is about to fail the link.
bool BackendLink::repliesWaitingInSocket() const {
  return socket_ != nullptr && socket_->bytesWaiting() > 0;
}

}  // namespace shardgate::proxy
