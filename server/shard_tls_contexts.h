// ShardTlsContexts: the client contexts shardgate connects to TLS shards
// with -- one per shard with tls on, built from its ca / cert / key files
// and shard_tls policy, published into the shard's proxy::ShardTls store.
//
//   start ─► read every shard's files ─► build ─► publish (or the start fails, naming key and file)
//   file change in cert_dir, SIGHUP ─► read again ─► unchanged? nothing
//        ─► build ─► publish: new connections use it, open ones keep theirs
//        ─► a bad file: the old context stays, one error line names the file
//
// Control thread only; workers read the stores (TlsContextStore::current,
// once per shard connection).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/config.h"
#include "proxy/database.h"
#include "tls/tls_context.h"

namespace shardgate::server {

// The text of one shard's files, and where each came from.
struct ShardTlsFiles {
  std::string ca_pem, ca_path;
  std::string cert_pem, cert_path;  // empty: no client certificate
  std::string key_pem, key_path;

  bool operator==(const ShardTlsFiles&) const = default;
};

// Reads the files of t; errors name the key and the file
// ("FILE:LINE: databases[0].shards[1].cert: /etc/c.pem: cannot be read: No such file or directory").
Result<ShardTlsFiles> readShardTlsFiles(const config::Config& config, const config::ShardTlsConfig& t);
// Builds the client context; errors name the key and the file.
Result<tls::TlsContextPtr> buildShardContext(const config::Config& config, const config::ShardTlsConfig& t,
                                             const ShardTlsFiles& files, uint64_t generation);
// Every file name in cert_dir that some shard's TLS reads (for the watcher).
std::vector<std::string> shardTlsFileNames(const config::Config& config);
// --check-config: every TLS shard's files read and its context built,
// nothing published; lines describing each shard's TLS settings.
Result<std::vector<std::string>> checkShardTls(const config::Config& config);

class ShardTlsContexts {
 public:
  // Builds and publishes every TLS shard's first context. config must
  // outlive this object (the server's).
  Status loadInitial(const config::Config& config, const std::vector<std::unique_ptr<proxy::Database>>& dbs);
  // Rebuilds the shards whose files changed (trigger: "file change", "SIGHUP").
  void reload(const char* trigger);
  bool any() const { return !entries_.empty(); }
  // Warns once per generation and threshold (30, 7, 1 days) as a client
  // certificate shardgate presents to a shard nears its end.
  void checkExpiry(int64_t now_epoch);

 private:
  struct Entry {
    std::string db;
    std::string address;
    std::shared_ptr<proxy::ShardTls> shard;
    ShardTlsFiles files;          // what the published context was built from
    bool failing = false;         // the last attempt failed (and was logged)
    std::string last_failure;     // its message: said once, not at every event
    uint64_t expiry_warned_generation = 0;
    int expiry_warned_days = 0;   // the tightest threshold warned of for that generation
  };

  const config::Config* config_ = nullptr;
  std::vector<Entry> entries_;
};

}  // namespace shardgate::server
