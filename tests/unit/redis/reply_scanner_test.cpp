#include "redis/reply_scanner.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "redis/resp_value.h"
#include "tests/unit/redis/allocation_counter.h"
#include "tests/unit/redis/reply_samples.h"

using namespace shardgate;
using shardgate::redis::parseReply;
using shardgate::redis::ReplyScanner;
using shardgate::redis::RespValue;

using shardgate::test::allocatedBy;
using shardgate::test::everyReply;
using shardgate::test::luaSelfReference;
using shardgate::test::repeat;
using shardgate::test::scanChunks;
using shardgate::test::Scanned;

namespace {

Scanned scanAllWays(const std::string& input) {
  Scanned whole = scanChunks({input});
  std::vector<std::string> bytes;
  for (char c : input) bytes.emplace_back(1, c);
  CHECK(scanChunks(bytes) == whole);
  for (size_t split = 1; split < input.size() && input.size() <= 512; ++split) {
    if (!(scanChunks({input.substr(0, split), input.substr(split)}) == whole)) {
      FAIL_CHECK("split at " << split << " differs");
      break;
    }
  }
  return whole;
}

// Feeds a whole string to a fresh scanner, counting the heap bytes it takes.
size_t scannerAllocations(const std::string& input, Scanned* out) {
  redis::ReplyScanner scanner;
  out->frames.reserve(16);  // the test's own bookkeeping is not counted
  return allocatedBy([&] {
    const auto* p = reinterpret_cast<const uint8_t*>(input.data());
    size_t left = input.size();
    size_t current = 0;
    while (left > 0 && !scanner.failed()) {
      bool done = false;
      const size_t n = scanner.feed(p, left, &done);
      p += n;
      left -= n;
      current += n;
      if (done) {
        out->frames.push_back(current);
        current = 0;
      }
    }
    out->failed = scanner.failed();
  });
}

}  // namespace

TEST_CASE("ReplyScanner delimits every RESP2 and RESP3 type, fed whole and in pieces") {
  for (const std::string& reply : everyReply()) {
    CAPTURE(reply);
    Scanned s = scanAllWays(reply);
    CHECK_FALSE(s.failed);
    CHECK(s.frames == std::vector<size_t>{reply.size()});
    CHECK(s.idle);
  }
}

TEST_CASE("ReplyScanner delimits pipelined replies back to back") {
  std::string stream;
  std::vector<size_t> lengths;
  for (const std::string& reply : everyReply()) {
    stream += reply;
    lengths.push_back(reply.size());
  }
  Scanned s = scanChunks({stream});
  CHECK_FALSE(s.failed);
  CHECK(s.frames == lengths);
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  CHECK(scanChunks(bytes) == s);
}

TEST_CASE("ReplyScanner treats an attribute and its value as one frame") {
  Scanned s = scanAllWays("|1\r\n+a\r\n+b\r\n+OK\r\n:1\r\n");
  CHECK(s.frames == std::vector<size_t>{17, 4});
  // An attribute alone is not a frame yet.
  Scanned partial = scanChunks({"|1\r\n+a\r\n+b\r\n"});
  CHECK(partial.frames.empty());
  CHECK_FALSE(partial.idle);
}

TEST_CASE("ReplyScanner reports idle only between frames") {
  redis::ReplyScanner scanner;
  CHECK(scanner.idle());
  bool done = true;
  const std::string part = "*2\r\n:1\r\n";
  CHECK(scanner.feed(reinterpret_cast<const uint8_t*>(part.data()), part.size(), &done) ==
        part.size());
  CHECK_FALSE(done);
  CHECK_FALSE(scanner.idle());
  const std::string rest = ":2\r\n+next\r\n";
  CHECK(scanner.feed(reinterpret_cast<const uint8_t*>(rest.data()), rest.size(), &done) == 4);
  CHECK(done);
  CHECK(scanner.idle());
}

TEST_CASE("ReplyScanner refuses malformed replies with the byte and what was wrong") {
  struct Case {
    std::string input;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"x\r\n", "malformed reply at byte 0: unknown type byte (got 'x')"},
      {":12a\r\n", "malformed reply at byte 3: an integer must be digits (got 'a')"},
      {":\r\n", "malformed reply at byte 2: missing number (got 0x0a)"},
      {":-\r\n", "malformed reply at byte 3: missing number (got 0x0a)"},
      {":9223372036854775808\r\n", "malformed reply at byte 19: number out of range (got '8')"},
      {":-9223372036854775809\r\n", "malformed reply at byte 20: number out of range (got '9')"},
      {"$-2\r\n", "malformed reply at byte 4: a negative length must be -1 (got 0x0a)"},
      {"~-1\r\n", "malformed reply at byte 1: a length must be digits (got '-')"},
      {">?\r\n", "malformed reply at byte 1: a length must be digits (got '?')"},
      {"*1?\r\n", "malformed reply at byte 2: a length must be digits (got '?')"},
      {"$?1\r\n", "malformed reply at byte 2: a length must be digits (got '1')"},
      {"+OK\rX", "malformed reply at byte 4: expected LF after CR (got 'X')"},
      {"$3\r\nabcX\n", "malformed reply at byte 7: expected CR after the blob (got 'X')"},
      {"$3\r\nabc\rX", "malformed reply at byte 8: expected LF after the blob (got 'X')"},
      {"#x\r\n", "malformed reply at byte 1: a boolean must be #t or #f (got 'x')"},
      {"#\r\n", "malformed reply at byte 2: a boolean must be #t or #f (got 0x0a)"},
      {"_x\r\n", "malformed reply at byte 1: expected CRLF (got 'x')"},
      {"(1.5\r\n", "malformed reply at byte 2: a big number must be digits (got '.')"},
      {";3\r\nabc\r\n", "malformed reply at byte 0: ';' outside a streamed string (got ';')"},
      {"$?\r\n+a\r\n",
       "malformed reply at byte 4: expected ';' chunk of a streamed string (got '+')"},
      {".\r\n",
       "malformed reply at byte 0: '.' outside a streamed aggregate's element boundary "
       "(got '.')"},
      {"*2\r\n:1\r\n.\r\n",
       "malformed reply at byte 8: '.' outside a streamed aggregate's element boundary "
       "(got '.')"},
      {"%?\r\n+a\r\n.\r\n",
       "malformed reply at byte 8: '.' outside a streamed aggregate's element boundary "
       "(got '.')"},
      {"*?\r\n|1\r\n+a\r\n+b\r\n.\r\n",
       "malformed reply at byte 16: '.' outside a streamed aggregate's element boundary "
       "(got '.')"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    Scanned s = scanAllWays(c.input);
    CHECK(s.failed);
    CHECK(s.frames.empty());
    CHECK(s.error == c.error);
    CHECK(redis::parseReply(c.input).ok() == false);
  }
}

TEST_CASE("ReplyScanner stays failed and delimits frames before the bad one") {
  Scanned s = scanAllWays("+OK\r\n:1\r\n?\r\n+never\r\n");
  CHECK(s.frames == std::vector<size_t>{5, 4});
  CHECK(s.failed);

  redis::ReplyScanner scanner;
  bool done = false;
  const std::string bad = "?";
  CHECK(scanner.feed(reinterpret_cast<const uint8_t*>(bad.data()), 1, &done) == 0);
  CHECK(scanner.failed());
  const std::string good = "+OK\r\n";
  CHECK(scanner.feed(reinterpret_cast<const uint8_t*>(good.data()), good.size(), &done) == 0);
  CHECK_FALSE(done);
}

TEST_CASE("ReplyScanner frames a 100,000-level chain of one-element arrays with no memory") {
  const std::string deep = luaSelfReference(100'000);
  const std::string stream = deep + "+OK\r\n";
  Scanned s = scanAllWays(stream);
  CHECK_FALSE(s.failed);
  CHECK(s.frames == std::vector<size_t>{deep.size(), 5});
  CHECK(s.idle);

  Scanned counted;
  CHECK(scannerAllocations(stream, &counted) == 0);
  CHECK(counted.frames == s.frames);

  // Redis's own reply, as the integration tests see it, fits in no stack at all.
  Scanned lua;
  CHECK(scannerAllocations(luaSelfReference(7995), &lua) == 0);
  CHECK(lua.frames == std::vector<size_t>{7995 * 4 + 30});
}

TEST_CASE("ReplyScanner frames deep nesting that is not a chain, one level per entry") {
  // Nested in the first element: every level waits for its second one.
  const size_t levels = 20'000;
  const std::string first = repeat("*2\r\n", levels) + repeat(":1\r\n", levels + 1);
  // Nested in the last element: a chain again.
  const std::string last = repeat("*2\r\n:1\r\n", levels) + ":1\r\n";
  // Nested in the middle of a map, a set and a push, attributes around.
  std::string mixed;
  std::string closing;
  for (size_t i = 0; i < levels; ++i) {
    switch (i % 4) {
      case 0:
        mixed += "%2\r\n+k\r\n";
        closing = "+k2\r\n:2\r\n" + closing;
        break;
      case 1:
        mixed += "|1\r\n+ttl\r\n:3\r\n~3\r\n_\r\n";
        closing = "#t\r\n" + closing;
        break;
      case 2:
        mixed += ">2\r\n";
        closing = "$1\r\nx\r\n" + closing;
        break;
      default:
        mixed += "*3\r\n|1\r\n+a\r\n*1\r\n+b\r\n:0\r\n";
        closing = ",1.5\r\n" + closing;
        break;
    }
  }
  mixed += "(12345\r\n" + closing;
  for (const std::string* input : std::vector<const std::string*>{&first, &last, &mixed}) {
    const std::string stream = *input + ":42\r\n";
    Scanned s = scanAllWays(stream);
    CHECK_FALSE(s.failed);
    CHECK(s.frames == std::vector<size_t>{input->size(), 5});
    CHECK(s.idle);
  }
  // The chain holds one entry at a time, whatever its depth.
  Scanned short_chain;
  Scanned chain;
  CHECK(scannerAllocations(repeat("*2\r\n:1\r\n", 10) + ":1\r\n", &short_chain) ==
        scannerAllocations(last, &chain));
  CHECK(chain.frames == std::vector<size_t>{last.size()});
}

TEST_CASE("ReplyScanner keeps streamed types and attributes right under deep tails") {
  // Streamed aggregates and strings at every level of a deep mix: each "*?"
  // holds one entry, each "*1" none, and every "." must sit at its own
  // level's element boundary.
  const size_t levels = 5'000;
  std::string open;
  std::string close;
  for (size_t i = 0; i < levels; ++i) {
    if (i % 3 == 0) {
      open += "*?\r\n:1\r\n";
      close = ".\r\n" + close;
    } else if (i % 3 == 1) {
      open += "%?\r\n$?\r\n;2\r\nke\r\n;0\r\n|1\r\n+a\r\n+b\r\n*1\r\n";
      close = "+k\r\n_\r\n.\r\n" + close;
    } else {
      open += "*1\r\n*1\r\n~?\r\n";
      close = "$?\r\n;1\r\nz\r\n;0\r\n.\r\n" + close;
    }
  }
  const std::string frame = open + "$?\r\n;3\r\nend\r\n;0\r\n" + close;
  Scanned s = scanAllWays(frame + "+OK\r\n");
  CHECK_FALSE(s.failed);
  CHECK(s.frames == std::vector<size_t>{frame.size(), 5});

  // A "." where a chain of tails is still open is refused, however deep.
  const std::string inside_tail = "*?\r\n" + repeat("*1\r\n", 1000) + ".\r\n";
  Scanned bad = scanAllWays(inside_tail);
  CHECK(bad.failed);
  CHECK(bad.error == "malformed reply at byte 4004: '.' outside a streamed aggregate's element "
                     "boundary (got '.')");
  const std::string after_first = "%?\r\n+k\r\n*2\r\n:1\r\n.\r\n";
  Scanned bad_pair = scanAllWays(after_first);
  CHECK(bad_pair.failed);
  CHECK(bad_pair.error == "malformed reply at byte 16: '.' outside a streamed aggregate's "
                          "element boundary (got '.')");
}

// A random well-formed reply of every shape, from a fixed seed: counted and
// streamed aggregates of any size (one-element ones too), attributes,
// streamed strings, every scalar.
struct ReplyGenerator {
  uint64_t state = 0x9e3779b97f4a7c15u;
  size_t below(size_t n) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return static_cast<size_t>((state * 2685821657736338717u) % n);
  }
  std::string scalar() {
    static const char* const kScalars[] = {"+OK\r\n", ":7\r\n", "$3\r\nabc\r\n", "$-1\r\n", "_\r\n",
                                           "#f\r\n", ",2.5\r\n", "(99\r\n", "-ERR x\r\n",
                                           "!3\r\nERR\r\n", "=7\r\ntxt:abc\r\n", "*0\r\n",
                                           "$?\r\n;2\r\nab\r\n;0\r\n"};
    return kScalars[below(std::size(kScalars))];
  }
  std::string value(size_t depth) {
    std::string out;
    if (below(6) == 0) out += "|1\r\n+a\r\n" + scalar();
    if (depth == 0 || below(4) == 0) return out + scalar();
    const size_t n = below(3) == 0 ? 1 : below(4);
    static const char kTypes[] = {'*', '~', '>', '%'};
    const char type = kTypes[below(4)];
    const size_t elements = type == '%' ? n * 2 : n;
    const bool streamed = type != '>' && below(4) == 0;
    out += type;
    out += streamed ? "?" : std::to_string(n);
    out += "\r\n";
    for (size_t i = 0; i < elements; ++i) out += value(depth - 1);
    if (streamed) out += ".\r\n";
    return out;
  }
};

TEST_CASE("ReplyScanner delimits random nested replies exactly, whole and byte by byte") {
  ReplyGenerator gen;
  for (int round = 0; round < 40; ++round) {
    std::string stream;
    std::vector<size_t> lengths;
    for (int i = 0; i < 20; ++i) {
      std::string reply = gen.value(1 + gen.below(12));
      lengths.push_back(reply.size());
      stream += reply;
    }
    CAPTURE(stream);
    Scanned whole = scanChunks({stream});
    CHECK_FALSE(whole.failed);
    CHECK(whole.frames == lengths);
    std::vector<std::string> bytes;
    for (char c : stream) bytes.emplace_back(1, c);
    CHECK(scanChunks(bytes) == whole);
  }
}

TEST_CASE("ReplyScanner caps open levels at kMaxOpenLevels, naming the byte") {
  const size_t cap = redis::ReplyScanner::kMaxOpenLevels;
  const std::string ok = repeat("*2\r\n", cap) + repeat(":1\r\n", cap + 1);
  Scanned s = scanChunks({ok});
  CHECK_FALSE(s.failed);
  CHECK(s.frames == std::vector<size_t>{ok.size()});

  const std::string over = repeat("*2\r\n", cap + 1) + repeat(":1\r\n", cap + 2);
  Scanned d = scanChunks({over});
  CHECK(d.failed);
  CHECK(d.error == "malformed reply at byte " + std::to_string(cap * 4 + 3) +
                       ": more than 65536 nested aggregates open at once (got 0x0a)");
}

TEST_CASE("ReplyScanner passes a 10 MB bulk fed in 4 KiB chunks without holding it") {
  const size_t size = 10 * 1000 * 1000;
  std::string stream = "$" + std::to_string(size) + "\r\n";
  const size_t header = stream.size();
  stream.append(size, 'v');
  stream += "\r\n+OK\r\n";
  const size_t frame = header + size + 2;

  redis::ReplyScanner scanner;
  std::vector<size_t> ends;
  size_t offset = 0;
  size_t calls = 0;
  while (offset < stream.size()) {
    const size_t chunk = std::min<size_t>(4096, stream.size() - offset);
    size_t used = 0;
    while (used < chunk) {
      bool done = false;
      size_t n = scanner.feed(reinterpret_cast<const uint8_t*>(stream.data()) + offset + used,
                              chunk - used, &done);
      REQUIRE_FALSE(scanner.failed());
      ++calls;
      used += n;
      if (done) ends.push_back(offset + used);
    }
    offset += chunk;
  }
  CHECK(ends == std::vector<size_t>{frame, stream.size()});
  CHECK(calls == (stream.size() + 4095) / 4096 + 1);  // one extra where a frame ended
  CHECK(scanner.idle());
}
