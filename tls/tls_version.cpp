#include "tls/tls_version.h"

#include <openssl/ssl.h>

#include <cctype>

namespace shardgate::tls {

Result<TlsVersion> parseTlsVersion(std::string_view text) {
  std::string_view v = text;
  if (v.size() > 4 && std::tolower(static_cast<unsigned char>(v[0])) == 't' &&
      std::tolower(static_cast<unsigned char>(v[1])) == 'l' &&
      std::tolower(static_cast<unsigned char>(v[2])) == 's' &&
      std::tolower(static_cast<unsigned char>(v[3])) == 'v') {
    v.remove_prefix(4);
  }
  if (v == "1.0") return TlsVersion::k1_0;
  if (v == "1.1") return TlsVersion::k1_1;
  if (v == "1.2") return TlsVersion::k1_2;
  if (v == "1.3") return TlsVersion::k1_3;
  return makeError("expected one of \"1.0\", \"1.1\", \"1.2\", \"1.3\", got \"" +
                   std::string(text) + "\"");
}

std::string toString(TlsVersion v) {
  switch (v) {
    case TlsVersion::k1_0: return "1.0";
    case TlsVersion::k1_1: return "1.1";
    case TlsVersion::k1_2: return "1.2";
    case TlsVersion::k1_3: return "1.3";
  }
  return "?";
}

int toOpenSslVersion(TlsVersion v) {
  switch (v) {
    case TlsVersion::k1_0: return TLS1_VERSION;
    case TlsVersion::k1_1: return TLS1_1_VERSION;
    case TlsVersion::k1_2: return TLS1_2_VERSION;
    case TlsVersion::k1_3: return TLS1_3_VERSION;
  }
  return TLS1_2_VERSION;
}

}  // namespace shardgate::tls
