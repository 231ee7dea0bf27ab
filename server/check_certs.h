// --check-certs DIR: the dry run. Validates a certificate directory exactly
// as a reload would (the certificate store's transaction for every named
// certificate there: pair, chain, dates, preflight handshake) and prints what
// would be served, or the first problem, naming the file and, when it is not
// proxy, the certificate. Touches nothing, talks to no process.
#pragma once

#include <cstdio>
#include <string>

#include "tls/tls_context.h"

namespace shardgate::server {

// Returns the exit code: 0 when the directory would be served.
int checkCertDir(const std::string& dir, const tls::TlsPolicy& policy, std::FILE* out, std::FILE* err);

}  // namespace shardgate::server
