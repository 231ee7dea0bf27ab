// ReplyScanner. Reply framing follows the RESP3 specification
// (https://github.com/redis/redis-specifications/blob/master/protocol/RESP3.md).
#include "redis/reply_scanner.h"

#include <cassert>
#include <cstring>

#include "redis/reply_line_rules.h"

namespace shardgate::redis {

using namespace reply_line;

namespace {
// After a frame that needed more open levels than this, the scanner gives
// their memory back, so one deep reply does not pin it for the link's life.
constexpr size_t kKeptLevels = 256;
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

}  // namespace shardgate::redis
