// cert_files: the certificate directory as operators know it:
// reading the files of each named certificate (cert_name.h), describing a
// certificate, generating a self-signed pair, and writing key material
// atomically with mode 0600.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "tls/cert_name.h"

namespace shardgate::tls {

// What is read and parsed from the certificate directory is bounded, so a
// file put there by mistake (a CA bundle, a log, 10 MB of certificates)
// fails the reload quickly, naming itself, instead of stalling the control
// thread and its memory. A leaf, its key and a few intermediates take a few
// kilobytes; these bounds are far above any real chain.
inline constexpr size_t kMaxCertFileBytes = 256 * 1024;
// Certificates served after the leaf, from proxy_cert.pem and
// chain_certs.pem together.
inline constexpr size_t kMaxChainCerts = 16;

// PEM text of a leaf certificate, its key and optional intermediates, with
// where each came from (a file path, or "admin API") so errors can name it.
struct CertBundle {
  std::string cert_pem;
  std::string key_pem;
  std::string chain_pem;  // may be empty
  std::string cert_source;
  std::string key_source;
  std::string chain_source;
};

// What a certificate says, for logs, --check-certs and the admin API.
// Never holds key material.
struct CertInfo {
  std::string subject;              // "CN=localhost"
  std::string issuer;
  std::vector<std::string> sans;    // "DNS:localhost", "IP:127.0.0.1"
  std::string serial;               // hex, upper case
  std::string not_before;           // "2026-11-24T08:00:00Z"
  std::string not_after;
  int64_t not_after_epoch = 0;      // seconds since 1970
  std::string sha256_fingerprint;   // "AB:CD:..." (32 bytes)
  size_t chain_length = 0;          // intermediates served after the leaf
};

// The PEM of the two bundles is the same (where it came from aside).
bool samePem(const CertBundle& a, const CertBundle& b);

// What the certificate directory holds for every named certificate, indexed
// by indexOf(CertName): nullopt for an optional certificate that is not
// configured. A CA bundle's PEM is in cert_pem, with no key.
using CertInputs = std::array<std::optional<CertBundle>, kCertNameCount>;
bool sameInputs(const CertInputs& a, const CertInputs& b);

// Reads the files of one named certificate from dir: its certificate, its key
// (unless a CA bundle) and, when present, its chain file. An optional
// certificate none of whose files exist reads as nullopt (not configured);
// one of a pair without the other is an error. A missing or unreadable file,
// one that is not a regular file, or one larger than kMaxCertFileBytes is an
// error naming the file (and its size); its sys_errno is the errno of a
// failed open() or read().
Result<std::optional<CertBundle>> readCertFiles(const std::string& dir, CertName name);

// readCertFiles for the proxy certificate, which is always configured:
// proxy_cert.pem, proxy_key.pem and, when present, chain_certs.pem.
Result<CertBundle> readProxyCertFiles(const std::string& dir);

// readCertFiles for every name, in kCertNames order; the first error wins,
// worded by namedReason (so it names its certificate), errno kept.
Result<CertInputs> readCertDir(const std::string& dir);

// True when dir has neither file of name's pair (for proxy: neither
// proxy_cert.pem nor proxy_key.pem).
bool certFilesAbsent(const std::string& dir, CertName name);
bool proxyCertFilesAbsent(const std::string& dir);

// Creates dir if needed and writes a new self-signed ECDSA P-256 pair valid
// for one year, with SANs DNS:<each name> and IP:127.0.0.1, as name's
// certificate (0644) and key (0600) files (proxy_cert.pem and
// proxy_key.pem for proxy), each written atomically.
Result<CertInfo> generateSelfSigned(const std::string& dir, const std::vector<std::string>& dns_names,
                                    CertName name = CertName::kProxy);

// Parses, checks and describes a bundle without building a context: at most
// kMaxChainCerts chain certificates, the certificate parses, the key parses
// and matches it, each chain certificate issued the one before it, and now is
// within the leaf's validity period.
// Errors name the source (file) and the problem in words.
Result<CertInfo> validateCertBundle(const CertBundle& bundle);

// The error of validateCertBundle was about the leaf's dates (expired, or
// not valid yet) rather than its form: the admin API answers 406 for it.
bool isValidityPeriodError(std::string_view message);

// Parses a CA bundle (bundle.cert_pem, named by bundle.cert_source): at least
// one certificate, each of which parses. Returns how many it holds. Dates are
// not checked: a trust store may keep an expired root beside its successor.
Result<size_t> validateCaBundle(const CertBundle& bundle);

// Writes content to path through a temporary file in the same directory and
// rename(), so a reader sees the old file or the new one, never half of one.
Status writeFileAtomic(const std::string& path, const std::string& content,
                       unsigned mode);

}  // namespace shardgate::tls
