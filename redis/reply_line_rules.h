// The rules for the bytes of a reply line after its type byte, shared by
// ReplyScanner (fed byte by byte) and parseReply (a whole line at a time), so
// the two cannot disagree on what is well formed.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>

namespace shardgate::redis {

// Text lines (+ - ,) take any byte but CR and never come here. Each returns
// nullptr or what was wrong.
namespace reply_line {

inline bool allowsNegative(uint8_t type) { return type == ':' || type == '$' || type == '*'; }
inline bool allowsStreamed(uint8_t type) {
  return type == '$' || type == '*' || type == '%' || type == '~';
}

template <typename Line>
const char* lineByte(Line& s, uint8_t type, uint8_t c) {
  const uint64_t at = s.length++;
  switch (type) {
    case '#':
      if (at == 0 && (c == 't' || c == 'f')) return nullptr;
      return "a boolean must be #t or #f";
    case '_':
    case '.':
      return "expected CRLF";
    case '(':
      if (at == 0 && c == '-') {
        s.negative = true;
        return nullptr;
      }
      if (c >= '0' && c <= '9') {
        s.digits = true;
        return nullptr;
      }
      return "a big number must be digits";
    default:  // integers, lengths and counts
      if (at == 0 && c == '-' && allowsNegative(type)) {
        s.negative = true;
        return nullptr;
      }
      if (at == 0 && c == '?' && allowsStreamed(type)) {
        s.question = true;
        return nullptr;
      }
      if (c >= '0' && c <= '9' && !s.question) {
        const uint64_t limit = (type == ':' && s.negative)
                                   ? uint64_t{1} << 63
                                   : static_cast<uint64_t>(INT64_MAX);
        const uint64_t d = c - '0';
        if (s.number > (limit - d) / 10) return "number out of range";
        s.number = s.number * 10 + d;
        s.digits = true;
        return nullptr;
      }
      return type == ':' ? "an integer must be digits" : "a length must be digits";
  }
}

template <typename Line>
const char* lineEnd(const Line& s, uint8_t type) {
  switch (type) {
    case '+':
    case '-':
    case ',':
      return nullptr;
    case '#':
      return s.length == 1 ? nullptr : "a boolean must be #t or #f";
    case '_':
    case '.':
      return nullptr;
    case '(':
      return s.digits ? nullptr : "a big number must be digits";
    default:
      if (!s.question && !s.digits) return "missing number";
      if (s.negative && type != ':' && s.number != 1) return "a negative length must be -1";
      return nullptr;
  }
}

inline bool isTextLine(uint8_t type) { return type == '+' || type == '-' || type == ','; }

inline void appendByte(std::string& out, uint8_t c) {
  if (c >= 0x20 && c < 0x7f) {
    out += '\'';
    out += static_cast<char>(c);
    out += '\'';
    return;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  out += "0x";
  out += kHex[c >> 4];
  out += kHex[c & 15];
}

inline std::string malformed(uint64_t offset, const char* what, uint8_t c) {
  std::string text = "malformed reply at byte ";
  char digits[24];
  text.append(digits, std::to_chars(digits, digits + sizeof digits, offset).ptr);
  text += ": ";
  text += what;
  text += " (got ";
  appendByte(text, c);
  text += ')';
  return text;
}

}  // namespace reply_line

}  // namespace shardgate::redis
