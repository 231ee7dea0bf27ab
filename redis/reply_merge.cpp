#include "redis/reply_merge.h"

#include <charconv>

#include "redis/resp_value.h"
#include "redis/resp_encoder.h"

namespace shardgate::redis {

namespace {

// Parses every part; on the first error part (or malformed part) writes the
// reply the client gets instead and returns false.
bool parseAll(const ReplyParts& parts, std::vector<RespValue>& values, ByteBuffer& out) {
  values.clear();
  values.reserve(parts.size());
  for (const std::string& p : parts) {
    auto v = parseReply(p);
    if (!v) {
      resp::appendError(out, "ERR shardgate: cannot combine a shard's reply: " + v.message());
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
    resp::appendError(out, "ERR shardgate: cannot combine a shard's reply: " + v.message());
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

}  // namespace shardgate::redis
