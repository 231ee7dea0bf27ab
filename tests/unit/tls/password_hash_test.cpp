// Password hashes: the text form round-trips, the right password verifies
// and others do not, and malformed or too-costly hashes are refused by name.
#include <doctest/doctest.h>

#include "tls/password_hash.h"

using namespace shardgate::tls;

namespace {
// Cheap parameters keep the suite fast; the format and code path are the same.
constexpr ScryptParams kFast{10, 8, 1};
}  // namespace

TEST_CASE("password hash: round trip, right and wrong passwords") {
  auto text = hashPassword("s3cret", kFast);
  REQUIRE(text.ok());
  CHECK(text->rfind("$scrypt$ln=10,r=8,p=1$", 0) == 0);
  auto parsed = parsePasswordHash(*text);
  REQUIRE_MESSAGE(parsed.ok(), (parsed.ok() ? "" : parsed.message()));
  CHECK(parsed->salt.size() == 16);
  CHECK(parsed->hash.size() == 32);
  CHECK(verifyPassword("s3cret", *parsed));
  CHECK_FALSE(verifyPassword("s3creT", *parsed));
  CHECK_FALSE(verifyPassword("", *parsed));
  // A fresh salt each time: the same password hashes differently.
  CHECK(*hashPassword("s3cret", kFast) != *text);
}

TEST_CASE("password hash: the default parameters") {
  auto text = hashPassword("pw");
  REQUIRE(text.ok());
  CHECK(text->rfind("$scrypt$ln=15,r=8,p=1$", 0) == 0);
  CHECK(verifyPassword("pw", *parsePasswordHash(*text)));
}

TEST_CASE("password hash: malformed text and parameters out of bounds are refused") {
  for (const char* bad : {"", "plain", "$scrypt$", "$scrypt$ln=10,r=8,p=1$abc", "$scrypt$ln=10,r=8$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
                          "$scrypt$ln=10,r=8,p=1,x=2$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
                          "$scrypt$ln=10,r=8,p=1$!!!!$AAAAAAAAAAAAAAAAAAAAAA==",
                          "$pbkdf2$ln=10,r=8,p=1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA=="}) {
    CAPTURE(bad);
    CHECK_FALSE(parsePasswordHash(bad).ok());
  }
  auto huge = parsePasswordHash("$scrypt$ln=30,r=8,p=1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==");
  REQUIRE_FALSE(huge.ok());
  CHECK(huge.message().find("out of range") != std::string::npos);
  CHECK(parsePasswordHash("$scrypt$ln=10,r=8,p=1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==").ok());
}
