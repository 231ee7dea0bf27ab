// RESP decoding, with no I/O. Three pieces:
//
//   RequestDecoder  client bytes -> commands (RESP2 multibulk and inline).
//                   Resumable: the caller keeps the bytes of the command being
//                   parsed contiguous and passes them again with more appended;
//                   parsing continues where it stopped (no re-scan). A parsed
//                   command's arguments are views into the caller's bytes.
//   ReplyScanner    shard bytes -> reply frame boundaries (RESP2 and RESP3,
//                   every type, streamed aggregates, attributes). Truly
//                   streaming: it is fed each chunk once and never needs the
//                   frame contiguous, so a 1 GiB reply passes through in pieces.
//   parseReply      one complete reply frame -> RespValue tree (views into the
//                   frame), for the few replies the proxy must read (COMMAND,
//                   merges of MGET/DBSIZE/KEYS/SCAN, ...).
//
// Limits come from the config; a client never makes the decoder allocate
// more than the bytes it actually sent (declared lengths are not reserved).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tls/result.h"

namespace shardgate::proxy {

struct RespLimits {
  size_t max_bulk_len = 512u * 1024 * 1024;  // Redis's proto-max-bulk-len default
  size_t max_args = 1024 * 1024;             // arguments per command
  size_t max_inline_len = 64 * 1024;         // Redis's PROTO_INLINE_MAX_SIZE
};

class RequestDecoder {
 public:
  enum class Status : uint8_t {
    kCommand,   // one command parsed: args are valid, frameLength() bytes are its own
    kNeedMore,  // feed the same bytes again with more appended
    kError,     // protocol error: errorText() is Redis's own text; close after replying
  };

  explicit RequestDecoder(RespLimits limits = {}) : limits_(limits) {}

  // data: the unconsumed input, starting at the first byte of the command
  // being parsed. After kCommand the caller consumes frameLength() bytes and
  // calls again with what follows. An empty inline line (bare "\r\n") is
  // skipped silently, as Redis does: it is consumed as part of the next frame.
  Status decode(std::string_view data);

  size_t frameLength() const { return frame_len_; }
  size_t argCount() const { return args_.size(); }
  // Valid until the next decode(); views into the data passed to decode().
  std::string_view arg(size_t i) const;
  bool isInline() const { return inline_; }
  // "-ERR Protocol error: ..." without the CRLF, exactly as redis-server says it.
  const std::string& errorText() const { return error_; }

 private:
  // Where the parse stands; each phase resumes from pos_ on the next call.
  enum class Phase : uint8_t {
    kCommandStart,  // nothing of the next command read yet
    kInline,        // looking for the inline line's '\n'
    kArgCount,      // looking for the CR of "*N"
    kBulkHeader,    // looking for the CR of "$len"
    kBulkData,      // waiting for len + 2 bytes
  };
  // An argument is either a view into the caller's bytes (offset from the
  // frame start, so it stays right when the caller's buffer moves) or, for an
  // inline argument that needed unescaping, an offset into unescaped_.
  struct ArgRef {
    uint64_t offset;
    uint64_t length;
  };
  static constexpr uint64_t kUnescaped = uint64_t{1} << 63;

  Status parseInline(size_t line_end, size_t next);
  Status fail(std::string_view text);

  RespLimits limits_;
  std::string_view data_;
  std::vector<ArgRef> args_;  // reused, never shrunk: no allocation once warm
  // Unescaped bytes of the current inline command's quoted arguments: a
  // "a\x41" argument is not a run of the input, so it lives here.
  std::string unescaped_;
  size_t frame_len_ = 0;
  size_t pos_ = 0;         // start of the line or bulk being read
  size_t scanned_ = 0;     // how far the current line was searched for its end
  size_t seen_ = 0;        // bytes seen by the previous call (resume check)
  int64_t args_left_ = 0;  // from "*N": arguments still to read
  int64_t bulk_len_ = 0;   // from "$len" of the argument being read
  Phase phase_ = Phase::kCommandStart;
  bool resuming_ = false;  // the last call returned kNeedMore
  bool inline_ = false;
  std::string error_;
};

class ReplyScanner {
 public:
  // Aggregates that may be open at once with elements still to come after
  // the one being read. Nesting costs one small entry per such level and
  // nothing for a level whose last element is being read, so a chain of
  // one-element arrays (what a Lua table that contains itself becomes) is
  // framed at any depth; this cap bounds the memory of other deep nesting
  // (16 bytes a level, 1 MiB at most) far above what Redis produces (a
  // script's reply nests at most about 8,000 levels).
  static constexpr size_t kMaxOpenLevels = 65536;

  // Feeds the next bytes of the stream. Returns how many of them belong to
  // the current frame; *frame_done says whether the frame ended there. Call
  // again with the rest (the next frame) until everything is consumed. A
  // malformed stream returns 0 with *frame_done false and failed() true.
  size_t feed(const uint8_t* data, size_t len, bool* frame_done);
  bool failed() const { return failed_; }
  const std::string& error() const { return error_; }
  // Between frames (nothing partial held).
  bool idle() const;

 private:
  // One open aggregate with more than its current element to come: how many
  // elements it still expects (at least 2: the current one and more), or for
  // a streamed one ("*?", "%?", "~?") how many it has had so far. A counted
  // aggregate down to its last element has no entry: its end is that
  // element's end, so the element stands in for it in the parent.
  struct Level {
    uint64_t count;
    uint8_t kind;  // a Kind bit set
  };
  enum Kind : uint8_t {
    kCounted = 0,
    kStreamed = 1,        // ends with ".\r\n"
    kAttribute = 2,       // "|N": its end is not a value of the parent
    kStreamedString = 4,  // "$?": ";len" chunks until ";0"
    kPairs = 8,           // a streamed map: "." only between pairs
    // Counted aggregates without an entry are open inside this level's
    // current element: the input is not at this level's element boundary.
    kTailInside = 16,
  };
  enum class Phase : uint8_t {
    kType,      // expecting the type byte of the next element
    kLine,      // inside the line after the type byte, looking for CR
    kLineLf,    // the line's CR was seen
    kBulk,      // inside blob data: remaining_ bytes left
    kBulkCr,    // the CR after blob data
    kBulkLf,    // the LF after blob data
  };

  bool startLine(uint8_t type);
  bool endLine();
  bool openLevel(uint64_t count, uint8_t kind);
  void valueDone();
  bool fail(const char* what, uint8_t c);

  // The number or flags of the header line being read, byte by byte.
  struct LineState {
    uint64_t number = 0;
    uint64_t length = 0;  // content bytes so far
    bool negative = false;
    bool question = false;  // "?": a streamed string or aggregate
    bool digits = false;
  };

  std::vector<Level> stack_;  // reused across frames; given back after a deep one
  LineState line_;
  uint64_t remaining_ = 0;    // blob bytes left in kBulk
  uint64_t offset_ = 0;       // bytes of the current frame seen so far
  uint8_t line_type_ = 0;     // the type byte that opened the line
  bool in_frame_ = false;
  bool frame_done_ = false;       // set by valueDone() when the top value ends
  bool after_attribute_ = false;  // an attribute ended: a value must follow
  Phase phase_ = Phase::kType;
  bool failed_ = false;
  std::string error_;
};

struct RespValue {
  enum class Type : uint8_t {
    kSimpleString,  // +
    kError,         // -  and RESP3 blob error !
    kInteger,       // :
    kBulkString,    // $
    kNull,          // $-1, *-1, _
    kArray,         // *
    kMap,           // %  (elements: key, value, key, value, ...)
    kSet,           // ~
    kPush,          // >
    kDouble,        // ,  (str holds the text)
    kBoolean,       // #  (integer 0/1)
    kBigNumber,     // (  (str holds the digits)
    kVerbatim,      // =  (str holds "txt:..." as sent)
  };
  Type type = Type::kNull;
  std::string_view str;  // view into the frame
  int64_t integer = 0;
  std::vector<RespValue> elements;
};

// Parses exactly one complete frame (attributes are skipped, the value after
// them is returned). Errors say what was malformed and at which byte.
Result<RespValue> parseReply(std::string_view frame);

}  // namespace shardgate::proxy
