#include "redis/resp_encoder.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace shardgate;

using shardgate::ByteBuffer;
using shardgate::redis::parseReply;
using shardgate::redis::RespValue;
namespace resp = shardgate::redis::resp;
using namespace std::string_literals;

namespace {

std::string bytes(const ByteBuffer& buffer) { return std::string(buffer.view()); }

redis::RespValue scalar(redis::RespValue::Type type, std::string_view str, int64_t integer = 0) {
  redis::RespValue v;
  v.type = type;
  v.str = str;
  v.integer = integer;
  return v;
}

}  // namespace

TEST_CASE("resp encodes simple strings, errors, integers and nulls exactly") {
  ByteBuffer out;
  redis::resp::appendSimple(out, "OK");
  redis::resp::appendSimple(out, "");
  redis::resp::appendError(out, "ERR unknown command 'FOO'");
  redis::resp::appendInteger(out, 0);
  redis::resp::appendInteger(out, -1);
  redis::resp::appendInteger(out, INT64_MAX);
  redis::resp::appendInteger(out, INT64_MIN);
  redis::resp::appendNullBulk(out);
  redis::resp::appendNullArray(out);
  CHECK(bytes(out) ==
        "+OK\r\n"
        "+\r\n"
        "-ERR unknown command 'FOO'\r\n"
        ":0\r\n"
        ":-1\r\n"
        ":9223372036854775807\r\n"
        ":-9223372036854775808\r\n"
        "$-1\r\n"
        "*-1\r\n");
}

TEST_CASE("resp encodes bulks, binary and empty, and array headers") {
  ByteBuffer out;
  redis::resp::appendArrayHeader(out, 3);
  redis::resp::appendBulk(out, "hello");
  redis::resp::appendBulk(out, "");
  redis::resp::appendBulk(out, "a\r\n\0b"s);
  redis::resp::appendArrayHeader(out, 0);
  CHECK(bytes(out) == "*3\r\n$5\r\nhello\r\n$0\r\n\r\n$5\r\na\r\n\0b\r\n*0\r\n"s);
}

TEST_CASE("resp encodes a bulk larger than the buffer's first allocation") {
  ByteBuffer out;
  const std::string big(100000, 'x');
  redis::resp::appendBulk(out, big);
  CHECK(bytes(out) == "$100000\r\n" + big + "\r\n");
}

TEST_CASE("resp encodes a command as a multibulk request") {
  ByteBuffer out;
  redis::resp::appendCommand(out, {"SET", "key", "a value"});
  redis::resp::appendCommand(out, {"PING"});
  CHECK(bytes(out) ==
        "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$7\r\na value\r\n"
        "*1\r\n$4\r\nPING\r\n");
}

TEST_CASE("appendValue writes parsed replies back byte for byte") {
  const std::vector<std::string> frames = {
      "+OK\r\n",
      "-ERR bad\r\n",
      "!21\r\nSYNTAX invalid syntax\r\n",
      ":-42\r\n",
      "$5\r\nhello\r\n",
      "$0\r\n\r\n",
      "$-1\r\n",
      "*-1\r\n",
      "_\r\n",
      "*0\r\n",
      "*3\r\n$3\r\nfoo\r\n:1\r\n*2\r\n+a\r\n$-1\r\n",
      ",3.14\r\n",
      "#t\r\n",
      "#f\r\n",
      "(3492890328409238509324850943850943825024385\r\n",
      "=15\r\ntxt:Some string\r\n",
      "%2\r\n+first\r\n:1\r\n+second\r\n_\r\n",
      "~2\r\n+a\r\n+b\r\n",
      ">2\r\n+message\r\n+x\r\n",
  };
  for (const std::string& frame : frames) {
    CAPTURE(frame);
    auto value = redis::parseReply(frame);
    REQUIRE(value.ok());
    ByteBuffer out;
    redis::resp::appendValue(out, *value);
    CHECK(bytes(out) == frame);
  }
}

TEST_CASE("appendValue drops attributes and counts streamed aggregates") {
  struct Case {
    std::string frame;
    std::string encoded;
  };
  const std::vector<Case> cases = {
      {"|1\r\n+ttl\r\n:3600\r\n+OK\r\n", "+OK\r\n"},
      {"*?\r\n:1\r\n:2\r\n.\r\n", "*2\r\n:1\r\n:2\r\n"},
      {"%?\r\n+a\r\n:1\r\n.\r\n", "%1\r\n+a\r\n:1\r\n"},
      {"~?\r\n.\r\n", "~0\r\n"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.frame);
    auto value = redis::parseReply(c.frame);
    REQUIRE(value.ok());
    ByteBuffer out;
    redis::resp::appendValue(out, *value);
    CHECK(bytes(out) == c.encoded);
  }
}

TEST_CASE("appendValue encodes values built by hand") {
  using T = redis::RespValue::Type;
  ByteBuffer out;
  redis::resp::appendValue(out, scalar(T::kNull, ""));
  redis::resp::appendValue(out, scalar(T::kError, "ERR plain"));
  // A simple error line cannot hold a line break; the blob error can.
  redis::resp::appendValue(out, scalar(T::kError, "ERR two\r\nlines"));
  redis::resp::appendValue(out, scalar(T::kBoolean, "", 7));
  redis::resp::appendValue(out, scalar(T::kInteger, "", 12));

  redis::RespValue map;
  map.type = T::kMap;
  map.elements.push_back(scalar(T::kBulkString, "k"));
  map.elements.push_back(scalar(T::kDouble, "1.5"));
  redis::resp::appendValue(out, map);

  redis::RespValue array;
  array.type = T::kArray;
  array.elements.push_back(map);
  array.elements.push_back(scalar(T::kSimpleString, "x"));
  redis::resp::appendValue(out, array);

  CHECK(bytes(out) ==
        "$-1\r\n"
        "-ERR plain\r\n"
        "!14\r\nERR two\r\nlines\r\n"
        "#t\r\n"
        ":12\r\n"
        "%1\r\n$1\r\nk\r\n,1.5\r\n"
        "*2\r\n%1\r\n$1\r\nk\r\n,1.5\r\n+x\r\n");
}
