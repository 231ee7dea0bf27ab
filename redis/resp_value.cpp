// parseReply, with the scanner's rules.
#include "redis/resp_value.h"

#include <cassert>
#include <charconv>
#include <climits>
#include <cstring>

#include "redis/reply_line_rules.h"

namespace shardgate::redis {

using namespace reply_line;

namespace {
// parseReply builds a tree, by recursion, and its users (appendValue, the
// tree's destructor) walk it by recursion too: a reply nested deeper than
// this is refused, so none of them can exhaust the stack. It only reads
// replies to commands the proxy merges or sends itself, which nest a few
// levels; whatever a shard sends is framed by ReplyScanner, which has no
// such limit.
constexpr size_t kMaxParsedDepth = 1024;
}  // namespace

// ---------------------------------------------------------------------------
// parseReply: recursive descent over one frame, with the scanner's rules.

namespace {

struct ParseLine {
  uint64_t number = 0;
  uint64_t length = 0;
  bool negative = false;
  bool question = false;
  bool digits = false;
};

class ReplyParser {
 public:
  explicit ReplyParser(std::string_view frame) : f_(frame) {}

  Result<RespValue> run() {
    RespValue value;
    if (!parseValue(&value, 0)) return makeError(std::move(error_));
    if (pos_ != f_.size()) {
      return makeError(malformed(pos_, "trailing bytes after the reply", byteAt(pos_)));
    }
    return value;
  }

 private:
  uint8_t byteAt(size_t i) const { return static_cast<uint8_t>(f_[i]); }

  bool fail(size_t at, const char* what) {
    if (at >= f_.size()) {
      error_ = "truncated reply: ";
      error_ += std::to_string(f_.size());
      error_ += " bytes end inside a value";
    } else {
      error_ = malformed(at, what, byteAt(at));
    }
    return false;
  }

  // The line after a type byte at pos_ - 1, up to its CRLF; pos_ moves past.
  bool readLine(std::string_view* content) {
    const void* cr = std::memchr(f_.data() + pos_, '\r', f_.size() - pos_);
    if (cr == nullptr) return fail(f_.size(), "");
    const size_t cr_pos = static_cast<size_t>(static_cast<const char*>(cr) - f_.data());
    if (cr_pos + 1 >= f_.size()) return fail(f_.size(), "");
    if (f_[cr_pos + 1] != '\n') return fail(cr_pos + 1, "expected LF after CR");
    *content = f_.substr(pos_, cr_pos - pos_);
    pos_ = cr_pos + 2;
    return true;
  }

  bool readHeader(uint8_t type, ParseLine* line) {
    const size_t start = pos_;
    std::string_view content;
    if (!readLine(&content)) return false;
    for (size_t i = 0; i < content.size(); ++i) {
      if (const char* why = lineByte(*line, type, static_cast<uint8_t>(content[i]))) {
        return fail(start + i, why);
      }
    }
    if (const char* why = lineEnd(*line, type)) return fail(start + content.size() + 1, why);
    return true;
  }

  bool readBlob(uint64_t len, std::string_view* out) {
    if (f_.size() - pos_ < len) return fail(f_.size(), "");
    const size_t end = pos_ + static_cast<size_t>(len);
    if (end >= f_.size()) return fail(f_.size(), "");
    if (f_[end] != '\r') return fail(end, "expected CR after the blob");
    if (end + 1 >= f_.size()) return fail(f_.size(), "");
    if (f_[end + 1] != '\n') return fail(end + 1, "expected LF after the blob");
    *out = f_.substr(pos_, static_cast<size_t>(len));
    pos_ = end + 2;
    return true;
  }

  // out == nullptr validates without building (attributes).
  bool parseValue(RespValue* out, size_t depth) {
    for (;;) {
      if (pos_ >= f_.size()) return fail(pos_, "");
      const size_t type_pos = pos_;
      const uint8_t type = byteAt(pos_++);
      ParseLine line;
      std::string_view text;
      switch (type) {
        case '+':
        case '-':
        case ',':
          if (!readLine(&text)) return false;
          if (out) {
            out->type = type == '+'   ? RespValue::Type::kSimpleString
                        : type == '-' ? RespValue::Type::kError
                                      : RespValue::Type::kDouble;
            out->str = text;
            if (type == '-') out->integer = '-';
          }
          return true;
        case ':':
          if (!readHeader(type, &line)) return false;
          if (out) {
            out->type = RespValue::Type::kInteger;
            out->integer = line.negative ? static_cast<int64_t>(0 - line.number)
                                         : static_cast<int64_t>(line.number);
          }
          return true;
        case '(':
        case '#':
        case '_': {
          const size_t start = pos_;
          if (!readHeader(type, &line)) return false;
          if (out) {
            if (type == '(') {
              out->type = RespValue::Type::kBigNumber;
              out->str = f_.substr(start, pos_ - 2 - start);
            } else if (type == '#') {
              out->type = RespValue::Type::kBoolean;
              out->integer = f_[start] == 't' ? 1 : 0;
            } else {
              out->type = RespValue::Type::kNull;
              out->integer = '_';
            }
          }
          return true;
        }
        case '$':
        case '!':
        case '=':
          if (!readHeader(type, &line)) return false;
          if (line.question) {
            // A streamed string is chunks, not one run of the frame, so it
            // has no single view to return. The proxy parses only replies to
            // commands it sent itself, which Redis never streams.
            error_ = "streamed string not supported by parseReply (at byte ";
            error_ += std::to_string(type_pos);
            error_ += ')';
            return false;
          }
          if (line.negative) {
            if (out) {
              out->type = RespValue::Type::kNull;
              out->integer = '$';
            }
            return true;
          }
          if (!readBlob(line.number, &text)) return false;
          if (out) {
            out->type = type == '$'   ? RespValue::Type::kBulkString
                        : type == '!' ? RespValue::Type::kError
                                      : RespValue::Type::kVerbatim;
            out->str = text;
            if (type == '!') out->integer = '!';
          }
          return true;
        case '*':
        case '%':
        case '~':
        case '>':
        case '|': {
          if (!readHeader(type, &line)) return false;
          const bool attribute = type == '|';
          RespValue* target = attribute ? nullptr : out;
          if (target) {
            target->type = type == '*'   ? RespValue::Type::kArray
                           : type == '%' ? RespValue::Type::kMap
                           : type == '~' ? RespValue::Type::kSet
                                         : RespValue::Type::kPush;
          }
          if (line.negative) {  // *-1
            if (target) {
              target->type = RespValue::Type::kNull;
              target->integer = '*';
            }
            return true;
          }
          const uint64_t count = (type == '%' || attribute) ? line.number * 2 : line.number;
          if ((line.question || count > 0) && depth >= kMaxParsedDepth) {
            error_ = "reply nested deeper than 1024 levels (at byte ";
            error_ += std::to_string(type_pos);
            error_ += "): too deep for the proxy to read";
            return false;
          }
          if (!parseElements(target, depth + 1, count, line.question, type == '%')) return false;
          if (attribute) continue;  // the annotated value follows
          return true;
        }
        default:
          return fail(type_pos, type == '.' || type == ';' ? "unexpected here" : "unknown type byte");
      }
    }
  }

  bool parseElements(RespValue* out, size_t depth, uint64_t count, bool streamed, bool pairs) {
    // Elements are appended as they parse: a declared count reserves nothing.
    for (uint64_t i = 0; streamed || i < count; ++i) {
      if (streamed) {
        if (pos_ >= f_.size()) return fail(pos_, "");
        if (f_[pos_] == '.') {
          if (pairs && (i & 1)) return fail(pos_, "'.' inside a key-value pair");
          ++pos_;
          ParseLine line;
          return readHeader('.', &line);
        }
      }
      RespValue* child = nullptr;
      if (out) child = &out->elements.emplace_back();
      if (!parseValue(child, depth)) return false;
    }
    return true;
  }

  std::string_view f_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

// For the two types RespValue folds together, parseReply records the wire
// form in `integer` so appendValue can write the frame back as it came:
// kNull '$' (RESP2 $-1), '*' (RESP2 *-1) or '_' (RESP3); kError '-' or '!'.
Result<RespValue> parseReply(std::string_view frame) { return ReplyParser(frame).run(); }

const char* typeName(RespValue::Type type) {
  switch (type) {
    case RespValue::Type::kSimpleString: return "a simple string";
    case RespValue::Type::kError: return "an error";
    case RespValue::Type::kInteger: return "an integer";
    case RespValue::Type::kBulkString: return "a bulk string";
    case RespValue::Type::kNull: return "a null";
    case RespValue::Type::kArray: return "an array";
    case RespValue::Type::kMap: return "a map";
    case RespValue::Type::kSet: return "a set";
    case RespValue::Type::kPush: return "a push";
    case RespValue::Type::kDouble: return "a double";
    case RespValue::Type::kBoolean: return "a boolean";
    case RespValue::Type::kBigNumber: return "a big number";
    case RespValue::Type::kVerbatim: return "a verbatim string";
  }
  return "an unknown type";
}

}  // namespace shardgate::redis
