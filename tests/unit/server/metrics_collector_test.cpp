#include "server/metrics_collector.h"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/cluster_refresh.h"
#include "proxy/shard_map_source.h"

using namespace shardgate;
using namespace shardgate::server;

namespace {

std::shared_ptr<proxy::ShardMapSource> twoShards() {
  proxy::ShardMap::SlotOwners owners{};
  for (size_t s = 0; s < owners.size(); ++s) owners[s] = s < owners.size() / 2 ? 0 : 1;
  auto map = proxy::ShardMap::create({proxy::ShardEndpoint{"127.0.0.1:7001", {}, nullptr}, proxy::ShardEndpoint{"127.0.0.1:7002", {}, nullptr}},
                                     owners);
  REQUIRE(map);
  return std::make_shared<proxy::ShardMapSource>(*map);
}

const MetricFamily& find(const std::vector<MetricFamily>& families, const std::string& name) {
  for (const auto& f : families) {
    if (f.name == name) return f;
  }
  FAIL("no family " << name);
  static MetricFamily none;
  return none;
}

double value(const MetricFamily& f, const MetricLabels& labels) {
  for (const auto& s : f.samples) {
    if (s.labels == labels) return s.value;
  }
  FAIL("no sample in " << f.name);
  return -1;
}

}  // namespace

TEST_CASE("metrics collector: every worker's counters are summed per database and shard") {
  proxy::Database plain;
  plain.index = 0;
  plain.name = "plain";
  plain.shard_map = twoShards();
  proxy::Database mux;
  mux.index = 1;
  mux.name = "mux";
  mux.multiplex = true;
  mux.shard_map = twoShards();

  proxy::Stats w1(2), w2(2);
  w1.db(0).accepted.add(3);
  w2.db(0).accepted.add(4);
  w1.db(0).current.add(2);
  w2.db(0).current.add(1);
  w2.db(0).current.sub(1);
  w1.db(1).requests[static_cast<size_t>(proxy::RequestKind::kWrite)].add(5);
  w2.db(1).requests[static_cast<size_t>(proxy::RequestKind::kWrite)].add(6);
  w1.db(1).latency[0].observe(40);     // <= 50
  w2.db(1).latency[0].observe(150);    // <= 200
  w2.db(1).latency[0].observe(5000000);  // above every bound
  w1.db(1).shard(1).down.add();
  w2.db(1).shard(1).in_flight.add(7);
  w1.db(1).shard(0).errors.add(2);
  w1.connections_by_version[3].add(9);
  w2.handshake_failures[static_cast<size_t>(proxy::HandshakeFailure::kTimeout)].add(2);

  MetricsInput in;
  in.workers = {&w1, &w2};
  in.databases = {&plain, &mux};
  in.certs.push_back(CertMetrics{"proxy", 3, 1000 + 86400, {{2, 1}, {3, 5}}});
  in.cert_reloads_ok = 2;
  in.cert_reloads_failed = 1;
  in.now_epoch = 1000;
  auto families = collectMetrics(in);

  CHECK(value(find(families, "endpoint_accepted_connections"), {{"db", "plain"}}) == 7);
  CHECK(value(find(families, "shardgate_db_connections"), {{"db", "plain"}}) == 2);
  // Requests: multiplexed databases only.
  const auto& writes = find(families, "endpoint_write_requests");
  REQUIRE(writes.samples.size() == 1);
  CHECK(value(writes, {{"db", "mux"}}) == 11);
  const auto& latency = find(families, "endpoint_read_requests_latency_histogram");
  REQUIRE(latency.histograms.size() == 1);
  const HistogramSample& h = latency.histograms[0];
  CHECK(h.counts[0] == 1);
  CHECK(h.counts[2] == 1);
  CHECK(h.counts.back() == 1);
  CHECK(h.sum == 5000190);

  MetricLabels shard1{{"db", "mux"}, {"shard", "127.0.0.1:7002"}};
  MetricLabels shard0{{"db", "mux"}, {"shard", "127.0.0.1:7001"}};
  CHECK(value(find(families, "shardgate_shard_up"), shard1) == 0);
  CHECK(value(find(families, "shardgate_shard_up"), shard0) == 1);
  CHECK(value(find(families, "shardgate_shard_in_flight_requests"), shard1) == 7);
  CHECK(value(find(families, "shardgate_shard_errors_total"), shard0) == 2);
  // A transparent database: errors and state, no in-flight figure.
  CHECK(find(families, "shardgate_shard_up").samples.size() == 4);
  CHECK(find(families, "shardgate_shard_errors_total").samples.size() == 4);
  CHECK(find(families, "shardgate_shard_in_flight_requests").samples.size() == 2);

  CHECK(value(find(families, "shardgate_tls_handshakes_total"), {{"version", "TLSv1.3"}, {"result", "ok"}}) == 9);
  CHECK(value(find(families, "shardgate_tls_handshakes_total"), {{"version", "none"}, {"result", "failed"}}) == 2);
  CHECK(value(find(families, "shardgate_tls_handshake_failures_total"), {{"reason", "timeout"}}) == 2);
  CHECK(value(find(families, "shardgate_tls_connections_by_generation"), {{"cert", "proxy"}, {"generation", "2"}}) == 1);
  CHECK(value(find(families, "shardgate_cert_generation"), {{"cert", "proxy"}}) == 3);
  CHECK(value(find(families, "shardgate_cert_expiry_seconds"), {{"cert", "proxy"}}) == 86400);
  CHECK(value(find(families, "shardgate_cert_reloads_total"), {{"result", "failed"}}) == 1);

  // The whole exposition names every family once, HELP before TYPE.
  std::string text = renderMetrics(families);
  CHECK(text.find("# TYPE endpoint_other_requests_latency_histogram histogram\n") != std::string::npos);
  CHECK(text.find("process_open_fds") != std::string::npos);
}

TEST_CASE("metrics collector: the request kind follows the command table's flags") {
  CHECK((proxy::classifyRequest(redis::CommandInfo::kWrite) == proxy::RequestKind::kWrite));
  CHECK((proxy::classifyRequest(redis::CommandInfo::kReadonly) == proxy::RequestKind::kRead));
  CHECK((proxy::classifyRequest(0) == proxy::RequestKind::kOther));
  CHECK((proxy::classifyRequest(redis::CommandInfo::kAdmin) == proxy::RequestKind::kOther));
}

TEST_CASE("metrics collector: TLS handshakes with a shard, summed over workers, for TLS shards only") {
  proxy::ShardMap::SlotOwners owners{};
  for (size_t s = 0; s < owners.size(); ++s) owners[s] = s < owners.size() / 2 ? 0 : 1;
  auto tls = std::make_shared<proxy::ShardTls>();
  auto map = proxy::ShardMap::create(
      {proxy::ShardEndpoint{"127.0.0.1:7001", {}, tls}, proxy::ShardEndpoint{"127.0.0.1:7002", {}, nullptr}}, owners);
  REQUIRE(map);
  proxy::Database db;
  db.index = 0;
  db.name = "db1";
  db.multiplex = true;
  db.shard_map = std::make_shared<proxy::ShardMapSource>(*map);
  proxy::Stats w1(1), w2(1);
  w1.db(0).shard(0).tls_handshakes[0].add(2);
  w2.db(0).shard(0).tls_handshakes[0].add(1);
  w2.db(0).shard(0).tls_handshakes[1].add(5);
  MetricsInput in;
  in.workers = {&w1, &w2};
  in.databases = {&db};
  auto families = collectMetrics(in);
  const MetricFamily& f = find(families, "shardgate_shard_tls_handshakes_total");
  CHECK(f.type == MetricType::kCounter);
  CHECK(value(f, {{"db", "db1"}, {"shard", "127.0.0.1:7001"}, {"resumed", "false"}}) == 3);
  CHECK(value(f, {{"db", "db1"}, {"shard", "127.0.0.1:7001"}, {"resumed", "true"}}) == 5);
  CHECK(f.samples.size() == 2);  // the plaintext shard has none
}

namespace {

// What a cluster database's monitor reports, fixed.
class FixedClusterRefresh final : public proxy::ClusterRefresh {
 public:
  void requestRefresh() override {}
  Counts refreshCounts() const override { return Counts{2, 5, 1}; }
  std::vector<NodeState> nodeStates() const override { return nodes; }
  std::vector<NodeState> nodes;
};

}  // namespace

TEST_CASE("metrics collector: a cluster database's nodes, one series each by role, 0 for a failed one") {
  FixedClusterRefresh refresh;
  refresh.nodes = {{"127.0.0.1:7001", true, true}, {"127.0.0.1:7002", true, false}, {"127.0.0.1:7003", false, true}};
  proxy::Database db;
  db.index = 0;
  db.name = "big";
  db.cluster = true;
  db.multiplex = true;
  db.shard_map = twoShards();
  db.cluster_refresh = &refresh;
  proxy::Database plain;
  plain.index = 1;
  plain.name = "plain";
  plain.shard_map = twoShards();
  proxy::Stats w1(2);
  MetricsInput in;
  in.workers = {&w1};
  in.databases = {&db, &plain};
  auto families = collectMetrics(in);
  const MetricFamily& f = find(families, "shardgate_cluster_node_up");
  CHECK(f.type == MetricType::kGauge);
  CHECK(f.samples.size() == 3);  // none for the database of static shards
  CHECK(value(f, {{"db", "big"}, {"node", "127.0.0.1:7001"}, {"role", "master"}}) == 1);
  CHECK(value(f, {{"db", "big"}, {"node", "127.0.0.1:7002"}, {"role", "master"}}) == 0);
  CHECK(value(f, {{"db", "big"}, {"node", "127.0.0.1:7003"}, {"role", "replica"}}) == 1);
  CHECK(value(find(families, "shardgate_cluster_topology_refreshes_total"), {{"db", "big"}, {"result", "unchanged"}}) == 5);
}
