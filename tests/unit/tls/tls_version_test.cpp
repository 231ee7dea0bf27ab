#include "tls/tls_version.h"

#include <doctest/doctest.h>
#include <openssl/ssl.h>

using namespace shardgate::tls;

namespace {

// Compared as strings: doctest stringifies operands with an unqualified
// toString(), which ADL resolves to tls::toString(TlsVersion) returning
// std::string, so CHECK(version == TlsVersion::k1_2) does not compile.
std::string parsed(std::string_view text) {
  auto r = parseTlsVersion(text);
  return r.ok() ? toString(r.value()) : "error: " + r.message();
}

}  // namespace

TEST_CASE("parseTlsVersion accepts the four versions and the TLSv spelling") {
  CHECK(parsed("1.0") == "1.0");
  CHECK(parsed("1.1") == "1.1");
  CHECK(parsed("1.2") == "1.2");
  CHECK(parsed("1.3") == "1.3");
  CHECK(parsed("TLSv1.2") == "1.2");
  CHECK(parsed("tlsv1.3") == "1.3");
}

TEST_CASE("parseTlsVersion names what it expected and what it got") {
  CHECK(parsed("1.4") == R"(error: expected one of "1.0", "1.1", "1.2", "1.3", got "1.4")");
  CHECK(parsed("TLSv9") == R"(error: expected one of "1.0", "1.1", "1.2", "1.3", got "TLSv9")");
  CHECK_FALSE(parseTlsVersion("").ok());
  CHECK_FALSE(parseTlsVersion("TLSv").ok());
  CHECK_FALSE(parseTlsVersion("1.2 ").ok());
  CHECK_FALSE(parseTlsVersion("SSLv3").ok());
}

TEST_CASE("toString and toOpenSslVersion agree") {
  for (TlsVersion v : {TlsVersion::k1_0, TlsVersion::k1_1, TlsVersion::k1_2, TlsVersion::k1_3}) {
    CHECK(parsed(toString(v)) == toString(v));
  }
  CHECK(toOpenSslVersion(TlsVersion::k1_0) == TLS1_VERSION);
  CHECK(toOpenSslVersion(TlsVersion::k1_1) == TLS1_1_VERSION);
  CHECK(toOpenSslVersion(TlsVersion::k1_2) == TLS1_2_VERSION);
  CHECK(toOpenSslVersion(TlsVersion::k1_3) == TLS1_3_VERSION);
}
