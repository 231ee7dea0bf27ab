// Config: the whole YAML configuration as one struct. Every
// key has its default here and nowhere else (the TLS policy's are the
// tls::TlsPolicy this struct holds); the structs the proxy builds from it
// (Database, WorkerSettings, redis::RespLimits) take their values from a
// Config and restate none. parseConfig() is the one validator, and
// --check-config runs exactly it. Errors name the key, its line in the file,
// and what was expected.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "tls/tls_context.h"
#include "tls/tls_version.h"
#include "net/socket_address.h"
#include "redis/hash_slot.h"
#include "redis/resp_limits.h"

namespace shardgate::config {

inline constexpr int kSlotCount = redis::kHashSlots;

struct SlotRange {
  uint16_t first = 0;
  uint16_t last = 0;  // inclusive

  bool operator==(const SlotRange&) const = default;
};

// TLS from shardgate to a shard: a database's shard_tls, or one shard's
// settings with its overrides applied (ShardConfig::tls, what connections
// use). Files: a name in cert_dir or an absolute path, read by the server.
struct ShardTlsConfig {
  bool tls = false;          // shard_tls given: true unless it says tls: false
  std::string ca;            // required when tls is on: the shard's certificate must chain to it
  std::string cert;          // optional client certificate and key, both or neither
  std::string key;
  // Sent as SNI and checked in the shard's certificate (DNS SAN / CN);
  // empty: the certificate must carry the shard's IP address (IP SAN).
  std::string server_name;
  // min_version ("1.2" or "1.3"), ciphers and ciphersuites; the rest unused.
  tls::TlsPolicy policy;
  // The key each file was given under ("databases[0].shards[1].cert"), so
  // errors about the file name the key the operator wrote.
  std::string ca_key;
  std::string cert_key;
  std::string key_key;

  bool operator==(const ShardTlsConfig&) const = default;
};

struct ShardConfig {
  net::SocketAddress address;
  std::vector<SlotRange> slots;  // one shard without `slots`: 0-16383
  ShardTlsConfig tls;            // the database's shard_tls with this shard's overrides

  bool operator==(const ShardConfig&) const = default;
};

enum class ClientAuth { kNone, kOptional, kRequired };

// A database in front of a Redis Cluster: the slots and masters are learnt
// from the nodes (CLUSTER SHARDS, or CLUSTER SLOTS on an older Redis) and
// followed as they change, instead of a `shards` list.
// Where a cluster database's reads go: `primary`, each slot's master (as a
// cluster client does by default); `replica_preferred`, a replica of that
// master when one is usable, the master otherwise.
enum class ReadFrom : uint8_t { kPrimary, kReplicaPreferred };
const char* readFromName(ReadFrom r);

struct ClusterConfig {
  // Asked in turn at start; later, the nodes last seen, then these again.
  std::vector<net::SocketAddress> seeds;
  // How often the topology is read again in steady state.
  uint32_t refresh_interval_ms = 10000;
  static constexpr uint32_t kMinRefreshIntervalMs = 100;
  static constexpr uint32_t kMaxRefreshIntervalMs = 3600 * 1000;
  ReadFrom read_from = ReadFrom::kPrimary;
  // How many masters CLUSTER SLOTS / SHARDS / NODES show a cluster-aware
  // client, every one of them this endpoint. One is the truth;
  // redis-benchmark --cluster refuses fewer than two.
  uint16_t shown_masters = 1;
  static constexpr uint16_t kMaxShownMasters = 64;

  bool operator==(const ClusterConfig&) const = default;
};

struct DatabaseConfig {
  std::string name;
  net::SocketAddress listen;
  bool tls = true;
  ClientAuth client_auth = ClientAuth::kNone;
  // With client_auth: the CA bundle its clients' certificates must chain to
  // (empty: cert_dir's mtls_trusted_ca.pem), CRLs checked on each handshake
  // (empty: none), and the names a client certificate must carry (empty: any
  // certificate from the CAs). Files: a name in cert_dir or an absolute path.
  std::string client_ca;
  std::string client_crl;
  std::vector<std::string> client_allow;
  // Several shards only: clients must AUTH with it before any command.
  std::optional<std::string> password;
  // What shardgate's own shard connections AUTH with (a multiplexed database:
  // several shards, a password or multiplex; plain forwarding passes the
  // client's own AUTH untouched).
  std::optional<std::string> shard_password;
  // One shard: share a few pipelined shard connections among all clients
  // (the multiplexed path) instead of forwarding each client's bytes over a
  // connection of its own. Several shards or a password always multiplex.
  bool multiplex = false;
  // shard_tls as written (the default of every shard); each shard's resolved
  // settings are in shards[i].tls. For a cluster database it applies to every
  // discovered node.
  ShardTlsConfig shard_tls;
  // Exactly one of the two: the shards and their slots, or a Redis Cluster
  // to discover (shards then stays empty; always multiplexed).
  std::vector<ShardConfig> shards;
  std::optional<ClusterConfig> cluster;
};

struct TlsConfig {
  tls::TlsPolicy policy;
  uint32_t handshake_timeout_ms = 10000;
};

// Protocol limits of a multiplexed database, as redis-server's
// proto-max-bulk-len and its argument cap: beyond them a request is answered
// with Redis's protocol error and the connection closed.
struct LimitsConfig {
  uint64_t max_bulk_len = 512ull * 1024 * 1024;
  uint64_t max_args = 1024 * 1024;
  // A shared shard connection with a request unanswered this long is failed
  // (its requests get an error); blocking commands use private links and
  // are not timed.
  uint64_t shard_timeout_ms = 10000;
  // Replies one client may have waiting in the proxy (not read yet, or
  // behind an earlier slow one) before it is disconnected, as Redis's
  // client-output-buffer-limit.
  uint64_t max_client_output = 256ull << 20;
  // A client's own shard connection (opened for a blocking command, say)
  // idle this long, holding no MULTI/WATCH/pub/sub/tracking state, is closed.
  uint64_t private_idle_ms = 30000;
  // Not a key: the longest inline command line, Redis's PROTO_INLINE_MAX_SIZE,
  // which redis-server does not let an operator change either.
  static constexpr uint64_t kMaxInlineLen = 64 * 1024;

  // The request decoder's share of these limits.
  redis::RespLimits requestLimits() const {
    return redis::RespLimits{static_cast<size_t>(max_bulk_len), static_cast<size_t>(max_args),
                             static_cast<size_t>(kMaxInlineLen)};
  }
};

// A user of the admin API: HTTP basic auth checks the password against
// password_hash (printed by `shardgate --hash-password`; never the password).
struct AdminUser {
  std::string name;
  std::string password_hash;

  bool operator==(const AdminUser&) const = default;
};

// The admin API's bounds; its address is Config::admin_listen.
struct AdminConfig {
  std::vector<AdminUser> users;
  uint32_t max_connections = 32;
  // The whole request (headers and body) must arrive within this long.
  uint32_t request_timeout_ms = 10000;
  uint32_t max_body_bytes = 1024 * 1024;

  bool operator==(const AdminConfig&) const = default;
};

struct Config {
  unsigned workers = 0;  // 0 = auto: one per core
  std::string log_level = "info";
  std::string cert_dir = "./certs";  // made absolute, relative to the config file
  bool generate_self_signed = true;
  TlsConfig tls;
  std::vector<DatabaseConfig> databases;
  std::optional<net::SocketAddress> admin_listen;
  AdminConfig admin;
  std::optional<net::SocketAddress> metrics_listen;
  bool metrics_tls = true;  // metrics.tls: false serves plain HTTP
  uint32_t drain_timeout_ms = 10000;  // SIGTERM: how long connections may finish
  LimitsConfig limits;
  // Running as a service. Paths are made absolute, relative to the config
  // file; "" = none.
  std::string pid_file;  // written once the listeners are up, removed at exit
  std::string log_file;  // "" logs to stderr; reopened on SIGUSR1 (logrotate)

  std::string source;  // the file it came from
  // Where each key given in the file was: its path ("databases[0].listen")
  // and line, so checks made after parsing (is the key built? does cert_dir
  // hold a servable pair?) name the line as the parser's own errors do.
  std::vector<std::pair<std::string, int>> key_lines;

  unsigned effectiveWorkers() const;  // resolves auto
  // "FILE:LINE: " for a key path: the line of the key, else of its nearest
  // given parent; line 1 for a key left at its default.
  std::string where(std::string_view key_path) const;
};

// Parses and validates YAML text. base_dir resolves a relative cert_dir;
// source names the file in messages ("conf/shardgate.yaml:12: ...").
Result<Config> parseConfig(std::string_view yaml_text, std::string_view source,
                           std::string_view base_dir);

// Reads and parses a file; a missing or unreadable file is an error naming it.
Result<Config> loadConfig(const std::string& path);

}  // namespace shardgate::config
