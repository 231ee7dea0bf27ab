#include "proxy/cluster_redirects.h"

#include <algorithm>

#include "common/uv_handle.h"
#include "net/socket_address.h"
#include "proxy/backend_link.h"
#include "proxy/database.h"
#include "proxy/multiplex_session.h"
#include "proxy/worker.h"
#include "redis/cluster_redirect.h"

namespace shardgate::proxy {

namespace {

constexpr std::string_view kAsking = "*1\r\n$6\r\nASKING\r\n";

// "host:port" as ShardEndpoint::address spells it (brackets for IPv6).
std::string joinAddress(std::string_view host, uint16_t port) {
  std::string out;
  if (host.find(':') != std::string_view::npos) {
    out.append("[").append(host).append("]");
  } else {
    out.append(host);
  }
  return out + ":" + std::to_string(port);
}

std::string hostOf(const std::string& address) {
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

}  // namespace

ClusterRedirects::~ClusterRedirects() { close(); }

void ClusterRedirects::close() {
  std::vector<Retry> waiting;
  waiting.swap(retries_);
  for (Retry& r : waiting) {
    deliverFailure(worker_.requestPool(), r.request, r.part, "-ERR shardgate is stopping\r\n", false);
  }
  if (timer_) {
    uv_close(asHandle(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
  extra_.clear();
  wakes_.clear();
}

void ClusterRedirects::closeIdleExtraLinks(uint64_t now_ms) {
  std::erase_if(extra_, [now_ms](const auto& entry) {
    const BackendLink& link = *entry.second;
    return link.idle() && now_ms - link.lastUsedMs() >= kExtraLinkIdleMs;
  });
}

RedirectPlan planRedirect(std::string_view reply, std::string_view from_address, uint16_t redirects,
                          uint8_t retries, size_t parts) {
  RedirectPlan plan;
  const redis::ClusterRedirect redirect = redis::classifyReply(reply);
  switch (redirect.kind) {
    case redis::RedirectKind::kNone:
      return plan;
    case redis::RedirectKind::kMoved:
    case redis::RedirectKind::kAsk: {
      const bool moved = redirect.kind == redis::RedirectKind::kMoved;
      // Whatever happens next, the map this worker routes by is behind.
      plan.refresh = moved;
      plan.slot = redirect.slot;
      // A node whose endpoint is a name nobody told us ("?"): the address
      // stays empty, and the command waits for the refresh to say where
      // it is (ClusterRedirects::waitForTopology).
      if (!redirect.hostUnknown()) {
        plan.address = joinAddress(
            redirect.sameHostAsSender() ? std::string_view(hostOf(std::string(from_address))) : redirect.host,
            redirect.port);
      }
      // Several parts (a split command): each may be redirected as often.
      if (redirects >= ClusterRedirects::kMaxRedirects * std::max<size_t>(1, parts)) {
        plan.action = RedirectPlan::Action::kTooMany;
        plan.error = "-ERR shardgate: slot " + std::to_string(redirect.slot) + " was redirected " +
                     std::to_string(ClusterRedirects::kMaxRedirects) + " times (last: " +
                     (moved ? "MOVED" : "ASK") + " to " + (plan.address.empty() ? "?" : plan.address) +
                     "); the cluster is changing, try again\r\n";
        return plan;
      }
      plan.action = moved ? RedirectPlan::Action::kMoved : RedirectPlan::Action::kAsk;
      return plan;
    }
    case redis::RedirectKind::kTryAgain:
    case redis::RedirectKind::kClusterDown:
      // CLUSTERDOWN may mean a failover is under way: the new owner is learnt sooner.
      plan.refresh = redirect.kind == redis::RedirectKind::kClusterDown;
      if (retries >= ClusterRedirects::kMaxRetries) return plan;  // the node's error reaches the client
      plan.action = RedirectPlan::Action::kRetry;
      plan.delay_ms = ClusterRedirects::retryDelayMs(retries);
      return plan;
  }
  return plan;
}

StatefulPlan planStatefulRedirect(std::string_view reply, std::string_view from_address, uint16_t slot,
                                  uint16_t redirects, uint8_t retries, size_t parts) {
  StatefulPlan out;
  RedirectPlan& plan = out.plan;
  const std::string slot_text = std::to_string(slot);
  if (reply.starts_with("-UNBLOCKED")) {
    // "force unblock ... instance state changed (master -> replica?)" and
    // the connection closed; "the stream key no longer exists" (a
    // consumer's stream deleted -- migrated away). Neither ran the command.
    out.link_lost = reply.find("instance state changed") != std::string_view::npos;
    plan.refresh = true;
    plan.slot = slot;
  } else {
    plan = planRedirect(reply, from_address, redirects, 0, parts);
    const auto kind = redis::classifyReply(reply).kind;
    if (kind != redis::RedirectKind::kTryAgain && kind != redis::RedirectKind::kClusterDown) {
      // MOVED, ASK (or too many of them), or a reply that is the client's.
      const bool to_unknown = (plan.action == RedirectPlan::Action::kMoved || plan.action == RedirectPlan::Action::kAsk) &&
                              plan.address.empty();
      if (to_unknown) {
        // A redirect to a node with no known address ("?"): the refresh
        // says where it is; until then it is retried like a failover.
        plan.action = RedirectPlan::Action::kRetry;
      }
      if (plan.action != RedirectPlan::Action::kRetry) return out;
    }
    plan.slot = slot;
  }
  if (retries >= ClusterRedirects::kMaxStatefulRetries) {
    plan.action = RedirectPlan::Action::kTooMany;
    std::string_view line = reply.substr(1);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    plan.error = "-ERR shardgate: slot " + slot_text + " has no node that serves it after " +
                 std::to_string(ClusterRedirects::kMaxStatefulRetries) + " tries (last: " + std::string(line) +
                 "); the cluster is changing, try again\r\n";
    return out;
  }
  plan.action = RedirectPlan::Action::kRetry;
  plan.delay_ms = ClusterRedirects::retryDelayMs(retries);
  out.reroute = true;
  return out;
}

void ClusterRedirects::noteMoved(const Database& db, const std::string& address, uint16_t slot) {
  if (db.cluster_refresh != nullptr) db.cluster_refresh->requestRefresh();
  linkTo(db, address, slot);
}

std::shared_ptr<const ShardMap> ClusterRedirects::nodeMap(const Database& db, const std::string& address,
                                                          uint16_t position) {
  auto parsed = net::parseSocketAddress(address);
  if (!parsed) return nullptr;
  auto addr = net::toSockaddr(*parsed);
  if (!addr) return nullptr;
  ShardMap::SlotOwners owners;
  owners.fill(ShardMap::kNoShard);
  std::vector<ShardEndpoint> shards(size_t{position} + 1,
                                    ShardEndpoint{address, *addr, nodeTls(db.shard_tls, parsed->host)});
  auto map = ShardMap::create(std::move(shards), owners);
  if (!map) return nullptr;
  return std::move(*map);
}

void ClusterRedirects::wakeLater(MultiplexSession* session, uint64_t ms) {
  wakes_.push_back(Wake{session, uv_now(worker_.loop()) + ms});
  armTimer();
}

void ClusterRedirects::cancelWake(MultiplexSession* session) {
  std::erase_if(wakes_, [&](const Wake& w) { return w.session == session; });
}

bool ClusterRedirects::onErrorReply(const Database& db, const std::string& from_address, Request* r,
                                    uint16_t part) {
  // The client is gone: its reply is dropped, whatever it is.
  if (r->owner == nullptr) return false;
  const RedirectPlan plan = planRedirect(reply_.view(), from_address, r->redirects, r->retries, r->parts.size());
  if (plan.refresh && db.cluster_refresh != nullptr) db.cluster_refresh->requestRefresh();
  DbStats& stats = worker_.dbStats(db);
  switch (plan.action) {
    case RedirectPlan::Action::kPass:
      return false;
    case RedirectPlan::Action::kTooMany:
      answer(r, part, plan.error);
      return true;
    case RedirectPlan::Action::kMoved:
    case RedirectPlan::Action::kAsk: {
      const bool moved = plan.action == RedirectPlan::Action::kMoved;
      ShardLink* to = linkTo(db, plan.address, moved ? plan.slot : -1);
      if (to == nullptr) return waitForTopology(db, from_address, r, part, plan);
      ++r->redirects;
      stats.cluster_redirects[moved ? 0 : 1].add();
      resend(db, *to, frame_.view(), r, part, !moved);
      return true;
    }
    case RedirectPlan::Action::kRetry:
      ++r->retries;
      stats.cluster_retries.add();
      retries_.push_back(Retry{&db, from_address, std::string(frame_.view()), std::string(reply_.view()), r, part,
                               uv_now(worker_.loop()) + plan.delay_ms});
      armTimer();
      return true;
  }
  return false;
}

bool ClusterRedirects::readFallback(const Database& db, const std::string& master_address, std::string_view frame,
                                    Request* r, uint16_t part) {
  if (r->owner == nullptr) return false;  // the client is gone: nothing to read for
  ShardLink* to = linkTo(db, master_address, -1);
  if (to == nullptr) return false;
  worker_.dbStats(db).cluster_replica_fallbacks.add();
  resend(db, *to, frame, r, part, false);
  return true;
}

bool ClusterRedirects::waitForTopology(const Database& db, const std::string& from_address, Request* r,
                                       uint16_t part, const RedirectPlan& plan) {
  // A node named by a name the map has no address for (a node the last
  // topology read did not have yet): the refresh will know it. The command
  // goes back to the node that redirected it after a back-off, whose
  // redirect then leads to a node the map knows.
  if (db.cluster_refresh != nullptr) db.cluster_refresh->requestRefresh();
  if (r->retries >= kMaxRetries) {
    answer(r, part,
           "-ERR shardgate: slot " + std::to_string(plan.slot) + " is served by " +
               (plan.address.empty() ? std::string("a node with no known address") : plan.address) +
               ", a node not in the cluster's topology as last read; try again\r\n");
    return true;
  }
  const uint64_t delay = retryDelayMs(r->retries);
  ++r->retries;
  worker_.dbStats(db).cluster_retries.add();
  retries_.push_back(Retry{&db, from_address, std::string(frame_.view()), std::string(reply_.view()), r, part,
                           uv_now(worker_.loop()) + delay});
  armTimer();
  return true;
}

void ClusterRedirects::resend(const Database& db, ShardLink& to, std::string_view frame, Request* r, uint16_t part,
                              bool asking) {
  (void)db;
  if (!to.available()) {
    // Not written anywhere: the node is known to be down right now.
    deliverFailure(worker_.requestPool(), r, part,
                   "-ERR shard " + to.address() + " unavailable: " + to.failure() + "\r\n", false);
    return;
  }
  // ASKING's +OK is dropped; the command's reply answers the part. One
  // link, one FIFO: they reach the node in this order.
  if (asking) to.send(kAsking, nullptr, 0);
  to.send(frame, r, part);
}

void ClusterRedirects::answer(Request* r, uint16_t part, std::string_view frame) {
  deliverReply(worker_.requestPool(), r, part, reinterpret_cast<const uint8_t*>(frame.data()), frame.size(), true);
}

ShardLink* ClusterRedirects::linkTo(const Database& db, const std::string& named, int moved_slot) {
  SharedLinks& links = worker_.sharedLinks(db);
  if (links.generation != db.shard_map->generation()) worker_.refreshSharedLinks(db, links);
  const ShardMap& map = *links.current->map;
  // A node known by a name: connected to at the ip the cluster reports,
  // its certificate checked against the name.
  const std::string* alias = map.aliasOf(named);
  const std::string& address = alias != nullptr ? *alias : named;
  auto verifyName = [&](const net::SocketAddress& parsed) { return alias != nullptr ? hostOf(named) : parsed.host; };
  int index = -1;
  for (size_t i = 0; i < map.shardCount(); ++i) {
    if (map.shard(i).address == address) index = static_cast<int>(i);
  }
  const auto slot = static_cast<uint16_t>(moved_slot);
  if (moved_slot >= 0 && (index < 0 || map.shardOfSlot(slot) != index)) {
    // This worker's map follows the MOVED now; the monitor's refresh
    // replaces it with the cluster's whole word soon after. Sessions adopt
    // it at their next batch (MultiplexSession::refreshMap).
    std::vector<ShardEndpoint> shards = map.shards();
    // The replicas stay (a node that is now a master leaves their list);
    // the masters keep their places, a new one comes last.
    std::vector<ReplicaEndpoint> replicas = map.replicas();
    std::erase_if(replicas, [&](const ReplicaEndpoint& r) { return r.endpoint.address == address; });
    if (index < 0) {
      auto parsed = net::parseSocketAddress(address);
      if (!parsed) return nullptr;
      auto addr = net::toSockaddr(*parsed);
      if (!addr) return nullptr;
      shards.push_back(ShardEndpoint{address, *addr, nodeTls(db.shard_tls, verifyName(*parsed))});
      index = static_cast<int>(shards.size() - 1);
    }
    ShardMap::SlotOwners owners;
    for (size_t s = 0; s < owners.size(); ++s) owners[s] = map.shardOfSlot(static_cast<uint16_t>(s));
    owners[slot] = static_cast<uint16_t>(index);
    auto patched = ShardMap::create(std::move(shards), owners, map.aliases(), std::move(replicas));
    if (!patched) return nullptr;
    worker_.patchSharedLinks(db, links, std::move(*patched));
    return links.current->links[static_cast<size_t>(index)].get();
  }
  if (index >= 0) return links.current->links[static_cast<size_t>(index)].get();
  // ASK to a node this worker's map does not have yet (a new master being
  // filled): a shared link of its own, closed once idle for a while
  // (closeIdleExtraLinks). Its connection counters land on position 0 of
  // the database's shards: it has no position in the map.
  const std::string key = std::to_string(db.index) + "/" + address;
  auto found = extra_.find(key);
  if (found != extra_.end()) return found->second.get();
  auto parsed = net::parseSocketAddress(address);
  if (!parsed) return nullptr;
  auto addr = net::toSockaddr(*parsed);
  if (!addr) return nullptr;
  ShardMap::SlotOwners owners;
  owners.fill(ShardMap::kNoShard);
  auto one = ShardMap::create({ShardEndpoint{address, *addr, nodeTls(db.shard_tls, verifyName(*parsed))}}, owners);
  if (!one) return nullptr;
  auto link = std::make_shared<BackendLink>(worker_, db, std::move(*one), 0, nullptr);
  ShardLink* out = link.get();
  extra_.emplace(key, std::move(link));
  return out;
}

void ClusterRedirects::armTimer() {
  if (!timer_) {
    timer_ = new uv_timer_t;
    uv_timer_init(worker_.loop(), timer_);
    timer_->data = this;
  }
  uint64_t next = UINT64_MAX;
  for (const Retry& r : retries_) next = std::min(next, r.due_ms);
  for (const Wake& w : wakes_) next = std::min(next, w.due_ms);
  const uint64_t now = uv_now(worker_.loop());
  uv_timer_start(timer_, [](uv_timer_t* t) { static_cast<ClusterRedirects*>(t->data)->onTimer(); },
                 next > now ? next - now : 0, 0);
}

void ClusterRedirects::onTimer() {
  const uint64_t now = uv_now(worker_.loop());
  worker_.refreshClock();
  std::vector<Retry> due;
  for (size_t i = 0; i < retries_.size();) {
    if (retries_[i].due_ms <= now) {
      due.push_back(std::move(retries_[i]));
      retries_[i] = std::move(retries_.back());
      retries_.pop_back();
    } else {
      ++i;
    }
  }
  std::vector<MultiplexSession*> woken;
  for (size_t i = 0; i < wakes_.size();) {
    if (wakes_[i].due_ms <= now) {
      woken.push_back(wakes_[i].session);
      wakes_[i] = wakes_.back();
      wakes_.pop_back();
    } else {
      ++i;
    }
  }
  // Sessions end from their connection's callbacks, never from here: each
  // one woken is alive (one woken twice finds nothing due the second time).
  for (MultiplexSession* s : woken) s->onRedirectTimer();
  for (Retry& r : due) {
    if (r.request->owner == nullptr) {
      // The client is gone: nothing to retry for.
      deliverFailure(worker_.requestPool(), r.request, r.part, "", false);
      continue;
    }
    ShardLink* to = linkTo(*r.db, r.address, -1);
    if (to == nullptr) {
      answer(r.request, r.part, r.reply);
      continue;
    }
    resend(*r.db, *to, r.frame, r.request, r.part, false);
  }
  if (!retries_.empty() || !wakes_.empty()) armTimer();
  // Written before the loop blocks again (the worker's prepare-phase flush).
}

}  // namespace shardgate::proxy
