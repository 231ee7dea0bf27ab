// RESP decoding, with no I/O (STYLE rule 2). Three pieces:
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
  // (implementation state: offsets relative to the frame start, so they stay
  // right when the caller's buffer moves; the vector is reused, never shrunk)
  RespLimits limits_;
  std::string_view data_;
  std::vector<std::pair<uint32_t, uint32_t>> args_;  // offset, length
  size_t frame_len_ = 0;
  size_t pos_ = 0;              // scanned so far in the current frame
  int64_t expected_args_ = -1;  // from "*N"; -1 before it is read
  int64_t bulk_len_ = -1;       // from "$N" of the argument being read
  bool inline_ = false;
  std::string error_;
};

class ReplyScanner {
 public:
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
  // Implementation state lives here (a small stack of pending element
  // counts, line state, remaining bulk bytes); the implementer adds members.
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
