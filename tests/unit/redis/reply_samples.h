// Replies shared by the ReplyScanner and parseReply tests: one of every
// kind, deep chains, and a scanner driven over chunks as a link would feed it.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "redis/reply_scanner.h"

namespace shardgate::test {

struct Scanned {
  std::vector<size_t> frames;  // lengths, in order
  bool failed = false;
  std::string error;
  bool idle = true;

  bool operator==(const Scanned&) const = default;
};

inline Scanned scanChunks(const std::vector<std::string>& chunks) {
  shardgate::redis::ReplyScanner scanner;
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

// One well-formed reply of every kind the scanner and parseReply know.
inline const std::vector<std::string>& everyReply() {
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

inline std::string repeat(std::string_view piece, size_t times) {
  std::string out;
  out.reserve(piece.size() * times);
  for (size_t i = 0; i < times; ++i) out += piece;
  return out;
}

// What redis-server 7.0 answers to
//   EVAL "local a = {}; local b = {a}; a[1] = b; return a" 0
// with `levels` one-element arrays (it stops near 8,000).
inline std::string luaSelfReference(size_t levels) {
  return repeat("*1\r\n", levels) + "-ERR reached lua stack limit\r\n";
}

}  // namespace shardgate::test
