#include "config/config_diff.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace shardgate;

namespace {

constexpr const char* kTwoDatabases =
    "workers: 2\n"
    "databases:\n"
    "  - name: a\n"
    "    listen: 127.0.0.1:6380\n"
    "    shards:\n"
    "      - address: 127.0.0.1:7001\n"
    "  - name: b\n"
    "    listen: 127.0.0.1:0\n"
    "    shards:\n"
    "      - { address: 127.0.0.1:7002, slots: 0-8191 }\n"
    "      - { address: 127.0.0.1:7003, slots: 8192-16383 }\n";

config::Config parsed(const std::string& text) {
  auto result = config::parseConfig(text, "conf/x.yaml", "/base");
  REQUIRE_MESSAGE(result.ok(), (result.ok() ? "" : result.message()));
  return *result;
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

std::vector<std::string> keys(const std::vector<config::ConfigChange>& changes) {
  std::vector<std::string> out;
  for (const auto& c : changes) out.push_back(c.key + (c.needs_restart ? " (restart)" : ""));
  return out;
}

}  // namespace

TEST_CASE("diffConfigs finds nothing between a config and itself") {
  CHECK(config::diffConfigs(parsed(kTwoDatabases), parsed(kTwoDatabases)).empty());
}

TEST_CASE("diffConfigs names each changed key as the file writes it, restart or not") {
  const config::Config before = parsed(kTwoDatabases);
  auto diff = [&](const std::string& from, const std::string& to) {
    return keys(config::diffConfigs(before, parsed(replaced(kTwoDatabases, from, to))));
  };
  using Keys = std::vector<std::string>;
  CHECK(diff("workers: 2", "workers: 3") == Keys{"workers (restart)"});
  CHECK(diff("workers: 2", "workers: 2\nlog_level: debug") == Keys{"log_level"});
  CHECK(diff("workers: 2", "workers: 2\ntls:\n  min_version: \"1.3\"") == Keys{"tls"});
  CHECK(diff("workers: 2", "workers: 2\nlimits:\n  max_args: 100") ==
        Keys{"limits.max_args (restart)"});
  CHECK(diff("127.0.0.1:6380", "127.0.0.1:6390") == Keys{"databases[0].listen (restart)"});
  CHECK(diff("127.0.0.1:7003", "127.0.0.1:7004") == Keys{"databases[1].shards (restart)"});
  CHECK(diff("127.0.0.1:0", "127.0.0.1:6391") == Keys{"databases[1].listen (restart)"});
  CHECK(diff("  - name: b", "  - name: c") == Keys{"databases[1].name (restart)"});
  CHECK(diff("workers: 2", "workers: 2\npid_file: /run/sg.pid") == Keys{"pid_file (restart)"});
  CHECK(diff("workers: 2", "workers: 2\nlog_file: /var/log/sg.log") == Keys{"log_file (restart)"});
  CHECK(diff("    listen: 127.0.0.1:6380\n", "    listen: 127.0.0.1:6380\n    client_auth: required\n"
             "    client_ca: a.pem\n    client_crl: a.crl\n    client_allow: [\"cn:x\"]\n") ==
        Keys{"databases[0].client_auth (restart)", "databases[0].client_ca (restart)",
             "databases[0].client_crl (restart)", "databases[0].client_allow (restart)"});
}

TEST_CASE("diffConfigs reports a database added or removed as databases") {
  const std::string one = kTwoDatabases;
  const std::string first_only = one.substr(0, one.find("  - name: b"));
  auto changes = config::diffConfigs(parsed(kTwoDatabases), parsed(first_only));
  CHECK(keys(changes) == std::vector<std::string>{"databases (restart)"});
}

TEST_CASE("diffConfigs: port 0 in the file matches the port the kernel picked") {
  config::Config running = parsed(kTwoDatabases);
  running.databases[1].listen.port = 40123;  // as the server records it once bound
  CHECK(config::diffConfigs(running, parsed(kTwoDatabases)).empty());
}
