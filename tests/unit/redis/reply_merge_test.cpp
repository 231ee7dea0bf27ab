#include <doctest/doctest.h>

#include <string>

#include "redis/reply_merge.h"

using namespace shardgate;

using namespace shardgate::redis;
using shardgate::ByteBuffer;

namespace {

std::string merged(void (*fn)(const redis::ReplyParts&, ByteBuffer&), const redis::ReplyParts& parts) {
  ByteBuffer out;
  fn(parts, out);
  return std::string(out.view());
}

}  // namespace

TEST_CASE("MGET parts are put back in the client's key order") {
  // keys a(part 0) b(part 1) c(part 0) d(part 1) e(part 2)
  redis::ReplyParts parts = {"*2\r\n$2\r\nva\r\n$-1\r\n", "*2\r\n$2\r\nvb\r\n$2\r\nvd\r\n",
                      "*1\r\n$2\r\nve\r\n"};
  ByteBuffer out;
  redis::mergeMget(parts, {0, 1, 0, 1, 2}, out);
  CHECK(out.view() == "*5\r\n$2\r\nva\r\n$2\r\nvb\r\n$-1\r\n$2\r\nvd\r\n$2\r\nve\r\n");
}

TEST_CASE("PUBSUB NUMSUB pairs are put back in the client's channel order") {
  redis::ReplyParts parts = {"*2\r\n$1\r\nb\r\n:1\r\n", "*4\r\n$1\r\na\r\n:0\r\n$1\r\nc\r\n:2\r\n"};
  ByteBuffer out;
  redis::mergeMget(parts, {1, 0, 1}, out, 2);
  CHECK(out.view() == "*6\r\n$1\r\na\r\n:0\r\n$1\r\nb\r\n:1\r\n$1\r\nc\r\n:2\r\n");
}

TEST_CASE("MGET passes the first error through") {
  redis::ReplyParts parts = {"*1\r\n$1\r\nx\r\n", "-ERR shard 127.0.0.1:1 unavailable: refused\r\n"};
  ByteBuffer out;
  redis::mergeMget(parts, {0, 1}, out);
  CHECK(out.view() == "-ERR shard 127.0.0.1:1 unavailable: refused\r\n");
}

TEST_CASE("MGET with fewer values than keys from a shard is an error, not a short array") {
  ByteBuffer out;
  redis::mergeMget({"*1\r\n$1\r\nx\r\n"}, {0, 0}, out);
  CHECK(out.view().substr(0, 24) == "-ERR shardgate: unexpect");
}

TEST_CASE("integers are summed, OKs become one OK") {
  CHECK(merged(redis::mergeSumIntegers, {":1\r\n", ":0\r\n", ":3\r\n"}) == ":4\r\n");
  CHECK(merged(redis::mergeAllOk, {"+OK\r\n", "+OK\r\n"}) == "+OK\r\n");
  CHECK(merged(redis::mergeAllOk, {"+OK\r\n", "-READONLY no\r\n"}) == "-READONLY no\r\n");
  CHECK(merged(redis::mergeSumIntegers, {":1\r\n", "+OK\r\n"}).substr(0, 15) == "-ERR shardgate:");
}

TEST_CASE("SCRIPT KILL is OK when the shard running a script killed it") {
  CHECK(merged(redis::mergeAnyOk, {"-NOTBUSY No scripts in execution right now.\r\n", "+OK\r\n"}) ==
        "+OK\r\n");
  CHECK(merged(redis::mergeAnyOk, {"-NOTBUSY No scripts in execution right now.\r\n",
                            "-NOTBUSY No scripts in execution right now.\r\n"}) ==
        "-NOTBUSY No scripts in execution right now.\r\n");
}

TEST_CASE("KEYS arrays are concatenated") {
  CHECK(merged(redis::mergeConcatArrays, {"*1\r\n$1\r\na\r\n", "*0\r\n", "*2\r\n$1\r\nb\r\n$1\r\nc\r\n"}) ==
        "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
}

TEST_CASE("RANDOMKEY takes the first non-nil answer from the random start") {
  redis::ReplyParts parts = {"$-1\r\n", "$1\r\nb\r\n", "$1\r\nc\r\n"};
  ByteBuffer out;
  redis::mergeRandomKey(parts, 0, out);
  CHECK(out.view() == "$1\r\nb\r\n");
  out.clear();
  redis::mergeRandomKey(parts, 2, out);
  CHECK(out.view() == "$1\r\nc\r\n");
  out.clear();
  redis::mergeRandomKey({"$-1\r\n", "$-1\r\n"}, 1, out);
  CHECK(out.view() == "$-1\r\n");
}

TEST_CASE("SCRIPT EXISTS is 1 only where every shard has the script") {
  CHECK(merged(redis::mergeAndArrays, {"*2\r\n:1\r\n:1\r\n", "*2\r\n:0\r\n:1\r\n"}) == "*2\r\n:0\r\n:1\r\n");
}

TEST_CASE("SCAN cursors encode the shard and walk every shard once") {
  auto pos = redis::decodeScanCursor("0", 3);
  REQUIRE(pos);
  CHECK(pos->shard == 0);
  CHECK(pos->cursor == 0);
  CHECK_FALSE(redis::decodeScanCursor("abc", 3));
  CHECK_FALSE(redis::decodeScanCursor("-1", 3));

  ByteBuffer out;
  // shard 1 says "more at 7": 7*3+1 = 22, which decodes back to shard 1 cursor 7.
  redis::rewriteScanReply("*2\r\n$1\r\n7\r\n*1\r\n$1\r\nk\r\n", 1, 3, out);
  CHECK(out.view() == "*2\r\n$2\r\n22\r\n*1\r\n$1\r\nk\r\n");
  pos = redis::decodeScanCursor("22", 3);
  REQUIRE(pos);
  CHECK(pos->shard == 1);
  CHECK(pos->cursor == 7);
  // shard 1 finished: the next shard from its start.
  out.clear();
  redis::rewriteScanReply("*2\r\n$1\r\n0\r\n*0\r\n", 1, 3, out);
  CHECK(out.view() == "*2\r\n$1\r\n2\r\n*0\r\n");
  // the last shard finished: the walk is over.
  out.clear();
  redis::rewriteScanReply("*2\r\n$1\r\n0\r\n*0\r\n", 2, 3, out);
  CHECK(out.view() == "*2\r\n$1\r\n0\r\n*0\r\n");
}
