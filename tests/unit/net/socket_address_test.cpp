#include <doctest/doctest.h>

#include <string>

#include "config/config.h"

using namespace shardgate;

using shardgate::net::parseSocketAddress;
using shardgate::net::SocketAddress;

namespace {

net::SocketAddress parsed(const char* text) {
  auto result = net::parseSocketAddress(text);
  REQUIRE_MESSAGE(result.ok(), text << ": " << (result.ok() ? "" : result.message()));
  return *result;
}

std::string errorOf(const char* text) {
  auto result = net::parseSocketAddress(text);
  REQUIRE_MESSAGE(!result.ok(), text << " parsed but should not have");
  return result.message();
}

}  // namespace

TEST_CASE("parseSocketAddress: IPv4 host and port") {
  net::SocketAddress a = parsed("127.0.0.1:6380");
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 6380);
  CHECK(a.toString() == "127.0.0.1:6380");
}

TEST_CASE("parseSocketAddress: bracketed IPv6 round-trips with brackets") {
  net::SocketAddress a = parsed("[::1]:6380");
  CHECK(a.host == "::1");
  CHECK(a.port == 6380);
  CHECK(a.toString() == "[::1]:6380");
  CHECK(parsed("[2001:db8::7]:1").toString() == "[2001:db8::7]:1");
}

TEST_CASE("parseSocketAddress: localhost is pinned to IPv4 loopback") {
  net::SocketAddress a = parsed("localhost:6380");
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 6380);
}

TEST_CASE("parseSocketAddress: empty host means every interface") {
  net::SocketAddress a = parsed(":6380");
  CHECK(a.host == "0.0.0.0");
  CHECK(a.port == 6380);
}

TEST_CASE("parseSocketAddress: port bounds") {
  CHECK(parsed("127.0.0.1:1").port == 1);
  CHECK(parsed("127.0.0.1:65535").port == 65535);
  CHECK(errorOf("127.0.0.1:70000") == "port 70000 is out of range 1-65535");
  CHECK(errorOf("127.0.0.1:0") == "port 0 is out of range 1-65535");
  CHECK(errorOf("127.0.0.1:99999999999999999999").find("out of range 1-65535") !=
        std::string::npos);
  // A listen address may ask for any free port; a shard's may not.
  auto any = net::parseSocketAddress("127.0.0.1:0", true);
  REQUIRE(any.ok());
  CHECK(any->port == 0);
  auto big = net::parseSocketAddress("127.0.0.1:70000", true);
  REQUIRE_FALSE(big.ok());
  CHECK(big.message() == "port 70000 is out of range 0-65535 (0: any free port)");
}

TEST_CASE("parseSocketAddress: malformed text says what was expected") {
  CHECK(errorOf("abc") == "expected HOST:PORT such as 127.0.0.1:6380, got \"abc\"");
  CHECK(errorOf("") == "expected HOST:PORT such as 127.0.0.1:6380, got \"\"");
  CHECK(errorOf("127.0.0.1:") == "expected HOST:PORT such as 127.0.0.1:6380, got \"127.0.0.1:\"");
  CHECK(errorOf("127.0.0.1:not-a-port") ==
        "expected HOST:PORT such as 127.0.0.1:6380, got \"127.0.0.1:not-a-port\"");
  CHECK(errorOf("127.0.0.1:-1").find("expected HOST:PORT") != std::string::npos);
  CHECK(errorOf("[::1]6380").find("expected HOST:PORT") != std::string::npos);
  CHECK(errorOf("[::1").find("expected HOST:PORT") != std::string::npos);
  CHECK(errorOf("[]:6380").find("expected HOST:PORT") != std::string::npos);
}

TEST_CASE("parseSocketAddress: hosts must be numeric or localhost") {
  CHECK(errorOf("example.com:6380").find("\"example.com\" is not a numeric") !=
        std::string::npos);
  CHECK(errorOf("256.1.1.1:6380").find("not a numeric") != std::string::npos);
  CHECK(errorOf("[not-v6]:6380").find("not a numeric") != std::string::npos);
  CHECK(errorOf("::1:6380").find("needs brackets") != std::string::npos);
}
