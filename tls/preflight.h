// preflight: a server context proves it can serve before it is published:
// it completes TLS handshakes with itself through memory, no socket, no
// loop. A context that fails is never published and the last good one keeps
// serving.
#pragma once

#include "common/result.h"
#include "tls/tls_context.h"

namespace shardgate::tls {

// One handshake at the highest version the client side offers (TLS 1.3), and,
// when server->policy().min_version is 1.2 or lower, one capped at TLS 1.2:
// a certificate whose key type has no cipher in tls.ciphers (an ECDSA
// certificate with only RSA suites) serves TLS 1.3 fine and fails every
// TLS 1.2 client. The error names the version and the reason in words:
//   "preflight handshake at TLS 1.2 failed: no shared cipher (tls.ciphers has
//    no cipher usable with this ECDSA certificate?)"
// Costs a few milliseconds (key exchange and signatures); for the control
// thread, never a worker's loop.
Status preflight(const TlsContextPtr& server);

}  // namespace shardgate::tls
