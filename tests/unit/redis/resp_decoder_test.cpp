#include "redis/reply_scanner.h"
#include "redis/request_decoder.h"
#include "redis/resp_limits.h"
#include "redis/resp_value.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <vector>

using namespace shardgate;

using shardgate::Result;
using shardgate::redis::parseReply;
using shardgate::redis::ReplyScanner;
using shardgate::redis::RequestDecoder;
using shardgate::redis::RespLimits;
using shardgate::redis::RespValue;
using namespace std::string_literals;
using namespace std::string_view_literals;

// Counts heap bytes while a test asks, to prove the decoder allocates nothing
// per command once warm and nothing sized by a declared length. Replacing the
// global operator new is per program; outside a counted stretch it only
// forwards to malloc.
namespace {
bool g_counting = false;
size_t g_allocated = 0;
}  // namespace

// g++ cannot see that this new and delete are a malloc/free pair.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t size) {
  if (g_counting) g_allocated += size;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

size_t allocatedBy(auto&& fn) {
  g_allocated = 0;
  g_counting = true;
  fn();
  g_counting = false;
  return g_allocated;
}

// ---------------------------------------------------------------------------
// RequestDecoder driven as a connection would: bytes arrive in chunks and are
// appended to one buffer; after kCommand the frame is consumed; after
// kNeedMore the same unconsumed bytes are passed again with more appended.

struct Decoded {
  std::vector<std::vector<std::string>> commands;
  std::vector<size_t> frame_lengths;
  std::vector<bool> inline_flags;
  bool error = false;
  std::string error_text;
  size_t consumed = 0;

  bool operator==(const Decoded&) const = default;
};

Decoded decodeChunks(const std::vector<std::string>& chunks, redis::RespLimits limits = {}) {
  redis::RequestDecoder decoder(limits);
  Decoded out;
  std::string buffer;
  for (const std::string& chunk : chunks) {
    buffer += chunk;
    for (;;) {
      // A fresh copy each call: the decoder must not rely on the buffer
      // staying where it was.
      std::string pending = buffer.substr(out.consumed);
      redis::RequestDecoder::Status status = decoder.decode(pending);
      if (status == redis::RequestDecoder::Status::kNeedMore) break;
      if (status == redis::RequestDecoder::Status::kError) {
        out.error = true;
        out.error_text = decoder.errorText();
        return out;
      }
      std::vector<std::string> args;
      for (size_t i = 0; i < decoder.argCount(); ++i) {
        std::string_view a = decoder.arg(i);
        args.emplace_back(a);
      }
      out.commands.push_back(std::move(args));
      out.frame_lengths.push_back(decoder.frameLength());
      out.inline_flags.push_back(decoder.isInline());
      out.consumed += decoder.frameLength();
    }
  }
  return out;
}

Decoded decodeWhole(const std::string& input, redis::RespLimits limits = {}) {
  return decodeChunks({input}, limits);
}

Decoded decodeBytewise(const std::string& input, redis::RespLimits limits = {}) {
  std::vector<std::string> chunks;
  for (char c : input) chunks.emplace_back(1, c);
  return decodeChunks(chunks, limits);
}

// The same result whole, one byte at a time and split at every point.
Decoded decodeAllWays(const std::string& input, redis::RespLimits limits = {}) {
  Decoded whole = decodeWhole(input, limits);
  CHECK(decodeBytewise(input, limits) == whole);
  for (size_t split = 1; split < input.size() && input.size() <= 512; ++split) {
    Decoded parts = decodeChunks({input.substr(0, split), input.substr(split)}, limits);
    if (!(parts == whole)) {
      FAIL_CHECK("split at " << split << " differs");
      break;
    }
  }
  return whole;
}

using Args = std::vector<std::string>;

std::string expectedDollar(char got) {
  return "-ERR Protocol error: expected '$', got '"s + got + "'";
}

}  // namespace

TEST_CASE("RequestDecoder parses a multibulk command into views of the input") {
  const std::string input = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
  redis::RequestDecoder decoder;
  REQUIRE(decoder.decode(input) == redis::RequestDecoder::Status::kCommand);
  CHECK(decoder.frameLength() == input.size());
  CHECK_FALSE(decoder.isInline());
  REQUIRE(decoder.argCount() == 3);
  CHECK(decoder.arg(0) == "SET");
  CHECK(decoder.arg(1) == "key");
  CHECK(decoder.arg(2) == "value");
  // Zero-copy: the argument is the input's own bytes.
  CHECK(decoder.arg(2).data() == input.data() + input.find("value"));

  Decoded d = decodeAllWays(input);
  CHECK(d.commands == std::vector<Args>{{"SET", "key", "value"}});
  CHECK(d.frame_lengths == std::vector<size_t>{input.size()});
  CHECK_FALSE(d.error);
}

TEST_CASE("RequestDecoder handles binary bulk arguments, empty ones and CR/LF inside") {
  const std::string input = "*3\r\n$0\r\n\r\n$4\r\na\r\nb\r\n$3\r\n\0\1\2\r\n"s;
  Decoded d = decodeAllWays(input);
  CHECK(d.commands == std::vector<Args>{{"", "a\r\nb", "\0\1\2"s}});
  CHECK(d.consumed == input.size());
}

TEST_CASE("RequestDecoder resumes in a moved buffer and returns views into the new one") {
  const std::string full = "*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
  redis::RequestDecoder decoder;
  std::string first = full.substr(0, 17);
  REQUIRE(decoder.decode(first) == redis::RequestDecoder::Status::kNeedMore);
  std::string second = full;  // a different allocation, same bytes + more
  REQUIRE(decoder.decode(second) == redis::RequestDecoder::Status::kCommand);
  CHECK(decoder.arg(0) == "ECHO");
  CHECK(decoder.arg(0).data() == second.data() + 8);
  CHECK(decoder.arg(1).data() == second.data() + 18);
}

TEST_CASE("RequestDecoder splits pipelined commands, multibulk and inline mixed") {
  const std::vector<std::string> frames = {
      "*1\r\n$4\r\nPING\r\n",
      "SET a b\r\n",
      "*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
      "INCR counter\n",
      "*3\r\n$4\r\nMGET\r\n$1\r\nx\r\n$1\r\ny\r\n",
  };
  std::string input;
  for (const std::string& f : frames) input += f;
  Decoded d = decodeAllWays(input);
  CHECK(d.commands == std::vector<Args>{{"PING"}, {"SET", "a", "b"}, {"GET", "a"},
                                        {"INCR", "counter"}, {"MGET", "x", "y"}});
  CHECK(d.frame_lengths == std::vector<size_t>{14, 9, 20, 13, 28});
  CHECK(d.inline_flags == std::vector<bool>{false, true, false, true, false});
  CHECK(d.consumed == input.size());
  CHECK_FALSE(d.error);
}

TEST_CASE("RequestDecoder waits for the whole command and reports nothing partial") {
  CHECK(decodeWhole("*2\r\n$3\r\nGET\r\n$1\r\na\r").commands.empty());
  CHECK(decodeWhole("*2\r\n$3\r\nGET\r\n$1\r\na").commands.empty());
  CHECK(decodeWhole("*2\r\n$3\r\nGET\r\n").commands.empty());
  CHECK(decodeWhole("*2\r").commands.empty());
  CHECK(decodeWhole("GET a").commands.empty());
  CHECK(decodeWhole("").commands.empty());
  CHECK_FALSE(decodeWhole("*2\r\n$3\r\nGET\r\n$1\r\na\r").error);
}

TEST_CASE("RequestDecoder parses inline commands split on blanks") {
  Decoded d = decodeAllWays("SET  key\tvalue \r\nPING\nECHO \v\fx\r\n");
  CHECK(d.commands == std::vector<Args>{{"SET", "key", "value"}, {"PING"}, {"ECHO", "x"}});
  CHECK(d.frame_lengths == std::vector<size_t>{17, 5, 10});
  CHECK(d.inline_flags == std::vector<bool>{true, true, true});

  // Unquoted inline arguments are views into the input too.
  const std::string input = "GET somekey\r\n";
  redis::RequestDecoder decoder;
  REQUIRE(decoder.decode(input) == redis::RequestDecoder::Status::kCommand);
  CHECK(decoder.isInline());
  CHECK(decoder.arg(1).data() == input.data() + 4);
}

TEST_CASE("RequestDecoder unescapes inline quoting as sdssplitargs does") {
  Decoded d = decodeAllWays(
      "SET \"a b\" 'c d'\r\n"
      "ECHO \"\\x41\\x4a\\n\\r\\t\\b\\a\\\\\\\"\\q\"\r\n"
      "ECHO 'it\\'s' 'back\\slash'\r\n"
      "ECHO a\"b c\"  \"\" ''\r\n"
      "ECHO \"\\xZZ\" \"\\x4\"\r\n");
  REQUIRE(d.commands.size() == 5);
  CHECK(d.commands[0] == Args{"SET", "a b", "c d"});
  CHECK(d.commands[1] == Args{"ECHO", "AJ\n\r\t\b\a\\\"q"});
  CHECK(d.commands[2] == Args{"ECHO", "it's", "back\\slash"});
  CHECK(d.commands[3] == Args{"ECHO", "ab c", "", ""});
  CHECK(d.commands[4] == Args{"ECHO", "xZZ", "x4"});
  CHECK_FALSE(d.error);
}

TEST_CASE("RequestDecoder keeps unescaped arguments until the next decode") {
  const std::string input = "SET k \"va\\x6cue\" plain\r\n";
  redis::RequestDecoder decoder;
  REQUIRE(decoder.decode(input) == redis::RequestDecoder::Status::kCommand);
  REQUIRE(decoder.argCount() == 4);
  CHECK(decoder.arg(2) == "value");
  // The unescaped argument is not in the input; its neighbours are.
  CHECK((decoder.arg(2).data() < input.data() ||
         decoder.arg(2).data() >= input.data() + input.size()));
  CHECK(decoder.arg(3) == "plain");
  CHECK(decoder.arg(3).data() == input.data() + 17);
}

TEST_CASE("RequestDecoder stops an inline line at a NUL, as sdssplitargs does") {
  Decoded d = decodeAllWays("SET a\0b c\r\nPING\r\n"s);
  CHECK(d.commands == std::vector<Args>{{"SET", "a"}, {"PING"}});
  Decoded q = decodeAllWays("SET \"a\0b\"\r\n"s);
  CHECK(q.error_text == "-ERR Protocol error: unbalanced quotes in request");
}

TEST_CASE("RequestDecoder refuses unbalanced quotes with Redis's text") {
  const std::string text = "-ERR Protocol error: unbalanced quotes in request";
  for (const std::string input :
       {"SET \"a\r\n", "SET 'a\r\n", "SET \"a\"b\r\n", "SET 'a'b\r\n", "SET \"a\\\"\r\n"}) {
    CAPTURE(input);
    Decoded d = decodeAllWays(input);
    CHECK(d.commands.empty());
    CHECK(d.error);
    CHECK(d.error_text == text);
  }
  // A command before the bad one is still delivered.
  Decoded d = decodeAllWays("PING\r\nSET \"x\r\n");
  CHECK(d.commands == std::vector<Args>{{"PING"}});
  CHECK(d.error_text == text);
}

TEST_CASE("RequestDecoder skips blank lines and empty multibulks inside the next frame") {
  Decoded d = decodeAllWays("\r\n\n   \r\n*0\r\n*-1\r\n*-10\r\nPING\r\n*0\r\n");
  CHECK(d.commands == std::vector<Args>{{"PING"}});
  // The skipped bytes belong to the frame they precede.
  CHECK(d.frame_lengths == std::vector<size_t>{29});
  CHECK(d.consumed == 29);  // the trailing "*0" waits for the command after it
  CHECK_FALSE(d.error);

  redis::RequestDecoder decoder;
  CHECK(decoder.decode("\r\n") == redis::RequestDecoder::Status::kNeedMore);
  CHECK(decoder.decode("\r\n*0\r\n") == redis::RequestDecoder::Status::kNeedMore);
  REQUIRE(decoder.decode("\r\n*0\r\n*1\r\n$1\r\nx\r\n") == redis::RequestDecoder::Status::kCommand);
  CHECK(decoder.frameLength() == 17);
  CHECK(decoder.arg(0) == "x");
}

TEST_CASE("RequestDecoder skips the two bytes after a bulk or count unchecked, as Redis") {
  Decoded d = decodeAllWays("*1\rX$3\r\nfooYZ*1\r\n$1\r\nx\r\n");
  CHECK(d.commands == std::vector<Args>{{"foo"}, {"x"}});
  CHECK(d.frame_lengths == std::vector<size_t>{13, 11});
}

TEST_CASE("RequestDecoder reports each multibulk protocol error with Redis's text") {
  struct Case {
    std::string input;
    std::string text;
  };
  const std::string multibulk = "-ERR Protocol error: invalid multibulk length";
  const std::string bulk = "-ERR Protocol error: invalid bulk length";
  const std::vector<Case> cases = {
      {"*abc\r\n", multibulk},
      {"*\r\n", multibulk},
      {"*01\r\n", multibulk},
      {"*+1\r\n", multibulk},
      {"*-0\r\n", multibulk},
      {"* 1\r\n", multibulk},
      {"*2147483648\r\n", multibulk},
      {"*99999999999999999999\r\n", multibulk},
      {"*1048577\r\n", multibulk},  // default max_args is 1048576
      {"*1\r\n$-1\r\n", bulk},
      {"*1\r\n$\r\n", bulk},
      {"*1\r\n$01\r\n", bulk},
      {"*1\r\n$3x\r\n", bulk},
      {"*1\r\n$536870913\r\n", bulk},  // default max_bulk_len is 512 MiB
      {"*1\r\n$9223372036854775808\r\n", bulk},
      {"*1\r\nx\r\n", expectedDollar('x')},
      {"*2\r\n$3\r\nSET\r\n:1\r\n", expectedDollar(':')},
      {"*1\r\n\r\n", expectedDollar(' ')},  // CR and LF are shown as spaces
      {"*1\r\n\n\r\n", expectedDollar(' ')},
      {"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", expectedDollar('f')},
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    Decoded d = decodeAllWays(c.input);
    CHECK(d.commands.empty());
    CHECK(d.error);
    CHECK(d.error_text == c.text);
  }
}

TEST_CASE("RequestDecoder accepts the largest counts and lengths the limits allow") {
  redis::RespLimits limits;
  limits.max_args = 3;
  limits.max_bulk_len = 4;
  CHECK(decodeAllWays("*3\r\n$4\r\nabcd\r\n$0\r\n\r\n$1\r\nx\r\n", limits).commands ==
        std::vector<Args>{{"abcd", "", "x"}});
  CHECK(decodeAllWays("*4\r\n", limits).error_text ==
        "-ERR Protocol error: invalid multibulk length");
  CHECK(decodeAllWays("*1\r\n$5\r\n", limits).error_text ==
        "-ERR Protocol error: invalid bulk length");
  CHECK(decodeAllWays("A B C\r\n", limits).commands == std::vector<Args>{{"A", "B", "C"}});
  CHECK(decodeAllWays("A B C D\r\n", limits).error_text ==
        "-ERR Protocol error: too many arguments in inline request");
}

TEST_CASE("RequestDecoder refuses over-long lines whether or not their end arrived") {
  redis::RespLimits limits;
  limits.max_inline_len = 16;
  const std::string inline_text = "-ERR Protocol error: too big inline request";
  const std::string long_line(17, 'a');
  const std::string max_line(16, 'a');

  // Without a newline: an error once more than the limit is buffered.
  CHECK(decodeWhole(max_line, limits).error == false);
  CHECK(decodeWhole(long_line, limits).error_text == inline_text);
  // With one: the line itself is measured (including a CR before the LF).
  CHECK(decodeAllWays(max_line + "\n", limits).commands == std::vector<Args>{{max_line}});
  CHECK(decodeAllWays(long_line + "\n", limits).error_text == inline_text);
  CHECK(decodeAllWays(std::string(15, 'a') + "\r\n", limits).commands.size() == 1);
  CHECK(decodeAllWays(max_line + "\r\n", limits).error_text == inline_text);

  const std::string count_line = "*" + std::string(16, '1');
  CHECK(decodeWhole(count_line, limits).error_text ==
        "-ERR Protocol error: too big mbulk count string");
  CHECK(decodeAllWays(count_line + "\r\n", limits).error_text ==
        "-ERR Protocol error: too big mbulk count string");
  const std::string bulk_line = "*1\r\n$" + std::string(16, '1');
  CHECK(decodeWhole(bulk_line, limits).error_text ==
        "-ERR Protocol error: too big bulk count string");
  CHECK(decodeAllWays(bulk_line + "\r\n", limits).error_text ==
        "-ERR Protocol error: too big bulk count string");

  // The default is Redis's 64 KiB.
  CHECK(decodeWhole(std::string(64 * 1024, 'x')).error == false);
  CHECK(decodeWhole(std::string(64 * 1024 + 1, 'x')).error_text == inline_text);
}

TEST_CASE("RequestDecoder starts afresh after an error") {
  redis::RequestDecoder decoder;
  REQUIRE(decoder.decode("*x\r\n") == redis::RequestDecoder::Status::kError);
  CHECK(decoder.argCount() == 0);
  REQUIRE(decoder.decode("PING\r\n") == redis::RequestDecoder::Status::kCommand);
  CHECK(decoder.arg(0) == "PING");
}

TEST_CASE("RequestDecoder reserves nothing for a declared count or length") {
  redis::RequestDecoder decoder;
  redis::RequestDecoder::Status status = redis::RequestDecoder::Status::kError;
  size_t bytes = allocatedBy([&] { status = decoder.decode("*1000000\r\n$500000000\r\nab"); });
  CHECK(status == redis::RequestDecoder::Status::kNeedMore);
  CHECK(bytes == 0);
}

TEST_CASE("RequestDecoder allocates nothing per command once warm") {
  std::string input;
  for (int i = 0; i < 1000; ++i) {
    input += "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    input += "GET key\r\n";
  }
  redis::RequestDecoder decoder;
  REQUIRE(decoder.decode(input) == redis::RequestDecoder::Status::kCommand);  // warms the vector
  size_t commands = 0;
  size_t bytes = allocatedBy([&] {
    std::string_view rest = input;
    while (decoder.decode(rest) == redis::RequestDecoder::Status::kCommand) {
      commands += decoder.argCount();
      rest.remove_prefix(decoder.frameLength());
    }
  });
  CHECK(commands == 5000);
  CHECK(bytes == 0);
}

TEST_CASE("RequestDecoder gives the same commands for every split of mixed input") {
  const std::vector<std::string> inputs = {
      "*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n",
      "SET \"quoted \\x41\" 'single'\r\n*0\r\nDEL k\n",
      "*1\r\n$3\r\nfoo\r\n*1\r\nbad\r\n",
      "ECHO \"never closed\r\n*1\r\n$1\r\nx\r\n",
      "   \t\r\n\r\n*-1\r\n*1\r\n$0\r\n\r\n",
  };
  for (const std::string& input : inputs) {
    CAPTURE(input);
    Decoded d = decodeAllWays(input);
    CHECK((d.error || d.consumed == input.size()));
  }
}

// ---------------------------------------------------------------------------
// ReplyScanner

namespace {

struct Scanned {
  std::vector<size_t> frames;  // lengths, in order
  bool failed = false;
  std::string error;
  bool idle = true;

  bool operator==(const Scanned&) const = default;
};

Scanned scanChunks(const std::vector<std::string>& chunks) {
  redis::ReplyScanner scanner;
  Scanned out;
  size_t current = 0;
  for (const std::string& chunk : chunks) {
    const auto* p = reinterpret_cast<const uint8_t*>(chunk.data());
    size_t left = chunk.size();
    while (left > 0) {
      bool done = false;
      size_t n = scanner.feed(p, left, &done);
      if (scanner.failed()) {
        REQUIRE(n == 0);
        REQUIRE_FALSE(done);
        out.failed = true;
        out.error = scanner.error();
        out.idle = scanner.idle();
        return out;
      }
      REQUIRE(n <= left);
      current += n;
      p += n;
      left -= n;
      if (done) {
        out.frames.push_back(current);
        current = 0;
        CHECK(scanner.idle());
      } else {
        REQUIRE(left == 0);
      }
    }
  }
  out.idle = scanner.idle();
  return out;
}

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

// One well-formed reply of every kind the scanner and parseReply know.
const std::vector<std::string>& everyReply() {
  static const std::vector<std::string> replies = {
      "+OK\r\n",
      "+\r\n",
      "-ERR unknown command\r\n",
      ":0\r\n",
      ":-42\r\n",
      ":9223372036854775807\r\n",
      ":-9223372036854775808\r\n",
      "$5\r\nhello\r\n",
      "$0\r\n\r\n",
      "$4\r\na\r\nb\r\n",
      "$-1\r\n",
      "*-1\r\n",
      "*0\r\n",
      "*3\r\n$3\r\nfoo\r\n:1\r\n*2\r\n+a\r\n$-1\r\n",
      "_\r\n",
      ",3.14\r\n",
      ",-inf\r\n",
      "#t\r\n",
      "#f\r\n",
      "(3492890328409238509324850943850943825024385\r\n",
      "(-12\r\n",
      "!21\r\nSYNTAX invalid syntax\r\n",
      "=15\r\ntxt:Some string\r\n",
      "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
      "%0\r\n",
      "~3\r\n+a\r\n+b\r\n+c\r\n",
      ">3\r\n+message\r\n+channel\r\n$5\r\nhello\r\n",
      "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n",
      "*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n",
      "|0\r\n+OK\r\n",
      "$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n",
      "*?\r\n:1\r\n:2\r\n.\r\n",
      "*?\r\n.\r\n",
      "%?\r\n+a\r\n:1\r\n+b\r\n:2\r\n.\r\n",
      "~?\r\n*?\r\n+x\r\n.\r\n$?\r\n;1\r\ny\r\n;0\r\n.\r\n",
  };
  return replies;
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

std::string repeat(std::string_view piece, size_t times) {
  std::string out;
  out.reserve(piece.size() * times);
  for (size_t i = 0; i < times; ++i) out += piece;
  return out;
}

// What redis-server 7.0 answers to
//   EVAL "local a = {}; local b = {a}; a[1] = b; return a" 0
// with `levels` one-element arrays (it stops near 8,000).
std::string luaSelfReference(size_t levels) {
  return repeat("*1\r\n", levels) + "-ERR reached lua stack limit\r\n";
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

TEST_CASE("parseReply refuses nesting deeper than 1024 levels, without recursing further") {
  std::string ok = repeat("*1\r\n", 1024) + ":1\r\n";
  CHECK(redis::parseReply(ok).ok());
  Result<redis::RespValue> over = redis::parseReply("*1\r\n" + ok);
  REQUIRE_FALSE(over.ok());
  CHECK(over.message() ==
        "reply nested deeper than 1024 levels (at byte 4096): too deep for the proxy to read");
  // 100,000 levels: refused at the same place, not a stack overflow.
  Result<redis::RespValue> deep = redis::parseReply(luaSelfReference(100'000));
  REQUIRE_FALSE(deep.ok());
  CHECK(deep.message() ==
        "reply nested deeper than 1024 levels (at byte 4096): too deep for the proxy to read");
  // Attributes annotating attribute values nest too.
  auto annotated = [](size_t levels) {
    return repeat("|1\r\n+a\r\n", levels) + "+b\r\n" + repeat(":1\r\n", levels);
  };
  CHECK(scanChunks({annotated(2000)}).frames == std::vector<size_t>{annotated(2000).size()});
  CHECK(redis::parseReply(annotated(1000)).ok());
  Result<redis::RespValue> attributes = redis::parseReply(annotated(2000));
  REQUIRE_FALSE(attributes.ok());
  CHECK(attributes.message() ==
        "reply nested deeper than 1024 levels (at byte 8192): too deep for the proxy to read");
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

// ---------------------------------------------------------------------------
// parseReply

TEST_CASE("parseReply builds every scalar type with views into the frame") {
  struct Case {
    std::string frame;
    redis::RespValue::Type type;
    std::string str;
    int64_t integer;
  };
  using T = redis::RespValue::Type;
  const std::vector<Case> cases = {
      {"+OK\r\n", T::kSimpleString, "OK", 0},
      {"-ERR bad\r\n", T::kError, "ERR bad", '-'},
      {"!7\r\nERR bad\r\n", T::kError, "ERR bad", '!'},
      {":-42\r\n", T::kInteger, "", -42},
      {":9223372036854775807\r\n", T::kInteger, "", INT64_MAX},
      {":-9223372036854775808\r\n", T::kInteger, "", INT64_MIN},
      {"$5\r\nhe\r\no\r\n", T::kBulkString, "he\r\no", 0},
      {"$0\r\n\r\n", T::kBulkString, "", 0},
      {"$-1\r\n", T::kNull, "", '$'},
      {"*-1\r\n", T::kNull, "", '*'},
      {"_\r\n", T::kNull, "", '_'},
      {",1.5e10\r\n", T::kDouble, "1.5e10", 0},
      {"#t\r\n", T::kBoolean, "", 1},
      {"#f\r\n", T::kBoolean, "", 0},
      {"(-123456789012345678901234567890\r\n", T::kBigNumber,
       "-123456789012345678901234567890", 0},
      {"=8\r\ntxt:abcd\r\n", T::kVerbatim, "txt:abcd", 0},
  };
  for (const Case& c : cases) {
    CAPTURE(c.frame);
    Result<redis::RespValue> v = redis::parseReply(c.frame);
    REQUIRE(v.ok());
    CHECK(v->type == c.type);
    CHECK(v->str == c.str);
    CHECK(v->integer == c.integer);
    CHECK(v->elements.empty());
    if (!v->str.empty()) {
      CHECK(v->str.data() >= c.frame.data());
      CHECK(v->str.data() + v->str.size() <= c.frame.data() + c.frame.size());
    }
  }
}

TEST_CASE("parseReply builds arrays, maps, sets and pushes, counted and streamed") {
  using T = redis::RespValue::Type;
  Result<redis::RespValue> a = redis::parseReply("*3\r\n$3\r\nfoo\r\n:1\r\n*2\r\n+a\r\n_\r\n");
  REQUIRE(a.ok());
  CHECK(a->type == T::kArray);
  REQUIRE(a->elements.size() == 3);
  CHECK(a->elements[0].str == "foo");
  CHECK(a->elements[1].integer == 1);
  REQUIRE(a->elements[2].elements.size() == 2);
  CHECK(a->elements[2].elements[0].str == "a");
  CHECK(a->elements[2].elements[1].type == T::kNull);

  Result<redis::RespValue> m = redis::parseReply("%2\r\n+k1\r\n:1\r\n+k2\r\n#t\r\n");
  REQUIRE(m.ok());
  CHECK(m->type == T::kMap);
  REQUIRE(m->elements.size() == 4);
  CHECK(m->elements[2].str == "k2");
  CHECK(m->elements[3].type == T::kBoolean);

  Result<redis::RespValue> s = redis::parseReply("~2\r\n+a\r\n+b\r\n");
  REQUIRE(s.ok());
  CHECK(s->type == T::kSet);
  CHECK(s->elements.size() == 2);

  Result<redis::RespValue> p = redis::parseReply(">2\r\n+message\r\n+x\r\n");
  REQUIRE(p.ok());
  CHECK(p->type == T::kPush);
  CHECK(p->elements[0].str == "message");

  Result<redis::RespValue> e = redis::parseReply("*0\r\n");
  REQUIRE(e.ok());
  CHECK(e->type == T::kArray);
  CHECK(e->elements.empty());

  Result<redis::RespValue> sa = redis::parseReply("*?\r\n:1\r\n*?\r\n.\r\n.\r\n");
  REQUIRE(sa.ok());
  CHECK(sa->type == T::kArray);
  REQUIRE(sa->elements.size() == 2);
  CHECK(sa->elements[1].type == T::kArray);
  CHECK(sa->elements[1].elements.empty());

  Result<redis::RespValue> sm = redis::parseReply("%?\r\n+a\r\n:1\r\n.\r\n");
  REQUIRE(sm.ok());
  CHECK(sm->type == T::kMap);
  CHECK(sm->elements.size() == 2);

  Result<redis::RespValue> ss = redis::parseReply("~?\r\n+a\r\n.\r\n");
  REQUIRE(ss.ok());
  CHECK(ss->type == T::kSet);
  CHECK(ss->elements.size() == 1);
}

TEST_CASE("parseReply skips attributes, at the top and inside aggregates") {
  Result<redis::RespValue> top = redis::parseReply("|1\r\n+ttl\r\n:3600\r\n|0\r\n$2\r\nhi\r\n");
  REQUIRE(top.ok());
  CHECK(top->type == redis::RespValue::Type::kBulkString);
  CHECK(top->str == "hi");

  Result<redis::RespValue> nested = redis::parseReply("*2\r\n|1\r\n+a\r\n*1\r\n:9\r\n:1\r\n:2\r\n");
  REQUIRE(nested.ok());
  REQUIRE(nested->elements.size() == 2);
  CHECK(nested->elements[0].integer == 1);
  CHECK(nested->elements[1].integer == 2);
}

TEST_CASE("parseReply refuses streamed strings, truncation, trailing bytes and bad bytes") {
  Result<redis::RespValue> streamed = redis::parseReply("$?\r\n;1\r\na\r\n;0\r\n");
  REQUIRE_FALSE(streamed.ok());
  CHECK(streamed.message() == "streamed string not supported by parseReply (at byte 0)");

  for (std::string_view truncated :
       {""sv, "+OK"sv, "+OK\r"sv, "$5\r\nabc"sv, "$3\r\nabc"sv, "$3\r\nabc\r"sv, "*2\r\n:1\r\n"sv,
        "*?\r\n:1\r\n"sv, "|1\r\n+a\r\n+b\r\n"sv}) {
    CAPTURE(truncated);
    Result<redis::RespValue> v = redis::parseReply(truncated);
    REQUIRE_FALSE(v.ok());
    CHECK(v.message() ==
          "truncated reply: " + std::to_string(truncated.size()) + " bytes end inside a value");
  }

  Result<redis::RespValue> trailing = redis::parseReply("+OK\r\n+OK\r\n");
  REQUIRE_FALSE(trailing.ok());
  CHECK(trailing.message() == "malformed reply at byte 5: trailing bytes after the reply (got '+')");

  Result<redis::RespValue> bad = redis::parseReply("*2\r\n:1\r\n:x\r\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.message() == "malformed reply at byte 9: an integer must be digits (got 'x')");

  Result<redis::RespValue> dot = redis::parseReply("*1\r\n.\r\n");
  REQUIRE_FALSE(dot.ok());
  CHECK(dot.message() == "malformed reply at byte 4: unexpected here (got '.')");
}

TEST_CASE("parseReply accepts exactly the frames ReplyScanner delimits") {
  for (const std::string& reply : everyReply()) {
    CAPTURE(reply);
    Result<redis::RespValue> v = redis::parseReply(reply);
    if (reply.find("$?") != std::string::npos) {
      CHECK_FALSE(v.ok());
    } else {
      CHECK(v.ok());
    }
  }
}
