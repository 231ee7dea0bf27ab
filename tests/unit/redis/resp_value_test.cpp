#include "redis/resp_value.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "tests/unit/redis/reply_samples.h"

using namespace shardgate;
using shardgate::redis::parseReply;
using shardgate::redis::ReplyScanner;
using shardgate::redis::RespValue;

using shardgate::Result;
using shardgate::test::everyReply;
using shardgate::test::luaSelfReference;
using shardgate::test::repeat;
using shardgate::test::scanChunks;
using namespace std::string_literals;
using namespace std::string_view_literals;

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
