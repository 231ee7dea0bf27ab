// MetricsCollector: every metric shardgate exports, gathered at scrape time
// on the control thread into MetricFamily values for the renderer
// (metrics_text.h). Workers' counters are summed here, so nothing is shared
// or locked on their per-request path; a scrape reads each counter once
// (relaxed), so counters of one scrape may be a few events apart, never
// torn. docs/metrics.md lists every metric.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "proxy/database.h"
#include "proxy/stats.h"
#include "server/metrics_text.h"
#include "server/process_stats.h"

namespace shardgate::server {

// One named certificate, from the store.
struct CertMetrics {
  std::string name;       // "proxy", "api", "metrics_exporter"
  uint64_t generation = 0;
  int64_t not_after_epoch = 0;
  // Generations still alive and their live TLS connections, oldest first.
  std::vector<std::pair<uint64_t, int64_t>> live_generations;
};

struct MetricsInput {
  std::vector<const proxy::Stats*> workers;
  std::vector<const proxy::Database*> databases;
  std::vector<CertMetrics> certs;  // the served (configured) certificates
  uint64_t cert_reloads_ok = 0;
  uint64_t cert_reloads_failed = 0;
  ProcessStats process;
  int64_t now_epoch = 0;
};

std::vector<MetricFamily> collectMetrics(const MetricsInput& input);

}  // namespace shardgate::server
