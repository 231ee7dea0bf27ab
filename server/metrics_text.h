// MetricsText: metric families rendered in the Prometheus text exposition
// format, version 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
// Pure: values in, text out; the collector (metrics_collector.h) gathers the
// values, the endpoint (metrics_endpoint.h) serves the text.
//
// Each family gets its # HELP and # TYPE lines, then its samples. A
// histogram's buckets are given per bucket (not cumulative) with the upper
// bounds; the renderer writes them cumulative, with the +Inf bucket, _sum
// and _count, as the format requires.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shardgate::server {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };

struct MetricSample {
  MetricLabels labels;
  double value = 0;
};

struct HistogramSample {
  MetricLabels labels;
  std::vector<double> bounds;    // upper bounds, increasing (without +Inf)
  std::vector<uint64_t> counts;  // per bucket, bounds.size() + 1 (the last: above every bound)
  double sum = 0;
};

struct MetricFamily {
  std::string name;
  std::string help;
  MetricType type = MetricType::kCounter;
  std::vector<MetricSample> samples;        // counters and gauges
  std::vector<HistogramSample> histograms;  // histograms
};

// The exposition of families, in their order. A family with no sample is
// still described (HELP and TYPE), so a scraper sees what exists.
std::string renderMetrics(const std::vector<MetricFamily>& families);

// The content type that names this format.
constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Pieces, exposed for the tests: a label value with \, " and newline
// escaped; a HELP text with \ and newline escaped; a sample value (integers
// without a fraction, NaN, +Inf, -Inf as the format spells them).
std::string escapeLabelValue(std::string_view value);
std::string escapeHelp(std::string_view help);
std::string formatValue(double value);

}  // namespace shardgate::server
