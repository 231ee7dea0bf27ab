#include "proxy/database.h"

#include <cstring>

namespace shardgate::proxy {

Result<Database> makeDatabase(const config::DatabaseConfig& config, const config::LimitsConfig& limits,
                              size_t index) {
  Database db;
  db.index = index;
  db.name = config.name;
  db.listen = config.listen.toString();
  db.tls = config.tls;
  db.password = config.password;
  db.shard_password = config.shard_password;
  db.multiplex = config.multiplex;
  db.client_auth = config.client_auth;
  if (auto allow = tls::ClientAllowList::create(config.client_allow); !allow) {
    return makeError("databases[" + std::to_string(index) + "].client_allow" + allow.message());
  } else {
    db.client_allow = std::move(*allow);
  }
  db.limits = limits.requestLimits();
  db.shard_timeout_ms = limits.shard_timeout_ms;
  db.max_client_output = limits.max_client_output;
  db.private_idle_ms = limits.private_idle_ms;
  if (config.cluster) {
    db.cluster = true;
    db.cluster_refresh_ms = config.cluster->refresh_interval_ms;
    db.replica_reads = config.cluster->read_from == config::ReadFrom::kReplicaPreferred;
    db.cluster_shown_masters = config.cluster->shown_masters;
    if (config.shard_tls.tls) {
      // The contexts every node's connections use (nodeTls); no name of its own.
      db.shard_tls = std::make_shared<ShardTls>();
      db.shard_tls->verify_name = config.shard_tls.server_name;
      db.shard_tls->config = config.shard_tls;
    }
    for (size_t i = 0; i < config.cluster->seeds.size(); ++i) {
      ShardEndpoint seed;
      seed.address = config.cluster->seeds[i].toString();
      auto addr = net::toSockaddr(config.cluster->seeds[i]);
      if (!addr) {
        return makeError("databases[" + std::to_string(index) + "].cluster.seeds[" + std::to_string(i) +
                         "]: " + addr.message());
      }
      seed.addr = *addr;
      seed.tls = nodeTls(db.shard_tls, config.cluster->seeds[i].host);
      db.cluster_seeds.push_back(std::move(seed));
    }
    return db;
  }
  ShardMap::SlotOwners owners{};
  std::vector<ShardEndpoint> shards;
  for (size_t i = 0; i < config.shards.size(); ++i) {
    ShardEndpoint shard;
    shard.address = config.shards[i].address.toString();
    auto addr = net::toSockaddr(config.shards[i].address);
    if (!addr) {
      return makeError("databases[" + std::to_string(index) + "].shards[" + std::to_string(i) +
                       "].address: " + addr.message());
    }
    shard.addr = *addr;
    if (const config::ShardTlsConfig& t = config.shards[i].tls; t.tls) {
      shard.tls = std::make_shared<ShardTls>();
      shard.tls->verify_name = t.server_name.empty() ? config.shards[i].address.host : t.server_name;
      shard.tls->config = t;
    }
    for (const config::SlotRange& r : config.shards[i].slots) {
      for (unsigned s = r.first; s <= r.last; ++s) owners[s] = static_cast<uint16_t>(i);
    }
    shards.push_back(std::move(shard));
  }
  db.shard = shards[0].address;
  db.shard_addr = shards[0].addr;
  db.shard_tls = shards[0].tls;
  auto map = ShardMap::create(std::move(shards), owners);
  if (!map) return makeError("databases[" + std::to_string(index) + "].shards: " + map.message());
  db.shard_map = std::make_shared<ShardMapSource>(std::move(*map));
  return db;
}

}  // namespace shardgate::proxy
