// RESP decoding. Request rules follow redis-server 7.0 networking.c
// (processInlineBuffer, processMultibulkBuffer) and sds.c (sdssplitargs), so
// a client sees the same protocol errors through the proxy as it would
// direct. Reply framing follows the RESP3 specification
// (https://github.com/redis/redis-specifications/blob/master/protocol/RESP3.md).
#include "proxy/resp_decoder.h"

#include <cassert>
#include <charconv>
#include <climits>
#include <cstring>

namespace shardgate::proxy {

namespace {

// parseReply builds a tree, by recursion, and its users (appendValue, the
// tree's destructor) walk it by recursion too: a reply nested deeper than
// this is refused, so none of them can exhaust the stack. It only reads
// replies to commands the proxy merges or sends itself, which nest a few
// levels; whatever a shard sends is framed by ReplyScanner, which has no
// such limit.
constexpr size_t kMaxParsedDepth = 1024;

// After a frame that needed more open levels than this, the scanner gives
// their memory back, so one deep reply does not pin it for the link's life.
constexpr size_t kKeptLevels = 256;

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

// ---------------------------------------------------------------------------
// The rules for the bytes of a reply line after its type byte, shared by
// ReplyScanner (fed byte by byte) and parseReply (a whole line at a time) so
// the two cannot disagree on what is well formed. Text lines (+ - ,) take any
// byte but CR and never come here. Each returns nullptr or what was wrong.

namespace {

bool allowsNegative(uint8_t type) { return type == ':' || type == '$' || type == '*'; }
bool allowsStreamed(uint8_t type) {
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

bool isTextLine(uint8_t type) { return type == '+' || type == '-' || type == ','; }

void appendByte(std::string& out, uint8_t c) {
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

std::string malformed(uint64_t offset, const char* what, uint8_t c) {
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

}  // namespace

// ---------------------------------------------------------------------------
// ReplyScanner
//
// A byte-level state machine over the grammar; only headers are looked at
// byte by byte: blob payloads are skipped by count and text lines by memchr.
//
// The stack holds one Level per open aggregate that has more to come than
// its current element. A counted aggregate is popped as soon as its last
// element starts (or never pushed, for "*1"): the end of that element is its
// end, so the element's end counts directly in the level below -- a tail
// call. Hence a value's end touches one level only (no walk up the stack),
// and "*1\r\n" repeated a million times needs no memory at all. What the
// popped levels no longer say -- that the input is inside an element, not
// at an element boundary -- is one bit on the level below (kTailInside),
// which is all the "." of a streamed aggregate needs to be checked.
//
// When a value ends, valueDone(): a counted level loses one element and, at
// one left, pops; a streamed level only counts (it ends at "."); an
// attribute pops at zero without counting, because the value it annotates
// is still to come.

size_t ReplyScanner::feed(const uint8_t* data, size_t len, bool* frame_done) {
  *frame_done = false;
  if (failed_) return 0;
  size_t i = 0;
  while (i < len) {
    switch (phase_) {
      case Phase::kType:
        in_frame_ = true;
        ++offset_;
        if (!startLine(data[i++])) return 0;
        break;

      case Phase::kLine:
        if (isTextLine(line_type_)) {
          const void* cr = std::memchr(data + i, '\r', len - i);
          size_t n = cr ? static_cast<size_t>(static_cast<const uint8_t*>(cr) - (data + i)) : len - i;
          i += n;
          offset_ += n;
          if (cr == nullptr) break;
          ++i;
          ++offset_;
          phase_ = Phase::kLineLf;
          break;
        }
        ++offset_;
        if (data[i] == '\r') {
          phase_ = Phase::kLineLf;
        } else if (const char* why = lineByte(line_, line_type_, data[i])) {
          return fail(why, data[i]);
        }
        ++i;
        break;

      case Phase::kLineLf:
        ++offset_;
        if (data[i] != '\n') return fail("expected LF after CR", data[i]);
        ++i;
        if (!endLine()) return 0;
        break;

      case Phase::kBulk: {
        const size_t n = remaining_ < len - i ? static_cast<size_t>(remaining_) : len - i;
        i += n;
        offset_ += n;
        remaining_ -= n;
        if (remaining_ == 0) phase_ = Phase::kBulkCr;
        break;
      }

      case Phase::kBulkCr:
        ++offset_;
        if (data[i] != '\r') return fail("expected CR after the blob", data[i]);
        ++i;
        phase_ = Phase::kBulkLf;
        break;

      case Phase::kBulkLf:
        ++offset_;
        if (data[i] != '\n') return fail("expected LF after the blob", data[i]);
        ++i;
        phase_ = Phase::kType;
        // A chunk of a streamed string is not a value; the ";0" is its end.
        if (stack_.empty() || !(stack_.back().kind & kStreamedString)) valueDone();
        break;
    }
    if (frame_done_) {
      frame_done_ = false;
      in_frame_ = false;
      offset_ = 0;
      if (stack_.capacity() > kKeptLevels) std::vector<Level>().swap(stack_);
      *frame_done = true;
      return i;
    }
  }
  return len;
}

bool ReplyScanner::idle() const { return !in_frame_ && !failed_; }

// The type byte of the next element.
bool ReplyScanner::startLine(uint8_t type) {
  const bool after_attribute = after_attribute_;
  after_attribute_ = false;
  const bool in_string = !stack_.empty() && (stack_.back().kind & kStreamedString);
  if (in_string != (type == ';')) {
    return fail(in_string ? "expected ';' chunk of a streamed string"
                          : "';' outside a streamed string",
                type);
  }
  switch (type) {
    case '+': case '-': case ',': case ':': case '(': case '#': case '_':
    case '$': case '!': case '=': case ';':
    case '*': case '%': case '~': case '>': case '|':
      break;
    case '.':
      if (stack_.empty() || !(stack_.back().kind & kStreamed) ||
          (stack_.back().kind & kTailInside) || after_attribute ||
          ((stack_.back().kind & kPairs) && (stack_.back().count & 1))) {
        return fail("'.' outside a streamed aggregate's element boundary", type);
      }
      break;
    default:
      return fail("unknown type byte", type);
  }
  line_type_ = type;
  line_ = LineState{};
  phase_ = Phase::kLine;
  return true;
}

// The CRLF of a line arrived: act on what it said.
bool ReplyScanner::endLine() {
  if (const char* why = lineEnd(line_, line_type_)) return fail(why, '\n');
  phase_ = Phase::kType;
  const uint64_t n = line_.number;
  switch (line_type_) {
    case '$': case '!': case '=':
      if (line_.question) return openLevel(0, kStreamedString);
      if (line_.negative) {  // $-1
        valueDone();
        return true;
      }
      remaining_ = n;
      phase_ = n ? Phase::kBulk : Phase::kBulkCr;
      return true;
    case ';':
      if (n == 0) {
        stack_.pop_back();
        valueDone();
        return true;
      }
      remaining_ = n;
      phase_ = Phase::kBulk;
      return true;
    case '*': case '~': case '>': case '%': {
      const uint8_t pairs = line_type_ == '%' ? kPairs : 0;
      if (line_.question) return openLevel(0, static_cast<uint8_t>(kStreamed | pairs));
      if (line_.negative || n == 0) {  // *-1, *0
        valueDone();
        return true;
      }
      return openLevel(pairs ? n * 2 : n, kCounted);
    }
    case '|':
      if (n == 0) {
        after_attribute_ = true;
        return true;
      }
      return openLevel(n * 2, kAttribute);
    case '.':
      stack_.pop_back();
      valueDone();
      return true;
    default:  // + - , : ( # _
      valueDone();
      return true;
  }
}

bool ReplyScanner::openLevel(uint64_t count, uint8_t kind) {
  if (kind == kCounted && count == 1) {
    // Ends with its one element: nothing to remember but that the level
    // below is now inside an element.
    if (!stack_.empty()) stack_.back().kind |= kTailInside;
    return true;
  }
  // Called at the header's LF, which is the byte the error names.
  if (stack_.size() >= kMaxOpenLevels) {
    return fail("more than 65536 nested aggregates open at once", '\n');
  }
  stack_.push_back(Level{count, kind});
  return true;
}

void ReplyScanner::valueDone() {
  if (stack_.empty()) {
    frame_done_ = true;
    return;
  }
  Level& top = stack_.back();
  if (top.kind != kCounted) {  // the common case, a plain array's element, skips this
    // Counted levels opened inside the element that just ended ended with it.
    top.kind &= static_cast<uint8_t>(~kTailInside);
    if (top.kind & kStreamed) {
      ++top.count;
      return;
    }
    if (top.kind & kAttribute) {
      if (--top.count > 0) return;
      stack_.pop_back();
      after_attribute_ = true;
      return;
    }
  }
  if (--top.count > 1) return;
  // Its last element comes next and ends it: pop now (see above).
  stack_.pop_back();
  if (!stack_.empty()) stack_.back().kind |= kTailInside;
}

bool ReplyScanner::fail(const char* what, uint8_t c) {
  failed_ = true;
  error_ = malformed(offset_ - 1, what, c);
  return false;
}

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

}  // namespace shardgate::proxy
