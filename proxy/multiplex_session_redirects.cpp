// MultiplexSession: a cluster node's redirects on the client's own
// connections, so that a client in a stateful mode never sees them either.
//
//   blocking command on private link ─ node lets it go unrun ─► onNodeError
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

namespace shardgate::proxy {

namespace {
constexpr std::string_view kAsking = "*1\r\n$6\r\nASKING\r\n";
}  // namespace

bool MultiplexSession::onNodeError(ShardLink& link, Request* r, std::string_view frame, std::string_view reply) {
  if (!db_.cluster || r->slot < 0) return false;
  const auto slot = static_cast<uint16_t>(r->slot);
  const StatefulPlan decided = planStatefulRedirect(reply, link.address(), slot, r->redirects, r->retries);
  const RedirectPlan& plan = decided.plan;
  if (plan.refresh && db_.cluster_refresh != nullptr) db_.cluster_refresh->requestRefresh();
  if (decided.link_lost) retireLink(link);
  switch (plan.action) {
    case RedirectPlan::Action::kPass:
      return false;
    case RedirectPlan::Action::kTooMany:
      onReply(r, 0, reinterpret_cast<const uint8_t*>(plan.error.data()), plan.error.size(), true);
      return true;
    case RedirectPlan::Action::kMoved:
    case RedirectPlan::Action::kAsk: {
      const bool moved = plan.action == RedirectPlan::Action::kMoved;
      ++r->redirects;
      db_stats_.cluster_redirects[moved ? 0 : 1].add();
      if (moved) links_host_.noteMoved(db_, plan.address, plan.slot);
      resendToNode(plan.address, frame, r, !moved);
      return true;
    }
    case RedirectPlan::Action::kRetry: {
      ++r->retries;
      db_stats_.cluster_retries.add();
      const uint64_t now = links_host_.clockUs() / 1000;
      resends_.push_back(Resend{r, std::string(frame), now + plan.delay_ms});
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
    const std::string owner = slotOwnerNow(static_cast<uint16_t>(w.request->slot));
    if (owner.empty()) {
      const std::string line = "-" + std::string(ShardMap::kNotServedError) + "\r\n";
      onReply(w.request, 0, reinterpret_cast<const uint8_t*>(line.data()), line.size(), true);
      continue;
    }
    resendToNode(owner, w.frame, w.request, false);
  }
  if (!resends_.empty()) {
    // Others not due yet: woken again for the soonest.
    uint64_t next = UINT64_MAX;
    for (const Resend& w : resends_) next = std::min(next, w.due_ms);
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
    private_[position] = std::move(link);
  }
  return static_cast<int>(position);
}

void MultiplexSession::resendToNode(const std::string& address, std::string_view frame, Request* r, bool asking) {
  if (input_ended_ || stopped_) {
    // The client is gone (or quit): redis-server would have freed it
    // blocked, without a reply; so is it here.
    onFailure(r, 0, "", false);
    return;
  }
  const int shard = nodeShard(address);
  if (shard < 0) {
    const std::string line = "-ERR shardgate: slot " + std::to_string(r->slot) + " moved to " + address +
                             ", which cannot be connected to\r\n";
    onReply(r, 0, reinterpret_cast<const uint8_t*>(line.data()), line.size(), true);
    return;
  }
  ShardLink& link = privateLink(shard);
  if (asking) link.send(kAsking, nullptr, 0);
  link.send(frame, r, 0);
  private_shard_ = shard;
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

}  // namespace shardgate::proxy
