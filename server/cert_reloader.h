// CertReloader: what the certificate directory means to a running proxy.
// It turns the start, a file event in cert_dir and SIGHUP into transactions
// of the certificate store (tls/cert_store.h), which does the one path every
// change takes:
//
//   read cert_dir (every named certificate) ─► unchanged? stop
//        ─► CertStore transaction: validate, build, preflight each name
//           that changed ─► commit (all or nothing)
//
// Any failing step leaves every last good context in place, counts a failed
// reload and logs the reason naming the file (and the certificate, when it
// is not proxy); a file missing at run time is such a failure (a self-signed
// pair is generated at the first start only). When the files come back equal
// to what is served, that is logged too. Runs on the control thread only.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "config/config.h"
#include "tls/cert_store.h"

namespace shardgate::server {

// Every database with client_auth, as the store takes it: its CA file
// (client_ca) and CRL file (client_crl) read now. Errors name the key and
// the file.
Result<std::vector<tls::ClientAuthInput>> readClientAuthInputs(const config::Config& config);
// The files of cert_dir a change to which is a certificate change: the
// named certificates', every client_ca / client_crl given by name, and the
// TLS shards' ca / cert / key files in cert_dir.
std::vector<std::string> watchedCertFiles(const config::Config& config);

class CertReloader {
 public:
  // kRetryLater: the files could not even be read because the process is
  // short of descriptors or memory (a connection flood at the open-file
  // limit); nothing is known about them, and no file event will come to say
  // they are readable again, so the caller tries again after kRetryMs.
  enum class Outcome { kApplied, kUnchanged, kFailed, kRetryLater };
  static constexpr uint64_t kRetryMs = 1000;

  explicit CertReloader(tls::CertStore& store);

  // Startup: generates a self-signed pair if allowed and none exists (proxy;
  // api with admin.listen; metrics_exporter with metrics.listen),
  // then commits. A failure is returned, not just logged: the process cannot serve.
  Status loadInitial(const config::Config& config);
  // A change was noticed (trigger: "file change", "SIGHUP"); commits it if it
  // is whole and valid, otherwise keeps serving the last good contexts. Only
  // reads cert_dir: never generates a pair.
  Outcome reload(const config::Config& config, const char* trigger);
  // Warns once per generation as a certificate nears its end (30, 7, 1 days).
  void checkExpiry(int64_t now_epoch);

  uint64_t reloadsOk() const { return ok_; }
  uint64_t reloadsFailed() const { return failed_; }
  const std::string& lastFailure() const { return last_failure_; }
  // The last reload attempt failed: lastFailure() is what still stands.
  bool lastAttemptFailed() const { return last_attempt_failed_; }

 private:
  void logChange(const tls::CertChange& change, const config::Config& config, const char* trigger) const;
  void logClientAuthChange(const tls::ClientAuthChange& change, const tls::ClientAuthInput* input,
                           const char* trigger) const;

  tls::CertStore& store_;
  // The last input that failed, so an unrelated event does not count it again.
  tls::CertInputs failed_inputs_;
  tls::TlsPolicy failed_policy_;
  std::vector<tls::ClientAuthInput> failed_client_auth_;
  bool have_failed_input_ = false;
  // The last reload attempt failed (for whatever reason), so files equal to
  // the served ones are news: "valid again".
  bool last_attempt_failed_ = false;
  uint64_t ok_ = 0;
  uint64_t failed_ = 0;
  std::string last_failure_;
  // Per certificate name: the generation and the tightest threshold warned of.
  std::array<uint64_t, tls::kCertNameCount> expiry_warned_generation_{};
  std::array<int, tls::kCertNameCount> expiry_warned_days_{};
};

}  // namespace shardgate::server
