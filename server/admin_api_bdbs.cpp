// GET /v1/bdbs: the databases this shardgate serves, as configured and as
// running, as a JSON array (the shape of Redis Enterprise's GET /v1/bdbs).
// Connections and shard states are summed over the workers' counters at
// the time of the request, as the metrics endpoint does.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>

#include "server/admin_api.h"
#include "server/admin_json.h"

namespace shardgate::server {

using json = nlohmann::json;

namespace {

const char* clientAuthName(config::ClientAuth a) {
  switch (a) {
    case config::ClientAuth::kNone: return "none";
    case config::ClientAuth::kOptional: return "optional";
    case config::ClientAuth::kRequired: return "required";
  }
  return "none";
}

std::string slotText(const std::vector<config::SlotRange>& ranges) {
  if (ranges.empty()) return "0-16383";
  std::string out;
  for (const auto& r : ranges) {
    if (!out.empty()) out += ",";
    out += r.first == r.last ? std::to_string(r.first) : std::to_string(r.first) + "-" + std::to_string(r.last);
  }
  return out;
}

// A cluster database's shard `shard` as its current map has it: the slots
// it owns now, which change as the cluster is resharded.
std::vector<config::SlotRange> slotsOfShard(const proxy::ShardMap& map, size_t shard) {
  std::vector<config::SlotRange> out;
  for (unsigned slot = 0; slot < static_cast<unsigned>(config::kSlotCount); ++slot) {
    if (map.shardOfSlot(static_cast<uint16_t>(slot)) != shard) continue;
    if (!out.empty() && out.back().last + 1u == slot) {
      out.back().last = static_cast<uint16_t>(slot);
    } else {
      out.push_back({static_cast<uint16_t>(slot), static_cast<uint16_t>(slot)});
    }
  }
  return out;
}

std::string isoTimeMs(uint64_t unix_ms) {
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A shard is down while any worker's connection to it is failing, since
// the earliest of those failures; up otherwise, since the last worker's
// recovery (or the start, if it never failed).
json shardState(const std::vector<const proxy::Stats*>& workers, size_t db, size_t shard, uint64_t started_ms) {
  uint64_t down_since = 0, up_since = started_ms;
  for (const proxy::Stats* w : workers) {
    const proxy::ShardStats& s = w->db(db).shard(shard);
    const uint64_t changed = s.down_changed_ms.get();
    if (s.down.get() != 0) {
      down_since = down_since == 0 ? changed : std::min(down_since, changed);
    } else {
      up_since = std::max(up_since, changed);
    }
  }
  const bool down = down_since != 0;
  return {{"state", down ? "down" : "up"}, {"since", isoTimeMs(down ? down_since : up_since)}};
}

}  // namespace

http::Response AdminApi::getBdbs() {
  const config::Config& config = host_.config();
  const auto& dbs = host_.databases();
  const auto workers = host_.workerStats();
  json list = json::array();
  for (size_t i = 0; i < dbs.size() && i < config.databases.size(); ++i) {
    const proxy::Database& db = *dbs[i];
    const config::DatabaseConfig& dc = config.databases[i];
    json tls_policy = {{"tls", db.tls}};
    if (db.tls) {
      tls_policy["min_version"] = tls::toString(config.tls.policy.min_version);
      tls_policy["client_auth"] = clientAuthName(dc.client_auth);
    }
    json shards = json::array();
    if (db.cluster) {
      const auto map = db.shard_map->current();
      for (size_t s = 0; s < map->shardCount(); ++s) {
        const auto owned = slotsOfShard(*map, s);
        json shard = {{"address", map->shard(s).address}, {"slots", owned.empty() ? "" : slotText(owned)}};
        shard.update(shardState(workers, db.index, std::min(s, proxy::kMaxShardStats - 1), host_.startedUnixMs()));
        shards.push_back(std::move(shard));
      }
    }
    for (size_t s = 0; s < dc.shards.size(); ++s) {
      json shard = {{"address", dc.shards[s].address.toString()},
                    {"slots", slotText(dc.shards[s].slots)},
                    {"tls", dc.shards[s].tls.tls}};
      shard.update(shardState(workers, db.index, std::min(s, proxy::kMaxShardStats - 1), host_.startedUnixMs()));
      shards.push_back(std::move(shard));
    }
    int64_t connections = 0;  // each worker's count is read at its own instant
    for (const proxy::Stats* w : workers) connections += static_cast<int64_t>(w->db(db.index).current.get());
    list.push_back({
        {"uid", i + 1},
        {"name", db.name},
        {"endpoint", db.listen},
        {"tls", tls_policy},
        {"mode", db.cluster ? "cluster" : dc.shards.size() > 1 ? "routed" : db.multiplex ? "multiplexed" : "transparent"},
        {"auth_required", db.password.has_value()},
        {"shards", shards},
        {"connections", std::max<int64_t>(connections, 0)},
    });
    // A cluster database: where its reads go (cluster.read_from).
    if (dc.cluster) list.back()["read_from"] = config::readFromName(dc.cluster->read_from);
  }
  return jsonResponse(200, dumpJson(list));
}

}  // namespace shardgate::server
