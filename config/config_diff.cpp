#include "config/config_diff.h"

namespace shardgate::config {
namespace {

bool sameListen(const net::SocketAddress& before, const net::SocketAddress& after) {
  return before.host == after.host && (before.port == after.port || after.port == 0);
}

bool sameOptionalListen(const std::optional<net::SocketAddress>& before,
                        const std::optional<net::SocketAddress>& after) {
  if (before.has_value() != after.has_value()) return false;
  return !before || sameListen(*before, *after);
}

}  // namespace

std::vector<ConfigChange> diffConfigs(const Config& before, const Config& after) {
  std::vector<ConfigChange> out;
  auto changed = [&out](bool same, std::string key, bool needs_restart) {
    if (!same) out.push_back(ConfigChange{std::move(key), needs_restart});
  };
  changed(before.workers == after.workers, "workers", true);
  changed(before.log_level == after.log_level, "log_level", false);
  changed(before.cert_dir == after.cert_dir, "cert_dir", true);
  changed(before.generate_self_signed == after.generate_self_signed, "generate_self_signed", true);
  changed(before.tls.policy == after.tls.policy, "tls", false);
  changed(before.tls.handshake_timeout_ms == after.tls.handshake_timeout_ms,
          "tls.handshake_timeout_ms", true);
  if (before.databases.size() != after.databases.size()) {
    changed(false, "databases", true);
  } else {
    for (size_t i = 0; i < before.databases.size(); ++i) {
      const DatabaseConfig& a = before.databases[i];
      const DatabaseConfig& b = after.databases[i];
      const std::string at = "databases[" + std::to_string(i) + "].";
      changed(a.name == b.name, at + "name", true);
      changed(sameListen(a.listen, b.listen), at + "listen", true);
      changed(a.tls == b.tls, at + "tls", true);
      changed(a.client_auth == b.client_auth, at + "client_auth", true);
      // The files' contents reload live (certificate store); which files, and
      // the allow-list, are fixed at the start like the rest of a database.
      changed(a.client_ca == b.client_ca, at + "client_ca", true);
      changed(a.client_crl == b.client_crl, at + "client_crl", true);
      changed(a.client_allow == b.client_allow, at + "client_allow", true);
      changed(a.password == b.password, at + "password", true);
      changed(a.shard_password == b.shard_password, at + "shard_password", true);
      changed(a.multiplex == b.multiplex, at + "multiplex", true);
      changed(a.shards == b.shards, at + "shards", true);
      changed(a.cluster == b.cluster, at + "cluster", true);
    }
  }
  changed(sameOptionalListen(before.admin_listen, after.admin_listen), "admin.listen", true);
  changed(before.admin.users == after.admin.users, "admin.users", false);
  changed(before.admin.max_connections == after.admin.max_connections, "admin.max_connections", true);
  changed(before.admin.request_timeout_ms == after.admin.request_timeout_ms, "admin.request_timeout_ms", true);
  changed(before.admin.max_body_bytes == after.admin.max_body_bytes, "admin.max_body_bytes", true);
  changed(sameOptionalListen(before.metrics_listen, after.metrics_listen), "metrics.listen", true);
  changed(before.metrics_tls == after.metrics_tls, "metrics.tls", true);
  changed(before.drain_timeout_ms == after.drain_timeout_ms, "drain_timeout_ms", true);
  changed(before.pid_file == after.pid_file, "pid_file", true);
  changed(before.log_file == after.log_file, "log_file", true);
  const LimitsConfig& a = before.limits;
  const LimitsConfig& b = after.limits;
  changed(a.max_bulk_len == b.max_bulk_len, "limits.max_bulk_len", true);
  changed(a.max_args == b.max_args, "limits.max_args", true);
  changed(a.shard_timeout_ms == b.shard_timeout_ms, "limits.shard_timeout_ms", true);
  changed(a.max_client_output == b.max_client_output, "limits.max_client_output", true);
  changed(a.private_idle_ms == b.private_idle_ms, "limits.private_idle_ms", true);
  return out;
}

}  // namespace shardgate::config
