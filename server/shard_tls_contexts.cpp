#include "server/shard_tls_contexts.h"

#include "server/cert_dir_file.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <cstring>
#include <fstream>
#include <sstream>

namespace shardgate::server {

namespace {

std::string describe(const config::ShardTlsConfig& t, const std::string& verify_name) {
  std::string out = "CA " + t.ca + ", ";
  out += t.server_name.empty() ? "certificate must carry IP " + verify_name
                               : "server name " + t.server_name + " (SNI and certificate)";
  out += t.cert.empty() ? ", no client certificate" : ", client certificate " + t.cert;
  out += ", min TLS " + tls::toString(t.policy.min_version);
  return out;
}

std::string verifyNameOf(const config::ShardConfig& shard) {
  return shard.tls.server_name.empty() ? shard.address.host : shard.tls.server_name;
}

// A cluster database's one shard_tls, which every discovered node uses.
bool clusterTls(const config::DatabaseConfig& db) { return db.cluster.has_value() && db.shard_tls.tls; }

}  // namespace

Result<ShardTlsFiles> readShardTlsFiles(const config::Config& config, const config::ShardTlsConfig& t) {
  ShardTlsFiles files;
  if (auto e = readCertDirFile(config, t.ca_key, t.ca, files.ca_pem, files.ca_path)) return *e;
  if (!t.cert.empty()) {
    if (auto e = readCertDirFile(config, t.cert_key, t.cert, files.cert_pem, files.cert_path)) return *e;
    if (auto e = readCertDirFile(config, t.key_key, t.key, files.key_pem, files.key_path)) return *e;
  }
  return files;
}

Result<tls::TlsContextPtr> buildShardContext(const config::Config& config, const config::ShardTlsConfig& t,
                                             const ShardTlsFiles& files, uint64_t generation) {
  tls::CertBundle bundle;
  if (!t.cert.empty()) {
    bundle.cert_pem = files.cert_pem;
    bundle.key_pem = files.key_pem;
    bundle.cert_source = files.cert_path;
    bundle.key_source = files.key_path;
  }
  auto made = tls::TlsContext::createClient(t.policy, files.ca_pem, std::nullopt, t.cert.empty() ? nullptr : &bundle,
                                            generation);
  if (made) return made;
  std::string message = made.message();
  // createClient says "trusted CA: ..." about the CA text; the rest is about
  // the client certificate (validateCertBundle names its file itself).
  if (message.rfind("trusted CA", 0) == 0) {
    size_t colon = message.find(": ");
    const std::string what = colon == std::string::npos ? message : message.substr(colon + 2);
    return makeError(config.where(t.ca_key) + t.ca_key + ": " + files.ca_path + ": " + what);
  }
  // About the certificate or the key: named by the key whose file the
  // message starts with.
  const std::string& key = message.rfind(files.key_path, 0) == 0 ? t.key_key : t.cert_key;
  return makeError(config.where(key) + key + ": " + message);
}

std::vector<std::string> shardTlsFileNames(const config::Config& config) {
  std::vector<std::string> names;
  const std::string prefix = config.cert_dir + "/";
  for (const config::DatabaseConfig& db : config.databases) {
    std::vector<const config::ShardTlsConfig*> tls_configs;
    for (const config::ShardConfig& shard : db.shards) {
      if (shard.tls.tls) tls_configs.push_back(&shard.tls);
    }
    if (clusterTls(db)) tls_configs.push_back(&db.shard_tls);
    for (const config::ShardTlsConfig* t : tls_configs) {
      for (const std::string* file : {&t->ca, &t->cert, &t->key}) {
        if (file->empty()) continue;
        const std::string path = certDirPath(config, *file);
        if (path.rfind(prefix, 0) != 0) continue;
        std::string name = path.substr(prefix.size());
        if (name.find('/') != std::string::npos) continue;
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(std::move(name));
      }
    }
  }
  return names;
}

Result<std::vector<std::string>> checkShardTls(const config::Config& config) {
  std::vector<std::string> lines;
  for (const config::DatabaseConfig& db : config.databases) {
    if (db.cluster) {
      const std::string who = "db " + db.name + ": cluster nodes: ";
      if (!clusterTls(db)) {
        lines.push_back(who + "plaintext");
        continue;
      }
      auto files = readShardTlsFiles(config, db.shard_tls);
      if (!files) return files.error();
      auto ctx = buildShardContext(config, db.shard_tls, *files, 1);
      if (!ctx) return ctx.error();
      lines.push_back(who + "TLS (" + describe(db.shard_tls, "of each node") + ")");
      continue;
    }
    for (const config::ShardConfig& shard : db.shards) {
      const std::string who = "db " + db.name + ": shard " + shard.address.toString() + ": ";
      if (!shard.tls.tls) {
        lines.push_back(who + "plaintext");
        continue;
      }
      auto files = readShardTlsFiles(config, shard.tls);
      if (!files) return files.error();
      auto ctx = buildShardContext(config, shard.tls, *files, 1);
      if (!ctx) return ctx.error();
      lines.push_back(who + "TLS (" + describe(shard.tls, verifyNameOf(shard)) + ")");
    }
  }
  return lines;
}

Status ShardTlsContexts::loadInitial(const config::Config& config,
                                     const std::vector<std::unique_ptr<proxy::Database>>& dbs) {
  config_ = &config;
  for (const auto& db : dbs) {
    // A cluster database's map is not discovered yet (discovery needs these
    // contexts): its nodes use the database's shard_tls.
    std::vector<proxy::ShardEndpoint> endpoints;
    if (db->cluster) {
      if (db->shard_tls) endpoints.push_back(proxy::ShardEndpoint{"cluster nodes", {}, db->shard_tls});
    } else {
      endpoints = db->shard_map->current()->shards();
    }
    for (const proxy::ShardEndpoint& endpoint : endpoints) {
      if (!endpoint.tls) continue;
      const config::ShardTlsConfig& t = endpoint.tls->config;
      auto files = readShardTlsFiles(config, t);
      if (!files) return files.error();
      auto ctx = buildShardContext(config, t, *files, endpoint.tls->contexts.nextGeneration());
      if (!ctx) return ctx.error();
      endpoint.tls->contexts.publish(*ctx);
      spdlog::info("db {}: shard {}: TLS ({}{}), client context generation {}", db->name, endpoint.address,
                   describe(t, endpoint.tls->verify_name.empty() ? "of each node" : endpoint.tls->verify_name),
                   t.cert.empty() ? "" : "; presenting " + (*ctx)->certInfo().subject + " not after " +
                                             (*ctx)->certInfo().not_after,
                   (*ctx)->generation());
      entries_.push_back(Entry{db->name, endpoint.address, endpoint.tls, std::move(*files), false, {}});
    }
  }
  return {};
}

void ShardTlsContexts::reload(const char* trigger) {
  for (Entry& entry : entries_) {
    const config::ShardTlsConfig& t = entry.shard->config;
    const tls::TlsContextPtr before = entry.shard->contexts.current();
    const uint64_t old_generation = before ? before->generation() : 0;
    auto failed = [&](const std::string& why) {
      // Once per distinct failure: a poll or a burst of events finding the
      // same bad file says nothing new.
      if (entry.failing && entry.last_failure == why) return;
      entry.failing = true;
      entry.last_failure = why;
      spdlog::error("db {}: shard {}: TLS files not reloaded ({}), new connections keep using client context "
                    "generation {}: {}",
                    entry.db, entry.address, trigger, old_generation, why);
    };
    auto files = readShardTlsFiles(*config_, t);
    if (!files) {
      failed(files.message());
      continue;
    }
    if (*files == entry.files) {
      if (entry.failing) {
        spdlog::info("db {}: shard {}: TLS files valid again and the same as in use ({}): client context "
                     "generation {} stays",
                     entry.db, entry.address, trigger, old_generation);
      }
      entry.failing = false;
      continue;
    }
    auto ctx = buildShardContext(*config_, t, *files, entry.shard->contexts.nextGeneration());
    if (!ctx) {
      failed(ctx.message());
      continue;
    }
    entry.shard->contexts.publish(*ctx);
    entry.files = std::move(*files);
    entry.failing = false;
    spdlog::info("db {}: shard {}: TLS files reloaded ({}): client context generation {} -> {}{}; new shard "
                 "connections use it, open ones keep theirs ({} live)",
                 entry.db, entry.address, trigger, old_generation, (*ctx)->generation(),
                 t.cert.empty() ? "" : ", presenting " + (*ctx)->certInfo().subject + " not after " +
                                           (*ctx)->certInfo().not_after,
                 before ? before->liveSessions() : 0);
  }
}

void ShardTlsContexts::checkExpiry(int64_t now_epoch) {
  constexpr int kWarnDays[] = {1, 7, 30};
  for (Entry& entry : entries_) {
    const tls::TlsContextPtr ctx = entry.shard->contexts.current();
    if (!ctx || entry.shard->config.cert.empty()) continue;
    const tls::CertInfo& info = ctx->certInfo();
    const int64_t left = info.not_after_epoch - now_epoch;
    for (int days : kWarnDays) {
      if (left > static_cast<int64_t>(days) * 86400) continue;
      if (entry.expiry_warned_generation == ctx->generation() && entry.expiry_warned_days <= days) break;
      entry.expiry_warned_generation = ctx->generation();
      entry.expiry_warned_days = days;
      spdlog::warn("db {}: shard {}: the client certificate {} (serial {}) presented to the shard expires within "
                   "{} day(s), on {}: replace {} and {}",
                   entry.db, entry.address, info.subject, info.serial, days, info.not_after,
                   entry.files.cert_path, entry.files.key_path);
      break;
    }
  }
}

}  // namespace shardgate::server
