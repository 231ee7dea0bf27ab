// keyHashSlot against Redis Cluster's own answer: known vectors from the
// cluster spec, then 10,000 random binary keys compared with CLUSTER KEYSLOT
// of a real redis-server started here.
#include "redis/hash_slot.h"

#include <doctest/doctest.h>
#include <sys/socket.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "tests/unit/redis_server.h"

namespace shardgate::redis {
namespace {

constexpr int kRandomKeys = 10000;

// Reads n replies that must each be ":<integer>\r\n".
std::vector<int64_t> readIntegers(int fd, size_t n) {
  std::vector<int64_t> values;
  std::string buf;
  size_t pos = 0;
  char chunk[65536];
  while (values.size() < n) {
    const size_t eol = buf.find("\r\n", pos);
    if (eol == std::string::npos) {
      const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
      if (got <= 0) FAIL("no more replies from redis-server after " << values.size());
      buf.append(chunk, static_cast<size_t>(got));
      continue;
    }
    const std::string line = buf.substr(pos, eol - pos);
    if (line.empty() || line[0] != ':') {
      FAIL("reply " << values.size() << " is not an integer: " << line);
    }
    values.push_back(std::stoll(line.substr(1)));
    pos = eol + 2;
  }
  return values;
}

std::string hexOf(const std::string& s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
  }
  return out;
}

// Random bytes (all 256 values, '{' and '}' included), 0..40 long; half get
// a hash tag in some position: empty, nested, doubled, unterminated.
std::string randomKey(std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  auto bytes = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += static_cast<char>(byte(rng));
    return s;
  };
  if (rng() % 2 == 0) return bytes(rng() % 41);
  const std::string inner = bytes(rng() % 8);
  static const char* const kShapes[] = {"{%}", "{}", "{{%}}", "{%}{%}", "{}{%}", "{%", "%}{%}",
                                        "{{}}", "{%{%}%}"};
  std::string tag;
  for (const char* p = kShapes[rng() % std::size(kShapes)]; *p; ++p) {
    if (*p == '%') {
      tag += inner;
    } else {
      tag += *p;
    }
  }
  std::string key = bytes(rng() % (41 - tag.size()));
  key.insert(rng() % (key.size() + 1), tag);
  return key;
}

}  // namespace

TEST_CASE("crc16 is Redis's CRC16-XMODEM") {
  CHECK(redis::crc16("") == 0);
  CHECK(redis::crc16("123456789") == 0x31C3);
  CHECK(redis::crc16(std::string_view("\0", 1)) == 0);
  CHECK(redis::crc16("foo") == 0xAF96);
}

TEST_CASE("keyHashSlot follows Redis Cluster's hash tag rule") {
  CHECK(redis::keyHashSlot("foo") == 12182);
  CHECK(redis::keyHashSlot("bar") == 5061);
  CHECK(redis::keyHashSlot("") == 0);
  CHECK(redis::keyHashSlot("123456789") == (0x31C3 & 16383));
  CHECK(redis::keyHashSlot("{user1000}.following") == redis::keyHashSlot("{user1000}.followers"));
  CHECK(redis::keyHashSlot("{user1000}.following") == redis::keyHashSlot("user1000"));
  // Empty first tag: the whole key, not the second tag.
  CHECK(redis::keyHashSlot("foo{}{bar}") == (redis::crc16("foo{}{bar}") & 16383));
  CHECK(redis::keyHashSlot("foo{}{bar}") != redis::keyHashSlot("bar"));
  // First '{', first '}' after it: the tag is "{bar".
  CHECK(redis::keyHashSlot("foo{{bar}}zap") == redis::keyHashSlot("{bar"));
  CHECK(redis::keyHashSlot("foo{{bar}}zap") == (redis::crc16("{bar") & 16383));
  CHECK(redis::keyHashSlot("foo{bar}{zap}") == redis::keyHashSlot("bar"));
  // No closing brace, or a '}' only before the '{': the whole key.
  CHECK(redis::keyHashSlot("foo{bar") == (redis::crc16("foo{bar") & 16383));
  CHECK(redis::keyHashSlot("}foo{") == (redis::crc16("}foo{") & 16383));
  CHECK(redis::keyHashSlot("a}b{c}") == redis::keyHashSlot("c"));
  // Binary keys: NUL is an ordinary byte.
  CHECK(redis::keyHashSlot(std::string_view("{\0}x", 4)) == (redis::crc16(std::string_view("\0", 1)) & 16383));
}

TEST_CASE("keyHashSlot equals CLUSTER KEYSLOT of redis-server for 10,000 random keys") {
  testing::RedisServer server(testing::RedisServer::Mode::kCluster);
  testing::FdGuard conn(testing::connectTo(server.port()));
  REQUIRE_MESSAGE(conn.fd >= 0, "cannot connect to redis-server on port " << server.port());
  testing::setReceiveTimeout(conn.fd, 10);  // a stuck server fails the test instead of hanging it

  std::mt19937 rng(20240521);
  std::vector<std::string> keys;
  std::string pipeline;
  for (int i = 0; i < kRandomKeys; ++i) {
    keys.push_back(randomKey(rng));
    testing::appendCommand(pipeline, {"CLUSTER", "KEYSLOT", keys.back()});
  }
  // All at once: the server buffers its replies while we are still writing.
  testing::sendAll(conn.fd, pipeline);
  const std::vector<int64_t> slots = readIntegers(conn.fd, keys.size());

  int mismatches = 0;
  int tagged = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].find('{') != std::string::npos) ++tagged;
    if (redis::keyHashSlot(keys[i]) != slots[i] && ++mismatches <= 10) {
      FAIL_CHECK("key 0x" << hexOf(keys[i]) << ": keyHashSlot " << redis::keyHashSlot(keys[i])
                          << ", CLUSTER KEYSLOT " << slots[i]);
    }
  }
  CHECK(mismatches == 0);
  CHECK(tagged >= kRandomKeys / 2);  // the tag rule was really exercised
}

}  // namespace shardgate::redis
