// RequestDecoder. Request rules follow redis-server 7.0 networking.c
// (processInlineBuffer, processMultibulkBuffer) and sds.c (sdssplitargs), so
// a client sees the same protocol errors through the proxy as it would
// direct.
#include "redis/request_decoder.h"

#include <cassert>
#include <charconv>
#include <climits>
#include <cstring>

namespace shardgate::redis {

namespace {

constexpr std::string_view kErrTooBigInline = "-ERR Protocol error: too big inline request";
constexpr std::string_view kErrUnbalancedQuotes =
    "-ERR Protocol error: unbalanced quotes in request";
constexpr std::string_view kErrTooBigMbulkCount =
    "-ERR Protocol error: too big mbulk count string";
constexpr std::string_view kErrInvalidMultibulkLength =
    "-ERR Protocol error: invalid multibulk length";
constexpr std::string_view kErrTooBigBulkCount = "-ERR Protocol error: too big bulk count string";
constexpr std::string_view kErrInvalidBulkLength = "-ERR Protocol error: invalid bulk length";
// Redis has no argument limit for inline requests (PROTO_INLINE_MAX_SIZE
// bounds them); RespLimits::max_args applies to every command here, so this
// one text is shardgate's own.
constexpr std::string_view kErrTooManyInlineArgs =
    "-ERR Protocol error: too many arguments in inline request";

// Redis's string2ll (util.c): no '+', no leading zeros, no "-0", at most 20
// characters. Anything it refuses, Redis answers with a protocol error.
bool parseRedisInteger(const char* p, size_t len, int64_t* out) {
  if (len == 0 || len >= 21) return false;
  if (len == 1 && p[0] == '0') {
    *out = 0;
    return true;
  }
  size_t i = 0;
  bool negative = false;
  if (p[0] == '-') {
    negative = true;
    if (++i == len) return false;
  }
  if (p[i] < '1' || p[i] > '9') return false;
  uint64_t v = static_cast<uint64_t>(p[i++] - '0');
  for (; i < len; ++i) {
    if (p[i] < '0' || p[i] > '9') return false;
    uint64_t d = static_cast<uint64_t>(p[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (negative) {
    if (v > uint64_t{1} << 63) return false;
    *out = static_cast<int64_t>(0 - v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}

// isspace() in the C locale, which sdssplitargs uses to skip blanks.
bool isBlank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// The bytes that end an unquoted sdssplitargs token (not \v or \f).
bool endsToken(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\0'; }

bool isHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hexValue(char c) {
  if (c <= '9') return c - '0';
  if (c <= 'F') return c - 'A' + 10;
  return c - 'a' + 10;
}

}  // namespace

// ---------------------------------------------------------------------------
// RequestDecoder
//
// The frame is parsed in phases; pos_ is the start of the line or bulk being
// read, relative to the first byte of data, and scanned_ is how far the
// line's terminator has been searched for. A call that returns kNeedMore
// keeps both, so the next call (same bytes, more appended) continues there.
//
//   kCommandStart -- '*' --> kArgCount -- N > 0 --> kBulkHeader <-> kBulkData
//        |  ^                     | N <= 0 (ignored, as Redis does)
//        |  +---------------------+
//        +------ else ---> kInline (a blank line is ignored likewise)
//
// Line-length limits are applied to the line itself, whether or not its end
// has arrived, so the outcome never depends on how the bytes were split.
// (Redis checks only the bytes buffered so far, which makes a line just over
// the limit pass or fail depending on read sizes.)

RequestDecoder::Status RequestDecoder::decode(std::string_view data) {
  if (!resuming_) {
    args_.clear();
    unescaped_.clear();
    frame_len_ = 0;
    pos_ = 0;
    scanned_ = 0;
    phase_ = Phase::kCommandStart;
    inline_ = false;
  } else {
    assert(data.size() >= seen_ && "decode() must be given the same bytes again");
  }
  data_ = data;
  seen_ = data.size();
  resuming_ = true;

  const char* p = data.data();
  const size_t n = data.size();
  for (;;) {
    switch (phase_) {
      case Phase::kCommandStart:
        if (pos_ >= n) return Status::kNeedMore;
        inline_ = p[pos_] != '*';
        phase_ = inline_ ? Phase::kInline : Phase::kArgCount;
        scanned_ = pos_;
        break;

      case Phase::kInline: {
        const void* nl = std::memchr(p + scanned_, '\n', n - scanned_);
        if (nl == nullptr) {
          scanned_ = n;
          if (n - pos_ > limits_.max_inline_len) return fail(kErrTooBigInline);
          return Status::kNeedMore;
        }
        size_t nl_pos = static_cast<size_t>(static_cast<const char*>(nl) - p);
        if (nl_pos - pos_ > limits_.max_inline_len) return fail(kErrTooBigInline);
        size_t line_end = (nl_pos > pos_ && p[nl_pos - 1] == '\r') ? nl_pos - 1 : nl_pos;
        if (Status s = parseInline(line_end, nl_pos + 1); s != Status::kCommand) return s;
        if (args_.empty()) {  // a blank line: Redis skips it
          phase_ = Phase::kCommandStart;
          break;
        }
        frame_len_ = pos_;
        resuming_ = false;
        return Status::kCommand;
      }

      case Phase::kArgCount:
      case Phase::kBulkHeader: {
        const bool count = phase_ == Phase::kArgCount;
        const void* cr = std::memchr(p + scanned_, '\r', n - scanned_);
        size_t cr_pos = cr ? static_cast<size_t>(static_cast<const char*>(cr) - p) : n;
        scanned_ = cr_pos;
        if (cr_pos - pos_ > limits_.max_inline_len) {
          return fail(count ? kErrTooBigMbulkCount : kErrTooBigBulkCount);
        }
        // Redis wants the byte after the CR in too, then skips it unchecked.
        if (cr_pos + 1 >= n) return Status::kNeedMore;
        int64_t value = 0;
        if (count) {
          const bool ok = parseRedisInteger(p + pos_ + 1, cr_pos - pos_ - 1, &value);
          if (!ok || value > INT_MAX || (value > 0 && static_cast<uint64_t>(value) > limits_.max_args)) {
            return fail(kErrInvalidMultibulkLength);
          }
          pos_ = cr_pos + 2;
          if (value <= 0) {  // "*0", "*-1": Redis ignores them
            phase_ = Phase::kCommandStart;
            break;
          }
          args_left_ = value;
          phase_ = Phase::kBulkHeader;
          scanned_ = pos_;
          break;
        }
        if (p[pos_] != '$') {
          // addReplyErrorFormat maps CR and LF to spaces.
          char got = (p[pos_] == '\r' || p[pos_] == '\n') ? ' ' : p[pos_];
          std::string text = "-ERR Protocol error: expected '$', got '";
          text += got;
          text += '\'';
          return fail(text);
        }
        const bool ok = parseRedisInteger(p + pos_ + 1, cr_pos - pos_ - 1, &value);
        if (!ok || value < 0 || static_cast<uint64_t>(value) > limits_.max_bulk_len) {
          return fail(kErrInvalidBulkLength);
        }
        pos_ = cr_pos + 2;
        bulk_len_ = value;
        phase_ = Phase::kBulkData;
        [[fallthrough]];
      }

      case Phase::kBulkData: {
        // The bulk and the two bytes after it, which Redis skips unchecked.
        const uint64_t need = static_cast<uint64_t>(bulk_len_) + 2;
        if (n - pos_ < need) return Status::kNeedMore;
        args_.push_back(ArgRef{pos_, static_cast<uint64_t>(bulk_len_)});
        pos_ += need;
        if (--args_left_ > 0) {
          phase_ = Phase::kBulkHeader;
          scanned_ = pos_;
          break;
        }
        frame_len_ = pos_;
        resuming_ = false;
        return Status::kCommand;
      }
    }
  }
}

// Splits [pos_, line_end) as sdssplitargs does. The line has been found whole,
// so this runs once per inline command. An argument without quotes is a view
// into data_; one with quotes (which may start mid-token: a"b c" is `ab c`)
// is unescaped into unescaped_. sdssplitargs works on a C string, so a NUL
// byte ends the line there, as it does in Redis.
RequestDecoder::Status RequestDecoder::parseInline(size_t line_end, size_t next) {
  const char* p = data_.data();
  // The line as sdssplitargs sees it: NUL-terminated at line_end.
  auto at = [&](size_t i) -> char { return i < line_end ? p[i] : '\0'; };

  size_t i = pos_;
  for (;;) {
    while (at(i) != '\0' && isBlank(at(i))) ++i;
    if (at(i) == '\0') break;

    const size_t start = i;
    while (!endsToken(at(i)) && at(i) != '"' && at(i) != '\'') ++i;
    if (endsToken(at(i))) {  // the common case: a run of the input
      args_.push_back(ArgRef{start, i - start});
      if (at(i) != '\0') ++i;
    } else {
      const size_t from = unescaped_.size();
      unescaped_.append(p + start, i - start);
      bool in_double = false;
      bool in_single = false;
      bool done = false;
      while (!done) {
        const char c = at(i);
        if (in_double) {
          if (c == '\\' && at(i + 1) == 'x' && isHex(at(i + 2)) && isHex(at(i + 3))) {
            unescaped_ += static_cast<char>(hexValue(at(i + 2)) * 16 + hexValue(at(i + 3)));
            i += 3;
          } else if (c == '\\' && at(i + 1) != '\0') {
            ++i;
            switch (at(i)) {
              case 'n': unescaped_ += '\n'; break;
              case 'r': unescaped_ += '\r'; break;
              case 't': unescaped_ += '\t'; break;
              case 'b': unescaped_ += '\b'; break;
              case 'a': unescaped_ += '\a'; break;
              default: unescaped_ += at(i); break;
            }
          } else if (c == '"') {
            // The closing quote must be followed by a blank or the end.
            if (at(i + 1) != '\0' && !isBlank(at(i + 1))) return fail(kErrUnbalancedQuotes);
            done = true;
          } else if (c == '\0') {
            return fail(kErrUnbalancedQuotes);
          } else {
            unescaped_ += c;
          }
        } else if (in_single) {
          if (c == '\\' && at(i + 1) == '\'') {
            ++i;
            unescaped_ += '\'';
          } else if (c == '\'') {
            if (at(i + 1) != '\0' && !isBlank(at(i + 1))) return fail(kErrUnbalancedQuotes);
            done = true;
          } else if (c == '\0') {
            return fail(kErrUnbalancedQuotes);
          } else {
            unescaped_ += c;
          }
        } else if (endsToken(c)) {
          done = true;
        } else if (c == '"') {
          in_double = true;
        } else if (c == '\'') {
          in_single = true;
        } else {
          unescaped_ += c;
        }
        if (at(i) != '\0') ++i;
      }
      args_.push_back(ArgRef{from | kUnescaped, unescaped_.size() - from});
    }
    if (args_.size() > limits_.max_args) return fail(kErrTooManyInlineArgs);
  }
  pos_ = next;
  return Status::kCommand;
}

RequestDecoder::Status RequestDecoder::fail(std::string_view text) {
  error_.assign(text);
  args_.clear();
  frame_len_ = 0;
  resuming_ = false;
  return Status::kError;
}

std::string_view RequestDecoder::arg(size_t i) const {
  assert(i < args_.size());
  const ArgRef& a = args_[i];
  if (a.offset & kUnescaped) {
    return {unescaped_.data() + (a.offset & ~kUnescaped), static_cast<size_t>(a.length)};
  }
  return {data_.data() + a.offset, static_cast<size_t>(a.length)};
}

}  // namespace shardgate::redis
