#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "redis/info_merge.h"

using namespace shardgate;

using namespace shardgate::redis;
using shardgate::ByteBuffer;

namespace {

std::string bulk(const std::string& text) {
  return "$" + std::to_string(text.size()) + "\r\n" + text + "\r\n";
}

std::string merged(const std::vector<std::string_view>& texts, const redis::InfoAdditions& own = {}) {
  return redis::mergeInfoText(texts, own);
}

// One field's line of a merged text ("" if absent).
std::string field(const std::string& text, const std::string& name) {
  size_t at = text.find("\r\n" + name + ":");
  if (at == std::string::npos) return "";
  at += 2;
  return text.substr(at, text.find("\r\n", at) - at);
}

}  // namespace

TEST_CASE("INFO with one shard is the shard's text, the proxy's fields appended") {
  const std::string shard =
      "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\n\r\n"
      "# Clients\r\nconnected_clients:3\r\nblocked_clients:1\r\n\r\n"
      "# Memory\r\nused_memory:1289248\r\nused_memory_human:1.23M\r\n\r\n"
      "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n";
  redis::InfoAdditions own{"shardgate_version:1\r\n", "shardgate_worker_connected_clients:7\r\n",
                    "shardgate_worker_total_connections_received:9\r\n"};
  CHECK(merged({shard}, own) ==
        "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\nshardgate_version:1\r\n\r\n"
        "# Clients\r\nconnected_clients:3\r\nblocked_clients:1\r\n"
        "shardgate_worker_connected_clients:7\r\n\r\n"
        "# Memory\r\nused_memory:1289248\r\nused_memory_human:1.23M\r\n\r\n"
        "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n");
}

TEST_CASE("INFO of an unknown section is empty, and stays empty") {
  CHECK(merged({"", ""}, redis::InfoAdditions{"shardgate_version:1\r\n", "", ""}).empty());
  ByteBuffer out;
  redis::mergeInfo({"$0\r\n\r\n", "$0\r\n\r\n"}, {}, out);
  CHECK(out.view() == "$0\r\n\r\n");
}

TEST_CASE("INFO clients: counts summed, maxclients the first shard's, buffers the largest") {
  const std::string a =
      "# Clients\r\nconnected_clients:3\r\nmaxclients:10000\r\n"
      "client_recent_max_input_buffer:20480\r\nblocked_clients:1\r\n";
  const std::string b =
      "# Clients\r\nconnected_clients:2\r\nmaxclients:500\r\n"
      "client_recent_max_input_buffer:40960\r\nblocked_clients:2\r\n";
  CHECK(merged({a, b}) ==
        "# Clients\r\nconnected_clients:5\r\nmaxclients:10000\r\n"
        "client_recent_max_input_buffer:40960\r\nblocked_clients:3\r\n");
}

TEST_CASE("INFO memory: bytes summed with their _human twins; ratios the first shard's") {
  const std::string a =
      "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n"
      "mem_fragmentation_ratio:5.72\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\n"
      "number_of_cached_scripts:2\r\nmaxmemory_policy:noeviction\r\n";
  const std::string b =
      "# Memory\r\nused_memory:524288\r\nused_memory_human:512.00K\r\n"
      "mem_fragmentation_ratio:1.10\r\nmaxmemory:100\r\nmaxmemory_human:100B\r\n"
      "number_of_cached_scripts:2\r\nmaxmemory_policy:allkeys-lru\r\n";
  const std::string m = merged({a, b});
  CHECK(field(m, "used_memory") == "used_memory:1572864");
  CHECK(field(m, "used_memory_human") == "used_memory_human:1.50M");
  CHECK(field(m, "mem_fragmentation_ratio") == "mem_fragmentation_ratio:5.72");
  // One shard without a limit: the database has none.
  CHECK(field(m, "maxmemory") == "maxmemory:0");
  CHECK(field(m, "maxmemory_human") == "maxmemory_human:0B");
  // SCRIPT LOAD reaches every shard: each holds the same two scripts.
  CHECK(field(m, "number_of_cached_scripts") == "number_of_cached_scripts:2");
  CHECK(field(m, "maxmemory_policy") == "maxmemory_policy:noeviction");
}

TEST_CASE("INFO persistence: busy if any shard is, ok only if all are, oldest save") {
  const std::string a =
      "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:3\r\n"
      "rdb_bgsave_in_progress:0\r\nrdb_last_save_time:1700000100\r\n"
      "rdb_last_bgsave_status:ok\r\naof_enabled:0\r\n";
  const std::string b =
      "# Persistence\r\nloading:1\r\nrdb_changes_since_last_save:4\r\n"
      "rdb_bgsave_in_progress:1\r\nrdb_last_save_time:1700000000\r\n"
      "rdb_last_bgsave_status:err\r\naof_enabled:1\r\n";
  CHECK(merged({a, b}) ==
        "# Persistence\r\nloading:1\r\nrdb_changes_since_last_save:7\r\n"
        "rdb_bgsave_in_progress:1\r\nrdb_last_save_time:1700000000\r\n"
        "rdb_last_bgsave_status:err\r\naof_enabled:0\r\n");
}

TEST_CASE("INFO stats and cpu: counters and decimals summed, exceptions kept") {
  const std::string a =
      "# Stats\r\ntotal_commands_processed:10\r\ninstantaneous_input_kbps:0.10\r\n"
      "pubsub_patterns:2\r\nlatest_fork_usec:100\r\n\r\n"
      "# CPU\r\nused_cpu_sys:0.148070\r\n";
  const std::string b =
      "# Stats\r\ntotal_commands_processed:5\r\ninstantaneous_input_kbps:0.25\r\n"
      "pubsub_patterns:2\r\nlatest_fork_usec:300\r\n\r\n"
      "# CPU\r\nused_cpu_sys:1.000001\r\n";
  CHECK(merged({a, b}) ==
        "# Stats\r\ntotal_commands_processed:15\r\ninstantaneous_input_kbps:0.35\r\n"
        "pubsub_patterns:2\r\nlatest_fork_usec:300\r\n\r\n"
        "# CPU\r\nused_cpu_sys:1.148071\r\n");
}

TEST_CASE("INFO server and replication are the first shard's, lines as they are") {
  const std::string a =
      "# Server\r\nredis_version:7.0.15\r\nprocess_id:1\r\n\r\n"
      "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=x,port=1\r\n";
  const std::string b =
      "# Server\r\nredis_version:7.0.15\r\nprocess_id:2\r\n\r\n"
      "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n";
  CHECK(merged({a, b}) == a);
}

TEST_CASE("INFO keyspace lines are summed per db, avg_ttl weighted by keys with a TTL") {
  const std::string a =
      "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=100\r\ndb2:keys=1,expires=0,avg_ttl=0\r\n";
  const std::string b = "# Keyspace\r\ndb0:keys=1,expires=3,avg_ttl=500\r\ndb1:keys=2,expires=0,avg_ttl=0\r\n";
  const std::string c = "# Keyspace\r\n";
  CHECK(merged({a, b, c}) ==
        "# Keyspace\r\ndb0:keys=4,expires=4,avg_ttl=400\r\ndb1:keys=2,expires=0,avg_ttl=0\r\n"
        "db2:keys=1,expires=0,avg_ttl=0\r\n");
}

TEST_CASE("INFO commandstats and errorstats: the same line summed, usec_per_call again") {
  const std::string a =
      "# Commandstats\r\n"
      "cmdstat_get:calls=2,usec=10,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n\r\n"
      "# Errorstats\r\nerrorstat_ERR:count=2\r\n";
  const std::string b =
      "# Commandstats\r\n"
      "cmdstat_set:calls=1,usec=7,usec_per_call=7.00,rejected_calls=0,failed_calls=0\r\n"
      "cmdstat_get:calls=1,usec=2,usec_per_call=2.00,rejected_calls=1,failed_calls=0\r\n\r\n"
      "# Errorstats\r\nerrorstat_WRONGTYPE:count=1\r\nerrorstat_ERR:count=3\r\n";
  CHECK(merged({a, b}) ==
        "# Commandstats\r\n"
        "cmdstat_get:calls=3,usec=12,usec_per_call=4.00,rejected_calls=1,failed_calls=0\r\n"
        "cmdstat_set:calls=1,usec=7,usec_per_call=7.00,rejected_calls=0,failed_calls=0\r\n\r\n"
        "# Errorstats\r\nerrorstat_ERR:count=5\r\nerrorstat_WRONGTYPE:count=1\r\n");
}

TEST_CASE("INFO replies: the first error passes, RESP3 verbatim text stays verbatim") {
  ByteBuffer out;
  redis::mergeInfo({bulk("# Clients\r\nblocked_clients:1\r\n"), "-ERR shard 1 unavailable\r\n"}, {}, out);
  CHECK(out.view() == "-ERR shard 1 unavailable\r\n");

  out.clear();
  const std::string text = "# Clients\r\nblocked_clients:1\r\n";
  const std::string verbatim = "=" + std::to_string(text.size() + 4) + "\r\ntxt:" + text + "\r\n";
  redis::mergeInfo({verbatim, verbatim}, {}, out);
  const std::string expected = "# Clients\r\nblocked_clients:2\r\n";
  CHECK(out.view() == "=" + std::to_string(expected.size() + 4) + "\r\ntxt:" + expected + "\r\n");

  out.clear();
  redis::mergeInfo({":1\r\n"}, {}, out);
  CHECK(out.view().substr(0, 4) == "-ERR");
}
