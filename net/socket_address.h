// SocketAddress: the HOST:PORT strings of the config (`listen`, `address`).
// Only numeric addresses are accepted (plus "localhost"): a name that needs
// DNS would make the config's meaning depend on the resolver at start time.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace shardgate::net {

struct SocketAddress {
  std::string host;  // numeric IPv4 or IPv6 (no brackets); "localhost" parses as 127.0.0.1
  uint16_t port = 0;
  std::string toString() const;  // "127.0.0.1:6380", "[::1]:6380"

  bool operator==(const SocketAddress&) const = default;
};

// "127.0.0.1:6380", "[::1]:6380", "localhost:6380" (-> 127.0.0.1), ":6380"
// (all interfaces, host "0.0.0.0"). Errors read "expected HOST:PORT such as ...".
// any_port: port 0 is allowed (a listen address: the kernel picks a free port).
Result<SocketAddress> parseSocketAddress(std::string_view text, bool any_port = false);

// Fills a sockaddr from a numeric address ("localhost" means 127.0.0.1).
Result<sockaddr_storage> toSockaddr(const SocketAddress& address);

}  // namespace shardgate::net
