// RequestDecoder: client bytes -> commands (RESP2 multibulk and inline).
// Resumable: the caller keeps the bytes of the command being parsed
// contiguous and passes them again with more appended; parsing continues
// where it stopped (no re-scan). A parsed command's arguments are views into
// the caller's bytes. A client never makes the decoder allocate more than
// the bytes it actually sent (declared lengths are not reserved).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "redis/resp_limits.h"

namespace shardgate::redis {

class RequestDecoder {
 public:
  enum class Status : uint8_t {
    kCommand,   // one command parsed: args are valid, frameLength() bytes are its own
    kNeedMore,  // feed the same bytes again with more appended
    kError,     // protocol error: errorText() is Redis's own text; close after replying
  };

  explicit RequestDecoder(RespLimits limits) : limits_(limits) {}

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

}  // namespace shardgate::redis
