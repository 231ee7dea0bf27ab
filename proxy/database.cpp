#include "proxy/database.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace shardgate::proxy {

Result<sockaddr_storage> toSockaddr(const SocketAddress& address) {
  sockaddr_storage ss{};
  std::string host = address.host == "localhost" ? "127.0.0.1" : address.host;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(address.port);
    return ss;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(address.port);
    return ss;
  }
  return makeError("\"" + address.host + "\" is not a numeric IPv4 or IPv6 address");
}

Result<Database> makeDatabase(const DatabaseConfig& config, size_t index) {
  Database db;
  db.name = config.name;
  db.listen = config.listen.toString();
  db.tls = config.tls;
  if (config.shards.size() != 1) {
    return makeError("databases[" + std::to_string(index) + "] (" + config.name + ") has " +
                     std::to_string(config.shards.size()) +
                     " shards; routing across several shards is not built yet, give exactly one");
  }
  db.shard = config.shards[0].address.toString();
  auto addr = toSockaddr(config.shards[0].address);
  if (!addr) {
    return makeError("databases[" + std::to_string(index) + "].shards[0].address: " + addr.message());
  }
  db.shard_addr = *addr;
  return db;
}

}  // namespace shardgate::proxy
