#include "proxy/reply_merge.h"

#include <charconv>
#include <map>

#include "proxy/resp_decoder.h"
#include "proxy/resp_encoder.h"

namespace shardgate::proxy {

namespace {

// Parses every part; on the first error part (or malformed part) writes the
// reply the client gets instead and returns false.
bool parseAll(const ReplyParts& parts, std::vector<RespValue>& values, ByteBuffer& out) {
  values.clear();
  values.reserve(parts.size());
  for (const std::string& p : parts) {
    auto v = parseReply(p);
    if (!v) {
      resp::appendError(out, "ERR shardgate: malformed reply from a shard: " + v.message());
      return false;
    }
    if (v->type == RespValue::Type::kError) {
      out.append(p);  // the shard's own error, byte for byte
      return false;
    }
    values.push_back(std::move(*v));
  }
  return true;
}

bool isArray(const RespValue& v) {
  return v.type == RespValue::Type::kArray || v.type == RespValue::Type::kSet;
}

void unexpected(ByteBuffer& out, std::string_view what) {
  resp::appendError(out, std::string("ERR shardgate: unexpected reply from a shard, expected ") +
                             std::string(what));
}

bool parseU64(std::string_view s, uint64_t& v) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

void mergeMget(const ReplyParts& parts, const std::vector<uint16_t>& key_part, ByteBuffer& out,
               size_t per_key) {
  std::vector<RespValue> values;
  if (!parseAll(parts, values, out)) return;
  std::vector<size_t> next(values.size(), 0);
  for (const RespValue& v : values) {
    if (!isArray(v)) return unexpected(out, "an array");
  }
  resp::appendArrayHeader(out, key_part.size() * per_key);
  for (uint16_t part : key_part) {
    const RespValue& v = values[part];
    if (next[part] + per_key > v.elements.size()) {
      out.clear();
      return unexpected(out, "one value per key");
    }
    for (size_t i = 0; i < per_key; ++i) resp::appendValue(out, v.elements[next[part]++]);
  }
}

void mergeAllOk(const ReplyParts& parts, ByteBuffer& out) {
  std::vector<RespValue> values;
  if (!parseAll(parts, values, out)) return;
  resp::appendSimple(out, "OK");
}

void mergeAnyOk(const ReplyParts& parts, ByteBuffer& out) {
  for (const std::string& p : parts) {
    if (p.rfind("+OK\r\n", 0) == 0) {
      resp::appendSimple(out, "OK");
      return;
    }
  }
  for (const std::string& p : parts) {
    if (!p.empty() && (p[0] == '-' || p[0] == '!')) {
      out.append(p);
      return;
    }
  }
  unexpected(out, "+OK or an error");
}

void mergeSumIntegers(const ReplyParts& parts, ByteBuffer& out) {
  std::vector<RespValue> values;
  if (!parseAll(parts, values, out)) return;
  int64_t sum = 0;
  for (const RespValue& v : values) {
    if (v.type != RespValue::Type::kInteger) return unexpected(out, "an integer");
    sum += v.integer;
  }
  resp::appendInteger(out, sum);
}

void mergeConcatArrays(const ReplyParts& parts, ByteBuffer& out) {
  std::vector<RespValue> values;
  if (!parseAll(parts, values, out)) return;
  size_t n = 0;
  for (const RespValue& v : values) {
    if (!isArray(v)) return unexpected(out, "an array");
    n += v.elements.size();
  }
  resp::appendArrayHeader(out, n);
  for (const RespValue& v : values) {
    for (const RespValue& e : v.elements) resp::appendValue(out, e);
  }
}

void mergeRandomKey(const ReplyParts& parts, size_t start, ByteBuffer& out) {
  std::vector<RespValue> values;
  if (!parseAll(parts, values, out)) return;
  for (size_t i = 0; i < values.size(); ++i) {
    const RespValue& v = values[(start + i) % values.size()];
    if (v.type != RespValue::Type::kNull) {
      out.append(parts[(start + i) % values.size()]);
      return;
    }
  }
  resp::appendNullBulk(out);
}

void mergeSameReply(const ReplyParts& parts, ByteBuffer& out) {
  std::vector<RespValue> values;
  if (!parseAll(parts, values, out)) return;
  out.append(parts.front());
}

void mergeAndArrays(const ReplyParts& parts, ByteBuffer& out) {
  std::vector<RespValue> values;
  if (!parseAll(parts, values, out)) return;
  size_t n = values.front().elements.size();
  for (const RespValue& v : values) {
    if (!isArray(v) || v.elements.size() != n) return unexpected(out, "arrays of equal length");
  }
  resp::appendArrayHeader(out, n);
  for (size_t i = 0; i < n; ++i) {
    int64_t all = 1;
    for (const RespValue& v : values) {
      if (v.elements[i].integer == 0) all = 0;
    }
    resp::appendInteger(out, all);
  }
}

std::optional<ScanPosition> decodeScanCursor(std::string_view text, uint32_t shards) {
  uint64_t cursor = 0;
  if (!parseU64(text, cursor)) return std::nullopt;
  return ScanPosition{static_cast<uint32_t>(cursor % shards), cursor / shards};
}

void rewriteScanReply(const std::string& part, uint32_t shard, uint32_t shards, ByteBuffer& out) {
  auto v = parseReply(part);
  if (!v) {
    resp::appendError(out, "ERR shardgate: malformed reply from a shard: " + v.message());
    return;
  }
  if (v->type == RespValue::Type::kError) {
    out.append(part);
    return;
  }
  uint64_t next = 0;
  if (v->type != RespValue::Type::kArray || v->elements.size() != 2 ||
      !parseU64(v->elements[0].str, next)) {
    return unexpected(out, "a SCAN page");
  }
  uint64_t encoded = 0;
  if (next != 0) {
    if (next > (UINT64_MAX - shard) / shards) {
      resp::appendError(out, "ERR shardgate: the shard's SCAN cursor is too large to encode");
      return;
    }
    encoded = next * shards + shard;
  } else if (shard + 1 < shards) {
    encoded = shard + 1;  // the next shard, from its beginning
  }
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, encoded);
  (void)ec;
  resp::appendArrayHeader(out, 2);
  resp::appendBulk(out, std::string_view(digits, static_cast<size_t>(end - digits)));
  resp::appendValue(out, v->elements[1]);
}

std::string sumKeyspace(const ReplyParts& parts) {
  struct Totals {
    uint64_t keys = 0, expires = 0;
    long double ttl_weighted = 0;
  };
  std::map<uint64_t, Totals> dbs;  // ordered by db number, as Redis prints them
  for (const std::string& p : parts) {
    auto v = parseReply(p);
    if (!v || (v->type != RespValue::Type::kBulkString && v->type != RespValue::Type::kVerbatim)) {
      continue;
    }
    std::string_view text = v->str;
    while (!text.empty()) {
      size_t eol = text.find('\n');
      std::string_view line = text.substr(0, eol);
      text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() < 3 || line.substr(0, 2) != "db") continue;
      size_t colon = line.find(':');
      uint64_t db = 0;
      if (colon == std::string_view::npos || !parseU64(line.substr(2, colon - 2), db)) continue;
      uint64_t keys = 0, expires = 0, avg_ttl = 0;
      std::string_view fields = line.substr(colon + 1);
      while (!fields.empty()) {
        size_t comma = fields.find(',');
        std::string_view f = fields.substr(0, comma);
        fields = comma == std::string_view::npos ? std::string_view() : fields.substr(comma + 1);
        size_t eq = f.find('=');
        if (eq == std::string_view::npos) continue;
        std::string_view name = f.substr(0, eq);
        uint64_t value = 0;
        if (!parseU64(f.substr(eq + 1), value)) continue;
        if (name == "keys") keys = value;
        else if (name == "expires") expires = value;
        else if (name == "avg_ttl") avg_ttl = value;
      }
      Totals& t = dbs[db];
      t.keys += keys;
      t.expires += expires;
      t.ttl_weighted += static_cast<long double>(avg_ttl) * static_cast<long double>(keys);
    }
  }
  std::string out = "# Keyspace\r\n";
  for (const auto& [db, t] : dbs) {
    auto avg = t.keys ? static_cast<uint64_t>(t.ttl_weighted / static_cast<long double>(t.keys)) : 0;
    out += "db" + std::to_string(db) + ":keys=" + std::to_string(t.keys) +
           ",expires=" + std::to_string(t.expires) + ",avg_ttl=" + std::to_string(avg) + "\r\n";
  }
  return out;
}

}  // namespace shardgate::proxy
