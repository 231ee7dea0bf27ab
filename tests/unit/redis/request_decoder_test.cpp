#include "redis/request_decoder.h"
#include "redis/resp_limits.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "tests/unit/redis/allocation_counter.h"

using namespace shardgate;
using shardgate::redis::RequestDecoder;
using shardgate::redis::RespLimits;

using shardgate::test::allocatedBy;
using namespace std::string_literals;
using namespace std::string_view_literals;

namespace {

// The limits a database gets when the config leaves `limits` out.
const redis::RespLimits kDefaults = config::LimitsConfig{}.requestLimits();

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

Decoded decodeChunks(const std::vector<std::string>& chunks, redis::RespLimits limits = kDefaults) {
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

Decoded decodeWhole(const std::string& input, redis::RespLimits limits = kDefaults) {
  return decodeChunks({input}, limits);
}

Decoded decodeBytewise(const std::string& input, redis::RespLimits limits = kDefaults) {
  std::vector<std::string> chunks;
  for (char c : input) chunks.emplace_back(1, c);
  return decodeChunks(chunks, limits);
}

// The same result whole, one byte at a time and split at every point.
Decoded decodeAllWays(const std::string& input, redis::RespLimits limits = kDefaults) {
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
  redis::RequestDecoder decoder(kDefaults);
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
  redis::RequestDecoder decoder(kDefaults);
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
  redis::RequestDecoder decoder(kDefaults);
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
  redis::RequestDecoder decoder(kDefaults);
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

  redis::RequestDecoder decoder(kDefaults);
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
  redis::RespLimits limits = kDefaults;
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
  redis::RespLimits limits = kDefaults;
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
  redis::RequestDecoder decoder(kDefaults);
  REQUIRE(decoder.decode("*x\r\n") == redis::RequestDecoder::Status::kError);
  CHECK(decoder.argCount() == 0);
  REQUIRE(decoder.decode("PING\r\n") == redis::RequestDecoder::Status::kCommand);
  CHECK(decoder.arg(0) == "PING");
}

TEST_CASE("RequestDecoder reserves nothing for a declared count or length") {
  redis::RequestDecoder decoder(kDefaults);
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
  redis::RequestDecoder decoder(kDefaults);
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
