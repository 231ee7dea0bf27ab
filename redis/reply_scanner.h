// ReplyScanner: shard bytes -> reply frame boundaries (RESP2 and RESP3,
// every type, streamed aggregates, attributes). Truly streaming: it is fed
// each chunk once and never needs the frame contiguous, so a 1 GiB reply
// passes through in pieces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace shardgate::redis {

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

}  // namespace shardgate::redis
