#include "redis/info_merge.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>

#include "redis/resp_value.h"
#include "redis/resp_encoder.h"

namespace shardgate::redis {

namespace {

// How one field's values from several shards become one value.
enum class Rule : uint8_t {
  kFirst,        // the first shard's
  kSum,          // numbers summed (integers, or decimals to the inputs' precision)
  kSumNoLimit,   // maxmemory: summed, but 0 (no limit) if any shard has none
  kMax,          // the largest
  kMin,          // the smallest
  kAllOk,        // "ok" if every shard says so, else the first other value
};

// How a section is combined.
enum class Kind : uint8_t {
  kFirst,     // the first shard's lines, as they are
  kFields,    // "name:value" lines, each by its Rule
  kLines,     // "name:a=1,b=2" lines, summed per name (commandstats, errorstats)
  kKeyspace,  // kLines ordered by database number, avg_ttl weighted by expires
};

struct SectionPolicy {
  std::string_view name;  // lower case, as INFO's arguments name it
  Kind kind;
  Rule default_rule;      // kFields: the rule of fields kInfoRules does not name
};

constexpr SectionPolicy kSections[] = {
    {"clients", Kind::kFields, Rule::kSum},      {"memory", Kind::kFields, Rule::kFirst},
    {"persistence", Kind::kFields, Rule::kFirst}, {"stats", Kind::kFields, Rule::kSum},
    {"cpu", Kind::kFields, Rule::kSum},          {"commandstats", Kind::kLines, Rule::kSum},
    {"errorstats", Kind::kLines, Rule::kSum},    {"keyspace", Kind::kKeyspace, Rule::kSum},
};

struct FieldRule {
  std::string_view section;
  std::string_view field;
  Rule rule;
};

// Redis 7.0's fields whose rule is not their section's default.
constexpr FieldRule kInfoRules[] = {
    // clients (default: summed)
    {"clients", "maxclients", Rule::kFirst},
    {"clients", "client_recent_max_input_buffer", Rule::kMax},
    {"clients", "client_recent_max_output_buffer", Rule::kMax},
    // memory (default: the first shard's): what each shard holds adds up
    {"memory", "used_memory", Rule::kSum},
    {"memory", "used_memory_rss", Rule::kSum},
    {"memory", "used_memory_peak", Rule::kSum},
    {"memory", "used_memory_overhead", Rule::kSum},
    {"memory", "used_memory_startup", Rule::kSum},
    {"memory", "used_memory_dataset", Rule::kSum},
    {"memory", "allocator_allocated", Rule::kSum},
    {"memory", "allocator_active", Rule::kSum},
    {"memory", "allocator_resident", Rule::kSum},
    {"memory", "used_memory_lua", Rule::kSum},
    {"memory", "used_memory_vm_eval", Rule::kSum},
    {"memory", "used_memory_scripts_eval", Rule::kSum},
    {"memory", "used_memory_vm_functions", Rule::kSum},
    {"memory", "used_memory_vm_total", Rule::kSum},
    {"memory", "used_memory_functions", Rule::kSum},
    {"memory", "used_memory_scripts", Rule::kSum},
    {"memory", "maxmemory", Rule::kSumNoLimit},
    {"memory", "allocator_frag_bytes", Rule::kSum},
    {"memory", "allocator_rss_bytes", Rule::kSum},
    {"memory", "rss_overhead_bytes", Rule::kSum},
    {"memory", "mem_fragmentation_bytes", Rule::kSum},
    {"memory", "mem_not_counted_for_evict", Rule::kSum},
    {"memory", "mem_replication_backlog", Rule::kSum},
    {"memory", "mem_total_replication_buffers", Rule::kSum},
    {"memory", "mem_clients_slaves", Rule::kSum},
    {"memory", "mem_clients_normal", Rule::kSum},
    {"memory", "mem_cluster_links", Rule::kSum},
    {"memory", "mem_aof_buffer", Rule::kSum},
    {"memory", "lazyfree_pending_objects", Rule::kSum},
    {"memory", "lazyfreed_objects", Rule::kSum},
    // persistence (default: the first shard's)
    {"persistence", "loading", Rule::kMax},
    {"persistence", "async_loading", Rule::kMax},
    {"persistence", "rdb_bgsave_in_progress", Rule::kMax},
    {"persistence", "aof_rewrite_in_progress", Rule::kMax},
    {"persistence", "aof_rewrite_scheduled", Rule::kMax},
    {"persistence", "module_fork_in_progress", Rule::kMax},
    {"persistence", "aof_rewrites_consecutive_failures", Rule::kMax},
    {"persistence", "rdb_changes_since_last_save", Rule::kSum},
    {"persistence", "rdb_saves", Rule::kSum},
    {"persistence", "aof_rewrites", Rule::kSum},
    {"persistence", "rdb_last_load_keys_expired", Rule::kSum},
    {"persistence", "rdb_last_load_keys_loaded", Rule::kSum},
    {"persistence", "rdb_last_save_time", Rule::kMin},
    {"persistence", "rdb_last_bgsave_status", Rule::kAllOk},
    {"persistence", "aof_last_bgrewrite_status", Rule::kAllOk},
    {"persistence", "aof_last_write_status", Rule::kAllOk},
    // stats (default: summed)
    {"stats", "expired_stale_perc", Rule::kFirst},
    {"stats", "pubsub_patterns", Rule::kFirst},          // every shard holds every pattern
    {"stats", "tracking_total_prefixes", Rule::kFirst},  // BCAST prefixes go to every shard
    {"stats", "latest_fork_usec", Rule::kMax},
    {"stats", "current_eviction_exceeded_time", Rule::kMax},
    {"stats", "current_active_defrag_time", Rule::kMax},
};

const SectionPolicy* policyOf(std::string_view section) {
  for (const SectionPolicy& p : kSections) {
    if (p.name == section) return &p;
  }
  return nullptr;
}

Rule ruleOf(const SectionPolicy& policy, std::string_view field) {
  for (const FieldRule& r : kInfoRules) {
    if (r.section == policy.name && r.field == field) return r.rule;
  }
  return policy.default_rule;
}

struct Section {
  std::string_view header;  // "# Server"
  std::string name;         // "server"
  std::vector<std::string_view> lines;
};

std::vector<Section> parseSections(std::string_view text) {
  std::vector<Section> sections;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (line[0] == '#') {
      Section s;
      s.header = line;
      std::string_view name = line.substr(1);
      while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
      s.name.assign(name);
      for (char& c : s.name) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      sections.push_back(std::move(s));
    } else if (!sections.empty()) {
      sections.back().lines.push_back(line);
    }
  }
  return sections;
}

// "name:value" -> name, value (a line without ':' is all name).
std::pair<std::string_view, std::string_view> splitField(std::string_view line, char sep) {
  size_t at = line.find(sep);
  if (at == std::string_view::npos) return {line, {}};
  return {line.substr(0, at), line.substr(at + 1)};
}

// A value INFO prints as a number: "12", "-1", "0.25" (decimals: 2).
struct Number {
  long double value = 0;
  int decimals = -1;  // -1: an integer
};

bool parseNumber(std::string_view s, Number& n) {
  if (s.empty()) return false;
  size_t dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  int64_t integer = 0;
  if (whole.empty() || whole == "-") {
    if (dot == std::string_view::npos) return false;
  } else {
    auto [end, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), integer);
    if (ec != std::errc() || end != whole.data() + whole.size()) return false;
  }
  n.value = static_cast<long double>(integer);
  n.decimals = -1;
  if (dot == std::string_view::npos) return true;
  std::string_view frac = s.substr(dot + 1);
  if (frac.empty()) return false;
  long double scale = 1;
  long double part = 0;
  for (char c : frac) {
    if (c < '0' || c > '9') return false;
    part = part * 10 + (c - '0');
    scale *= 10;
  }
  const bool negative = !whole.empty() && whole[0] == '-';
  n.value += (negative ? -part : part) / scale;
  n.decimals = static_cast<int>(frac.size());
  return true;
}

std::string formatNumber(long double value, int decimals) {
  char buf[64];
  if (decimals < 0) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(value));
  } else {
    std::snprintf(buf, sizeof buf, "%.*Lf", decimals, value);
  }
  return buf;
}

// Redis's bytesToHuman (server.c), for the *_human twin of a summed field.
std::string bytesToHuman(long double n) {
  static constexpr std::pair<long double, char> kUnits[] = {
      {1024.0L, 'K'},
      {1024.0L * 1024, 'M'},
      {1024.0L * 1024 * 1024, 'G'},
      {1024.0L * 1024 * 1024 * 1024, 'T'},
      {1024.0L * 1024 * 1024 * 1024 * 1024, 'P'},
  };
  char buf[64];
  if (n < 1024) {
    std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(n));
    return buf;
  }
  for (size_t i = 0; i < std::size(kUnits); ++i) {
    if (i + 1 == std::size(kUnits) || n < kUnits[i + 1].first) {
      std::snprintf(buf, sizeof buf, "%.2f%c", static_cast<double>(n / kUnits[i].first),
                    kUnits[i].second);
      return buf;
    }
  }
  return buf;
}

// One field's values (one per shard that has it, in shard order).
std::string combine(Rule rule, const std::vector<std::string_view>& values, bool* summed) {
  *summed = false;
  if (rule == Rule::kFirst) return std::string(values.front());
  if (rule == Rule::kAllOk) {
    for (std::string_view v : values) {
      if (v != "ok") return std::string(v);
    }
    return "ok";
  }
  std::vector<Number> numbers(values.size());
  int decimals = -1;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!parseNumber(values[i], numbers[i])) return std::string(values.front());
    decimals = std::max(decimals, numbers[i].decimals);
  }
  if (rule == Rule::kMax || rule == Rule::kMin) {
    size_t pick = 0;
    for (size_t i = 1; i < numbers.size(); ++i) {
      if (rule == Rule::kMax ? numbers[i].value > numbers[pick].value
                             : numbers[i].value < numbers[pick].value) {
        pick = i;
      }
    }
    return std::string(values[pick]);
  }
  long double sum = 0;
  for (const Number& n : numbers) {
    if (rule == Rule::kSumNoLimit && n.value == 0) return "0";
    sum += n.value;
  }
  *summed = true;
  return formatNumber(sum, decimals);
}

// kFields: fields in the first shard's order, then any only later shards have.
void mergeFields(const SectionPolicy& policy, const std::vector<const Section*>& sections,
                 std::vector<std::string>& out) {
  std::vector<std::string_view> order;
  std::map<std::string_view, std::vector<std::string_view>> values;
  for (const Section* s : sections) {
    if (!s) continue;
    for (std::string_view line : s->lines) {
      auto [name, value] = splitField(line, ':');
      auto [it, fresh] = values.try_emplace(name);
      if (fresh) order.push_back(name);
      it->second.push_back(value);
    }
  }
  std::map<std::string_view, long double> sums;  // for the *_human twins
  std::vector<std::pair<std::string_view, std::string>> merged;
  for (std::string_view name : order) {
    bool summed = false;
    std::string value = combine(ruleOf(policy, name), values[name], &summed);
    if (summed) {
      Number n;
      if (parseNumber(value, n)) sums[name] = n.value;
    }
    merged.emplace_back(name, std::move(value));
  }
  for (auto& [name, value] : merged) {
    constexpr std::string_view kHuman = "_human";
    if (name.size() > kHuman.size() && name.substr(name.size() - kHuman.size()) == kHuman) {
      auto base = sums.find(name.substr(0, name.size() - kHuman.size()));
      if (base != sums.end() && base->second >= 0) value = bytesToHuman(base->second);
    }
    out.push_back(std::string(name) + ":" + value);
  }
}

// kLines, kKeyspace: "name:a=1,b=2" lines, the same name's numbers summed.
// avg_ttl is the mean TTL of the keys with one (expires), so it is weighted
// by them; usec_per_call is usec / calls again.
void mergeLines(Kind kind, const std::vector<const Section*>& sections,
                std::vector<std::string>& out) {
  struct Line {
    std::vector<std::string_view> fields;  // in the first shard's order
    std::map<std::string_view, std::vector<std::string_view>> values;
    long double ttl_weighted = 0;
    long double expires = 0;
  };
  std::vector<std::string_view> order;
  std::map<std::string_view, Line> lines;
  for (const Section* s : sections) {
    if (!s) continue;
    for (std::string_view text : s->lines) {
      auto [name, rest] = splitField(text, ':');
      auto [it, fresh] = lines.try_emplace(name);
      if (fresh) order.push_back(name);
      Line& line = it->second;
      Number ttl, expires;
      bool have_ttl = false, have_expires = false;
      while (!rest.empty()) {
        size_t comma = rest.find(',');
        auto [field, value] = splitField(rest.substr(0, comma), '=');
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        auto [v, fresh_field] = line.values.try_emplace(field);
        if (fresh_field) line.fields.push_back(field);
        v->second.push_back(value);
        if (field == "avg_ttl") have_ttl = parseNumber(value, ttl);
        if (field == "expires") have_expires = parseNumber(value, expires);
      }
      if (have_ttl && have_expires) {
        line.ttl_weighted += ttl.value * expires.value;
        line.expires += expires.value;
      }
    }
  }
  if (kind == Kind::kKeyspace) {
    // Redis prints db0, db1, ... in order; a database may exist on some shards only.
    auto number = [](std::string_view name) {
      Number n;
      return name.size() > 2 && parseNumber(name.substr(2), n) ? n.value : -1.0L;
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](std::string_view a, std::string_view b) { return number(a) < number(b); });
  }
  for (std::string_view name : order) {
    Line& line = lines[name];
    std::string text = std::string(name) + ":";
    for (size_t i = 0; i < line.fields.size(); ++i) {
      std::string_view field = line.fields[i];
      std::string value;
      bool summed = false;
      if (field == "avg_ttl") {
        value = formatNumber(line.expires > 0 ? line.ttl_weighted / line.expires : 0, -1);
      } else if (field == "usec_per_call") {
        Number usec, calls;
        const auto& u_values = line.values["usec"];
        const auto& c_values = line.values["calls"];
        bool ignored = false;
        if (!u_values.empty() && !c_values.empty() &&
            parseNumber(combine(Rule::kSum, u_values, &ignored), usec) &&
            parseNumber(combine(Rule::kSum, c_values, &ignored), calls)) {
          value = formatNumber(calls.value > 0 ? usec.value / calls.value : 0, 2);
        } else {
          value = std::string(line.values[field].front());
        }
      } else {
        value = combine(Rule::kSum, line.values[field], &summed);
      }
      if (i > 0) text += ',';
      text += std::string(field) + "=" + value;
    }
    out.push_back(std::move(text));
  }
}

}  // namespace

std::string mergeInfoText(const std::vector<std::string_view>& texts, const InfoAdditions& own) {
  std::vector<std::vector<Section>> parsed;
  parsed.reserve(texts.size());
  for (std::string_view t : texts) parsed.push_back(parseSections(t));
  // Sections in the first shard's order, then any only later shards have.
  std::vector<std::string> names;
  for (const auto& sections : parsed) {
    for (const Section& s : sections) {
      if (std::find(names.begin(), names.end(), s.name) == names.end()) names.push_back(s.name);
    }
  }
  const bool several = texts.size() > 1;
  std::string out;
  std::vector<std::string> lines;
  for (const std::string& name : names) {
    std::vector<const Section*> per_shard;
    const Section* first = nullptr;
    for (const auto& sections : parsed) {
      const Section* found = nullptr;
      for (const Section& s : sections) {
        if (s.name == name) found = &s;
      }
      per_shard.push_back(found);
      if (!first) first = found;
    }
    lines.clear();
    const SectionPolicy* policy = several ? policyOf(name) : nullptr;
    if (!policy) {
      for (std::string_view l : first->lines) lines.emplace_back(l);
    } else if (policy->kind == Kind::kFields) {
      mergeFields(*policy, per_shard, lines);
    } else {
      mergeLines(policy->kind, per_shard, lines);
    }
    // genRedisInfoString: a blank line between sections, none after the last.
    if (!out.empty()) out += "\r\n";
    out += first->header;
    out += "\r\n";
    for (const std::string& l : lines) {
      out += l;
      out += "\r\n";
    }
    if (name == "server") out += own.server;
    if (name == "clients") out += own.clients;
    if (name == "stats") out += own.stats;
  }
  return out;
}

void mergeInfo(const ReplyParts& parts, const InfoAdditions& own, ByteBuffer& out) {
  std::vector<RespValue> values;
  values.reserve(parts.size());
  for (const std::string& p : parts) {
    auto v = parseReply(p);
    if (!v) {
      resp::appendError(out, "ERR shardgate: cannot combine a shard's reply: " + v.message());
      return;
    }
    if (v->type == RespValue::Type::kError) {
      out.append(p);  // the shard's own error, byte for byte
      return;
    }
    values.push_back(std::move(*v));
  }
  bool verbatim = false;
  std::vector<std::string_view> texts;
  for (const RespValue& v : values) {
    if (v.type == RespValue::Type::kVerbatim && v.str.size() >= 4) {
      verbatim = true;
      texts.push_back(v.str.substr(4));  // past "txt:"
    } else if (v.type == RespValue::Type::kBulkString) {
      texts.push_back(v.str);
    } else {
      resp::appendError(out, "ERR shardgate: unexpected reply from a shard, expected INFO's text");
      return;
    }
  }
  std::string text = mergeInfoText(texts, own);
  if (verbatim) resp::appendVerbatimText(out, text);
  else resp::appendBulk(out, text);
}

}  // namespace shardgate::redis
