// SocketAddress: the HOST:PORT strings of the config (`listen`, `address`).
// Only numeric addresses are accepted (plus "localhost"): a name that needs
// DNS would make the config's meaning depend on the resolver at start time.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "net/socket_address.h"

namespace shardgate::net {
namespace {

Error expectedHostPort(std::string_view text) {
  return makeError("expected HOST:PORT such as 127.0.0.1:6380, got \"" + std::string(text) +
                   "\"");
}

bool isIpv4(const std::string& host) {
  in_addr a{};
  return inet_pton(AF_INET, host.c_str(), &a) == 1;
}

bool isIpv6(const std::string& host) {
  in6_addr a{};
  return inet_pton(AF_INET6, host.c_str(), &a) == 1;
}

}  // namespace

std::string SocketAddress::toString() const {
  // RFC 3986 section 3.2.2: an IPv6 literal is bracketed so its colons are not
  // taken for the port separator.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<SocketAddress> parseSocketAddress(std::string_view text, bool any_port) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return expectedHostPort(text);
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    if (host.empty()) return expectedHostPort(text);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return expectedHostPort(text);
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return makeError("an IPv6 address needs brackets, as in [::1]:6380, got \"" +
                       std::string(text) + "\"");
    }
  }

  if (port.empty()) return expectedHostPort(text);
  uint32_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return expectedHostPort(text);
    // Saturate instead of overflowing so "port 99999999999" still reads right.
    value = value > 100000 ? value : value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value == 0 && any_port) {
    // Listen on a port the kernel picks; the start-up log says which.
  } else if (value < 1 || value > 65535) {
    return makeError("port " + std::string(port) + " is out of range " +
                     (any_port ? "0-65535 (0: any free port)" : "1-65535"));
  }

  SocketAddress address;
  address.port = static_cast<uint16_t>(value);
  if (host.empty()) {
    address.host = "0.0.0.0";  // ":6380" listens on every IPv4 interface
  } else if (host == "localhost") {
    // Pinned to IPv4 loopback: what "localhost" resolves to first varies by host.
    address.host = "127.0.0.1";
  } else {
    address.host = std::string(host);
    if (!isIpv4(address.host) && !isIpv6(address.host)) {
      return makeError("host \"" + address.host +
                       "\" is not a numeric IPv4 or IPv6 address or \"localhost\" (in \"" +
                       std::string(text) + "\")");
    }
  }
  return address;
}

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

}  // namespace shardgate::net
