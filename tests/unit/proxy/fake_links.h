// Fakes for driving a MultiplexSession with bytes: shard links that record
// what was sent and answer when the test says so, a link factory that hands
// them out per shard map, and a reply sink that collects the client's bytes.
// No sockets, no event loop.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "proxy/database.h"
#include "proxy/link_factory.h"
#include "proxy/multiplex_session.h"
#include "proxy/reply_sink.h"
#include "proxy/shard_link.h"
#include "proxy/shard_map.h"
#include "proxy/shard_map_source.h"
#include "redis/command_route.h"
#include "redis/command_table.h"

namespace shardgate::proxy::testing {

class FakeLinks;

// One shard connection. What the session sends is kept in `sent` (frames in
// order, send() and sendUnmatched() alike); reply() answers the oldest part
// waiting, as a shard answers in order, or -- none waiting -- reaches the
// push target as BackendLink passes pub/sub frames on.
class FakeLink final : public ShardLink {
 public:
  FakeLink(FakeLinks& host, uint16_t shard, std::string address, MultiplexSession* owner);
  ~FakeLink() override;

  const std::string& address() const override { return address_; }
  const std::string& failure() const override { return failure_; }
  void send(std::string_view frame, Request* r, uint16_t part) override {
    sent.emplace_back(frame);
    waiting_.push_back(Pending{r, part});
  }
  void sendUnmatched(std::string_view frame) override { sent.emplace_back(frame); }
  void expectDropped() override { waiting_.push_back(Pending{nullptr, 0}); }
  void setPushTarget(MultiplexSession* s) override { push_to_ = s; }
  void setOutOfBandPushes(bool on) override { oob_pushes_ = on; }
  bool idle() const override { return waiting_.empty(); }
  uint64_t lastUsedMs() const override { return 0; }
  bool open() const override { return true; }
  void closeWrite() override { write_closed_ = true; }
  bool writeClosed() const override { return write_closed_; }

  // Carried over to a new map's set, where its endpoint is shard `shard`.
  void rebind(uint16_t shard) { shard_ = shard; }
  // One whole reply frame from the shard.
  void reply(std::string_view bytes);
  // The connection is lost: every waiting part gets the error line a
  // BackendLink gives; a shared link stays down (available() false) until
  // recover(), a private one tells its owner.
  void fail(const std::string& why);
  void recover() { failing_ = false; }
  size_t waiting() const { return waiting_.size(); }

  std::vector<std::string> sent;

 private:
  bool failWaiting(const std::string& why);  // true if a part was waiting

  struct Pending {
    Request* request;
    uint16_t part;
  };
  FakeLinks& host_;
  std::string address_;
  std::string failure_;
  MultiplexSession* owner_;  // private links only
  MultiplexSession* push_to_ = nullptr;
  bool oob_pushes_ = false;
  bool write_closed_ = false;
  std::deque<Pending> waiting_;
};

// The worker's part: shared links per shard map, private links on demand.
class FakeLinks final : public LinkFactory {
 public:
  SharedLinks& sharedLinks(const Database& db) override {
    if (!shared_.current) refreshSharedLinks(db, shared_);
    return shared_;
  }
  void refreshSharedLinks(const Database& db, SharedLinks& links) override {
    const uint64_t generation = db.shard_map->generation();
    auto map = db.shard_map->current();
    auto set = carryOverLinks(
        links.current.get(), map,
        [&](uint16_t shard) { return std::make_shared<FakeLink>(*this, shard, map->shard(shard).address, nullptr); },
        [](ShardLink& link, uint16_t shard) { static_cast<FakeLink&>(link).rebind(shard); });
    if (links.current) retired.push_back(links.current);
    links.current = std::move(set);
    links.generation = generation;
  }
  std::unique_ptr<ShardLink> openPrivateLink(const Database&, std::shared_ptr<const ShardMap> map,
                                             uint16_t shard, MultiplexSession* owner) override {
    ++private_opened;
    return std::make_unique<FakeLink>(*this, shard, map->shard(shard).address, owner);
  }
  RequestPool& requestPool() override { return pool; }
  ByteBuffer& frameScratch() override { return frame_scratch_; }
  ByteBuffer& replyScratch() override { return reply_scratch_; }
  std::vector<int>& intScratch() override { return ints_; }
  const Stats& stats() const override { return stats_; }
  // One database's counters (index 0: the rig's database); the clock is
  // the test's to set.
  DbStats& dbStats(const Database& db) override { return stats_.db(db.index); }
  uint64_t refreshClock() override { return clock_us; }
  uint64_t clockUs() const override { return clock_us; }
  const DbStats& db0() const { return stats_.db(0); }
  uint64_t clock_us = 0;

  // Shard i's shared link of the current map.
  FakeLink& shared(size_t i) { return static_cast<FakeLink&>(*shared_.current->links[i]); }
  // The session's live private link to shard i, or nullptr.
  FakeLink* privateLink(uint16_t shard) {
    for (FakeLink* l : live_private) {
      if (l->shard() == shard) return l;
    }
    return nullptr;
  }

  RequestPool pool;
  std::vector<FakeLink*> live_private;
  std::vector<std::shared_ptr<SharedLinkSet>> retired;  // replaced maps' links
  size_t private_opened = 0;

 private:
  SharedLinks shared_;
  ByteBuffer frame_scratch_;
  ByteBuffer reply_scratch_;
  std::vector<int> ints_;
  Stats stats_{1};
};

// The client connection's part: the bytes the client would read.
class FakeClient final : public ReplySink {
 public:
  // What a flush of the client connection writes: the session resumes what
  // it held back, then the buffered replies go out (as often as that makes
  // more ready, as the worker's flush list does over loop turns).
  std::string flush(MultiplexSession& session) {
    std::string out;
    for (int turn = 0; turn < 16; ++turn) {
      dirty = false;
      session.resume();
      out.append(reply_out_.view());
      reply_out_.clear();
      if (!dirty) break;
    }
    return out;
  }

 protected:
  void lendReplyBuffer(ByteBuffer&) override {}
  void onReplyReady() override { dirty = true; }
};

inline FakeLink::FakeLink(FakeLinks& host, uint16_t shard, std::string address,
                          MultiplexSession* owner)
    : ShardLink(shard), host_(host), address_(std::move(address)), owner_(owner) {
  if (owner_) host_.live_private.push_back(this);
}

inline FakeLink::~FakeLink() {
  // As BackendLink's: what waits gets its error; the owner is not told.
  std::erase(host_.live_private, this);
  failWaiting("the connection was closed");
}

inline void FakeLink::reply(std::string_view bytes) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (waiting_.empty()) {
    if (push_to_) push_to_->onPush(*this, data, bytes.size(), true);
    return;
  }
  Pending p = waiting_.front();
  waiting_.pop_front();
  if (p.request) deliverReply(host_.pool, p.request, p.part, data, bytes.size(), true);
}

inline bool FakeLink::failWaiting(const std::string& why) {
  failure_ = why;
  std::deque<Pending> waiting;
  waiting.swap(waiting_);
  const std::string line = "-ERR shard " + address_ + " unavailable: " + why + "\r\n";
  for (const Pending& p : waiting) {
    if (p.request) deliverFailure(host_.pool, p.request, p.part, line, false);
  }
  return !waiting.empty();
}

inline void FakeLink::fail(const std::string& why) {
  failWaiting(why);
  if (owner_) {
    owner_->onPrivateLinkLost(*this);
  } else {
    failing_ = true;
  }
}

// A map of `shards` shards named 10.0.<map>.<i>:6379, slots split evenly.
inline std::shared_ptr<const ShardMap> evenMap(size_t shards, int map_id = 0) {
  std::vector<ShardEndpoint> endpoints;
  for (size_t i = 0; i < shards; ++i) {
    endpoints.push_back(
        ShardEndpoint{"10.0." + std::to_string(map_id) + "." + std::to_string(i) + ":6379", {}, nullptr});
  }
  ShardMap::SlotOwners owners{};
  for (size_t slot = 0; slot < owners.size(); ++slot) {
    owners[slot] = static_cast<uint16_t>(slot * shards / owners.size());
  }
  return *ShardMap::create(std::move(endpoints), owners);
}

inline Database testDatabase(size_t shards) {
  Database db;
  db.name = "db1";
  db.listen = "127.0.0.1:6380";
  db.multiplex = true;
  db.shard_map = std::make_shared<ShardMapSource>(evenMap(shards));
  // The config's defaults, as makeDatabase copies them.
  const config::LimitsConfig limits;
  db.limits = limits.requestLimits();
  db.shard_timeout_ms = limits.shard_timeout_ms;
  db.max_client_output = limits.max_client_output;
  db.private_idle_ms = limits.private_idle_ms;
  redis::CommandTable table = redis::CommandTable::builtin();
  redis::annotateRoutes(table);
  db.commands = std::make_shared<const redis::CommandTable>(std::move(table));
  return db;
}

// A key of the given shard ("<prefix><n>", the first such n).
inline std::string keyOn(const ShardMap& map, size_t shard, std::string_view prefix = "k") {
  for (int n = 0;; ++n) {
    std::string key = std::string(prefix) + std::to_string(n);
    if (map.shardOfKey(key) == shard) return key;
  }
}

inline std::string bulk(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}

// A RESP command as a client sends it.
inline std::string command(std::initializer_list<std::string_view> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (std::string_view a : args) out += bulk(a);
  return out;
}

// A session of one client on `db`, with its fakes.
struct SessionRig {
  explicit SessionRig(const Database& database) : db(database), session(links, db, client) {}

  void send(std::string_view bytes) {
    session.onBytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::string out() { return client.flush(session); }

  const Database& db;
  FakeLinks links;
  FakeClient client;
  MultiplexSession session;
};

}  // namespace shardgate::proxy::testing
