#include "server/metrics_text.h"

#include <charconv>
#include <cmath>

namespace shardgate::server {

namespace {

std::string_view typeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

// {a="x",b="y"}, with an optional extra label last (a bucket's le).
void appendLabels(std::string& out, const MetricLabels& labels, std::string_view extra_name = {},
                  std::string_view extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    out += escapeLabelValue(value);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

void appendSample(std::string& out, std::string_view name, std::string_view suffix, const MetricLabels& labels,
                  double value, std::string_view extra_name = {}, std::string_view extra_value = {}) {
  out += name;
  out += suffix;
  appendLabels(out, labels, extra_name, extra_value);
  out += ' ';
  out += formatValue(value);
  out += '\n';
}

}  // namespace

std::string escapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string formatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Integers (every counter) print without a fraction or an exponent while
  // a double holds them exactly.
  if (std::fabs(value) < 9007199254740992.0 && value == std::floor(value)) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, value);  // shortest round trip
  return std::string(buf, res.ptr);
}

std::string renderMetrics(const std::vector<MetricFamily>& families) {
  std::string out;
  out.reserve(families.size() * 160);
  for (const MetricFamily& f : families) {
    out += "# HELP ";
    out += f.name;
    out += ' ';
    out += escapeHelp(f.help);
    out += "\n# TYPE ";
    out += f.name;
    out += ' ';
    out += typeName(f.type);
    out += '\n';
    if (f.type != MetricType::kHistogram) {
      for (const MetricSample& s : f.samples) appendSample(out, f.name, "", s.labels, s.value);
      continue;
    }
    for (const HistogramSample& h : f.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.bounds.size(); ++i) {
        cumulative += i < h.counts.size() ? h.counts[i] : 0;
        appendSample(out, f.name, "_bucket", h.labels, static_cast<double>(cumulative), "le",
                     formatValue(h.bounds[i]));
      }
      for (size_t i = h.bounds.size(); i < h.counts.size(); ++i) cumulative += h.counts[i];
      appendSample(out, f.name, "_bucket", h.labels, static_cast<double>(cumulative), "le", "+Inf");
      appendSample(out, f.name, "_sum", h.labels, h.sum);
      appendSample(out, f.name, "_count", h.labels, static_cast<double>(cumulative));
    }
  }
  return out;
}

}  // namespace shardgate::server
