// TlsVersion: the protocol versions an operator can name in `tls.min_version`.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace shardgate::tls {

enum class TlsVersion { k1_0, k1_1, k1_2, k1_3 };

// "1.0" | "1.1" | "1.2" | "1.3" (also accepts "TLSv1.2" and "tlsv1.2").
Result<TlsVersion> parseTlsVersion(std::string_view text);
// "1.2"
std::string toString(TlsVersion v);
// OpenSSL's protocol constant (TLS1_2_VERSION, ...), for tls/ only.
int toOpenSslVersion(TlsVersion v);

}  // namespace shardgate::tls
