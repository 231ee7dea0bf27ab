// MultiplexSession: a cluster node's redirects on the client's own
// connections, so that a client in a stateful mode never sees them either.
//
//   blocking command, or a RESP3 client's command (or one slot's part of
//   its split MGET, DEL, ...) on its own link ─ node lets it go unrun ─►
//   onNodeError
//     -MOVED slot addr      ─► the worker's map follows (noteMoved); the
//                              command is sent again on the session's own
//                              link to addr, where it blocks anew
//     -ASK slot addr        ─► ASKING + the command on the link to addr
//     -UNBLOCKED (failover), -TRYAGAIN, -CLUSTERDOWN
//                           ─► a refresh is asked for; after a back-off the
//                              command goes to the slot's owner by then
//
// Only a reply saying the command did not run starts this (the node sends
// it instead of the command's answer: cluster.c
// clusterRedirectBlockedClientIfNeeded, replication.c
// disconnectAllBlockedClients). A blocking command on a link that dies is
// never resent: it may have popped. Redirects and retries are bounded
// (planStatefulRedirect), then the client gets an error naming the slot.
// The request keeps its place in the client's FIFO throughout.
#include <algorithm>
#include <cstdint>

#include "proxy/cluster_redirects.h"
#include "proxy/multiplex_session.h"
#include "redis/cluster_redirect.h"
#include "redis/hash_slot.h"
#include "redis/resp_encoder.h"

namespace shardgate::proxy {

namespace {
constexpr std::string_view kAsking = "*1\r\n$6\r\nASKING\r\n";
}  // namespace

bool MultiplexSession::onNodeError(ShardLink& link, Request* r, uint16_t part, std::string_view frame,
                                   std::string_view reply) {
  if (!db_.cluster) return false;
  if (r->tx == Request::kTxExec) return onExecError(link, r, reply);
  int32_t part_slot = r->slot;
  if (part < r->part_slot.size()) part_slot = r->part_slot[part];
  if (part_slot < 0) return false;
  const auto slot = static_cast<uint16_t>(part_slot);
  const StatefulPlan decided =
      planStatefulRedirect(reply, link.address(), slot, r->redirects, r->retries, std::max<size_t>(1, r->parts.size()));
  const RedirectPlan& plan = decided.plan;
  if (plan.refresh && db_.cluster_refresh != nullptr) db_.cluster_refresh->requestRefresh();
  if (decided.link_lost) retireLink(link);
  switch (plan.action) {
    case RedirectPlan::Action::kPass:
      return false;
    case RedirectPlan::Action::kTooMany:
      onReply(r, part, reinterpret_cast<const uint8_t*>(plan.error.data()), plan.error.size(), true);
      return true;
    case RedirectPlan::Action::kMoved:
    case RedirectPlan::Action::kAsk: {
      const bool moved = plan.action == RedirectPlan::Action::kMoved;
      ++r->redirects;
      db_stats_.cluster_redirects[moved ? 0 : 1].add();
      if (moved) links_host_.noteMoved(db_, plan.address, plan.slot);
      resendToNode(plan.address, frame, r, part, slot, !moved);
      return true;
    }
    case RedirectPlan::Action::kRetry: {
      ++r->retries;
      db_stats_.cluster_retries.add();
      if (!r->refused) {
        r->refused = true;
        ++refused_;
      }
      const uint64_t now = links_host_.clockUs() / 1000;
      resends_.push_back(Resend{r, part, slot, std::string(frame), now + plan.delay_ms});
      // Not sent on this link again: what follows on it must wait.
      private_shard_ = -2;
      scheduleWake(plan.delay_ms);
      return true;
    }
  }
  return false;
}

void MultiplexSession::scheduleWake(uint64_t ms) { links_host_.wakeLater(this, ms); }

void MultiplexSession::onRedirectTimer() {
  const uint64_t now = links_host_.refreshClock() / 1000;
  resubscribeDue(now);
  std::vector<Resend> due;
  for (size_t i = 0; i < resends_.size();) {
    if (resends_[i].due_ms <= now) {
      due.push_back(std::move(resends_[i]));
      resends_.erase(resends_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  for (Resend& w : due) {
    const std::string owner = slotOwnerNow(w.slot);
    if (owner.empty()) {
      const std::string line = "-" + std::string(ShardMap::kNotServedError) + "\r\n";
      onReply(w.request, w.part, reinterpret_cast<const uint8_t*>(line.data()), line.size(), true);
      continue;
    }
    resendToNode(owner, w.frame, w.request, w.part, w.slot, false);
  }
  if (!resends_.empty() || !resubs_.empty()) {
    // Others not due yet: woken again for the soonest.
    uint64_t next = UINT64_MAX;
    for (const Resend& w : resends_) next = std::min(next, w.due_ms);
    for (const Resubscribe& w : resubs_) next = std::min(next, w.due_ms);
    scheduleWake(next > now ? next - now : 0);
  }
  conn_.replyReady();
}

std::string MultiplexSession::slotOwnerNow(uint16_t slot) {
  if (shared_.generation != db_.shard_map->generation()) links_host_.refreshSharedLinks(db_, shared_);
  const ShardMap& map = *shared_.current->map;
  const uint16_t owner = map.shardOfSlot(slot);
  return owner == ShardMap::kNoShard ? std::string() : map.shard(owner).address;
}

int MultiplexSession::nodeShard(const std::string& address) {
  const size_t shards = map_->shardCount();
  for (size_t s = 0; s < shards; ++s) {
    if (map_->shard(s).address == address) return static_cast<int>(s);
  }
  auto known = std::find(node_addresses_.begin(), node_addresses_.end(), address);
  const size_t position = shards + static_cast<size_t>(known - node_addresses_.begin());
  if (position > 0xFFFE) return -1;
  if (known == node_addresses_.end()) {
    // Opened here, so that an address that cannot be used is known now.
    auto link = links_host_.openNodeLink(db_, address, static_cast<uint16_t>(position), this);
    if (!link) return -1;
    node_addresses_.push_back(address);
    if (private_.size() < position + 1) private_.resize(position + 1);
    sendPrelude(*link);
    private_[position] = std::move(link);
  }
  return static_cast<int>(position);
}

void MultiplexSession::resendToNode(const std::string& address, std::string_view frame, Request* r, uint16_t part,
                                    uint16_t slot, bool asking) {
  if ((input_ended_ || stopped_) && (r->blocking || r->tx != 0)) {
    // The client is gone (or quit): redis-server would have freed it
    // blocked, without a reply; so is it here. Anything else it sent
    // before its QUIT or EOF is answered, as redis-server answers it.
    onFailure(r, part, "", false);
    return;
  }
  // A node known by a name: its ip, as the topology gave it.
  const std::string* alias = map_->aliasOf(address);
  const int shard = nodeShard(alias != nullptr ? *alias : address);
  if (shard < 0) {
    const std::string line = "-ERR shardgate: slot " + std::to_string(slot) + " moved to " + address +
                             ", which cannot be connected to\r\n";
    onReply(r, part, reinterpret_cast<const uint8_t*>(line.data()), line.size(), true);
    return;
  }
  ShardLink& link = privateLink(shard);
  private_shard_ = shard;
  if (r->tx == Request::kTxExec) {
    sendTransaction(link, r, asking);
    return;
  }
  // A WATCH the node refused did not watch: where it does, EXEC goes.
  if (r->tx == Request::kTxWatch && watching_) pin_shard_ = shard;
  if (asking) link.send(kAsking, nullptr, 0);
  link.send(frame, r, part);
}

// ---- transactions ----------------------------------------------------------
//
// A cluster database's transaction is queued in the proxy (the client hears
// +QUEUED from it) and sent whole at EXEC: MULTI, the commands, EXEC, on the
// client's own link to the node of its keys. Nothing in it runs unless EXEC
// runs, so when the node refuses -- a queued command gets -MOVED / -ASK /
// -TRYAGAIN (cluster.c getNodeByQuery; EXEC then answers -EXECABORT), or
// EXEC itself does -- the node has discarded it, and it is sent again, whole,
// to the slot's owner (after ASKING for an ASK). The client gets EXEC's real
// reply. Under WATCH it is not: the watch was on the old node, and moving it
// would leave a window in which a change goes unseen, so EXEC answers null,
// as when a watched key changed, and the client retries.

namespace {
constexpr std::string_view kExec = "*1\r\n$4\r\nEXEC\r\n";
}  // namespace

void MultiplexSession::sendTransaction(ShardLink& link, Request* r, bool asking) {
  // ASKING holds through MULTI ... EXEC (networking.c resetClient keeps it
  // while the client is in MULTI).
  if (asking) link.send(kAsking, nullptr, 0);
  link.send(r->replay, nullptr, 0);  // MULTI's +OK, dropped
  for (uint32_t i = 0; i < r->replay_count; ++i) link.expectDropped();  // each +QUEUED
  link.send(kExec, r, 0);
}

void MultiplexSession::onDroppedError(std::string_view reply) {
  if (tx_redirect_.empty() && redis::classifyReply(reply).kind != redis::RedirectKind::kNone) {
    tx_redirect_.assign(reply);
  }
}

bool MultiplexSession::onExecError(ShardLink& link, Request* r, std::string_view reply) {
  std::string cause;
  if (redis::classifyReply(reply).kind != redis::RedirectKind::kNone) {
    cause.assign(reply);
  } else if (reply.starts_with("-EXECABORT")) {
    cause = tx_redirect_;  // empty: aborted for a reason of the client's
  }
  tx_redirect_.clear();
  if (cause.empty()) return false;
  const auto named = redis::classifyReply(cause);
  const uint16_t slot = r->slot >= 0 ? static_cast<uint16_t>(r->slot) : named.slot;
  const StatefulPlan decided = planStatefulRedirect(cause, link.address(), slot, r->redirects, r->retries);
  const RedirectPlan& plan = decided.plan;
  if (plan.refresh && db_.cluster_refresh != nullptr) db_.cluster_refresh->requestRefresh();
  const bool moved = plan.action == RedirectPlan::Action::kMoved;
  if (moved) links_host_.noteMoved(db_, plan.address, plan.slot);
  if (r->watched) {
    const std::string_view null = resp3_ ? "_\r\n" : "*-1\r\n";
    onReply(r, 0, reinterpret_cast<const uint8_t*>(null.data()), null.size(), true);
    return true;
  }
  switch (plan.action) {
    case RedirectPlan::Action::kPass:
      return false;
    case RedirectPlan::Action::kTooMany:
      onReply(r, 0, reinterpret_cast<const uint8_t*>(plan.error.data()), plan.error.size(), true);
      return true;
    case RedirectPlan::Action::kMoved:
    case RedirectPlan::Action::kAsk: {
      ++r->redirects;
      db_stats_.cluster_redirects[moved ? 0 : 1].add();
      resendToNode(plan.address, {}, r, 0, slot, !moved);
      return true;
    }
    case RedirectPlan::Action::kRetry: {
      ++r->retries;
      db_stats_.cluster_retries.add();
      if (!r->refused) {
        r->refused = true;
        ++refused_;
      }
      if (r->slot < 0) r->slot = slot;  // rerouted by it
      resends_.push_back(Resend{r, 0, slot, std::string(), links_host_.clockUs() / 1000 + plan.delay_ms});
      private_shard_ = -2;
      scheduleWake(plan.delay_ms);
      return true;
    }
  }
  return false;
}

void MultiplexSession::retireLink(ShardLink& link) {
  const size_t s = link.shard();
  if (s >= private_.size() || private_[s].get() != &link) return;
  // Whatever state the node held for this client went with the connection.
  if (pin_shard_ == static_cast<int>(s)) {
    if (in_multi_ && multi_on_shard_) multi_dirty_ = multi_lost_ = true;
    if (watching_) watch_lost_ = true;
  }
  // We are inside its callback: deleted later, from dispatch().
  retired_.push_back(std::move(private_[s]));
}

// ---- shard channels --------------------------------------------------------
//
// A shard channel lives on the master of its slot. When the slot leaves a
// node (a reshard, a failover), Redis 7 sends the node's subscribers a
// `sunsubscribe` for each of its channels (cluster.c clusterDelSlot ->
// removeChannelsInSlot); a killed master's connection just dies. Either way
// the proxy keeps that from the client and subscribes the channel again on
// the slot's owner once the topology says who it is (a back-off, the refresh
// asked for meanwhile). Messages published between the two are lost, as
// they are for a Redis client that re-subscribes itself.

namespace {
constexpr int kMaxResubscribeTries = 120;  // 25 ms ... then every 500 ms: about a minute
}  // namespace

bool MultiplexSession::onShardChannelFrame(int shard, std::string_view kind, std::string_view name,
                                           std::string_view error) {
  auto oldest = std::find_if(sent_pubsub_.begin(), sent_pubsub_.end(),
                             [&](const SentPubsub& p) { return p.shard == shard; });
  if (!error.empty()) {
    if (oldest == sent_pubsub_.end()) return false;
    const auto redirect = redis::classifyReply(error).kind;
    const bool moved = redirect != redis::RedirectKind::kNone || error.starts_with("-ERR shard ");
    if (oldest->resub_try >= 0) {
      // Our SSUBSCRIBE refused (the map was behind, the cluster down): again, later.
      SentPubsub refused = std::move(*oldest);
      sent_pubsub_.erase(oldest);
      resubscribeLater(refused.names.front(), refused.resub_try + 1, refused.confirm);
      return true;
    }
    if (!moved || oldest->kind != "ssubscribe") return false;
    // The client's SSUBSCRIBE reached a node whose slot had moved (the
    // session routes by the map it subscribed with): where the slot is now.
    if (redirect == redis::RedirectKind::kMoved || redirect == redis::RedirectKind::kClusterDown) {
      if (db_.cluster_refresh != nullptr) db_.cluster_refresh->requestRefresh();
    }
    SentPubsub refused = std::move(*oldest);
    sent_pubsub_.erase(oldest);
    for (std::string& n : refused.names) resubscribeLater(std::move(n), 0, true);
    return true;
  }
  if (kind == "ssubscribe" && oldest != sent_pubsub_.end() && oldest->resub_try >= 0) {
    shard_home_[oldest->names.front()] = shard;
    const bool confirm = oldest->confirm;
    sent_pubsub_.erase(oldest);
    if (!confirm) return true;  // the client subscribed long ago
    arrived_.push_back(Confirm{std::string(kind), std::string(name), false});
    emitConfirmations();
    return true;
  }
  if (kind != "sunsubscribe") return false;
  if (oldest != sent_pubsub_.end() && oldest->kind == "sunsubscribe" && oldest->resub_try < 0 &&
      std::find(oldest->names.begin(), oldest->names.end(), name) != oldest->names.end()) {
    return false;  // the client's own SUNSUBSCRIBE
  }
  auto home = shard_home_.find(std::string(name));
  if (shard_channels_.find(name) == shard_channels_.end() || home == shard_home_.end()) return false;
  // Subscribed elsewhere already: this node's word is stale.
  if (home->second != shard) return true;
  shard_home_.erase(home);
  if (db_.cluster_refresh != nullptr) db_.cluster_refresh->requestRefresh();
  resubscribeLater(std::string(name), 0, false);
  return true;
}

void MultiplexSession::resubscribeLater(std::string name, int tries, bool confirm) {
  if (tries >= kMaxResubscribeTries) {
    // No node serves the slot for this long: the client is told and
    // disconnected, as when a subscriber's shard connection is lost.
    const std::string line = "-ERR shardgate: shard channel " + name + " lost: slot " +
                             std::to_string(redis::keyHashSlot(name)) + " has no node that serves it\r\n";
    appendToStream(reinterpret_cast<const uint8_t*>(line.data()), line.size());
    stop();
    conn_.replyReady();
    return;
  }
  const uint64_t delay = ClusterRedirects::retryDelayMs(static_cast<uint8_t>(std::min(tries, 5)));
  resubs_.push_back(Resubscribe{std::move(name), tries, confirm, links_host_.clockUs() / 1000 + delay});
  scheduleWake(delay);
}

bool MultiplexSession::resubscribeLost(int shard) {
  if (!patterns_.empty()) return false;
  for (const std::string& c : channels_) {
    if (map_->shardOfKey(c) == shard) return false;
  }
  for (const SentPubsub& p : sent_pubsub_) {
    if (p.shard == shard && p.resub_try < 0) return false;
  }
  if (input_ended_ || stopped_) return false;
  // Only shard channels were there: each goes where its slot is served now.
  std::vector<std::pair<std::string, std::pair<int, bool>>> again;
  for (auto it = sent_pubsub_.begin(); it != sent_pubsub_.end();) {
    if (it->shard == shard) {
      again.push_back({it->names.front(), {it->resub_try + 1, it->confirm}});
      it = sent_pubsub_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = shard_home_.begin(); it != shard_home_.end();) {
    if (it->second == shard) {
      again.push_back({it->first, {0, false}});
      it = shard_home_.erase(it);
    } else {
      ++it;
    }
  }
  // The dead connection is not reused: a new one is opened (with HELLO 3
  // first, if the client speaks RESP3) when a channel goes back there.
  const auto s = static_cast<size_t>(shard);
  if (s < stream_links_.size()) stream_links_[s] = false;
  if (s < private_.size() && private_[s]) retired_.push_back(std::move(private_[s]));
  for (auto& [name, state] : again) resubscribeLater(std::move(name), state.first, state.second);
  return true;
}

void MultiplexSession::resubscribeDue(uint64_t now) {
  std::vector<Resubscribe> due;
  for (size_t i = 0; i < resubs_.size();) {
    if (resubs_[i].due_ms <= now) {
      due.push_back(std::move(resubs_[i]));
      resubs_.erase(resubs_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  for (Resubscribe& w : due) {
    if (stopped_) return;
    // Left by the client meanwhile.
    if (!w.confirm && shard_channels_.find(w.name) == shard_channels_.end()) continue;
    const std::string owner = slotOwnerNow(redis::keyHashSlot(w.name));
    const int shard = owner.empty() ? -1 : nodeShard(owner);
    if (shard < 0) {
      resubscribeLater(std::move(w.name), w.tries + 1, w.confirm);
      continue;
    }
    ShardLink& link = privateLink(shard);
    useForStream(shard, link);
    ByteBuffer& cmd = frame_scratch_;
    cmd.clear();
    redis::resp::appendCommand(cmd, {"SSUBSCRIBE", w.name});
    std::string frame(cmd.view());
    // Recorded first: a connection that fails at once answers for it.
    sent_pubsub_.push_back(SentPubsub{shard, "ssubscribe", {w.name}, 1, w.tries, w.confirm});
    link.sendUnmatched(frame);
  }
}

}  // namespace shardgate::proxy
