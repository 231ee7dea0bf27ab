// Database: what a worker needs to serve one `databases` entry, resolved once
// at startup and shared read-only by every worker.
//
// A database with one shard and no password is "transparent" unless it asks
// for `multiplex`: its bytes are forwarded untouched over one shard
// connection per client (every command works, MULTI and pub/sub included).
// With several shards, a password the proxy must check, or `multiplex`, it is
// "multiplexed": each command is parsed and sent to the shard owning its key's
// slot over pipelined connections shared by all the worker's clients.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "redis/command_table.h"
#include "config/config.h"
#include "proxy/cluster_refresh.h"
#include "proxy/shard_map.h"
#include "proxy/shard_map_source.h"
#include "redis/resp_limits.h"
#include "tls/client_identity.h"
#include "tls/tls_context_store.h"

namespace shardgate::proxy {

// Built by makeDatabase from the config: no field restates a config default
// (zero means "not set yet").
struct Database {
  // Its position in the config's databases list: where each worker keeps
  // its counters (Stats::db).
  size_t index = 0;
  std::string name;
  std::string listen;        // "127.0.0.1:6380"
  bool tls = false;
  bool multiplex = false;
  std::string shard;         // shards[0].address: the transparent path's one shard
  sockaddr_storage shard_addr{};
  // shards[0]'s TLS (null: plaintext), the transparent path's; a cluster
  // database's shard_tls, whose contexts every node's connections use.
  std::shared_ptr<ShardTls> shard_tls;
  // The shards and which slots each owns. Replaceable at run time: the
  // multiplexed path routes each pipeline batch by the map current then.
  // A cluster database's first map comes from discovery (the server sets
  // it before the workers start; null until then).
  std::shared_ptr<ShardMapSource> shard_map;
  // A Redis Cluster behind this database (config `cluster`): its seeds and
  // how often its topology is read again. Its clients see one node owning
  // every slot (CLUSTER SLOTS/SHARDS/NODES/INFO).
  bool cluster = false;
  std::vector<ShardEndpoint> cluster_seeds;
  uint32_t cluster_refresh_ms = 0;
  // cluster.read_from replica_preferred: readonly commands of clients in no
  // stateful mode go to a replica of their slot's master (the map lists the
  // replicas only then).
  bool replica_reads = false;
  uint16_t cluster_shown_masters = 1;  // config cluster.shown_masters
  // The cluster monitor, set by the server before the workers start: a
  // MOVED or a failed node connection asks it for a refresh.
  ClusterRefresh* cluster_refresh = nullptr;
  std::optional<std::string> password;
  std::optional<std::string> shard_password;
  // client_auth optional or required: its clients' certificates are
  // verified by a context of its own (tls_store, set by the server before
  // workers start; null: the proxy certificate's shared contexts), and a
  // verified certificate must match client_allow when it is not empty.
  config::ClientAuth client_auth = config::ClientAuth::kNone;
  tls::ClientAllowList client_allow;
  tls::TlsContextStore* tls_store = nullptr;
  redis::RespLimits limits{};
  uint64_t shard_timeout_ms = 0;   // limits.shard_timeout_ms
  uint64_t max_client_output = 0;  // limits.max_client_output
  uint64_t private_idle_ms = 0;    // limits.private_idle_ms
  // Set by the server before workers start (multiplexed only): from a shard's
  // COMMAND reply, or the built-in table when no shard answered.
  std::shared_ptr<const redis::CommandTable> commands;
  // From the same shard: how many databases SELECT may choose from (its
  // `databases` setting), and its version, which HELLO reports.
  uint64_t shard_databases = 16;
  std::string shard_version = "7.0.0";
};

// Resolves the shard addresses and the slot map.
Result<Database> makeDatabase(const config::DatabaseConfig& config, const config::LimitsConfig& limits,
                              size_t index);

}  // namespace shardgate::proxy
