// AdminAuth's pure parts: the basic-auth header and the growing wait.
#include <doctest/doctest.h>

#include "server/admin_auth.h"

using namespace shardgate::server;

TEST_CASE("parseBasicAuth: RFC 7617 credentials, and what is not") {
  auto ok = parseBasicAuth("Basic YWRtaW46cHc6d2l0aDpjb2xvbnM=");  // admin:pw:with:colons
  REQUIRE(ok.has_value());
  CHECK(ok->first == "admin");
  CHECK(ok->second == "pw:with:colons");  // the first colon splits
  auto lower = parseBasicAuth("basic  YTpi");  // a:b, scheme in any case, extra blank
  REQUIRE(lower.has_value());
  CHECK(lower->first == "a");
  CHECK(lower->second == "b");
  CHECK_FALSE(parseBasicAuth("Bearer abc").has_value());
  CHECK_FALSE(parseBasicAuth("Basic !!!!").has_value());
  CHECK_FALSE(parseBasicAuth("Basic YWJj").has_value());  // "abc": no colon
  CHECK_FALSE(parseBasicAuth("").has_value());
}

TEST_CASE("AdminAuth::delayFor doubles per failure up to its cap") {
  CHECK(AdminAuth::delayFor(0) == 0);
  CHECK(AdminAuth::delayFor(1) == 250);
  CHECK(AdminAuth::delayFor(2) == 500);
  CHECK(AdminAuth::delayFor(3) == 1000);
  CHECK(AdminAuth::delayFor(6) == 8000);
  CHECK(AdminAuth::delayFor(1000) == AdminAuth::kMaxDelayMs);
}
