// The shard client contexts: files read and named by key, contexts built at
// start, rebuilt on a change, kept on a bad file.
#include "server/shard_tls_contexts.h"

#include <doctest/doctest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/database.h"
#include "tests/unit/temp_dir.h"
#include "tls/cert_files.h"

using namespace shardgate;
using shardgate::testing::TempDir;

namespace {

// A self-signed pair, generated into its own directory and copied to dir
// as NAME.pem / NAME.key: its certificate serves as a CA bundle too.
void makePair(const std::string& dir, const std::string& name) {
  TempDir gen;
  auto made = tls::generateSelfSigned(gen.path, {"localhost"});
  REQUIRE_MESSAGE(made.ok(), (made.ok() ? "" : made.message()));
  std::filesystem::copy_file(gen.path + "/" + tls::kProxyCertFile, dir + "/" + name + ".pem");
  std::filesystem::copy_file(gen.path + "/" + tls::kProxyKeyFile, dir + "/" + name + ".key");
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Lines 1-: cert_dir is dir; db1 has shard_tls (line 6 onward), two shards,
// the second plaintext.
config::Config configWith(const std::string& dir, const std::string& shard_tls) {
  const std::string text = "cert_dir: " + dir +
                           "\n"
                           "databases:\n"
                           "  - name: db1\n"
                           "    listen: 127.0.0.1:6380\n"
                           "    shard_tls:\n" +
                           shard_tls +
                           "    shards:\n"
                           "      - address: 127.0.0.1:7001\n"
                           "        slots: 0-8191\n"
                           "      - address: 127.0.0.1:7002\n"
                           "        slots: 8192-16383\n"
                           "        tls: false\n";
  auto parsed = config::parseConfig(text, "x.yaml", dir);
  REQUIRE_MESSAGE(parsed.ok(), (parsed.ok() ? "" : parsed.message()));
  return *parsed;
}

}  // namespace

TEST_CASE("shard TLS files: a file that cannot be read names its key and path") {
  TempDir dir;
  config::Config config = configWith(dir.path, "      ca: missing.pem\n");
  auto files = server::readShardTlsFiles(config, config.databases[0].shards[0].tls);
  REQUIRE_FALSE(files.ok());
  CHECK(files.message() == "x.yaml:6: databases[0].shard_tls.ca: " + dir.path +
                               "/missing.pem: cannot be read: No such file or directory");
}

TEST_CASE("shard TLS files: a CA file with no certificate, a key that is not the certificate's") {
  TempDir dir;
  makePair(dir.path, "a");
  makePair(dir.path, "b");
  write(dir.path + "/junk.pem", "not a certificate\n");
  {
    config::Config config = configWith(dir.path, "      ca: junk.pem\n");
    const auto& t = config.databases[0].shards[0].tls;
    auto files = server::readShardTlsFiles(config, t);
    REQUIRE(files.ok());
    auto ctx = server::buildShardContext(config, t, *files, 1);
    REQUIRE_FALSE(ctx.ok());
    CHECK(ctx.message() ==
          "x.yaml:6: databases[0].shard_tls.ca: " + dir.path + "/junk.pem: no PEM certificate found");
  }
  {
    config::Config config = configWith(dir.path, "      ca: a.pem\n      cert: a.pem\n      key: b.key\n");
    const auto& t = config.databases[0].shards[0].tls;
    auto files = server::readShardTlsFiles(config, t);
    REQUIRE(files.ok());
    auto ctx = server::buildShardContext(config, t, *files, 1);
    REQUIRE_FALSE(ctx.ok());
    CHECK(ctx.message() == "x.yaml:8: databases[0].shard_tls.key: " + dir.path +
                               "/b.key: private key does not match the certificate in " + dir.path + "/a.pem");
  }
}

TEST_CASE("shard TLS: --check-config describes every shard") {
  TempDir dir;
  makePair(dir.path, "ca");
  makePair(dir.path, "client");
  config::Config config = configWith(
      dir.path, "      ca: ca.pem\n      server_name: redis.internal\n      cert: client.pem\n      key: client.key\n");
  auto lines = server::checkShardTls(config);
  REQUIRE_MESSAGE(lines.ok(), (lines.ok() ? "" : lines.message()));
  REQUIRE(lines->size() == 2);
  CHECK((*lines)[0] ==
        "db db1: shard 127.0.0.1:7001: TLS (CA ca.pem, server name redis.internal (SNI and certificate), client "
        "certificate client.pem, min TLS 1.2)");
  CHECK((*lines)[1] == "db db1: shard 127.0.0.1:7002: plaintext");
}

TEST_CASE("shard TLS contexts: built at start, rebuilt when a file changes, kept when it turns bad") {
  TempDir dir;
  makePair(dir.path, "first");
  makePair(dir.path, "second");
  const std::string ca = dir.path + "/shard_ca.pem";
  write(ca, read(dir.path + "/first.pem"));
  config::Config config = configWith(dir.path, "      ca: shard_ca.pem\n");
  std::vector<std::unique_ptr<proxy::Database>> dbs;
  auto db = proxy::makeDatabase(config.databases[0], config.limits, 0);
  REQUIRE(db.ok());
  dbs.push_back(std::make_unique<proxy::Database>(std::move(*db)));
  const auto map = dbs[0]->shard_map->current();
  REQUIRE(map->shard(0).tls);
  CHECK_FALSE(map->shard(1).tls);
  CHECK(map->shard(0).tls->verify_name == "127.0.0.1");

  server::ShardTlsContexts contexts;
  REQUIRE(contexts.loadInitial(config, dbs).ok());
  CHECK(contexts.any());
  proxy::ShardTls& shard = *map->shard(0).tls;
  REQUIRE(shard.contexts.current());
  CHECK(shard.contexts.current()->generation() == 1);
  CHECK(std::vector<std::string>{"shard_ca.pem"} == server::shardTlsFileNames(config));

  contexts.reload("SIGHUP");  // nothing changed
  CHECK(shard.contexts.current()->generation() == 1);

  write(ca, "not a certificate\n");
  contexts.reload("file change");  // bad: the old context stays
  CHECK(shard.contexts.current()->generation() == 1);

  write(ca, read(dir.path + "/second.pem"));
  contexts.reload("file change");
  CHECK(shard.contexts.current()->generation() == 2);

  std::filesystem::remove(ca);
  contexts.reload("SIGHUP");  // gone: kept
  CHECK(shard.contexts.current()->generation() == 2);
}

TEST_CASE("shard TLS contexts: a client certificate near its end is warned of once per threshold") {
  TempDir dir;
  makePair(dir.path, "ca");
  makePair(dir.path, "client");
  config::Config config = configWith(dir.path, "      ca: ca.pem\n      cert: client.pem\n      key: client.key\n");
  std::vector<std::unique_ptr<proxy::Database>> dbs;
  auto db = proxy::makeDatabase(config.databases[0], config.limits, 0);
  REQUIRE(db.ok());
  dbs.push_back(std::make_unique<proxy::Database>(std::move(*db)));
  server::ShardTlsContexts contexts;
  REQUIRE(contexts.loadInitial(config, dbs).ok());
  const int64_t not_after = dbs[0]->shard_map->current()->shard(0).tls->contexts.current()->certInfo().not_after_epoch;

  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  auto before = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("expiry", sink));
  contexts.checkExpiry(not_after - 40 * 86400);  // nothing yet
  contexts.checkExpiry(not_after - 20 * 86400);  // 30 days
  contexts.checkExpiry(not_after - 19 * 86400);  // said already
  contexts.checkExpiry(not_after - 3600);         // 1 day
  spdlog::set_default_logger(before);
  const std::vector<std::string> lines = sink->last_formatted();
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].find("db db1: shard 127.0.0.1:7001: the client certificate") != std::string::npos);
  CHECK(lines[0].find("expires within 30 day(s)") != std::string::npos);
  CHECK(lines[0].find(dir.path + "/client.pem") != std::string::npos);
  CHECK(lines[1].find("expires within 1 day(s)") != std::string::npos);
}
