// The floor servers' shared start: CERT_DIR PORT from the command line, and
// shardgate's own proxy TlsContext for the certificates in CERT_DIR, built
// by the certificate store exactly as the proxy builds it (validated,
// preflighted, committed).
#pragma once

#include <cstdio>

#include "tls/cert_files.h"
#include "tls/cert_store.h"

namespace shardgate::bench {

// The context, or null after printing why (usage or the cert file at fault).
inline tls::TlsContextPtr contextFromArgs(int argc, char** argv, const char* program) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s CERT_DIR PORT\n", program);
    return nullptr;
  }
  auto inputs = tls::readCertDir(argv[1]);
  if (!inputs) {
    std::fprintf(stderr, "%s\n", inputs.message().c_str());
    return nullptr;
  }
  // OpenSSL's own ticket keys, as before: a floor server never rotates.
  tls::CertStore store(tls::CertStore::TicketKeyMode::kPerContext);
  tls::CertTransaction txn = store.begin();
  txn.stageAll(std::move(*inputs));
  auto committed = txn.commit();
  if (!committed) {
    std::fprintf(stderr, "%s\n", committed.message().c_str());
    return nullptr;
  }
  return store.current(tls::CertName::kProxy);
}

}  // namespace shardgate::bench
