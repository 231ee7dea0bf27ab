#include "server/metrics_text.h"

#include <doctest/doctest.h>

using namespace shardgate::server;

TEST_CASE("metrics text: HELP and TYPE lines, then the samples with their labels") {
  MetricFamily f;
  f.name = "endpoint_accepted_connections";
  f.help = "Client TCP connections accepted";
  f.type = MetricType::kCounter;
  f.samples.push_back({{{"db", "db1"}}, 3});
  f.samples.push_back({{{"db", "db2"}}, 0});
  MetricFamily g;
  g.name = "process_open_fds";
  g.help = "Open file descriptors";
  g.type = MetricType::kGauge;
  g.samples.push_back({{}, 12});
  CHECK(renderMetrics({f, g}) ==
        "# HELP endpoint_accepted_connections Client TCP connections accepted\n"
        "# TYPE endpoint_accepted_connections counter\n"
        "endpoint_accepted_connections{db=\"db1\"} 3\n"
        "endpoint_accepted_connections{db=\"db2\"} 0\n"
        "# HELP process_open_fds Open file descriptors\n"
        "# TYPE process_open_fds gauge\n"
        "process_open_fds 12\n");
}

TEST_CASE("metrics text: a family with no sample is still described") {
  MetricFamily f;
  f.name = "endpoint_read_requests";
  f.help = "h";
  CHECK(renderMetrics({f}) == "# HELP endpoint_read_requests h\n# TYPE endpoint_read_requests counter\n");
}

TEST_CASE("metrics text: a histogram's buckets are cumulative, with +Inf, _sum and _count") {
  MetricFamily f;
  f.name = "endpoint_read_requests_latency_histogram";
  f.help = "Latency in microseconds";
  f.type = MetricType::kHistogram;
  HistogramSample h;
  h.labels = {{"db", "a"}};
  h.bounds = {50, 100, 200};
  h.counts = {2, 0, 3, 1};  // the last is above 200
  h.sum = 1234;
  f.histograms.push_back(h);
  CHECK(renderMetrics({f}) ==
        "# HELP endpoint_read_requests_latency_histogram Latency in microseconds\n"
        "# TYPE endpoint_read_requests_latency_histogram histogram\n"
        "endpoint_read_requests_latency_histogram_bucket{db=\"a\",le=\"50\"} 2\n"
        "endpoint_read_requests_latency_histogram_bucket{db=\"a\",le=\"100\"} 2\n"
        "endpoint_read_requests_latency_histogram_bucket{db=\"a\",le=\"200\"} 5\n"
        "endpoint_read_requests_latency_histogram_bucket{db=\"a\",le=\"+Inf\"} 6\n"
        "endpoint_read_requests_latency_histogram_sum{db=\"a\"} 1234\n"
        "endpoint_read_requests_latency_histogram_count{db=\"a\"} 6\n");
}

TEST_CASE("metrics text: label values and HELP are escaped as the format says") {
  CHECK(escapeLabelValue("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  CHECK(escapeHelp("line\\one\ntwo \"quoted\"") == "line\\\\one\\ntwo \"quoted\"");
  MetricFamily f;
  f.name = "m";
  f.help = "two\nlines";
  f.type = MetricType::kGauge;
  f.samples.push_back({{{"db", "we\"ird"}, {"shard", "127.0.0.1:7001"}}, 1});
  CHECK(renderMetrics({f}) == "# HELP m two\\nlines\n# TYPE m gauge\nm{db=\"we\\\"ird\",shard=\"127.0.0.1:7001\"} 1\n");
}

TEST_CASE("metrics text: values: integers plain, fractions shortest, special values spelled") {
  CHECK(formatValue(0) == "0");
  CHECK(formatValue(42) == "42");
  CHECK(formatValue(-3) == "-3");
  CHECK(formatValue(18446744073709551615.0) == "18446744073709551616");  // to_chars: shortest exact form
  CHECK(formatValue(1e300) == "1e+300");
  CHECK(formatValue(0.25) == "0.25");
  CHECK(formatValue(1.0 / 0.0) == "+Inf");
  CHECK(formatValue(-1.0 / 0.0) == "-Inf");
  CHECK(formatValue(0.0 / 0.0) == "NaN");
}
