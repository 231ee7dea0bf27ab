// RESP encoding. Each function sizes its output first and writes it with one
// prepare()/commit(), so the only allocation is the ByteBuffer growing.
// Text passed to appendSimple/appendError must not contain CR or LF (RESP
// simple strings cannot); the caller's own texts never do.
#include "redis/resp_encoder.h"

#include <cassert>
#include <charconv>
#include <cstring>

namespace shardgate::redis::resp {

namespace {

// Enough for any int64_t or size_t in decimal, with its sign.
constexpr size_t kMaxDigits = 20;

char* put(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

char* putCrlf(char* p) {
  p[0] = '\r';
  p[1] = '\n';
  return p + 2;
}

template <typename Int>
char* putNumber(char* p, Int value) {
  return std::to_chars(p, p + kMaxDigits + 1, value).ptr;
}

char* begin(ByteBuffer& out, size_t max) { return reinterpret_cast<char*>(out.prepare(max)); }

void finish(ByteBuffer& out, const char* start, const char* end) {
  out.commit(static_cast<size_t>(end - start));
}

// <prefix><text>\r\n
void appendLine(ByteBuffer& out, char prefix, std::string_view text) {
  char* start = begin(out, text.size() + 3);
  char* p = start;
  *p++ = prefix;
  p = put(p, text);
  finish(out, start, putCrlf(p));
}

// <prefix><number>\r\n
template <typename Int>
void appendNumberLine(ByteBuffer& out, char prefix, Int value) {
  char* start = begin(out, kMaxDigits + 4);
  char* p = start;
  *p++ = prefix;
  p = putNumber(p, value);
  finish(out, start, putCrlf(p));
}

// <prefix><len>\r\n<value>\r\n
void appendBlob(ByteBuffer& out, char prefix, std::string_view value) {
  char* start = begin(out, kMaxDigits + 6 + value.size());
  char* p = start;
  *p++ = prefix;
  p = putNumber(p, value.size());
  p = putCrlf(p);
  p = put(p, value);
  finish(out, start, putCrlf(p));
}

bool hasLineBreak(std::string_view s) {
  return s.find_first_of("\r\n") != std::string_view::npos;
}

}  // namespace

void appendSimple(ByteBuffer& out, std::string_view text) { appendLine(out, '+', text); }

void appendError(ByteBuffer& out, std::string_view text) { appendLine(out, '-', text); }

void appendInteger(ByteBuffer& out, int64_t value) { appendNumberLine(out, ':', value); }

void appendBulk(ByteBuffer& out, std::string_view value) { appendBlob(out, '$', value); }

void appendNullBulk(ByteBuffer& out) { out.append(std::string_view("$-1\r\n")); }

void appendVerbatimText(ByteBuffer& out, std::string_view value) {
  char* start = begin(out, kMaxDigits + 10 + value.size());
  char* p = start;
  *p++ = '=';
  p = putNumber(p, value.size() + 4);
  p = putCrlf(p);
  p = put(p, "txt:");
  p = put(p, value);
  finish(out, start, putCrlf(p));
}

void appendArrayHeader(ByteBuffer& out, size_t count) { appendNumberLine(out, '*', count); }

void appendNullArray(ByteBuffer& out) { out.append(std::string_view("*-1\r\n")); }

void appendCommand(ByteBuffer& out, std::initializer_list<std::string_view> args) {
  appendArrayHeader(out, args.size());
  for (std::string_view arg : args) appendBulk(out, arg);
}

// kNull and kError carry their wire form in `integer` when parseReply made
// them (see parseReply); a value built by hand gets the RESP2 form, or the
// RESP3 blob error when the text could not be a simple error line.
void appendValue(ByteBuffer& out, const RespValue& value) {
  using Type = RespValue::Type;
  switch (value.type) {
    case Type::kSimpleString:
      appendLine(out, '+', value.str);
      return;
    case Type::kError:
      if (value.integer == '!' || hasLineBreak(value.str)) {
        appendBlob(out, '!', value.str);
      } else {
        appendLine(out, '-', value.str);
      }
      return;
    case Type::kInteger:
      appendNumberLine(out, ':', value.integer);
      return;
    case Type::kBulkString:
      appendBlob(out, '$', value.str);
      return;
    case Type::kNull:
      if (value.integer == '_') {
        out.append(std::string_view("_\r\n"));
      } else if (value.integer == '*') {
        appendNullArray(out);
      } else {
        appendNullBulk(out);
      }
      return;
    case Type::kDouble:
      appendLine(out, ',', value.str);
      return;
    case Type::kBoolean:
      out.append(std::string_view(value.integer ? "#t\r\n" : "#f\r\n"));
      return;
    case Type::kBigNumber:
      appendLine(out, '(', value.str);
      return;
    case Type::kVerbatim:
      appendBlob(out, '=', value.str);
      return;
    case Type::kArray:
    case Type::kSet:
    case Type::kPush:
    case Type::kMap: {
      const char prefix = value.type == Type::kArray ? '*'
                          : value.type == Type::kSet ? '~'
                          : value.type == Type::kPush ? '>'
                                                      : '%';
      size_t count = value.elements.size();
      if (value.type == Type::kMap) {
        assert(count % 2 == 0 && "a map holds key, value, key, value, ...");
        count /= 2;
      }
      appendNumberLine(out, prefix, count);
      for (const RespValue& element : value.elements) appendValue(out, element);
      return;
    }
  }
}

}  // namespace shardgate::redis::resp
