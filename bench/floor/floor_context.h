// The floor servers' shared start: CERT_DIR PORT from the command line, and
// shardgate's own server TlsContext for the certificate in CERT_DIR.
#pragma once

#include <cstdio>

#include "tls/cert_files.h"
#include "tls/tls_context.h"

namespace shardgate::bench {

// The context, or null after printing why (usage or the cert file at fault).
inline tls::TlsContextPtr contextFromArgs(int argc, char** argv, const char* program) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s CERT_DIR PORT\n", program);
    return nullptr;
  }
  auto bundle = tls::readProxyCertFiles(argv[1]);
  if (!bundle) {
    std::fprintf(stderr, "%s\n", bundle.message().c_str());
    return nullptr;
  }
  auto ctx = tls::TlsContext::createServer(*bundle, tls::TlsPolicy{}, 1);
  if (!ctx) {
    std::fprintf(stderr, "%s\n", ctx.message().c_str());
    return nullptr;
  }
  return *ctx;
}

}  // namespace shardgate::bench
