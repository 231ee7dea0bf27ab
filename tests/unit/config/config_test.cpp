#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "tests/unit/temp_dir.h"
#include "config/config.h"

using namespace shardgate;

#ifndef SHARDGATE_SOURCE_DIR
#error "meson.build passes SHARDGATE_SOURCE_DIR to unit_config"
#endif

namespace fs = std::filesystem;
using namespace shardgate::config;
using shardgate::tls::toString;

using shardgate::testing::TempDir;

namespace {

constexpr const char* kSource = "conf/x.yaml";

// The smallest valid config: one database, one shard. Lines 1-5.
constexpr const char* kMinimal =
    "databases:\n"
    "  - name: db1\n"
    "    listen: 127.0.0.1:6380\n"
    "    shards:\n"
    "      - address: 127.0.0.1:7001\n";

config::Config parsed(const std::string& text) {
  auto result = config::parseConfig(text, kSource, "/base");
  REQUIRE_MESSAGE(result.ok(), (result.ok() ? "" : result.message()));
  return *result;
}

std::string errorOf(const std::string& text) {
  auto result = config::parseConfig(text, kSource, "/base");
  REQUIRE_MESSAGE(!result.ok(), "parsed but should not have:\n" << text);
  return result.message();
}

// Asserts the "<source>:<line>: <key path>: " prefix and a piece of the problem.
void checkError(const std::string& text, int line, const std::string& path,
                const std::string& problem) {
  const std::string message = errorOf(text);
  const std::string prefix = std::string(kSource) + ":" + std::to_string(line) + ": " +
                             (path.empty() ? "" : path + ": ");
  CHECK_MESSAGE(message.rfind(prefix, 0) == 0, "want prefix \"" << prefix << "\" in: " << message);
  CHECK_MESSAGE(message.find(problem) != std::string::npos,
                "want \"" << problem << "\" in: " << message);
}

// Two shards with the given slot specs, under database db1 (shards start on line 4).
std::string twoShards(const std::string& slots0, const std::string& slots1) {
  return "databases:\n"
         "  - name: db1\n"
         "    listen: 127.0.0.1:6380\n"
         "    shards:\n"
         "      - address: 127.0.0.1:7001\n"
         "        slots: " + slots0 + "\n"
         "      - address: 127.0.0.1:7002\n"
         "        slots: " + slots1 + "\n";
}


}  // namespace

TEST_CASE("config: a minimal config gets every default") {
  config::Config c = parsed(kMinimal);
  CHECK(c.workers == 0);
  CHECK(c.log_level == "info");
  CHECK(c.cert_dir == "/base/certs");
  CHECK(c.generate_self_signed);
  CHECK(toString(c.tls.policy.min_version) == "1.2");
  CHECK(c.tls.policy.ciphers == shardgate::tls::kDefaultCiphers);
  CHECK(c.tls.policy.ciphersuites == shardgate::tls::kDefaultCiphersuites);
  CHECK(c.tls.handshake_timeout_ms == 10000);
  CHECK_FALSE(c.tls.policy.audit_min_version.has_value());
  CHECK_FALSE(c.admin_listen.has_value());
  CHECK_FALSE(c.metrics_listen.has_value());
  CHECK(c.drain_timeout_ms == 10000);
  CHECK(c.source == kSource);
  REQUIRE(c.databases.size() == 1);
  const config::DatabaseConfig& db = c.databases[0];
  CHECK(db.name == "db1");
  CHECK(db.listen.toString() == "127.0.0.1:6380");
  CHECK(db.tls);
  CHECK(db.client_auth == config::ClientAuth::kNone);
  REQUIRE(db.shards.size() == 1);
  CHECK(db.shards[0].address.toString() == "127.0.0.1:7001");
  REQUIRE(db.shards[0].slots.size() == 1);
  CHECK(db.shards[0].slots[0].first == 0);
  CHECK(db.shards[0].slots[0].last == config::kSlotCount - 1);
}

TEST_CASE("config: a full config with every section") {
  config::Config c = parsed(R"(workers: 4
log_level: debug
cert_dir: ./certs
generate_self_signed: false
tls:
  min_version: "1.3"
  ciphers: "ECDHE-RSA-AES128-GCM-SHA256"
  ciphersuites: "TLS_AES_128_GCM_SHA256"
  handshake_timeout_ms: 5000
  audit_min_version: "1.3"
databases:
  - name: db1
    listen: 127.0.0.1:6380
    tls: true
    client_auth: required
    shards:
      - { address: 127.0.0.1:7001, slots: "0-8191" }
      - { address: 127.0.0.1:7002, slots: "8192-16383" }
  - name: plain_db-2
    listen: "[::1]:6381"
    tls: false
    shards:
      - address: localhost:7003
admin:
  listen: 127.0.0.1:9443
metrics:
  listen: 127.0.0.1:8070
drain_timeout_ms: 0
)");
  CHECK(c.workers == 4);
  CHECK(c.effectiveWorkers() == 4);
  CHECK(c.log_level == "debug");
  CHECK(c.cert_dir == "/base/certs");
  CHECK_FALSE(c.generate_self_signed);
  CHECK(toString(c.tls.policy.min_version) == "1.3");
  CHECK(c.tls.policy.ciphers == "ECDHE-RSA-AES128-GCM-SHA256");
  CHECK(c.tls.policy.ciphersuites == "TLS_AES_128_GCM_SHA256");
  CHECK(c.tls.handshake_timeout_ms == 5000);
  REQUIRE(c.tls.policy.audit_min_version.has_value());
  CHECK(toString(*c.tls.policy.audit_min_version) == "1.3");
  REQUIRE(c.databases.size() == 2);
  CHECK(c.databases[0].client_auth == config::ClientAuth::kRequired);
  REQUIRE(c.databases[0].shards.size() == 2);
  CHECK(c.databases[0].shards[1].address.toString() == "127.0.0.1:7002");
  CHECK(c.databases[0].shards[1].slots[0].first == 8192);
  CHECK(c.databases[0].shards[1].slots[0].last == 16383);
  CHECK(c.databases[1].name == "plain_db-2");
  CHECK(c.databases[1].listen.toString() == "[::1]:6381");
  CHECK_FALSE(c.databases[1].tls);
  CHECK(c.databases[1].shards[0].address.host == "127.0.0.1");
  REQUIRE(c.admin_listen.has_value());
  CHECK(c.admin_listen->toString() == "127.0.0.1:9443");
  REQUIRE(c.metrics_listen.has_value());
  CHECK(c.metrics_listen->toString() == "127.0.0.1:8070");
  CHECK(c.drain_timeout_ms == 0);
}

TEST_CASE("config: cert_dir is made absolute against the config's directory") {
  CHECK(parsed(std::string("cert_dir: ../run/./certs/\n") + kMinimal).cert_dir == "/run/certs");
  CHECK(parsed(std::string("cert_dir: /etc/sg/certs\n") + kMinimal).cert_dir == "/etc/sg/certs");
  CHECK(parsed(std::string("cert_dir: certs\n") + kMinimal).cert_dir == "/base/certs");
  checkError(std::string(kMinimal) + "cert_dir: \"\"\n", 6, "cert_dir", "expected a directory path");
  checkError(std::string(kMinimal) + "cert_dir: [a]\n", 6, "cert_dir",
             "expected a directory path, got a list");
}

TEST_CASE("config: workers") {
  CHECK(parsed(std::string("workers: auto\n") + kMinimal).workers == 0);
  CHECK(parsed(std::string("workers: 256\n") + kMinimal).workers == 256);
  checkError(std::string("workers: many\n") + kMinimal, 1, "workers",
             "expected \"auto\" or a positive integer, got \"many\"");
  checkError(std::string("workers: 0\n") + kMinimal, 1, "workers",
             "expected \"auto\" or a positive integer, got \"0\"");
  checkError(std::string("workers: -2\n") + kMinimal, 1, "workers",
             "expected \"auto\" or a positive integer, got \"-2\"");
  checkError(std::string("workers: 300\n") + kMinimal, 1, "workers", "300 is out of range 1-256");
}

TEST_CASE("config: effectiveWorkers resolves auto to the core count, at least one") {
  config::Config c;
  c.workers = 0;
  unsigned cores = std::thread::hardware_concurrency();
  CHECK(c.effectiveWorkers() == (cores == 0 ? 1u : cores));
  c.workers = 3;
  CHECK(c.effectiveWorkers() == 3);
}

TEST_CASE("config: log_level and generate_self_signed") {
  CHECK(parsed(std::string("log_level: trace\n") + kMinimal).log_level == "trace");
  checkError(std::string(kMinimal) + "log_level: verbose\n", 6, "log_level",
             "expected one of trace, debug, info, warn, error, got \"verbose\"");
  checkError(std::string(kMinimal) + "generate_self_signed: maybe\n", 6, "generate_self_signed",
             "expected true or false, got \"maybe\"");
}

TEST_CASE("config: unknown keys are named with the keys that are known") {
  checkError(std::string("bogus_key: 1\n") + kMinimal, 1, "bogus_key",
             "unknown key (known keys: workers, log_level, cert_dir");
  CHECK(errorOf(std::string(kMinimal) + "tls:\n  min_verison: \"1.2\"\n") ==
        "conf/x.yaml:7: tls.min_verison: unknown key (known keys: min_version, ciphers, "
        "ciphersuites, handshake_timeout_ms, audit_min_version, control_min_version)");
  checkError(std::string(kMinimal) + "    port: 1\n", 6, "databases[0].port",
             "unknown key (known keys: name, listen, tls, client_auth, client_ca, client_crl, client_allow, "
             "password, shard_password, multiplex, shard_tls, shards, cluster)");
  checkError(std::string(kMinimal) + "        weight: 1\n", 6, "databases[0].shards[0].weight",
             "unknown key (known keys: address, slots, tls, server_name, ca, cert, key)");
  checkError(std::string(kMinimal) + "admin:\n  port: 9443\n", 7, "admin.port",
             "unknown key (known keys: listen, users, max_connections, request_timeout_ms, max_body_bytes)");
}

TEST_CASE("config: an empty value is reported on its key's line") {
  checkError(std::string("workers:\n") + kMinimal, 1, "workers",
             "expected \"auto\" or a positive integer, got an empty value");
  checkError("databases:\n  - name:\n    listen: 127.0.0.1:6380\n", 2, "databases[0].name",
             "got an empty value");
  checkError(std::string(kMinimal) + "    tls:\n", 6, "databases[0].tls",
             "expected true or false, got an empty value");
}

TEST_CASE("config: a value given by an alias is reported on the line of the key that uses it") {
  // yaml-cpp marks an alias where its anchor is: databases[0]'s line 3.
  const std::string shared_listen =
      "databases:\n"
      "  - name: db1\n"
      "    listen: &addr 127.0.0.1:6380\n"
      "    shards:\n"
      "      - address: 127.0.0.1:7001\n"
      "  - name: db2\n"
      "    listen: *addr\n"
      "    shards:\n"
      "      - address: 127.0.0.1:7002\n";
  checkError(shared_listen, 7, "databases[1].listen",
             "127.0.0.1:6380 is also the listen address of databases[0] (db1)");
  // The anchor's own key is still reported where it stands.
  checkError("limits:\n  max_args: &n 1\n  shard_timeout_ms: *n\n" + std::string(kMinimal), 2,
             "limits.max_args", "1 is out of range 16-1073741824");
  checkError("tls:\n  handshake_timeout_ms: &t 500\ndrain_timeout_ms: *t\nworkers: *t\n" +
                 std::string(kMinimal),
             4, "workers", "500 is out of range 1-256");
}

TEST_CASE("config: a key given twice is an error naming both lines") {
  checkError(std::string("workers: 2\n") + kMinimal + "workers: 3\n", 7, "workers",
             "duplicate key (first given on line 1)");
}

TEST_CASE("config: tls section values") {
  checkError(std::string(kMinimal) + "tls:\n  min_version: \"1.7\"\n", 7, "tls.min_version",
             "expected one of \"1.0\", \"1.1\", \"1.2\", \"1.3\", got \"1.7\"");
  checkError(std::string(kMinimal) + "tls:\n  audit_min_version: \"2\"\n", 7,
             "tls.audit_min_version", "got \"2\"");
  checkError(std::string(kMinimal) + "tls:\n  handshake_timeout_ms: 50\n", 7,
             "tls.handshake_timeout_ms", "50 is out of range 100-600000");
  checkError(std::string(kMinimal) + "tls:\n  handshake_timeout_ms: 600001\n", 7,
             "tls.handshake_timeout_ms", "out of range 100-600000");
  checkError(std::string(kMinimal) + "tls:\n  handshake_timeout_ms: soon\n", 7,
             "tls.handshake_timeout_ms", "expected an integer in 100-600000, got \"soon\"");
  checkError(std::string(kMinimal) + "tls: yes\n", 6, "tls", "expected a mapping of keys");
  // "tls:" with every key commented out keeps the defaults.
  CHECK(parsed(std::string(kMinimal) + "tls:\n").tls.handshake_timeout_ms == 10000);
  CHECK(toString(parsed(std::string(kMinimal) + "tls:\n  min_version: 1.0\n").tls.policy
                     .min_version) == "1.0");
}

TEST_CASE("config: bad cipher strings are rejected by tls::validatePolicy at their line") {
  const std::string ciphers =
      errorOf(std::string(kMinimal) + "tls:\n  ciphers: \"NOT-A-REAL-CIPHER\"\n");
  CHECK_MESSAGE(ciphers.rfind("conf/x.yaml:7: tls.ciphers", 0) == 0, ciphers);
  const std::string suites = errorOf(std::string(kMinimal) +
                                     "tls:\n  ciphers: \"ECDHE-RSA-AES128-GCM-SHA256\"\n"
                                     "  ciphersuites: \"TLS_NOT_A_SUITE\"\n");
  CHECK_MESSAGE(suites.rfind("conf/x.yaml:8: tls.ciphersuites", 0) == 0, suites);
}

TEST_CASE("config: drain_timeout_ms") {
  CHECK(parsed(std::string("drain_timeout_ms: 600000\n") + kMinimal).drain_timeout_ms == 600000);
  checkError(std::string("drain_timeout_ms: 600001\n") + kMinimal, 1, "drain_timeout_ms",
             "600001 is out of range 0-600000");
  checkError(std::string("drain_timeout_ms: 1.5\n") + kMinimal, 1, "drain_timeout_ms",
             "expected an integer in 0-600000, got \"1.5\"");
}

TEST_CASE("config: pid_file and log_file: none by default, paths relative to the config's directory") {
  config::Config c = parsed(kMinimal);
  CHECK(c.pid_file.empty());
  CHECK(c.log_file.empty());
  c = parsed(std::string("pid_file: run/sg.pid\nlog_file: /var/log/sg/sg.log\n") + kMinimal);
  CHECK(c.pid_file == "/base/run/sg.pid");
  CHECK(c.log_file == "/var/log/sg/sg.log");
  checkError(std::string("pid_file: \"\"\n") + kMinimal, 1, "pid_file",
             "expected a file path, got \"\"");
  checkError(std::string("log_file: /var/log/\n") + kMinimal, 1, "log_file",
             "expected a file path, got \"/var/log/\"");
  checkError(std::string("log_file: [a]\n") + kMinimal, 1, "log_file", "expected a file path");
  checkError(std::string("pid_file: x\nlog_file: ./x\n") + kMinimal, 2, "log_file",
             "is also pid_file; each needs its own file");
}

TEST_CASE("config: databases must be a non-empty list") {
  CHECK(errorOf("workers: 2\n") ==
        "conf/x.yaml:1: missing required key \"databases\" (a list of at least one database)");
  checkError("workers: 2\ndatabases: []\n", 2, "databases",
             "expected a list of at least one database, got an empty list");
  checkError("workers: 2\ndatabases: db1\n", 2, "databases",
             "expected a list of at least one database, got \"db1\"");
  checkError("databases:\n  - db1\n", 2, "databases[0]", "expected a mapping of keys");
}

TEST_CASE("config: a database's required keys") {
  CHECK(errorOf("databases:\n  - name: db1\n    shards:\n      - address: 127.0.0.1:7001\n") ==
        "conf/x.yaml:2: databases[0]: missing required key \"listen\"");
  checkError("databases:\n  - listen: 127.0.0.1:6380\n    shards:\n      - address: 127.0.0.1:7001\n",
             2, "databases[0]", "missing required key \"name\"");
  checkError("databases:\n  - name: db1\n    listen: 127.0.0.1:6380\n", 2, "databases[0]",
             "missing required key \"shards\"");
  checkError(std::string(kMinimal) + "  - name: db2\n    listen: 127.0.0.1:6381\n", 6,
             "databases[1]", "missing required key \"shards\"");
}

TEST_CASE("config: a database's listen, name, tls and client_auth") {
  CHECK(errorOf("databases:\n  - name: db1\n    listen: nope\n    shards:\n"
                "      - address: 127.0.0.1:7001\n") ==
        "conf/x.yaml:3: databases[0].listen: expected HOST:PORT such as 127.0.0.1:6380, got "
        "\"nope\"");
  checkError("databases:\n  - name: db1\n    listen: 127.0.0.1:70000\n    shards:\n"
             "      - address: 127.0.0.1:7001\n",
             3, "databases[0].listen", "port 70000 is out of range 0-65535 (0: any free port)");
  checkError("databases:\n  - name: db 1\n    listen: 127.0.0.1:6380\n    shards:\n"
             "      - address: 127.0.0.1:7001\n",
             2, "databases[0].name", "expected a name of letters, digits, '_' and '-', got \"db 1\"");
  checkError(std::string(kMinimal) + "    tls: sometimes\n", 6, "databases[0].tls",
             "expected true or false, got \"sometimes\"");
  checkError(std::string(kMinimal) + "    client_auth: maybe\n", 6, "databases[0].client_auth",
             "expected one of none, optional, required, got \"maybe\"");
  checkError(std::string(kMinimal) + "    tls: false\n    client_auth: required\n", 7,
             "databases[0].client_auth", "needs a TLS endpoint");
  CHECK(parsed(std::string(kMinimal) + "    client_auth: optional\n").databases[0].client_auth ==
        config::ClientAuth::kOptional);
}

TEST_CASE("config: client_ca, client_crl and client_allow") {
  config::Config c = parsed(std::string(kMinimal) +
                            "    client_auth: required\n    client_ca: db1_ca.pem\n    client_crl: /etc/crl.pem\n"
                            "    client_allow:\n      - \"cn:app-*.example.com\"\n      - \"uri:spiffe://x/*\"\n");
  CHECK(c.databases[0].client_ca == "db1_ca.pem");
  CHECK(c.databases[0].client_crl == "/etc/crl.pem");
  CHECK(c.databases[0].client_allow == std::vector<std::string>{"cn:app-*.example.com", "uri:spiffe://x/*"});
  checkError(std::string(kMinimal) + "    client_auth: required\n    client_allow:\n      - \"cn:a\"\n"
             "      - \"host:b\"\n",
             9, "databases[0].client_allow[1]", "expected cn:, dns:, email: or uri:");
  checkError(std::string(kMinimal) + "    client_auth: required\n    client_allow:\n      - \"dns:\"\n", 8,
             "databases[0].client_allow[0]", "nothing after dns:");
  checkError(std::string(kMinimal) + "    client_auth: required\n    client_allow: []\n", 7,
             "databases[0].client_allow", "got an empty list");
  checkError(std::string(kMinimal) + "    client_ca: ca.pem\n", 6, "databases[0].client_ca",
             "needs client_auth: optional or required");
  checkError(std::string(kMinimal) + "    client_allow:\n      - \"cn:a\"\n", 7, "databases[0].client_allow",
             "needs client_auth: optional or required");
}

TEST_CASE("config: database names and listen addresses are unique") {
  checkError(std::string(kMinimal) +
                 "  - name: db1\n    listen: 127.0.0.1:6381\n    shards:\n"
                 "      - address: 127.0.0.1:7002\n",
             6, "databases[1].name", "\"db1\" is already the name of databases[0]");
  checkError(std::string(kMinimal) +
                 "  - name: db2\n    listen: 127.0.0.1:6380\n    shards:\n"
                 "      - address: 127.0.0.1:7002\n",
             7, "databases[1].listen",
             "127.0.0.1:6380 is also the listen address of databases[0] (db1)");
  // A wildcard host takes the port on every address.
  checkError(std::string(kMinimal) +
                 "  - name: db2\n    listen: :6380\n    shards:\n"
                 "      - address: 127.0.0.1:7002\n",
             7, "databases[1].listen", "is also the listen address of databases[0]");
  checkError(std::string(kMinimal) + "admin:\n  listen: 127.0.0.1:6380\n", 7, "admin.listen",
             "is also the listen address of databases[0] (db1)");
  checkError(std::string(kMinimal) +
                 "admin:\n  listen: 127.0.0.1:9443\nmetrics:\n  listen: 127.0.0.1:9443\n",
             9, "metrics.listen", "is also admin.listen");
  checkError(std::string(kMinimal) + "admin:\n  listen: x\n", 7, "admin.listen",
             "expected HOST:PORT such as 127.0.0.1:6380, got \"x\"");
  checkError(std::string(kMinimal) + "metrics: {}\n", 6, "metrics",
             "missing required key \"listen\"");
}

TEST_CASE("config: shards") {
  checkError("databases:\n  - name: db1\n    listen: 127.0.0.1:6380\n    shards: []\n", 4,
             "databases[0].shards", "expected a list of at least one shard");
  checkError("databases:\n  - name: db1\n    listen: 127.0.0.1:6380\n    shards:\n      - slots: 5\n",
             5, "databases[0].shards[0]", "missing required key \"address\"");
  checkError("databases:\n  - name: db1\n    listen: 127.0.0.1:6380\n    shards:\n"
             "      - address: 127.0.0.1:notaport\n",
             5, "databases[0].shards[0].address", "expected HOST:PORT such as 127.0.0.1:6380");
  checkError("databases:\n  - name: db1\n    listen: 127.0.0.1:6380\n    shards:\n"
             "      - address: 127.0.0.1:7001\n      - address: 127.0.0.1:7002\n",
             5, "databases[0].shards[0]", "missing required key \"slots\"");
}

TEST_CASE("config: slot syntax") {
  config::Config c = parsed(twoShards("\"0-100,200-8191\"", "[\"101-199\", 8192-16382, 16383]"));
  const auto& s0 = c.databases[0].shards[0].slots;
  REQUIRE(s0.size() == 2);
  CHECK(s0[0].first == 0);
  CHECK(s0[0].last == 100);
  CHECK(s0[1].first == 200);
  CHECK(s0[1].last == 8191);
  const auto& s1 = c.databases[0].shards[1].slots;
  REQUIRE(s1.size() == 3);
  CHECK(s1[0].first == 101);
  CHECK(s1[2].first == 16383);
  CHECK(s1[2].last == 16383);
  // One shard with explicit slots: fine when it covers everything.
  CHECK(parsed(std::string(kMinimal) + "        slots: \"0 - 16383\"\n").databases[0].shards[0]
            .slots[0].last == 16383);
  checkError(twoShards("\"0-8191\"", "\"8192-16384\""), 8, "databases[0].shards[1].slots",
             "slot 16384 is out of range 0-16383");
  checkError(twoShards("\"8191-0\"", "\"8192-16383\""), 6, "databases[0].shards[0].slots",
             "range \"8191-0\" runs backwards");
  checkError(twoShards("\"lots\"", "\"8192-16383\""), 6, "databases[0].shards[0].slots",
             "expected slot ranges such as \"0-8191\" or \"0-100,200-16383\", got \"lots\"");
  checkError(twoShards("\"0-8191,\"", "\"8192-16383\""), 6, "databases[0].shards[0].slots",
             "got \"0-8191,\"");
  checkError(twoShards("[\"0-100\", x]", "\"8192-16383\""), 6, "databases[0].shards[0].slots[1]",
             "got \"x\"");
  checkError(twoShards("{a: 1}", "\"8192-16383\""), 6, "databases[0].shards[0].slots",
             "got a mapping");
}

TEST_CASE("config: overlapping slots name both shards and the slots") {
  CHECK(errorOf(twoShards("\"0-8191\"", "\"8000-16383\"")) ==
        "conf/x.yaml:8: databases[0].shards[1].slots: slots 8000-8191 are also owned by "
        "databases[0].shards[0] (127.0.0.1:7001)");
  checkError(twoShards("\"0-8192\"", "\"8192-16383\""), 8, "databases[0].shards[1].slots",
             "slot 8192 is also owned by databases[0].shards[0] (127.0.0.1:7001)");
  checkError(twoShards("\"0-100,50-8191\"", "\"8192-16383\""), 6, "databases[0].shards[0].slots",
             "slots 50-100 are listed twice for this shard");
}

TEST_CASE("config: slots owned by no shard are named") {
  CHECK(errorOf(twoShards("\"0-8191\"", "\"9001-16383\"")) ==
        "conf/x.yaml:5: databases[0].shards: slots 8192-9000 are owned by no shard; together "
        "the shards must cover 0-16383");
  checkError(twoShards("\"1-8191\"", "\"8192-16382\""), 5, "databases[0].shards",
             "slots 0, 16383 are owned by no shard");
  checkError(twoShards("\"0-8191\"", "\"8193-16383\""), 5, "databases[0].shards",
             "slot 8192 is owned by no shard");
  checkError(std::string(kMinimal) + "        slots: \"0-100\"\n", 5, "databases[0].shards",
             "slots 101-16383 are owned by no shard");
}

TEST_CASE("config: YAML syntax errors carry line and column") {
  const std::string message = errorOf("workers: 2\ndatabases: [\n  - name: x\n");
  CHECK_MESSAGE(message.rfind("conf/x.yaml:", 0) == 0, message);
  CHECK_MESSAGE(message.find("invalid YAML") != std::string::npos, message);
  const std::string tab = errorOf("workers: 2\n\tlog_level: info\n");
  CHECK_MESSAGE(tab.rfind("conf/x.yaml:2:", 0) == 0, tab);
  const std::string dup_anchor = errorOf("a: *nope\n");
  CHECK_MESSAGE(dup_anchor.rfind("conf/x.yaml:1:", 0) == 0, dup_anchor);
}

TEST_CASE("config: an empty file or one that is not a mapping") {
  CHECK(errorOf("") ==
        "conf/x.yaml:1: the file is empty; expected a mapping with at least a \"databases\" list");
  CHECK(errorOf("# only a comment\n").find("the file is empty") != std::string::npos);
  checkError("- a\n- b\n", 1, "", "expected a mapping of keys (workers, log_level");
  checkError("hello\n", 1, "", "got \"hello\"");
}

TEST_CASE("config: loadConfig names a file it cannot read") {
  auto missing = config::loadConfig("/x/y.yaml");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.message() == "cannot read config file /x/y.yaml: No such file or directory");

  TempDir dir;
  auto directory = config::loadConfig(dir.path);
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.message().find("cannot read config file " + dir.path) == 0);
}

TEST_CASE("config: loadConfig resolves cert_dir against the file's directory") {
  TempDir dir;
  fs::create_directories(fs::path(dir.path) / "conf");
  const fs::path file = fs::path(dir.path) / "conf" / "sg.yaml";
  std::ofstream(file) << "cert_dir: ../certs\n" << kMinimal;
  auto config = config::loadConfig(file.string());
  REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.message()));
  CHECK(config->cert_dir == (fs::path(dir.path) / "certs").string());
  CHECK(config->source == file.string());

  std::ofstream(file) << kMinimal << "bogus: 1\n";
  auto bad = config::loadConfig(file.string());
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.message().rfind(file.string() + ":6: bogus: unknown key (known keys: workers, log_level, "
                                              "cert_dir, ", 0) == 0);
}

TEST_CASE("config: the shipped conf files pass the validator") {
  const std::string root = SHARDGATE_SOURCE_DIR;
  for (const char* name :
       {"/conf/shardgate.yaml", "/conf/examples/annotated.yaml", "/conf/examples/service.yaml"}) {
    CAPTURE(name);
    auto config = config::loadConfig(root + name);
    REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.message()));
  }
  auto quick = config::loadConfig(root + "/conf/shardgate.yaml");
  REQUIRE(quick.ok());
  CHECK(quick->cert_dir == root + "/conf/certs");
  REQUIRE(quick->databases.size() == 3);
  CHECK(quick->databases[0].name == "demo");
  CHECK(quick->databases[0].listen.toString() == "127.0.0.1:6380");
  CHECK(quick->databases[0].tls);
  CHECK(quick->databases[0].shards[0].address.toString() == "127.0.0.1:7001");
  CHECK(quick->databases[1].name == "plain");
  CHECK(quick->databases[1].listen.toString() == "127.0.0.1:6381");
  CHECK_FALSE(quick->databases[1].tls);
  CHECK(quick->databases[1].shards[0].address.toString() == "127.0.0.1:7002");
  CHECK(quick->databases[2].name == "sharded");
  CHECK(quick->databases[2].shards.size() == 3);
}

TEST_CASE("config: password and shard_password of a database") {
  config::Config c = parsed(
      "databases:\n"
      "  - name: db1\n"
      "    listen: 127.0.0.1:6380\n"
      "    password: \"s3cret\"\n"
      "    shard_password: spw\n"
      "    shards:\n"
      "      - address: 127.0.0.1:7001\n");
  REQUIRE(c.databases[0].password);
  CHECK(*c.databases[0].password == "s3cret");
  REQUIRE(c.databases[0].shard_password);
  CHECK(*c.databases[0].shard_password == "spw");
  CHECK_FALSE(parsed(kMinimal).databases[0].password);
  checkError(
      "databases:\n"
      "  - name: db1\n"
      "    listen: 127.0.0.1:6380\n"
      "    password: \"\"\n"
      "    shards:\n"
      "      - address: 127.0.0.1:7001\n",
      4, "databases[0].password", "expected a password, got \"\"");
  checkError(
      "databases:\n"
      "  - name: db1\n"
      "    listen: 127.0.0.1:6380\n"
      "    shard_password: [a]\n"
      "    shards:\n"
      "      - address: 127.0.0.1:7001\n",
      4, "databases[0].shard_password", "a password string");
}

TEST_CASE("config: multiplex of a database") {
  CHECK_FALSE(parsed(kMinimal).databases[0].multiplex);
  config::Config one = parsed(
      "databases:\n"
      "  - name: db1\n"
      "    listen: 127.0.0.1:6380\n"
      "    multiplex: true\n"
      "    shards:\n"
      "      - address: 127.0.0.1:7001\n");
  CHECK(one.databases[0].multiplex);
  // A password or several shards need the multiplexed path: multiplex is implied.
  config::Config pw = parsed(
      "databases:\n"
      "  - name: db1\n"
      "    listen: 127.0.0.1:6380\n"
      "    password: pw\n"
      "    shards:\n"
      "      - address: 127.0.0.1:7001\n");
  CHECK(pw.databases[0].multiplex);
  checkError(
      "databases:\n"
      "  - name: db1\n"
      "    listen: 127.0.0.1:6380\n"
      "    multiplex: false\n"
      "    shards:\n"
      "      - { address: 127.0.0.1:7001, slots: 0-8191 }\n"
      "      - { address: 127.0.0.1:7002, slots: 8192-16383 }\n",
      4, "databases[0].multiplex", "several shards are always multiplexed");
  checkError(
      "databases:\n"
      "  - name: db1\n"
      "    listen: 127.0.0.1:6380\n"
      "    shard_password: spw\n"
      "    multiplex: false\n"
      "    shards:\n"
      "      - address: 127.0.0.1:7001\n",
      5, "databases[0].multiplex", "cannot be combined with shard_password");
  checkError(
      "databases:\n"
      "  - name: db1\n"
      "    listen: 127.0.0.1:6380\n"
      "    multiplex: sometimes\n"
      "    shards:\n"
      "      - address: 127.0.0.1:7001\n",
      4, "databases[0].multiplex", "expected true or false");
}

TEST_CASE("config: limits") {
  config::Config defaults = parsed(kMinimal);
  CHECK(defaults.limits.max_bulk_len == 512ull * 1024 * 1024);
  CHECK(defaults.limits.max_args == 1024 * 1024);
  config::Config c = parsed(std::string(kMinimal) + "limits:\n  max_bulk_len: 1048576\n  max_args: 1000\n");
  CHECK(c.limits.max_bulk_len == 1048576);
  CHECK(c.limits.max_args == 1000);
  checkError(std::string(kMinimal) + "limits:\n  max_args: 3\n", 7, "limits.max_args", "3");
  checkError(std::string(kMinimal) + "limits:\n  max_bulk: 3\n", 7, "limits.max_bulk", "unknown key");
}

TEST_CASE("config: shard_timeout_ms and max_client_output") {
  config::Config d = parsed(kMinimal);
  CHECK(d.limits.shard_timeout_ms == 10000);
  CHECK(d.limits.max_client_output == 256ull << 20);
  config::Config c = parsed(std::string(kMinimal) +
                    "limits:\n  shard_timeout_ms: 500\n  max_client_output: 1048576\n");
  CHECK(c.limits.shard_timeout_ms == 500);
  CHECK(c.limits.max_client_output == 1048576);
  checkError(std::string(kMinimal) + "limits:\n  shard_timeout_ms: 5\n", 7,
             "limits.shard_timeout_ms", "5");
}

TEST_CASE("config: private_idle_ms") {
  CHECK(parsed(kMinimal).limits.private_idle_ms == 30000);
  CHECK(parsed(std::string(kMinimal) + "limits:\n  private_idle_ms: 250\n").limits.private_idle_ms == 250);
  checkError(std::string(kMinimal) + "limits:\n  private_idle_ms: 0\n", 7, "limits.private_idle_ms", "0");
}

TEST_CASE("config: where() gives the line of a key, its nearest parent, or line 1") {
  config::Config c = parsed("cert_dir: ./c\n" + std::string(kMinimal) + "    client_auth: optional\n");
  CHECK(c.where("cert_dir") == "conf/x.yaml:1: ");
  CHECK(c.where("databases[0].client_auth") == "conf/x.yaml:7: ");
  CHECK(c.where("databases[0].listen") == "conf/x.yaml:4: ");
  // Not given: the line of its nearest given parent, "databases:".
  CHECK(c.where("databases[0].password") == "conf/x.yaml:2: ");
  CHECK(c.where("drain_timeout_ms") == "conf/x.yaml:1: ");
  // A prefix of a name is not its parent.
  CHECK(c.where("cert_dir_extra") == "conf/x.yaml:1: ");
}

TEST_CASE("config: listen port 0 asks for any free port, and never collides") {
  config::Config c = parsed(
      "databases:\n"
      "  - name: a\n    listen: 127.0.0.1:0\n    shards: [{address: 127.0.0.1:7001}]\n"
      "  - name: b\n    listen: 127.0.0.1:0\n    shards: [{address: 127.0.0.1:7001}]\n");
  CHECK(c.databases[0].listen.port == 0);
  CHECK(c.databases[1].listen.port == 0);
  checkError("databases:\n  - name: db1\n    listen: 127.0.0.1:6380\n    shards:\n"
             "      - address: 127.0.0.1:0\n",
             5, "databases[0].shards[0].address", "port 0 is out of range 1-65535");
}

TEST_CASE("config: the admin section and tls.control_min_version") {
  const std::string hash = "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==";
  config::Config c = parsed(std::string(kMinimal) + "tls:\n  control_min_version: \"1.3\"\nadmin:\n"
                            "  listen: 127.0.0.1:9443\n  max_connections: 4\n  request_timeout_ms: 500\n"
                            "  max_body_bytes: 4096\n  users:\n    - name: ops\n      password_hash: \"" + hash + "\"\n");
  REQUIRE(c.admin_listen.has_value());
  CHECK(c.admin_listen->port == 9443);
  CHECK((c.tls.policy.control_min_version == tls::TlsVersion::k1_3));
  CHECK((c.tls.policy.min_version == tls::TlsVersion::k1_2));
  CHECK(c.admin.max_connections == 4);
  CHECK(c.admin.request_timeout_ms == 500);
  CHECK(c.admin.max_body_bytes == 4096);
  REQUIRE(c.admin.users.size() == 1);
  CHECK(c.admin.users[0].name == "ops");
  CHECK(c.admin.users[0].password_hash == hash);

  config::Config defaults = parsed(std::string(kMinimal) + "admin:\n  listen: 127.0.0.1:9443\n");
  CHECK(defaults.admin.max_connections == 32);
  CHECK(defaults.admin.request_timeout_ms == 10000);
  CHECK(defaults.admin.max_body_bytes == 1024 * 1024);
  CHECK(defaults.admin.users.empty());

  checkError(std::string(kMinimal) + "admin:\n  listen: 127.0.0.1:9443\n  users:\n    - name: ops\n"
                                     "      password_hash: hunter2\n",
             10, "admin.users[0].password_hash", "--hash-password");
  checkError(std::string(kMinimal) + "admin:\n  listen: 127.0.0.1:9443\n  users:\n    - name: \"a:b\"\n"
                                     "      password_hash: \"" + hash + "\"\n",
             9, "admin.users[0].name", "without ':'");
  checkError(std::string(kMinimal) + "admin:\n  listen: 127.0.0.1:9443\n  users:\n    - name: a\n"
                                     "      password_hash: \"" + hash + "\"\n    - name: a\n      password_hash: \"" +
                 hash + "\"\n",
             11, "admin.users[1].name", "listed twice");
  checkError(std::string(kMinimal) + "admin:\n  listen: 127.0.0.1:9443\n  max_connections: 0\n", 8,
             "admin.max_connections", "out of range");
  checkError(std::string(kMinimal) + "admin:\n  listen: 127.0.0.1:6380\n", 7, "admin.listen",
             "also the listen address of databases[0]");
}

// A cluster database (lines 1-3, then its cluster section from line 4).
std::string clusterDb(const std::string& cluster_lines) {
  return "databases:\n"
         "  - name: big\n"
         "    listen: 127.0.0.1:6390\n" +
         cluster_lines;
}

TEST_CASE("config: a cluster database: seeds, refresh_interval_ms, always multiplexed") {
  Config c = parsed(clusterDb("    cluster: { seeds: [127.0.0.1:7000, \"127.0.0.1:7001\"] }\n"));
  REQUIRE(c.databases[0].cluster.has_value());
  const ClusterConfig& cluster = *c.databases[0].cluster;
  REQUIRE(cluster.seeds.size() == 2);
  CHECK(cluster.seeds[0].toString() == "127.0.0.1:7000");
  CHECK(cluster.seeds[1].toString() == "127.0.0.1:7001");
  CHECK(cluster.refresh_interval_ms == 10000);
  CHECK(c.databases[0].shards.empty());
  CHECK(c.databases[0].multiplex);

  Config fast = parsed(clusterDb("    cluster:\n      seeds: [127.0.0.1:7000]\n      refresh_interval_ms: 200\n"));
  CHECK(fast.databases[0].cluster->refresh_interval_ms == 200);
  CHECK(cluster.shown_masters == 1);
  CHECK(parsed(clusterDb("    cluster: { seeds: [127.0.0.1:7000], shown_masters: 2 }\n"))
            .databases[0].cluster->shown_masters == 2);
  // A shards database has no cluster.
  CHECK_FALSE(parsed(kMinimal).databases[0].cluster.has_value());
}

TEST_CASE("config: shards or cluster, exactly one") {
  CHECK(errorOf(clusterDb("    cluster: { seeds: [127.0.0.1:7000] }\n"
                          "    shards:\n      - address: 127.0.0.1:7001\n")) ==
        "conf/x.yaml:4: databases[0]: give either shards or cluster, not both");
  checkError(clusterDb(""), 2, "databases[0]", "missing required key \"shards\"");
  checkError(clusterDb(""), 2, "databases[0]", "or \"cluster\"");
}

TEST_CASE("config: cluster section errors name the key") {
  checkError(clusterDb("    cluster: {}\n"), 4, "databases[0].cluster", "missing required key \"seeds\"");
  checkError(clusterDb("    cluster: { seeds: [] }\n"), 4, "databases[0].cluster.seeds",
             "expected a list of at least one node such as [127.0.0.1:7000], got an empty list");
  checkError(clusterDb("    cluster: { seeds: 127.0.0.1:7000 }\n"), 4, "databases[0].cluster.seeds",
             "expected a list of at least one node");
  checkError(clusterDb("    cluster:\n      seeds:\n        - 127.0.0.1:7000\n        - nope\n"), 7,
             "databases[0].cluster.seeds[1]", "expected HOST:PORT such as 127.0.0.1:6380, got \"nope\"");
  checkError(clusterDb("    cluster:\n      seeds: [127.0.0.1:7000, 127.0.0.1:7000]\n"), 5,
             "databases[0].cluster.seeds[1]", "127.0.0.1:7000 is also databases[0].cluster.seeds[0]");
  checkError(clusterDb("    cluster:\n      seeds: [127.0.0.1:7000]\n      refresh_interval_ms: 10\n"), 6,
             "databases[0].cluster.refresh_interval_ms", "10 is out of range 100-3600000");
  checkError(clusterDb("    cluster:\n      seeds: [127.0.0.1:7000]\n      refresh: 10\n"), 6,
             "databases[0].cluster.refresh",
             "unknown key (known keys: seeds, refresh_interval_ms, shown_masters, read_from)");
  checkError(clusterDb("    cluster: { seeds: [127.0.0.1:7000], shown_masters: 0 }\n"), 4,
             "databases[0].cluster.shown_masters", "0 is out of range 1-64");
  checkError(clusterDb("    cluster: { seeds: [127.0.0.1:7000] }\n    multiplex: false\n"), 5,
             "databases[0].multiplex", "a cluster database is always multiplexed");
}

TEST_CASE("config: cluster.read_from, primary unless replica_preferred") {
  CHECK(parsed(clusterDb("    cluster: { seeds: [127.0.0.1:7000] }\n")).databases[0].cluster->read_from ==
        ReadFrom::kPrimary);
  CHECK(parsed(clusterDb("    cluster: { seeds: [127.0.0.1:7000], read_from: primary }\n"))
            .databases[0].cluster->read_from == ReadFrom::kPrimary);
  Config c = parsed(clusterDb("    cluster:\n      seeds: [127.0.0.1:7000]\n      read_from: replica_preferred\n"));
  CHECK(c.databases[0].cluster->read_from == ReadFrom::kReplicaPreferred);
  CHECK(std::string(readFromName(c.databases[0].cluster->read_from)) == "replica_preferred");
  checkError(clusterDb("    cluster:\n      seeds: [127.0.0.1:7000]\n      read_from: x\n"), 6,
             "databases[0].cluster.read_from", "\"x\" is not one of primary, replica_preferred");
  // At the database's level (a database of shards, or a misplaced key).
  checkError(clusterDb("    read_from: replica_preferred\n    cluster: { seeds: [127.0.0.1:7000] }\n"), 4,
             "databases[0].read_from", "read_from is a setting of a Redis Cluster backend");
}

TEST_CASE("config: a cluster database takes shard_tls for every node") {
  Config c = parsed(clusterDb("    shard_tls:\n      ca: shard_ca.pem\n      server_name: redis.internal\n"
                              "    cluster: { seeds: [127.0.0.1:7000] }\n"));
  CHECK(c.databases[0].shard_tls.tls);
  CHECK(c.databases[0].shard_tls.ca == "shard_ca.pem");
  CHECK(c.databases[0].shard_tls.server_name == "redis.internal");
  CHECK(c.databases[0].shards.empty());
  checkError(clusterDb("    shard_tls:\n      server_name: x\n    cluster: { seeds: [127.0.0.1:7000] }\n"), 5,
             "databases[0].shard_tls.ca", "required when tls is on");
}

// ---- shard_tls ------------------------------------------------------------------------

namespace {

// One database, two shards, shard_tls given by the caller (lines 4-).
std::string withShardTls(const std::string& shard_tls, const std::string& shard0 = "",
                         const std::string& shard1 = "") {
  return "databases:\n"
         "  - name: db1\n"
         "    listen: 127.0.0.1:6380\n" +
         shard_tls +
         "    shards:\n"
         "      - address: 127.0.0.1:7001\n"
         "        slots: 0-8191\n" +
         shard0 +
         "      - address: 127.0.0.1:7002\n"
         "        slots: 8192-16383\n" +
         shard1;
}

}  // namespace

TEST_CASE("config: shard_tls absent: every shard is plaintext") {
  Config c = parsed(withShardTls(""));
  CHECK_FALSE(c.databases[0].shard_tls.tls);
  CHECK_FALSE(c.databases[0].shards[0].tls.tls);
  CHECK_FALSE(c.databases[0].shards[1].tls.tls);
}

TEST_CASE("config: shard_tls applies to every shard, with defaults") {
  Config c = parsed(withShardTls("    shard_tls:\n      ca: shard_ca.pem\n"));
  for (const ShardConfig& shard : c.databases[0].shards) {
    CHECK(shard.tls.tls);
    CHECK(shard.tls.ca == "shard_ca.pem");
    CHECK(shard.tls.ca_key == "databases[0].shard_tls.ca");
    CHECK(shard.tls.cert.empty());
    CHECK(shard.tls.server_name.empty());
    CHECK((shard.tls.policy.min_version == tls::TlsVersion::k1_2));
    CHECK(shard.tls.policy.ciphers == tls::kDefaultCiphers);
    CHECK(shard.tls.policy.ciphersuites == tls::kDefaultCiphersuites);
  }
}

TEST_CASE("config: a shard overrides tls, server_name and files") {
  Config c = parsed(withShardTls(
      "    shard_tls:\n      ca: shard_ca.pem\n      server_name: redis.internal\n      min_version: \"1.3\"\n"
      "      cert: c.pem\n      key: c.key\n",
      "        tls: false\n",
      "        server_name: shard2.internal\n        ca: /etc/other_ca.pem\n        cert: s2.pem\n        key: s2.key\n"));
  const auto& s0 = c.databases[0].shards[0].tls;
  const auto& s1 = c.databases[0].shards[1].tls;
  CHECK_FALSE(s0.tls);
  CHECK(s1.tls);
  CHECK(s1.server_name == "shard2.internal");
  CHECK(s1.ca == "/etc/other_ca.pem");
  CHECK(s1.ca_key == "databases[0].shards[1].ca");
  CHECK(s1.cert == "s2.pem");
  CHECK(s1.cert_key == "databases[0].shards[1].cert");
  CHECK((s1.policy.min_version == tls::TlsVersion::k1_3));
  CHECK(c.databases[0].shard_tls.server_name == "redis.internal");
}

TEST_CASE("config: one shard turns TLS on by itself") {
  Config c = parsed(withShardTls("", "", "        tls: true\n        ca: ca.pem\n"));
  CHECK_FALSE(c.databases[0].shards[0].tls.tls);
  CHECK(c.databases[0].shards[1].tls.tls);
}

TEST_CASE("config: shard_tls errors name the key") {
  checkError(withShardTls("    shard_tls:\n      server_name: x\n"), 5, "databases[0].shard_tls.ca",
             "required when tls is on");
  checkError(withShardTls("", "", "        tls: true\n"), 9, "databases[0].shards[1].ca", "required when tls is on");
  checkError(withShardTls("    shard_tls:\n      ca: ca.pem\n      cert: c.pem\n"), 6, "databases[0].shard_tls.key",
             "required with cert");
  checkError(withShardTls("    shard_tls:\n      ca: ca.pem\n", "        key: k.pem\n"), 9,
             "databases[0].shards[0].cert", "required with key");
  checkError(withShardTls("    shard_tls:\n      ca: ca.pem\n      min_version: \"1.1\"\n"), 6,
             "databases[0].shard_tls.min_version", "expected \"1.2\" or \"1.3\", got \"1.1\"");
  checkError(withShardTls("    shard_tls:\n      ca: ca.pem\n      ciphers: NOPE\n"), 6,
             "databases[0].shard_tls.ciphers", "no cipher matches");
  checkError(withShardTls("    shard_tls:\n      ca: ca.pem\n      ciphersuites: NOPE\n"), 6,
             "databases[0].shard_tls.ciphersuites", "invalid TLS 1.3 ciphersuite list");
  checkError(withShardTls("    shard_tls:\n      ca: \"\"\n"), 5, "databases[0].shard_tls.ca", "expected a file name");
  checkError(withShardTls("    shard_tls:\n      ca: ca.pem\n      tls: maybe\n"), 6, "databases[0].shard_tls.tls",
             "expected true or false");
  checkError(withShardTls("    shard_tls:\n      ca: ca.pem\n      sni: x\n"), 6, "databases[0].shard_tls.sni",
             "unknown key (known keys: tls, ca, server_name, cert, key, min_version, ciphers, ciphersuites)");
  checkError(withShardTls("    shard_tls:\n      ca: ca.pem\n      server_name: \"a b\"\n"), 6,
             "databases[0].shard_tls.server_name", "expected a host name");
}

TEST_CASE("config: shard_tls: false keeps the files but turns TLS off") {
  Config c = parsed(withShardTls("    shard_tls:\n      tls: false\n"));
  CHECK_FALSE(c.databases[0].shards[0].tls.tls);
}
