// The config validator: YAML text -> Config, or one message that names the
// file, the line, the key path and what was expected.
//
// Inside this file a problem is thrown as `Invalid` so that each reader can
// stop at the first bad key without threading a Result through thirty
// functions; parseConfig() catches it, and every yaml-cpp exception, at the
// boundary. Nothing thrown here ever leaves parseConfig()/loadConfig().
#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include "tls/client_identity.h"
#include "tls/password_hash.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace shardgate::config {
namespace {

constexpr unsigned kMaxWorkers = 256;
constexpr uint32_t kMaxTimeoutMs = 600000;

struct Invalid {
  std::string message;  // complete: "source:line: key.path: problem"
};

std::string quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// What a value is, for "expected X, got Y".
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar: return quote(node.Scalar());
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Null: return "an empty value";
    case YAML::NodeType::Undefined: break;
  }
  return "nothing";
}

std::string child(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

std::string element(const std::string& parent, size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

std::string joinNames(std::initializer_list<const char*> names) {
  std::string out;
  for (const char* name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

// Digits only; saturates rather than overflowing so huge values still report
// as "out of range" instead of wrapping into range.
std::optional<uint64_t> parseUnsigned(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value > (uint64_t{1} << 40) ? value : value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

std::string trim(std::string_view text) {
  size_t b = text.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  size_t e = text.find_last_not_of(" \t");
  return std::string(text.substr(b, e - b + 1));
}

std::string slotRangeText(uint16_t first, uint16_t last) {
  return first == last ? std::to_string(first)
                       : std::to_string(first) + "-" + std::to_string(last);
}

// Two listeners collide on the same port when their hosts are equal or either
// is a wildcard (binding 0.0.0.0:P fails once 127.0.0.1:P is taken).
// Port 0 is a fresh port the kernel picks for each listener: never a collision.
bool sameEndpoint(const net::SocketAddress& a, const net::SocketAddress& b) {
  auto wildcard = [](const std::string& h) { return h == "0.0.0.0" || h == "::"; };
  return a.port != 0 && a.port == b.port &&
         (a.host == b.host || wildcard(a.host) || wildcard(b.host));
}

class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const YAML::Node& at, const std::string& path,
                         const std::string& problem) const {
    throw Invalid{where(at, path) + (path.empty() ? "" : path + ": ") + problem};
  }

  std::string where(const YAML::Node& at, const std::string& path) const {
    YAML::Mark mark = at.Mark();
    if (at.IsNull()) {
      for (const auto& [value, key_mark] : empty_values_) {
        if (value.is(at)) mark = key_mark;
      }
    }
    int line = mark.is_null() ? 1 : mark.line + 1;
    // A value never starts before its own key, unless it is an alias (`listen:
    // *addr`): yaml-cpp marks an alias where its anchor is, which is another
    // key's line. The key that uses it is where the operator must look.
    for (const auto& [key_path, key_line] : key_lines_) {
      if (key_path == path && key_line > line) line = key_line;
    }
    return source_ + ":" + std::to_string(line) + ": ";
  }

  // A mapping's entries, checked against the keys this level knows.
  class Fields {
   public:
    Fields(const Parser& p, const YAML::Node& map, std::string path,
           std::initializer_list<const char*> known)
        : p_(p), map_(map), path_(std::move(path)) {
      if (!map.IsMap()) {
        p.fail(map, path_, "expected a mapping of keys (" + joinNames(known) + "), got " +
                               describe(map));
      }
      for (const auto& entry : map) {
        const YAML::Node& key = entry.first;
        if (!key.IsScalar()) p.fail(key, path_, "expected a key name, got " + describe(key));
        const std::string& name = key.Scalar();
        if (std::find_if(known.begin(), known.end(),
                         [&](const char* k) { return name == k; }) == known.end()) {
          p.fail(key, child(path_, name), "unknown key (known keys: " + joinNames(known) + ")");
        }
        for (const auto& seen : entries_) {
          if (seen.first == name) {
            p.fail(key, child(path_, name),
                   "duplicate key (first given on line " +
                       std::to_string(seen.second.Mark().line + 1) + ")");
          }
        }
        // yaml-cpp marks an empty value ("workers:") at the start of the
        // next line; remember its key so errors point at the key's own line.
        if (entry.second.IsNull()) p.empty_values_.emplace_back(entry.second, key.Mark());
        entries_.emplace_back(name, entry.second);
        p.key_lines_.emplace_back(child(path_, name), key.Mark().line + 1);
      }
    }

    const YAML::Node* find(std::string_view key) const {
      for (const auto& entry : entries_) {
        if (entry.first == key) return &entry.second;
      }
      return nullptr;
    }

    const YAML::Node& require(const char* key, const std::string& why = "") const {
      const YAML::Node* node = find(key);
      if (node == nullptr) {
        p_.fail(map_, path_, std::string("missing required key \"") + key + "\"" + why);
      }
      return *node;
    }

    std::string path(std::string_view key) const { return child(path_, key); }
    const std::string& path() const { return path_; }
    const YAML::Node& node() const { return map_; }

   private:
    const Parser& p_;
    YAML::Node map_;
    std::string path_;
    std::vector<std::pair<std::string, YAML::Node>> entries_;
  };

  std::string scalar(const YAML::Node& node, const std::string& path,
                     const std::string& expected) const {
    if (!node.IsScalar()) fail(node, path, "expected " + expected + ", got " + describe(node));
    return node.Scalar();
  }

  uint64_t integer(const YAML::Node& node, const std::string& path, uint64_t min,
                   uint64_t max) const {
    const std::string range = std::to_string(min) + "-" + std::to_string(max);
    std::string text = scalar(node, path, "an integer in " + range);
    std::optional<uint64_t> value = parseUnsigned(text);
    if (!value) fail(node, path, "expected an integer in " + range + ", got " + quote(text));
    if (*value < min || *value > max) fail(node, path, text + " is out of range " + range);
    return *value;
  }

  bool boolean(const YAML::Node& node, const std::string& path) const {
    std::string text = scalar(node, path, "true or false");
    bool value = false;
    // yaml-cpp's YAML 1.1 spellings (true/false, yes/no, on/off).
    if (!YAML::convert<bool>::decode(node, value)) {
      fail(node, path, "expected true or false, got " + quote(text));
    }
    return value;
  }

  net::SocketAddress address(const YAML::Node& node, const std::string& path,
                        bool listen = false) const {
    std::string text = scalar(node, path, "HOST:PORT such as 127.0.0.1:6380");
    Result<net::SocketAddress> parsed = net::parseSocketAddress(text, listen);
    if (!parsed) fail(node, path, parsed.message());
    return std::move(parsed).value();
  }

  tls::TlsVersion version(const YAML::Node& node, const std::string& path) const {
    std::string text = scalar(node, path, "one of \"1.0\", \"1.1\", \"1.2\", \"1.3\"");
    Result<tls::TlsVersion> parsed = tls::parseTlsVersion(text);
    if (!parsed) fail(node, path, parsed.message());
    return *parsed;
  }

  std::string oneOf(const YAML::Node& node, const std::string& path,
                    std::initializer_list<const char*> allowed) const {
    std::string expected = "one of " + joinNames(allowed);
    std::string text = scalar(node, path, expected);
    for (const char* a : allowed) {
      if (text == a) return text;
    }
    fail(node, path, "expected " + expected + ", got " + quote(text));
  }

  Config parse(const YAML::Node& root, std::string_view base_dir) const {
    Config config;
    if (!root.IsDefined() || root.IsNull()) {
      throw Invalid{source_ + ":1: the file is empty; expected a mapping with at least a "
                              "\"databases\" list"};
    }
    Fields top(*this, root, "",
               {"workers", "log_level", "cert_dir", "generate_self_signed", "tls", "databases",
                "admin", "metrics", "drain_timeout_ms", "limits",
                "pid_file", "log_file"});

    if (const YAML::Node* n = top.find("workers")) config.workers = workers(*n);
    if (const YAML::Node* n = top.find("log_level")) {
      config.log_level =
          oneOf(*n, "log_level", {"trace", "debug", "info", "warn", "error"});
    }
    if (const YAML::Node* n = top.find("cert_dir")) {
      config.cert_dir = scalar(*n, "cert_dir", "a directory path");
      if (config.cert_dir.empty()) fail(*n, "cert_dir", "expected a directory path, got \"\"");
    }
    config.cert_dir = absoluteDir(config.cert_dir, base_dir);
    if (const YAML::Node* n = top.find("generate_self_signed")) {
      config.generate_self_signed = boolean(*n, "generate_self_signed");
    }
    if (const YAML::Node* n = top.find("tls"); n != nullptr && !n->IsNull()) {
      config.tls = tlsSection(*n);
    }
    if (const YAML::Node* n = top.find("drain_timeout_ms")) {
      config.drain_timeout_ms =
          static_cast<uint32_t>(integer(*n, "drain_timeout_ms", 0, kMaxTimeoutMs));
    }

    if (const YAML::Node* n = top.find("limits"); n != nullptr && !n->IsNull()) {
      config.limits = limitsSection(*n);
    }
    if (const YAML::Node* n = top.find("pid_file")) {
      config.pid_file = absoluteDir(filePath(*n, "pid_file"), base_dir);
    }
    if (const YAML::Node* n = top.find("log_file")) {
      config.log_file = absoluteDir(filePath(*n, "log_file"), base_dir);
      if (config.log_file == config.pid_file) {
        fail(*n, "log_file", "is also pid_file; each needs its own file");
      }
    }

    const YAML::Node& dbs = top.require("databases", " (a list of at least one database)");
    config.databases = databases(dbs);

    if (const YAML::Node* n = top.find("admin"); n != nullptr && !n->IsNull()) {
      adminSection(*n, config);
    }
    if (const YAML::Node* n = top.find("metrics"); n != nullptr && !n->IsNull()) {
      config.metrics_listen = listenSection(*n, "metrics", config, {"listen", "tls"});
      Fields f(*this, *n, "metrics", {"listen", "tls"});
      if (const YAML::Node* t = f.find("tls")) config.metrics_tls = boolean(*t, "metrics.tls");
      if (config.admin_listen && sameEndpoint(*config.admin_listen, *config.metrics_listen)) {
        fail(*n, "metrics.listen",
             config.metrics_listen->toString() + " is also admin.listen; each needs its own port");
      }
    }
    return config;
  }

 private:
  unsigned workers(const YAML::Node& node) const {
    const std::string expected = "expected \"auto\" or a positive integer";
    std::string text = scalar(node, "workers", "\"auto\" or a positive integer");
    if (text == "auto") return 0;
    std::optional<uint64_t> value = parseUnsigned(text);
    if (!value || *value == 0) fail(node, "workers", expected + ", got " + quote(text));
    if (*value > kMaxWorkers) {
      fail(node, "workers", text + " is out of range 1-" + std::to_string(kMaxWorkers) +
                                " (or \"auto\")");
    }
    return static_cast<unsigned>(*value);
  }

  std::string filePath(const YAML::Node& node, const std::string& path) const {
    std::string text = scalar(node, path, "a file path");
    if (text.empty() || text.back() == '/') {
      fail(node, path, "expected a file path, got " + quote(text));
    }
    return text;
  }

  static std::string absoluteDir(const std::string& dir, std::string_view base_dir) {
    namespace fs = std::filesystem;
    fs::path p(dir);
    if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
    std::error_code ec;
    fs::path abs = fs::absolute(p, ec);
    if (ec) abs = p;
    abs = abs.lexically_normal();
    // "/a/certs/" normalizes with a trailing separator; drop it for tidy messages.
    if (!abs.has_filename() && abs.has_parent_path() && abs != abs.root_path()) {
      abs = abs.parent_path();
    }
    return abs.string();
  }

  TlsConfig tlsSection(const YAML::Node& node) const {
    TlsConfig out;
    Fields f(*this, node, "tls",
             {"min_version", "ciphers", "ciphersuites", "handshake_timeout_ms",
              "audit_min_version", "control_min_version"});
    if (const YAML::Node* n = f.find("min_version")) {
      out.policy.min_version = version(*n, "tls.min_version");
    }
    if (const YAML::Node* n = f.find("audit_min_version")) {
      out.policy.audit_min_version = version(*n, "tls.audit_min_version");
    }
    if (const YAML::Node* n = f.find("control_min_version")) {
      out.policy.control_min_version = version(*n, "tls.control_min_version");
    }
    if (const YAML::Node* n = f.find("handshake_timeout_ms")) {
      out.handshake_timeout_ms =
          static_cast<uint32_t>(integer(*n, "tls.handshake_timeout_ms", 100, kMaxTimeoutMs));
    }
    // Each cipher string is checked with the other left at its default, so the
    // error points at the line of the string that is actually bad.
    const YAML::Node* ciphers = f.find("ciphers");
    const YAML::Node* suites = f.find("ciphersuites");
    auto checkAlone = [&](const YAML::Node& at, std::string tls::TlsPolicy::*field,
                          const std::string& key, const char* expected) {
      out.policy.*field = scalar(at, key, expected);
      tls::TlsPolicy alone;
      alone.min_version = out.policy.min_version;
      alone.*field = out.policy.*field;
      checkPolicy(alone, at, key);
    };
    if (ciphers != nullptr) {
      checkAlone(*ciphers, &tls::TlsPolicy::ciphers, "tls.ciphers", "an OpenSSL cipher list");
    }
    if (suites != nullptr) {
      checkAlone(*suites, &tls::TlsPolicy::ciphersuites, "tls.ciphersuites",
                 "a TLS 1.3 ciphersuite list");
    }
    if (ciphers != nullptr || suites != nullptr) {
      checkPolicy(out.policy, ciphers != nullptr ? *ciphers : *suites, "tls");
    }
    // The default list is TLS 1.2 AEAD only; an operator who lowers the
    // minimum wants the older clients to connect, so add their CBC suites.
    if (ciphers == nullptr && out.policy.min_version < tls::TlsVersion::k1_2) {
      out.policy.ciphers = std::string(tls::kDefaultCiphers) + ":" + tls::kLegacyCiphers;
    }
    return out;
  }

  void checkPolicy(const tls::TlsPolicy& policy, const YAML::Node& at,
                   const std::string& path) const {
    Status status = tls::validatePolicy(policy);
    if (status) return;
    // validatePolicy names the key itself ("tls.ciphers: ..."); don't repeat it.
    std::string message = status.message();
    if (message.rfind("tls.", 0) == 0) fail(at, "", message);
    fail(at, path, message);
  }

  std::vector<DatabaseConfig> databases(const YAML::Node& node) const {
    if (!node.IsSequence() || node.size() == 0) {
      fail(node, "databases",
           "expected a list of at least one database, got " +
               (node.IsSequence() ? std::string("an empty list") : describe(node)));
    }
    std::vector<DatabaseConfig> out;
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string path = element("databases", i);
      const YAML::Node item = node[i];
      DatabaseConfig db = database(item, path);
      for (size_t j = 0; j < out.size(); ++j) {
        if (out[j].name == db.name) {
          fail(item["name"], path + ".name",
               quote(db.name) + " is already the name of " + element("databases", j) +
                   "; names must be unique");
        }
        if (sameEndpoint(out[j].listen, db.listen)) {
          fail(item["listen"], path + ".listen",
               db.listen.toString() + " is also the listen address of " +
                   element("databases", j) + " (" + out[j].name +
                   "); each database needs its own port");
        }
      }
      out.push_back(std::move(db));
    }
    return out;
  }

  LimitsConfig limitsSection(const YAML::Node& node) const {
    LimitsConfig limits;
    Fields f(*this, node, "limits",
             {"max_bulk_len", "max_args", "shard_timeout_ms", "max_client_output",
              "private_idle_ms"});
    if (const YAML::Node* n = f.find("max_bulk_len")) {
      limits.max_bulk_len = integer(*n, f.path("max_bulk_len"), 1024, 4ull << 30);
    }
    if (const YAML::Node* n = f.find("max_args")) {
      limits.max_args = integer(*n, f.path("max_args"), 16, 1ull << 30);
    }
    if (const YAML::Node* n = f.find("shard_timeout_ms")) {
      limits.shard_timeout_ms = integer(*n, f.path("shard_timeout_ms"), 100, kMaxTimeoutMs);
    }
    if (const YAML::Node* n = f.find("private_idle_ms")) {
      limits.private_idle_ms = integer(*n, f.path("private_idle_ms"), 100, 24ull * 3600 * 1000);
    }
    if (const YAML::Node* n = f.find("max_client_output")) {
      limits.max_client_output = integer(*n, f.path("max_client_output"), 64 * 1024, 64ull << 30);
    }
    return limits;
  }

  DatabaseConfig database(const YAML::Node& node, const std::string& path) const {
    DatabaseConfig db;
    // cluster.read_from given at the database's level: said as such, not
    // as an unknown key.
    if (node.IsMap() && node["read_from"]) {
      fail(node["read_from"], path + ".read_from",
           "read_from is a setting of a Redis Cluster backend (cluster: {seeds: [...], read_from: ...}); "
           "a database of shards reads from its shards");
    }
    Fields f(*this, node, path,
             {"name", "listen", "tls", "client_auth", "client_ca", "client_crl", "client_allow", "password",
              "shard_password", "multiplex", "shard_tls", "shards", "cluster"});

    const YAML::Node& name = f.require("name");
    db.name = scalar(name, f.path("name"), "a name of letters, digits, '_' and '-'");
    bool good = !db.name.empty() && std::all_of(db.name.begin(), db.name.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-';
    });
    if (!good) {
      fail(name, f.path("name"),
           "expected a name of letters, digits, '_' and '-', got " + quote(db.name));
    }

    db.listen = address(f.require("listen"), f.path("listen"), true);
    if (const YAML::Node* n = f.find("tls")) db.tls = boolean(*n, f.path("tls"));
    if (const YAML::Node* n = f.find("client_auth")) {
      std::string mode = oneOf(*n, f.path("client_auth"), {"none", "optional", "required"});
      db.client_auth = mode == "none"       ? ClientAuth::kNone
                       : mode == "optional" ? ClientAuth::kOptional
                                            : ClientAuth::kRequired;
      if (!db.tls && db.client_auth != ClientAuth::kNone) {
        fail(*n, f.path("client_auth"),
             quote(mode) + " needs a TLS endpoint, but this database has tls: false");
      }
    }
    clientCertificates(f, db);
    if (const YAML::Node* n = f.find("password")) {
      db.password = scalar(*n, f.path("password"), "a password string");
      if (db.password->empty()) fail(*n, f.path("password"), "expected a password, got \"\"");
    }
    if (const YAML::Node* n = f.find("shard_password")) {
      db.shard_password = scalar(*n, f.path("shard_password"), "a password string");
      if (db.shard_password->empty()) {
        fail(*n, f.path("shard_password"), "expected a password, got \"\"");
      }
    }
    if (const YAML::Node* n = f.find("shard_tls"); n != nullptr && !n->IsNull()) {
      db.shard_tls = shardTls(*n, f.path("shard_tls"));
    }
    shardsOrCluster(f, db);
    if (const YAML::Node* n = f.find("multiplex")) {
      db.multiplex = boolean(*n, f.path("multiplex"));
      // false cannot be honoured: routing by slot and checking a password
      // both need the proxy to read every command.
      if (!db.multiplex && db.cluster) {
        fail(*n, f.path("multiplex"),
             "false needs a database of one shard; a cluster database is always multiplexed "
             "(each command goes to the master owning its slot)");
      }
      if (!db.multiplex && db.shards.size() > 1) {
        fail(*n, f.path("multiplex"),
             "false needs a database of one shard; this one has " +
                 std::to_string(db.shards.size()) + ", and several shards are always multiplexed");
      }
      if (!db.multiplex && (db.password || db.shard_password)) {
        const char* key = db.password ? "password" : "shard_password";
        fail(*n, f.path("multiplex"),
             std::string("false cannot be combined with ") + key +
                 ": the proxy authenticates for the client, so it reads every command and "
                 "multiplexes");
      }
    }
    if (db.shards.size() > 1 || db.cluster || db.password || db.shard_password) db.multiplex = true;
    return db;
  }

  // `shards` or `cluster`, exactly one: a database routes by a slot list it
  // is given or by the one a cluster reports, never a mix of both.
  void shardsOrCluster(const Fields& f, DatabaseConfig& db) const {
    const YAML::Node* shards_node = f.find("shards");
    const YAML::Node* cluster_node = f.find("cluster");
    if (shards_node != nullptr && cluster_node != nullptr) {
      fail(*cluster_node, f.path(), "give either shards or cluster, not both");
    }
    if (cluster_node != nullptr) {
      db.cluster = clusterSection(*cluster_node, f.path("cluster"));
      // Every discovered node is reached with the database's shard_tls:
      // the nodes are not named in the config, so there is no per-node key.
      if (db.shard_tls.tls && db.shard_tls.ca.empty()) {
        fail(*f.find("shard_tls"), f.path("shard_tls") + ".ca",
             "required when tls is on (the CA bundle the nodes' certificates must chain to)");
      }
      return;
    }
    const YAML::Node& node = f.require(
        "shards", " (a list of shards with their slots), or \"cluster\" (a Redis Cluster's seeds)");
    db.shards = shards(node, f.path("shards"), db.shard_tls, f.find("shard_tls"));
  }

  ClusterConfig clusterSection(const YAML::Node& node, const std::string& path) const {
    ClusterConfig cluster;
    Fields f(*this, node, path, {"seeds", "refresh_interval_ms", "shown_masters", "read_from"});
    const YAML::Node& seeds = f.require("seeds", " (nodes of the cluster such as [127.0.0.1:7000])");
    const std::string seeds_path = f.path("seeds");
    if (!seeds.IsSequence() || seeds.size() == 0) {
      fail(seeds, seeds_path,
           "expected a list of at least one node such as [127.0.0.1:7000], got " +
               (seeds.IsSequence() ? std::string("an empty list") : describe(seeds)));
    }
    for (size_t i = 0; i < seeds.size(); ++i) {
      const std::string at = element(seeds_path, i);
      net::SocketAddress seed = address(seeds[i], at);
      for (size_t j = 0; j < cluster.seeds.size(); ++j) {
        if (cluster.seeds[j] == seed) {
          fail(seeds[i], at, seed.toString() + " is also " + element(seeds_path, j) + "; list each node once");
        }
      }
      cluster.seeds.push_back(std::move(seed));
    }
    if (const YAML::Node* n = f.find("refresh_interval_ms")) {
      cluster.refresh_interval_ms = static_cast<uint32_t>(
          integer(*n, f.path("refresh_interval_ms"), ClusterConfig::kMinRefreshIntervalMs,
                  ClusterConfig::kMaxRefreshIntervalMs));
    }
    if (const YAML::Node* n = f.find("shown_masters")) {
      cluster.shown_masters =
          static_cast<uint16_t>(integer(*n, f.path("shown_masters"), 1, ClusterConfig::kMaxShownMasters));
    }
    if (const YAML::Node* n = f.find("read_from")) {
      const std::string at = f.path("read_from");
      const std::string text = scalar(*n, at, "one of primary, replica_preferred");
      if (text == "primary") {
        cluster.read_from = ReadFrom::kPrimary;
      } else if (text == "replica_preferred") {
        cluster.read_from = ReadFrom::kReplicaPreferred;
      } else {
        fail(*n, at, quote(text) + " is not one of primary, replica_preferred");
      }
    }
    return cluster;
  }

  // client_ca, client_crl, client_allow: only with client_auth optional or
  // required, since without it no client certificate is asked for.
  void clientCertificates(Fields& f, DatabaseConfig& db) const {
    const bool verifies = db.client_auth != ClientAuth::kNone;
    auto needsAuth = [&](const YAML::Node& n, const char* key) {
      if (!verifies) {
        fail(n, f.path(key), "needs client_auth: optional or required (this database asks no client for a certificate)");
      }
    };
    for (auto [key, into] : {std::pair{"client_ca", &db.client_ca}, std::pair{"client_crl", &db.client_crl}}) {
      if (const YAML::Node* n = f.find(key)) {
        *into = scalar(*n, f.path(key), "a file name in cert_dir or an absolute path");
        if (into->empty()) fail(*n, f.path(key), "expected a file name in cert_dir or an absolute path, got \"\"");
        needsAuth(*n, key);
      }
    }
    if (const YAML::Node* n = f.find("client_allow")) {
      const std::string path = f.path("client_allow");
      if (!n->IsSequence() || n->size() == 0) {
        fail(*n, path, "expected a list of names such as - \"cn:app-*.example.com\", got " +
                           (n->IsSequence() ? std::string("an empty list") : describe(*n)));
      }
      needsAuth(*n, "client_allow");
      for (size_t i = 0; i < n->size(); ++i) {
        const std::string item = element(path, i);
        std::string text = scalar((*n)[i], item, "cn:, dns:, email: or uri: and a name");
        if (auto entry = tls::ClientAllowList::parseEntry(text); !entry) fail((*n)[i], item, entry.message());
        db.client_allow.push_back(std::move(text));
      }
    }
  }

  std::string fileName(const YAML::Node& node, const std::string& path) const {
    const char* expected = "a file name in cert_dir or an absolute path";
    std::string text = scalar(node, path, expected);
    if (text.empty() || text.back() == '/') fail(node, path, std::string("expected ") + expected + ", got " + quote(text));
    return text;
  }

  std::string serverName(const YAML::Node& node, const std::string& path) const {
    std::string text = scalar(node, path, "a host name such as redis.internal");
    const bool good = !text.empty() && text.size() <= 253 && std::all_of(text.begin(), text.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
             c == '_' || c == ':' || c == '*';
    });
    if (!good) fail(node, path, "expected a host name such as redis.internal, got " + quote(text));
    return text;
  }

  // shard_tls: the database's default for all its shards. Given as a
  // mapping, TLS is on unless it says tls: false.
  ShardTlsConfig shardTls(const YAML::Node& node, const std::string& path) const {
    ShardTlsConfig out;
    Fields f(*this, node, path, {"tls", "ca", "server_name", "cert", "key", "min_version", "ciphers", "ciphersuites"});
    out.tls = true;
    if (const YAML::Node* n = f.find("tls")) out.tls = boolean(*n, f.path("tls"));
    shardTlsFiles(f, out);
    if (const YAML::Node* n = f.find("server_name")) out.server_name = serverName(*n, f.path("server_name"));
    if ((f.find("cert") == nullptr) != (f.find("key") == nullptr)) {
      const bool has_cert = f.find("cert") != nullptr;
      fail(*f.find(has_cert ? "cert" : "key"), f.path(has_cert ? "key" : "cert"),
           std::string("required with ") + (has_cert ? "cert" : "key") + ": a client certificate needs both");
    }
    if (const YAML::Node* n = f.find("min_version")) {
      const std::string key = f.path("min_version");
      std::string text = scalar(*n, key, "\"1.2\" or \"1.3\"");
      if (text != "1.2" && text != "1.3") fail(*n, key, "expected \"1.2\" or \"1.3\", got " + quote(text));
      out.policy.min_version = version(*n, key);
    }
    for (auto [name, field] : {std::pair{"ciphers", &tls::TlsPolicy::ciphers},
                               std::pair{"ciphersuites", &tls::TlsPolicy::ciphersuites}}) {
      const YAML::Node* n = f.find(name);
      if (n == nullptr) continue;
      out.policy.*field = scalar(*n, f.path(name), "an OpenSSL cipher list");
      tls::TlsPolicy alone;
      alone.*field = out.policy.*field;
      if (Status st = tls::validatePolicy(alone); !st) {
        // validatePolicy names the data listeners' key ("tls.ciphers: ..."): drop it.
        std::string message = st.message();
        if (size_t colon = message.find(": "); message.rfind("tls.", 0) == 0 && colon != std::string::npos) {
          message = message.substr(colon + 2);
        }
        fail(*n, f.path(name), message);
      }
    }
    return out;
  }

  // ca, cert, key: in shard_tls and as a shard's overrides.
  void shardTlsFiles(Fields& f, ShardTlsConfig& out) const {
    for (auto [name, file, key] : {std::tuple{"ca", &out.ca, &out.ca_key}, std::tuple{"cert", &out.cert, &out.cert_key},
                                   std::tuple{"key", &out.key, &out.key_key}}) {
      if (const YAML::Node* n = f.find(name)) {
        *file = fileName(*n, f.path(name));
        *key = f.path(name);
      }
    }
  }

  // A shard's TLS: the database's shard_tls with the shard's own keys on
  // top, checked whole (ca when on, cert and key together).
  ShardTlsConfig shardTlsOf(Fields& f, const ShardTlsConfig& defaults, const YAML::Node* db_node) const {
    ShardTlsConfig out = defaults;
    bool own_tls = false;
    if (const YAML::Node* n = f.find("tls")) {
      out.tls = boolean(*n, f.path("tls"));
      own_tls = true;
    }
    shardTlsFiles(f, out);
    if (const YAML::Node* n = f.find("server_name")) out.server_name = serverName(*n, f.path("server_name"));
    if (!out.tls) return out;
    if (out.ca.empty()) {
      // Named where the operator turned TLS on.
      // (TLS is on only by the shard's own tls: true or by shard_tls.)
      if (own_tls || db_node == nullptr) fail(own_tls ? *f.find("tls") : f.node(), f.path("ca"), "required when tls is on");
      const std::string db_path = f.path().substr(0, f.path().rfind(".shards[")) + ".shard_tls";
      fail(*db_node, db_path + ".ca", "required when tls is on (the CA bundle the shard's certificate must chain to)");
    }
    if (out.cert.empty() != out.key.empty()) {
      const std::string& given = out.cert.empty() ? out.key_key : out.cert_key;
      const YAML::Node* at = f.find(out.cert.empty() ? "key" : "cert");
      const std::string missing = given.substr(0, given.rfind('.')) + (out.cert.empty() ? ".cert" : ".key");
      fail(at != nullptr ? *at : (db_node != nullptr ? *db_node : f.node()), missing,
           std::string("required with ") + (out.cert.empty() ? "key" : "cert") + ": a client certificate needs both");
    }
    return out;
  }

  std::vector<ShardConfig> shards(const YAML::Node& node, const std::string& path,
                                  const ShardTlsConfig& tls_defaults, const YAML::Node* tls_node) const {
    if (!node.IsSequence() || node.size() == 0) {
      fail(node, path,
           "expected a list of at least one shard such as - { address: 127.0.0.1:7001 }, got " +
               (node.IsSequence() ? std::string("an empty list") : describe(node)));
    }
    const bool several = node.size() > 1;
    std::vector<ShardConfig> out;
    std::vector<YAML::Node> slot_nodes;
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string shard_path = element(path, i);
      Fields f(*this, node[i], shard_path, {"address", "slots", "tls", "server_name", "ca", "cert", "key"});
      ShardConfig shard;
      shard.address = address(f.require("address"), f.path("address"));
      shard.tls = shardTlsOf(f, tls_defaults, tls_node);
      const YAML::Node* slots = f.find("slots");
      if (slots == nullptr) {
        if (several) {
          f.require("slots", " (each shard needs its slots when a database has several)");
        }
        shard.slots.push_back(SlotRange{0, kSlotCount - 1});
        slot_nodes.push_back(node[i]);
      } else {
        shard.slots = slotRanges(*slots, f.path("slots"));
        slot_nodes.push_back(*slots);
      }
      out.push_back(std::move(shard));
    }
    checkCoverage(node, path, out, slot_nodes);
    return out;
  }

  // Slots: "0-8191", "0-100,200-16383", 5, or a list of such.
  std::vector<SlotRange> slotRanges(const YAML::Node& node, const std::string& path) const {
    std::vector<SlotRange> out;
    if (node.IsSequence()) {
      if (node.size() == 0) fail(node, path, "expected slot ranges such as \"0-8191\", got an empty list");
      for (size_t i = 0; i < node.size(); ++i) slotText(node[i], element(path, i), out);
    } else {
      slotText(node, path, out);
    }
    return out;
  }

  void slotText(const YAML::Node& node, const std::string& path,
                std::vector<SlotRange>& out) const {
    const std::string expected = "slot ranges such as \"0-8191\" or \"0-100,200-16383\"";
    std::string text = scalar(node, path, expected);
    size_t start = 0;
    while (true) {
      size_t comma = text.find(',', start);
      std::string piece = trim(std::string_view(text).substr(
          start, comma == std::string::npos ? std::string::npos : comma - start));
      size_t dash = piece.find('-');
      std::optional<uint64_t> first = parseUnsigned(trim(piece.substr(0, dash)));
      std::optional<uint64_t> last =
          dash == std::string::npos ? first : parseUnsigned(trim(piece.substr(dash + 1)));
      if (!first || !last) fail(node, path, "expected " + expected + ", got " + quote(text));
      for (uint64_t v : {*first, *last}) {
        if (v >= kSlotCount) {
          fail(node, path,
               "slot " + std::to_string(v) + " is out of range 0-" +
                   std::to_string(kSlotCount - 1));
        }
      }
      if (*first > *last) {
        fail(node, path,
             "range " + quote(piece) + " runs backwards; write the lower slot first");
      }
      out.push_back(SlotRange{static_cast<uint16_t>(*first), static_cast<uint16_t>(*last)});
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }

  // Every slot 0..16383 owned by exactly one shard: the router indexes a table
  // by slot, so a gap would be an unroutable key and an overlap an ambiguity.
  void checkCoverage(const YAML::Node& shards_node, const std::string& path,
                     const std::vector<ShardConfig>& shards,
                     const std::vector<YAML::Node>& slot_nodes) const {
    std::vector<int> owner(kSlotCount, -1);
    for (size_t i = 0; i < shards.size(); ++i) {
      for (const SlotRange& r : shards[i].slots) {
        for (int s = r.first; s <= r.last; ++s) {
          if (owner[static_cast<size_t>(s)] < 0) {
            owner[static_cast<size_t>(s)] = static_cast<int>(i);
            continue;
          }
          // Report the whole run of this range that the same shard already owns.
          const int other = owner[static_cast<size_t>(s)];
          int end = s;
          while (end < r.last && owner[static_cast<size_t>(end + 1)] == other) ++end;
          const std::string slots = slotRangeText(static_cast<uint16_t>(s),
                                                  static_cast<uint16_t>(end));
          const std::string what = s == end ? "slot " + slots + " is" : "slots " + slots + " are";
          const std::string shard_path = element(path, i) + ".slots";
          if (static_cast<size_t>(other) == i) {
            fail(slot_nodes[i], shard_path, what + " listed twice for this shard");
          }
          fail(slot_nodes[i], shard_path,
               what + " also owned by " + element(path, static_cast<size_t>(other)) + " (" +
                   shards[static_cast<size_t>(other)].address.toString() + ")");
        }
      }
    }
    std::vector<std::string> gaps;
    for (int s = 0; s < kSlotCount; ++s) {
      if (owner[static_cast<size_t>(s)] >= 0) continue;
      int end = s;
      while (end + 1 < kSlotCount && owner[static_cast<size_t>(end + 1)] < 0) ++end;
      gaps.push_back(slotRangeText(static_cast<uint16_t>(s), static_cast<uint16_t>(end)));
      s = end;
    }
    if (gaps.empty()) return;
    std::string list;
    for (const std::string& g : gaps) list += (list.empty() ? "" : ", ") + g;
    const bool one = gaps.size() == 1 && gaps[0].find('-') == std::string::npos;
    fail(shards_node, path,
         (one ? "slot " + list + " is" : "slots " + list + " are") +
             " owned by no shard; together the shards must cover 0-" +
             std::to_string(kSlotCount - 1));
  }

  net::SocketAddress listenSection(const YAML::Node& node, const char* section, const Config& config,
                                   std::initializer_list<const char*> keys = {"listen"}) const {
    Fields f(*this, node, section, keys);
    const std::string path = f.path("listen");
    const YAML::Node& listen = f.require("listen");
    net::SocketAddress addr = address(listen, path, true);
    for (size_t j = 0; j < config.databases.size(); ++j) {
      if (sameEndpoint(config.databases[j].listen, addr)) {
        fail(listen, path,
             addr.toString() + " is also the listen address of " + element("databases", j) +
                 " (" + config.databases[j].name + "); each needs its own port");
      }
    }
    return addr;
  }

  // admin: the listen address (checked like metrics.listen), the users and
  // the bounds of the API's HTTP server.
  void adminSection(const YAML::Node& node, Config& config) const {
    Fields f(*this, node, "admin", {"listen", "users", "max_connections", "request_timeout_ms", "max_body_bytes"});
    const YAML::Node& listen = f.require("listen");
    net::SocketAddress addr = address(listen, "admin.listen", true);
    for (size_t j = 0; j < config.databases.size(); ++j) {
      if (sameEndpoint(config.databases[j].listen, addr)) {
        fail(listen, "admin.listen",
             addr.toString() + " is also the listen address of " + element("databases", j) + " (" +
                 config.databases[j].name + "); each needs its own port");
      }
    }
    config.admin_listen = addr;
    AdminConfig& admin = config.admin;
    if (const YAML::Node* n = f.find("max_connections")) {
      admin.max_connections = static_cast<uint32_t>(integer(*n, "admin.max_connections", 1, 10000));
    }
    if (const YAML::Node* n = f.find("request_timeout_ms")) {
      admin.request_timeout_ms = static_cast<uint32_t>(integer(*n, "admin.request_timeout_ms", 100, kMaxTimeoutMs));
    }
    if (const YAML::Node* n = f.find("max_body_bytes")) {
      admin.max_body_bytes = static_cast<uint32_t>(integer(*n, "admin.max_body_bytes", 1024, 64ull << 20));
    }
    if (const YAML::Node* n = f.find("users"); n != nullptr && !n->IsNull()) {
      if (!n->IsSequence()) fail(*n, "admin.users", "expected a list of {name, password_hash}, got " + describe(*n));
      for (size_t i = 0; i < n->size(); ++i) {
        const std::string at = element("admin.users", i);
        Fields u(*this, (*n)[i], at, {"name", "password_hash"});
        AdminUser user;
        user.name = scalar(u.require("name"), u.path("name"), "a user name");
        // Basic auth sends "name:password": a colon cannot be part of a name (RFC 7617 section 2).
        if (user.name.empty() || user.name.find(':') != std::string::npos) {
          fail(u.require("name"), u.path("name"), "expected a non-empty user name without ':', got " + quote(user.name));
        }
        for (const AdminUser& other : admin.users) {
          if (other.name == user.name) fail(u.require("name"), u.path("name"), "user " + quote(user.name) + " is listed twice");
        }
        const YAML::Node& hash = u.require("password_hash", " (print one with shardgate --hash-password)");
        user.password_hash = scalar(hash, u.path("password_hash"), "a hash printed by shardgate --hash-password");
        if (auto parsed = tls::parsePasswordHash(user.password_hash); !parsed) {
          fail(hash, u.path("password_hash"), parsed.message());
        }
        admin.users.push_back(std::move(user));
      }
    }
  }

  std::string source_;
  mutable std::vector<std::pair<YAML::Node, YAML::Mark>> empty_values_;

 public:
  mutable std::vector<std::pair<std::string, int>> key_lines_;
};

}  // namespace

std::string Config::where(std::string_view key_path) const {
  int line = 1;
  size_t best = 0;
  for (const auto& [path, key_line] : key_lines) {
    // The key itself, or a parent of it ("databases[0]" for "databases[0].tls").
    bool parent = key_path.size() > path.size() && key_path.substr(0, path.size()) == path &&
                  (key_path[path.size()] == '.' || key_path[path.size()] == '[');
    if ((path == key_path || parent) && path.size() >= best) {
      best = path.size();
      line = key_line;
    }
  }
  return source + ":" + std::to_string(line) + ": ";
}

unsigned Config::effectiveWorkers() const {
  if (workers != 0) return workers;
  return std::max(1u, std::thread::hardware_concurrency());
}

Result<Config> parseConfig(std::string_view yaml_text, std::string_view source,
                           std::string_view base_dir) {
  const std::string src(source);
  try {
    YAML::Node root = YAML::Load(std::string(yaml_text));
    Parser parser(src);
    Config config = parser.parse(root, base_dir);
    config.source = src;
    config.key_lines = std::move(parser.key_lines_);
    return config;
  } catch (const Invalid& invalid) {
    return makeError(invalid.message);
  } catch (const YAML::Exception& e) {
    // ParserException and friends: yaml-cpp's marks are 0-based.
    if (e.mark.is_null()) return makeError(src + ": invalid YAML: " + e.msg);
    return makeError(src + ":" + std::to_string(e.mark.line + 1) + ":" +
                     std::to_string(e.mark.column + 1) + ": invalid YAML: " + e.msg);
  } catch (const std::exception& e) {
    return makeError(src + ": cannot parse config: " + e.what());
  }
}

Result<Config> loadConfig(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return makeError("cannot read config file " + path + ": " + std::strerror(errno));
  }
  std::string text;
  char buf[8192];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, file)) > 0) text.append(buf, n);
  const bool failed = std::ferror(file) != 0;
  const int err = errno;
  std::fclose(file);
  if (failed) return makeError("cannot read config file " + path + ": " + std::strerror(err));

  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
  return parseConfig(text, path, ec ? std::string(".") : dir.string());
}

const char* readFromName(ReadFrom r) {
  return r == ReadFrom::kReplicaPreferred ? "replica_preferred" : "primary";
}

}  // namespace shardgate::config
