// Reads the cluster replies captured from a real Redis Cluster
// (tests/unit/redis/cluster_fixtures/, see its README), and builds small
// RESP2 frames by hand for the malformed cases.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>

namespace shardgate::test {

inline std::string clusterFixture(std::string_view name) {
  const std::string path =
      std::string(SHARDGATE_SOURCE_DIR) + "/tests/unit/redis/cluster_fixtures/" + std::string(name);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE_MESSAGE(f != nullptr, "missing fixture " << path);
  std::string data;
  char chunk[4096];
  for (size_t n; (n = std::fread(chunk, 1, sizeof chunk, f)) > 0;) data.append(chunk, n);
  std::fclose(f);
  return data;
}

// RESP2 builders: arr({bulk("slots"), num(0)}) -> "*2\r\n$5\r\nslots\r\n:0\r\n".
inline std::string bulk(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}
inline std::string num(long long n) { return ":" + std::to_string(n) + "\r\n"; }
inline std::string arr(std::initializer_list<std::string> items) {
  std::string out = "*" + std::to_string(items.size()) + "\r\n";
  for (const auto& i : items) out += i;
  return out;
}

}  // namespace shardgate::test
