#include "server/check_certs.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <ctime>

#include "tls/cert_files.h"
#include "tls/preflight.h"

namespace shardgate::server {

int checkCertDir(const std::string& dir, const tls::TlsPolicy& policy, std::FILE* out, std::FILE* err) {
  auto bundle = tls::readProxyCertFiles(dir);
  if (!bundle) {
    fmt::print(err, "{}\n", bundle.message());
    return 1;
  }
  auto ctx = tls::TlsContext::createServer(*bundle, policy, 1);
  if (!ctx) {
    fmt::print(err, "{}\n", ctx.message());
    return 1;
  }
  if (auto st = tls::preflight(*ctx); !st) {
    fmt::print(err, "{}\n", st.message());
    return 1;
  }
  const tls::CertInfo& info = (*ctx)->certInfo();
  int64_t days_left = (info.not_after_epoch - static_cast<int64_t>(std::time(nullptr))) / 86400;
  fmt::print(out, "{}: would be served\n", bundle->cert_source);
  fmt::print(out, "  subject:    {}\n", info.subject);
  fmt::print(out, "  SANs:       {}\n", info.sans.empty() ? "(none)" : fmt::format("{}", fmt::join(info.sans, ", ")));
  fmt::print(out, "  issuer:     {}\n", info.issuer);
  fmt::print(out, "  serial:     {}\n", info.serial);
  fmt::print(out, "  not before: {}\n", info.not_before);
  fmt::print(out, "  not after:  {} (in {} days)\n", info.not_after, days_left);
  fmt::print(out, "  sha256:     {}\n", info.sha256_fingerprint);
  fmt::print(out, "  chain:      {} intermediate(s){}\n", info.chain_length,
             bundle->chain_pem.empty() ? "" : " (" + bundle->chain_source + ")");
  fmt::print(out, "  key:        {} (matches)\n", bundle->key_source);
  fmt::print(out, "  preflight:  in-memory TLS handshake ok (min version {})\n", tls::toString(policy.min_version));
  if (days_left < 30) {
    fmt::print(out, "warning: the certificate expires in {} days\n", days_left);
  }
  return 0;
}

}  // namespace shardgate::server
