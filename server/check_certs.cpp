#include "server/check_certs.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <ctime>

#include "tls/cert_store.h"

namespace shardgate::server {

namespace {

void printCertificate(std::FILE* out, const tls::CertBundle& bundle, const tls::TlsContext& ctx,
                      const tls::TlsPolicy& policy, tls::CertName name) {
  const tls::CertInfo& info = ctx.certInfo();
  int64_t days_left = (info.not_after_epoch - static_cast<int64_t>(std::time(nullptr))) / 86400;
  if (name == tls::CertName::kProxy) {
    fmt::print(out, "{}: would be served\n", bundle.cert_source);
  } else {
    // Built and checked like proxy, but no listener serves it in this version.
    fmt::print(out, "{}: valid as the {} certificate (held, not served: this version has no listener "
                    "for it)\n", bundle.cert_source, tls::toString(name));
  }
  fmt::print(out, "  subject:    {}\n", info.subject);
  fmt::print(out, "  SANs:       {}\n", info.sans.empty() ? "(none)" : fmt::format("{}", fmt::join(info.sans, ", ")));
  fmt::print(out, "  issuer:     {}\n", info.issuer);
  fmt::print(out, "  serial:     {}\n", info.serial);
  fmt::print(out, "  not before: {}\n", info.not_before);
  fmt::print(out, "  not after:  {} (in {} days)\n", info.not_after, days_left);
  fmt::print(out, "  sha256:     {}\n", info.sha256_fingerprint);
  fmt::print(out, "  chain:      {} intermediate(s){}\n", info.chain_length,
             bundle.chain_pem.empty() ? "" : " (" + bundle.chain_source + ")");
  fmt::print(out, "  key:        {} (matches)\n", bundle.key_source);
  fmt::print(out, "  preflight:  in-memory TLS handshake ok (min version {})\n", tls::toString(policy.min_version));
  if (days_left < 30) {
    if (name == tls::CertName::kProxy) {
      fmt::print(out, "warning: the certificate expires in {} days\n", days_left);
    } else {
      fmt::print(out, "warning: the {} certificate expires in {} days\n", tls::toString(name), days_left);
    }
  }
}

}  // namespace

int checkCertDir(const std::string& dir, const tls::TlsPolicy& policy, std::FILE* out, std::FILE* err) {
  auto inputs = tls::readCertDir(dir);
  if (!inputs) {
    fmt::print(err, "{}\n", inputs.message());
    return 1;
  }
  auto changes = tls::CertStore::check(*inputs, policy);
  if (!changes) {
    fmt::print(err, "{}\n", changes.message());
    return 1;
  }
  for (const tls::CertChange& change : *changes) {
    const tls::CertBundle& bundle = *(*inputs)[tls::indexOf(change.name)];
    if (change.context) {
      printCertificate(out, bundle, *change.context, policy, change.name);
    } else {
      fmt::print(out, "{}: valid as the {} bundle, {} CA certificate(s) (trusted for client certificates by "
                      "databases with client_auth and no client_ca, and by the admin API)\n",
                 bundle.cert_source, tls::toString(change.name), change.ca_certificates);
    }
  }
  return 0;
}

}  // namespace shardgate::server
