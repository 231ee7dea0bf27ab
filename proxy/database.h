// Database: what a worker needs to serve one `databases` entry, resolved once
// at startup and shared read-only by every worker.
#pragma once

#include <sys/socket.h>

#include <string>

#include "proxy/config.h"

namespace shardgate::proxy {

struct Database {
  std::string name;
  std::string listen;        // "127.0.0.1:6380"
  bool tls = true;
  std::string shard;         // "127.0.0.1:7001"
  sockaddr_storage shard_addr{};
};

// Resolves the shard address of a one-shard database.
Result<Database> makeDatabase(const DatabaseConfig& config, size_t index);

// Fills a sockaddr from a numeric address ("localhost" means 127.0.0.1).
Result<sockaddr_storage> toSockaddr(const SocketAddress& address);

}  // namespace shardgate::proxy
