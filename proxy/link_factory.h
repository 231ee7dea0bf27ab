// LinkFactory: what a multiplexed session needs from its worker -- the
// worker's shared links to each shard, private links opened on demand, the
// request pool and scratch buffers it reuses instead of allocating per
// command, and the counters INFO reports. Worker is the real one; tests give
// fake links and no loop. A session calls it once at its start, once per
// pipeline batch (the generation check, a plain compare, and the batch
// clock), and when it opens a private link; never once per command.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/byte_buffer.h"
#include "proxy/request.h"
#include "proxy/shard_link.h"
#include "proxy/shard_map.h"
#include "proxy/stats.h"

namespace shardgate::proxy {

struct Database;
class MultiplexSession;

// One shard map's shared links: links[i] goes to map->endpoint(i) (the
// shards, then their replicas when the map lists any). Sessions
// hold the set they route by; a set replaced by a newer map's stays alive
// while a session holds it or a request waits on one of its links. A link
// to an endpoint both maps have is in both sets (the connection carries on
// across the change), hence shared ownership.
struct SharedLinkSet {
  std::shared_ptr<const ShardMap> map;
  std::vector<std::shared_ptr<ShardLink>> links;
  // read_from replica_preferred: the next pick among a shard's replicas
  // (round robin, this worker's alone).
  uint32_t next_replica = 0;
};

// The shared link set for `map`, after `old` (null: none yet): the link of
// every endpoint (address) both maps have is carried over -- rebind(link,
// shard) gives it its place in the new map -- and make(shard) opens the
// others. A reshard moves slots, not connections. One rule for the worker
// and for the tests' fake factory.
template <typename Make, typename Rebind>
std::shared_ptr<SharedLinkSet> carryOverLinks(const SharedLinkSet* old, std::shared_ptr<const ShardMap> map,
                                              Make&& make, Rebind&& rebind) {
  auto set = std::make_shared<SharedLinkSet>();
  set->map = std::move(map);
  for (size_t s = 0; s < set->map->endpointCount(); ++s) {
    const auto shard = static_cast<uint16_t>(s);
    std::shared_ptr<ShardLink> link;
    for (size_t o = 0; old != nullptr && o < old->map->endpointCount(); ++o) {
      if (old->map->endpoint(o).address == set->map->endpoint(s).address) {
        link = old->links[o];
        rebind(*link, shard);
        break;
      }
    }
    if (!link) link = make(shard);
    set->links.push_back(std::move(link));
  }
  return set;
}

// A worker's shared links of one database: the set made for the map of
// `generation` (ShardMapSource::generation()).
struct SharedLinks {
  uint64_t generation = 0;
  std::shared_ptr<SharedLinkSet> current;
};

class LinkFactory {
 public:
  // db's entry, made on first use for db's current map; its address is stable.
  virtual SharedLinks& sharedLinks(const Database& db) = 0;
  // db's map has a newer generation than links.generation: links for it,
  // reusing the current set's link to every endpoint the new map keeps.
  virtual void refreshSharedLinks(const Database& db, SharedLinks& links) = 0;
  // A connection of the session's own to shard `shard` of `map`.
  virtual std::unique_ptr<ShardLink> openPrivateLink(const Database& db,
                                                     std::shared_ptr<const ShardMap> map,
                                                     uint16_t shard, MultiplexSession* owner) = 0;
  // A cluster database's node named by a redirect, on a connection of the
  // session's own whose shard() is `position` (past the session's map's
  // shards). Null: the address cannot be used.
  virtual std::unique_ptr<ShardLink> openNodeLink(const Database& db, const std::string& address,
                                                  uint16_t position, MultiplexSession* owner) {
    (void)db, (void)address, (void)position, (void)owner;
    return nullptr;
  }
  // A MOVED seen on a session's own connection: the worker routes the slot
  // to `address` from now on and asks for a topology refresh.
  virtual void noteMoved(const Database& db, const std::string& address, uint16_t slot) {
    (void)db, (void)address, (void)slot;
  }
  // session->onRedirectTimer() after ms; cancelled when the session ends.
  virtual void wakeLater(MultiplexSession* session, uint64_t ms) { (void)session, (void)ms; }
  virtual void cancelWake(MultiplexSession* session) { (void)session; }
  virtual RequestPool& requestPool() = 0;
  // Scratch space for building one command or one reply at a time.
  virtual ByteBuffer& frameScratch() = 0;
  virtual ByteBuffer& replyScratch() = 0;
  virtual std::vector<int>& intScratch() = 0;
  virtual const Stats& stats() const = 0;
  // This worker's counters of one database (written on its thread only).
  virtual DbStats& dbStats(const Database& db) = 0;
  // A microsecond clock read once per batch of input (a client's read, a
  // shard's read), not once per request: refreshClock() reads it and
  // returns the new value; clockUs() is the last value read.
  virtual uint64_t refreshClock() = 0;
  virtual uint64_t clockUs() const = 0;

 protected:
  LinkFactory() = default;
  ~LinkFactory() = default;
  LinkFactory(const LinkFactory&) = delete;
  LinkFactory& operator=(const LinkFactory&) = delete;
};

}  // namespace shardgate::proxy
