// CertName: the certificates shardgate knows by name, and the files of the
// certificate directory each one is read from. The names are the ones the
// admin API takes ("proxy", "api", ...); one table here is the only place a
// name is tied to its files.
//
//   name              files in cert_dir                          today
//   proxy             proxy_cert.pem, proxy_key.pem,             served by every TLS database
//                     chain_certs.pem (optional intermediates)
//   api               api_cert.pem, api_key.pem                  built and held; no listener yet
//   metrics_exporter  metrics_exporter_cert.pem, ..._key.pem     built and held; no listener yet
//   mtls_trusted_ca   mtls_trusted_ca.pem (CA bundle, no key)    trusted for client certificates
//                                                                by databases with client_auth
//                                                                (unless client_ca) and the admin API
//
// proxy is required; the others are optional: when none of their files
// exists, they are simply not configured.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shardgate::tls {

inline constexpr const char* kProxyCertFile = "proxy_cert.pem";
inline constexpr const char* kProxyKeyFile = "proxy_key.pem";
inline constexpr const char* kChainFile = "chain_certs.pem";
inline constexpr const char* kApiCertFile = "api_cert.pem";
inline constexpr const char* kApiKeyFile = "api_key.pem";
inline constexpr const char* kMetricsExporterCertFile = "metrics_exporter_cert.pem";
inline constexpr const char* kMetricsExporterKeyFile = "metrics_exporter_key.pem";
inline constexpr const char* kMtlsCaFile = "mtls_trusted_ca.pem";

enum class CertName : uint8_t { kProxy, kApi, kMetricsExporter, kMtlsTrustedCa };

inline constexpr size_t kCertNameCount = 4;
// In the order a transaction checks them (and so the order errors come in).
inline constexpr std::array<CertName, kCertNameCount> kCertNames{
    CertName::kProxy, CertName::kApi, CertName::kMetricsExporter, CertName::kMtlsTrustedCa};

struct CertNameInfo {
  const char* name;        // as the admin API and the logs spell it
  const char* cert_file;   // the certificate, or the CA bundle
  const char* key_file;    // nullptr: a CA bundle, which has no key
  const char* chain_file;  // nullptr: no intermediates file of its own
  bool required;           // false: absent files mean "not configured"
};

inline constexpr std::array<CertNameInfo, kCertNameCount> kCertNameInfo{{
    {"proxy", kProxyCertFile, kProxyKeyFile, kChainFile, true},
    {"api", kApiCertFile, kApiKeyFile, nullptr, false},
    {"metrics_exporter", kMetricsExporterCertFile, kMetricsExporterKeyFile, nullptr, false},
    {"mtls_trusted_ca", kMtlsCaFile, nullptr, nullptr, false},
}};

constexpr size_t indexOf(CertName name) { return static_cast<size_t>(name); }
constexpr const CertNameInfo& infoOf(CertName name) { return kCertNameInfo[indexOf(name)]; }
constexpr const char* toString(CertName name) { return infoOf(name).name; }
// A certificate with a key is served by a TLS server context; a CA bundle is not.
constexpr bool hasServerContext(CertName name) { return infoOf(name).key_file != nullptr; }

inline std::optional<CertName> parseCertName(std::string_view text) {
  for (CertName name : kCertNames) {
    if (text == toString(name)) return name;
  }
  return std::nullopt;
}

// Every file of every named certificate, for the directory watcher: a change
// to any of them is a change of the store like one of the proxy pair.
inline std::vector<std::string> certDirFileNames() {
  std::vector<std::string> files;
  for (const CertNameInfo& info : kCertNameInfo) {
    for (const char* file : {info.cert_file, info.key_file, info.chain_file}) {
      if (file != nullptr) files.emplace_back(file);
    }
  }
  return files;
}

// An error about one certificate, naming it. The proxy certificate's errors
// read as they always have (they name proxy_cert.pem or proxy_key.pem, and
// operators' alerts match them); every other one begins "certificate NAME: ".
inline std::string namedReason(CertName name, const std::string& reason) {
  if (name == CertName::kProxy) return reason;
  return std::string("certificate ") + toString(name) + ": " + reason;
}

}  // namespace shardgate::tls
