#include "server/metrics_collector.h"

#include <algorithm>
#include <functional>

namespace shardgate::server {

namespace {

using proxy::DbStats;
using proxy::RequestKind;
using proxy::ShardStats;
using proxy::Stats;

MetricFamily family(std::string name, MetricType type, std::string help) {
  MetricFamily f;
  f.name = std::move(name);
  f.type = type;
  f.help = std::move(help);
  return f;
}

// The sum over workers of one counter of a worker's Stats.
double sum(const MetricsInput& in, const std::function<uint64_t(const Stats&)>& get) {
  uint64_t total = 0;
  for (const Stats* s : in.workers) total += get(*s);
  return static_cast<double>(total);
}

// ... of one database's counter.
double sumDb(const MetricsInput& in, size_t db, const std::function<uint64_t(const DbStats&)>& get) {
  return sum(in, [&](const Stats& s) { return get(s.db(db)); });
}

// Every worker raises and lowers its own gauge; the sum is the process's
// value. A worker's own value is never negative, but each is read at a
// slightly different instant, so the sum is read as signed.
double sumGauge(const MetricsInput& in, size_t db, const std::function<uint64_t(const DbStats&)>& get) {
  int64_t total = 0;
  for (const Stats* s : in.workers) total += static_cast<int64_t>(get(s->db(db)));
  return static_cast<double>(std::max<int64_t>(total, 0));
}

MetricLabels dbLabel(const proxy::Database& db) { return {{"db", db.name}}; }

void addDatabaseFamilies(const MetricsInput& in, std::vector<MetricFamily>& out) {
  struct PerDb {
    const char* name;
    MetricType type;
    const char* help;
    uint64_t (*get)(const DbStats&);
    bool gauge;
  };
  static const PerDb kPerDb[] = {
      {"endpoint_accepted_connections", MetricType::kCounter, "Client TCP connections accepted",
       [](const DbStats& d) { return d.accepted.get(); }, false},
      {"endpoint_client_connections", MetricType::kCounter,
       "Client connections established (TLS handshake completed; plaintext: accepted)",
       [](const DbStats& d) { return d.established.get(); }, false},
      {"endpoint_client_disconnections", MetricType::kCounter, "Established client connections that closed",
       [](const DbStats& d) { return d.disconnections.get(); }, false},
      {"endpoint_client_establishment_failures", MetricType::kCounter,
       "Client connections closed before they were established (failed or timed-out handshake, plaintext on a TLS "
       "endpoint)",
       [](const DbStats& d) { return d.establishment_failures.get(); }, false},
      {"shardgate_db_connections", MetricType::kGauge, "Client connections open now",
       [](const DbStats& d) { return d.current.get(); }, true},
      {"shardgate_db_received_bytes_total", MetricType::kCounter,
       "Bytes read from clients (over TLS: as on the wire, handshakes included)",
       [](const DbStats& d) { return d.bytes_in.get(); }, false},
      {"shardgate_db_sent_bytes_total", MetricType::kCounter, "Bytes handed to clients (before TLS encryption)",
       [](const DbStats& d) { return d.bytes_out.get(); }, false},
  };
  for (const PerDb& m : kPerDb) {
    MetricFamily f = family(m.name, m.type, m.help);
    for (const proxy::Database* db : in.databases) {
      double v = m.gauge ? sumGauge(in, db->index, m.get) : sumDb(in, db->index, m.get);
      f.samples.push_back({dbLabel(*db), v});
    }
    out.push_back(std::move(f));
  }

  // Requests and their latency: multiplexed databases only (a transparent
  // one forwards bytes and never parses a command).
  static const char* const kRequestNames[] = {"endpoint_read_requests", "endpoint_write_requests",
                                              "endpoint_other_requests"};
  static const char* const kRequestHelp[] = {
      "Read commands (flagged readonly in the command table) from clients of a multiplexed database",
      "Write commands (flagged write in the command table) from clients of a multiplexed database",
      "Other commands (neither read nor write: PING, AUTH, MULTI, unknown ...) from clients of a multiplexed "
      "database"};
  for (size_t k = 0; k < static_cast<size_t>(RequestKind::kCount); ++k) {
    MetricFamily f = family(kRequestNames[k], MetricType::kCounter, kRequestHelp[k]);
    for (const proxy::Database* db : in.databases) {
      if (!db->multiplex) continue;
      f.samples.push_back({dbLabel(*db), sumDb(in, db->index, [k](const DbStats& d) { return d.requests[k].get(); })});
    }
    out.push_back(std::move(f));
  }
  for (size_t k = 0; k < static_cast<size_t>(RequestKind::kCount); ++k) {
    MetricFamily f = family(std::string(kRequestNames[k]) + "_latency_histogram", MetricType::kHistogram,
                            std::string("Latency in microseconds of ") +
                                std::string(toString(static_cast<RequestKind>(k))) +
                                " commands, from the read that brought the command to its reply handed to the client");
    for (const proxy::Database* db : in.databases) {
      if (!db->multiplex) continue;
      HistogramSample h;
      h.labels = dbLabel(*db);
      const auto& bounds = proxy::LatencyHistogram::kBoundsUs;
      h.bounds.assign(bounds.begin(), bounds.end());
      h.counts.assign(bounds.size() + 1, 0);
      uint64_t sum_us = 0;
      for (const Stats* s : in.workers) {
        const proxy::LatencyHistogram& lat = s->db(db->index).latency[k];
        for (size_t b = 0; b < lat.buckets.size(); ++b) h.counts[b] += lat.buckets[b].get();
        sum_us += lat.sum_us.get();
      }
      h.sum = static_cast<double>(sum_us);
      f.histograms.push_back(std::move(h));
    }
    out.push_back(std::move(f));
  }
}

void addShardFamilies(const MetricsInput& in, std::vector<MetricFamily>& out) {
  MetricFamily up = family("shardgate_shard_up", MetricType::kGauge,
                           "1 when every worker's connection to the shard works (or has not been needed yet), 0 "
                           "while one is failing: a shared connection retrying, or a transparent database's last "
                           "connection attempt");
  MetricFamily reconnects = family("shardgate_shard_reconnects_total", MetricType::kCounter,
                                   "Connection attempts to the shard after a failure (multiplexed databases)");
  MetricFamily errors = family("shardgate_shard_errors_total", MetricType::kCounter,
                               "Shard connections that failed: refused, lost, timed out, AUTH refused");
  MetricFamily in_flight = family("shardgate_shard_in_flight_requests", MetricType::kGauge,
                                  "Requests sent to the shard and not answered yet (multiplexed databases)");
  MetricFamily tls_handshakes = family("shardgate_shard_tls_handshakes_total", MetricType::kCounter,
                                       "TLS handshakes completed with the shard (shards with tls on), by whether "
                                       "the session was resumed");
  for (const proxy::Database* db : in.databases) {
    const auto map = db->shard_map->current();
    const size_t n = std::min(map->shardCount(), proxy::kMaxShardStats);
    for (size_t i = 0; i < n; ++i) {
      MetricLabels labels{{"db", db->name}, {"shard", map->shard(static_cast<uint16_t>(i)).address}};
      auto get = [&](uint64_t (*field)(const ShardStats&)) {
        return sumDb(in, db->index, [&](const DbStats& d) { return field(d.shard(i)); });
      };
      errors.samples.push_back({labels, get([](const ShardStats& s) { return s.errors.get(); })});
      if (map->shard(static_cast<uint16_t>(i)).tls) {
        for (size_t resumed : {0, 1}) {
          MetricLabels with = labels;
          with.push_back({"resumed", resumed ? "true" : "false"});
          tls_handshakes.samples.push_back(
              {with, sumDb(in, db->index, [&](const DbStats& d) { return d.shard(i).tls_handshakes[resumed].get(); })});
        }
      }
      double down = sumGauge(in, db->index, [i](const DbStats& d) { return d.shard(i).down.get(); });
      up.samples.push_back({labels, down > 0 ? 0.0 : 1.0});
      if (!db->multiplex) continue;
      reconnects.samples.push_back({labels, get([](const ShardStats& s) { return s.reconnects.get(); })});
      in_flight.samples.push_back(
          {labels, sumGauge(in, db->index, [i](const DbStats& d) { return d.shard(i).in_flight.get(); })});
    }
  }
  out.push_back(std::move(up));
  out.push_back(std::move(reconnects));
  out.push_back(std::move(errors));
  out.push_back(std::move(in_flight));
  out.push_back(std::move(tls_handshakes));
}

// Cluster databases only: the redirects the proxy followed for its clients,
// the retries, and how the topology was followed.
void addClusterFamilies(const MetricsInput& in, std::vector<MetricFamily>& out) {
  MetricFamily redirects = family("shardgate_cluster_redirects_total", MetricType::kCounter,
                                  "MOVED and ASK replies of cluster nodes that shardgate followed (the command sent "
                                  "to the node named) instead of passing them to the client");
  MetricFamily retries = family("shardgate_cluster_retries_total", MetricType::kCounter,
                                "TRYAGAIN and CLUSTERDOWN replies of cluster nodes after which shardgate sent the "
                                "command again (after a back-off)");
  MetricFamily refreshes = family("shardgate_cluster_topology_refreshes_total", MetricType::kCounter,
                                  "Reads of the cluster's topology (periodic, or asked for by a MOVED or a failed "
                                  "node connection), by result: changed (a new map published), unchanged, failed");
  MetricFamily version = family("shardgate_cluster_topology_version", MetricType::kGauge,
                                "The version of the slot map shardgate routes by: 1 at start, one more with each "
                                "change published");
  MetricFamily node_up = family("shardgate_cluster_node_up", MetricType::kGauge,
                                "Each node of the cluster as the last topology read gave it, by role: 1 when "
                                "it is up, 0 while the cluster marks it failed");
  MetricFamily replica_reads = family("shardgate_cluster_replica_reads_total", MetricType::kCounter,
                                      "Reads a replica answered (cluster.read_from replica_preferred)");
  MetricFamily replica_fallbacks = family(
      "shardgate_cluster_replica_fallbacks_total", MetricType::kCounter,
      "Reads meant for a replica that its master served instead: no usable replica (none, down, left out after "
      "a refusal), or the replica refused the read (LOADING, MASTERDOWN, CLUSTERDOWN) or its connection failed");
  for (const proxy::Database* db : in.databases) {
    if (!db->cluster) continue;
    if (db->replica_reads) {
      replica_reads.samples.push_back(
          {dbLabel(*db), sumDb(in, db->index, [](const DbStats& d) { return d.cluster_replica_reads.get(); })});
      replica_fallbacks.samples.push_back(
          {dbLabel(*db), sumDb(in, db->index, [](const DbStats& d) { return d.cluster_replica_fallbacks.get(); })});
    }
    for (size_t k : {0, 1}) {
      redirects.samples.push_back({{{"db", db->name}, {"kind", k == 0 ? "moved" : "ask"}},
                                   sumDb(in, db->index, [k](const DbStats& d) { return d.cluster_redirects[k].get(); })});
    }
    retries.samples.push_back({dbLabel(*db), sumDb(in, db->index, [](const DbStats& d) { return d.cluster_retries.get(); })});
    if (db->cluster_refresh != nullptr) {
      const proxy::ClusterRefresh::Counts c = db->cluster_refresh->refreshCounts();
      for (auto [result, n] : {std::pair{"changed", c.changed}, std::pair{"unchanged", c.unchanged},
                               std::pair{"failed", c.failed}}) {
        refreshes.samples.push_back({{{"db", db->name}, {"result", result}}, static_cast<double>(n)});
      }
      for (const proxy::ClusterRefresh::NodeState& node : db->cluster_refresh->nodeStates()) {
        node_up.samples.push_back({{{"db", db->name}, {"node", node.address}, {"role", node.master ? "master" : "replica"}},
                                   node.up ? 1.0 : 0.0});
      }
    }
    version.samples.push_back({dbLabel(*db), static_cast<double>(db->shard_map->generation())});
  }
  out.push_back(std::move(redirects));
  out.push_back(std::move(retries));
  out.push_back(std::move(refreshes));
  out.push_back(std::move(version));
  out.push_back(std::move(node_up));
  if (!replica_reads.samples.empty()) {
    out.push_back(std::move(replica_reads));
    out.push_back(std::move(replica_fallbacks));
  }
}

void addTlsFamilies(const MetricsInput& in, std::vector<MetricFamily>& out) {
  MetricFamily hs = family("shardgate_tls_handshakes_total", MetricType::kCounter,
                           "TLS handshakes of database clients by negotiated version and result (a failed one "
                           "has no version)");
  static const char* const kVersions[] = {"TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"};
  for (size_t v = 0; v < 4; ++v) {
    hs.samples.push_back({{{"version", kVersions[v]}, {"result", "ok"}},
                          sum(in, [v](const Stats& s) { return s.connections_by_version[v].get(); })});
  }
  double failed = sum(in, [](const Stats& s) {
    uint64_t t = 0;
    for (const auto& c : s.handshake_failures) t += c.get();
    return t;
  });
  hs.samples.push_back({{{"version", "none"}, {"result", "failed"}}, failed});
  out.push_back(std::move(hs));

  MetricFamily reasons = family("shardgate_tls_handshake_failures_total", MetricType::kCounter,
                                "Failed TLS handshakes of database clients by reason");
  for (size_t r = 0; r < static_cast<size_t>(proxy::HandshakeFailure::kCount); ++r) {
    reasons.samples.push_back({{{"reason", std::string(toString(static_cast<proxy::HandshakeFailure>(r)))}},
                               sum(in, [r](const Stats& s) { return s.handshake_failures[r].get(); })});
  }
  out.push_back(std::move(reasons));

  MetricFamily certs = family("shardgate_tls_client_cert_handshakes_total", MetricType::kCounter,
                              "Handshakes on databases with client_auth by client certificate result: verified "
                              "(and allowed), absent (client_auth optional), or refused (see "
                              "shardgate_tls_handshake_failures_total for why)");
  certs.samples.push_back({{{"result", "verified"}}, sum(in, [](const Stats& s) { return s.client_cert_verified.get(); })});
  certs.samples.push_back({{{"result", "absent"}}, sum(in, [](const Stats& s) { return s.client_cert_absent.get(); })});
  certs.samples.push_back({{{"result", "refused"}}, sum(in, [](const Stats& s) {
                             using proxy::HandshakeFailure;
                             uint64_t t = 0;
                             for (HandshakeFailure f : {HandshakeFailure::kNoClientCert, HandshakeFailure::kBadClientCert,
                                                        HandshakeFailure::kClientCertExpired,
                                                        HandshakeFailure::kClientNotAllowed}) {
                               t += s.handshake_failures[static_cast<size_t>(f)].get();
                             }
                             return t;
                           })});
  out.push_back(std::move(certs));

  MetricFamily resumed = family("shardgate_tls_resumptions_total", MetricType::kCounter,
                                "TLS handshakes that resumed a session (ticket or session id)");
  resumed.samples.push_back({{}, sum(in, [](const Stats& s) { return s.handshakes_resumed.get(); })});
  out.push_back(std::move(resumed));

  MetricFamily audit = family("shardgate_tls_handshakes_below_audit_min_version_total", MetricType::kCounter,
                              "Handshakes that tls.audit_min_version would have refused");
  audit.samples.push_back({{}, sum(in, [](const Stats& s) { return s.audit_below_min.get(); })});
  out.push_back(std::move(audit));

  MetricFamily by_gen = family("shardgate_tls_connections_by_generation", MetricType::kGauge,
                               "Live TLS connections by the certificate generation they shook hands with");
  for (const CertMetrics& c : in.certs) {
    for (const auto& [generation, live] : c.live_generations) {
      by_gen.samples.push_back({{{"cert", c.name}, {"generation", std::to_string(generation)}},
                                static_cast<double>(std::max<int64_t>(live, 0))});
    }
  }
  out.push_back(std::move(by_gen));
}

void addCertFamilies(const MetricsInput& in, std::vector<MetricFamily>& out) {
  MetricFamily reloads = family("shardgate_cert_reloads_total", MetricType::kCounter,
                                "Certificate reloads (file change, SIGHUP, admin API) by result; a failed one "
                                "leaves the last good certificate serving");
  reloads.samples.push_back({{{"result", "ok"}}, static_cast<double>(in.cert_reloads_ok)});
  reloads.samples.push_back({{{"result", "failed"}}, static_cast<double>(in.cert_reloads_failed)});
  out.push_back(std::move(reloads));
  MetricFamily gen = family("shardgate_cert_generation", MetricType::kGauge,
                            "Generation of the certificate served now (raised by every applied change)");
  MetricFamily expiry = family("shardgate_cert_expiry_seconds", MetricType::kGauge,
                               "Seconds until the served certificate expires (negative: expired)");
  for (const CertMetrics& c : in.certs) {
    gen.samples.push_back({{{"cert", c.name}}, static_cast<double>(c.generation)});
    expiry.samples.push_back({{{"cert", c.name}}, static_cast<double>(c.not_after_epoch - in.now_epoch)});
  }
  out.push_back(std::move(gen));
  out.push_back(std::move(expiry));
}

void addProcessFamilies(const MetricsInput& in, std::vector<MetricFamily>& out) {
  const ProcessStats& p = in.process;
  auto one = [&](const char* name, MetricType type, const char* help, double value) {
    MetricFamily f = family(name, type, help);
    f.samples.push_back({{}, value});
    out.push_back(std::move(f));
  };
  one("process_cpu_seconds_total", MetricType::kCounter, "User and system CPU time spent, in seconds",
      p.cpu_seconds);
  one("process_resident_memory_bytes", MetricType::kGauge, "Resident memory size in bytes",
      static_cast<double>(p.resident_bytes));
  one("process_open_fds", MetricType::kGauge, "Open file descriptors", static_cast<double>(p.open_fds));
  one("process_max_fds", MetricType::kGauge, "The open file descriptor limit (soft)",
      static_cast<double>(p.max_fds));
  one("process_start_time_seconds", MetricType::kGauge, "Start time of the process since the epoch, in seconds",
      p.start_time_seconds);
}

}  // namespace

std::vector<MetricFamily> collectMetrics(const MetricsInput& in) {
  std::vector<MetricFamily> out;
  addDatabaseFamilies(in, out);
  addShardFamilies(in, out);
  addClusterFamilies(in, out);
  addTlsFamilies(in, out);
  addCertFamilies(in, out);
  addProcessFamilies(in, out);
  return out;
}

}  // namespace shardgate::server
