#include "server/cert_reloader.h"

#include "server/cert_dir_file.h"
#include "server/shard_tls_contexts.h"

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

namespace shardgate::server {

namespace {

using tls::CertName;

std::string hostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// First start only: a directory with neither file of a pair gets a
// self-signed one when the config allows it: proxy always (the data
// listeners), api when the admin API listens, metrics_exporter when the
// metrics endpoint does. Never called on a reload: at run time a missing
// file is a failed reload and the last good pair keeps serving (a deleted
// cert_dir must not turn a CA-signed certificate into a self-signed one
// behind the operator's back).
Status generateIfAbsent(const config::Config& config) {
  if (!config.generate_self_signed) return {};
  std::vector<CertName> wanted{CertName::kProxy};
  if (config.admin_listen) wanted.push_back(CertName::kApi);
  if (config.metrics_listen && config.metrics_tls) wanted.push_back(CertName::kMetricsExporter);
  std::vector<std::string> names{hostName()};
  if (names[0] != "localhost") names.push_back("localhost");
  for (CertName name : wanted) {
    if (!tls::certFilesAbsent(config.cert_dir, name)) continue;
    auto info = tls::generateSelfSigned(config.cert_dir, names, name);
    if (!info) {
      return makeError(std::string("cannot generate a self-signed ") + tls::toString(name) +
                       " certificate: " + info.message());
    }
    spdlog::info("generated self-signed certificate {}/{} ({}; SANs {}; not after {}; sha256 {})",
                 config.cert_dir, tls::infoOf(name).cert_file, info->subject, fmt::join(info->sans, ", "),
                 info->not_after, info->sha256_fingerprint);
  }
  return {};
}

// Whether a certificate other than proxy is used, said wherever it appears,
// so nobody mistakes one held for one served.
std::string servedBy(CertName name, const config::Config& config) {
  switch (name) {
    case CertName::kApi:
      return config.admin_listen ? "served by the admin API"
                                 : "not served: admin.listen is not set";
    case CertName::kMtlsTrustedCa: {
      std::string users;
      for (const config::DatabaseConfig& db : config.databases) {
        if (db.client_auth == config::ClientAuth::kNone || !db.client_ca.empty()) continue;
        users += (users.empty() ? "" : ", ") + db.name;
      }
      if (config.admin_listen) users += std::string(users.empty() ? "" : ", ") + "the admin API";
      return users.empty() ? std::string("not used: no database with client_auth relies on it and admin.listen is not set")
                           : "trusted for client certificates by " + users;
    }
    case CertName::kMetricsExporter:
      if (!config.metrics_listen) return "not served: metrics.listen is not set";
      return config.metrics_tls ? "served by the metrics endpoint" : "not served: metrics.tls is false";
    default:
      return "not served yet: this version has no listener for it";
  }
}

bool sameClientAuthList(const std::vector<tls::ClientAuthInput>& a, const std::vector<tls::ClientAuthInput>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!tls::sameClientAuth(a[i], b[i])) return false;
  }
  return true;
}

}  // namespace

Result<std::vector<tls::ClientAuthInput>> readClientAuthInputs(const config::Config& config) {
  std::vector<tls::ClientAuthInput> out;
  auto read = [&](const std::string& key, const std::string& file, std::string& text, std::string& source) {
    return readCertDirFile(config, key, file, text, source);
  };
  for (size_t i = 0; i < config.databases.size(); ++i) {
    const config::DatabaseConfig& db = config.databases[i];
    if (db.client_auth == config::ClientAuth::kNone) continue;
    const std::string key = "databases[" + std::to_string(i) + "].";
    tls::ClientAuthInput in;
    in.database = db.name;
    in.required = db.client_auth == config::ClientAuth::kRequired;
    if (!db.client_ca.empty()) {
      tls::CertBundle ca;
      if (auto e = read(key + "client_ca", db.client_ca, ca.cert_pem, ca.cert_source)) return *e;
      in.ca = std::move(ca);
    }
    if (!db.client_crl.empty()) {
      if (auto e = read(key + "client_crl", db.client_crl, in.crl_pem, in.crl_source)) return *e;
    }
    out.push_back(std::move(in));
  }
  return out;
}

std::vector<std::string> watchedCertFiles(const config::Config& config) {
  std::vector<std::string> files = tls::certDirFileNames();
  // The TLS shards' CA, certificate and key files (ShardTlsContexts).
  for (std::string& name : shardTlsFileNames(config)) {
    if (std::find(files.begin(), files.end(), name) == files.end()) files.push_back(std::move(name));
  }
  for (const config::DatabaseConfig& db : config.databases) {
    if (db.client_auth == config::ClientAuth::kNone) continue;
    for (const std::string* file : {&db.client_ca, &db.client_crl}) {
      const std::string path = certDirPath(config, *file);
      const std::string prefix = config.cert_dir + "/";
      if (file->empty() || path.rfind(prefix, 0) != 0) continue;
      std::string name = path.substr(prefix.size());
      if (name.find('/') == std::string::npos) files.push_back(std::move(name));
    }
  }
  return files;
}

CertReloader::CertReloader(tls::CertStore& store) : store_(store) {}

Status CertReloader::loadInitial(const config::Config& config) {
  if (auto st = generateIfAbsent(config); !st) return st;
  auto inputs = tls::readCertDir(config.cert_dir);
  if (!inputs) return inputs.error();
  auto client_auth = readClientAuthInputs(config);
  if (!client_auth) return client_auth.error();
  tls::CertTransaction txn = store_.begin();
  txn.stageAll(std::move(*inputs));
  txn.stageClientAuth(std::move(*client_auth));
  txn.setPolicy(config.tls.policy);
  auto changes = txn.commit();
  if (!changes) return changes.error();
  for (const tls::ClientAuthChange& change : txn.clientAuthChanges()) {
    const tls::ClientAuthInput* input = nullptr;
    for (const auto& in : txn.clientAuthInputs()) {
      if (in.database == change.database) input = &in;
    }
    logClientAuthChange(change, input, "start");
  }
  for (const tls::CertChange& change : *changes) {
    // The proxy certificate is told by each database's listening line.
    if (change.name == CertName::kProxy) continue;
    if (change.context) {
      const auto& info = change.context->certInfo();
      spdlog::info("certificate {}: {} serial {} not after {} sha256 {}; {}", tls::toString(change.name),
                   info.subject, info.serial, info.not_after, info.sha256_fingerprint, servedBy(change.name, config));
    } else if (change.configured) {
      spdlog::info("certificate {}: {} CA certificate(s) from {}; {}", tls::toString(change.name),
                   change.ca_certificates, txn.input(change.name)->cert_source, servedBy(change.name, config));
    }
  }
  checkExpiry(static_cast<int64_t>(::time(nullptr)));
  return {};
}

CertReloader::Outcome CertReloader::reload(const config::Config& config, const char* trigger) {
  auto old = store_.current(CertName::kProxy);
  uint64_t old_generation = old ? old->generation() : 0;
  auto fail = [&](const std::string& why) {
    ++failed_;
    last_attempt_failed_ = true;
    last_failure_ = why;
    spdlog::error("certificate reload failed, still serving generation {} (reloads ok {}, failed {}): {}",
                  old_generation, ok_, failed_, why);
    return Outcome::kFailed;
  };

  // Read only, never generate: a file missing at run time (mid-rename, or
  // deleted) is a failed attempt, and the next event or poll retries.
  auto inputs = tls::readCertDir(config.cert_dir);
  if (!inputs) {
    const int err = inputs.error().sys_errno;
    if (err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS) {
      fail(inputs.message() + "; trying again in " + std::to_string(kRetryMs) + " ms");
      return Outcome::kRetryLater;
    }
    return fail(inputs.message());
  }
  auto client_auth = readClientAuthInputs(config);
  if (!client_auth) {
    const int err = client_auth.error().sys_errno;
    if (err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS) {
      fail(client_auth.message() + "; trying again in " + std::to_string(kRetryMs) + " ms");
      return Outcome::kRetryLater;
    }
    return fail(client_auth.message());
  }
  tls::CertTransaction txn = store_.begin();
  txn.stageAll(std::move(*inputs));
  txn.stageClientAuth(std::move(*client_auth));
  txn.setPolicy(config.tls.policy);
  if (txn.unchanged()) {
    if (last_attempt_failed_) {
      // The files went bad and came back as they were: nothing to apply, but
      // the operator watching the failures should hear that they are over.
      spdlog::info("{}: the certificate files in {} are valid again and the same as served: "
                   "generation {} keeps serving {} serial {} (reloads ok {}, failed {})",
                   trigger, config.cert_dir, old_generation, old ? old->certInfo().subject : "",
                   old ? old->certInfo().serial : "", ok_, failed_);
    } else {
      spdlog::debug("{}: certificate files and TLS policy unchanged, nothing to reload", trigger);
    }
    have_failed_input_ = false;
    last_attempt_failed_ = false;
    return Outcome::kUnchanged;
  }
  if (have_failed_input_ && tls::sameInputs(txn.inputs(), failed_inputs_) &&
      txn.policy() == failed_policy_ && sameClientAuthList(txn.clientAuthInputs(), failed_client_auth_)) {
    spdlog::debug("{}: same input as the last failed reload, still waiting for a change", trigger);
    return Outcome::kUnchanged;
  }
  auto changes = txn.commit();
  if (!changes) {
    failed_inputs_ = txn.inputs();
    failed_policy_ = txn.policy();
    failed_client_auth_ = txn.clientAuthInputs();
    have_failed_input_ = true;
    return fail(changes.message());
  }
  have_failed_input_ = false;
  last_attempt_failed_ = false;
  ++ok_;
  for (const tls::CertChange& change : *changes) logChange(change, config, trigger);
  for (const tls::ClientAuthChange& change : txn.clientAuthChanges()) {
    const tls::ClientAuthInput* input = nullptr;
    for (const auto& in : txn.clientAuthInputs()) {
      if (in.database == change.database) input = &in;
    }
    logClientAuthChange(change, input, trigger);
  }
  checkExpiry(static_cast<int64_t>(::time(nullptr)));
  return Outcome::kApplied;
}

void CertReloader::logChange(const tls::CertChange& change, const config::Config& config,
                             const char* trigger) const {
  const uint64_t old_generation = change.before ? change.before->generation() : 0;
  const char* name = tls::toString(change.name);
  if (change.name == CertName::kProxy) {
    const auto& info = change.context->certInfo();
    spdlog::info(
        "certificate reload #{} ({}): generation {} -> {}: {} serial {} not after {} sha256 {}, TLS min {} "
        "(reloads ok {}, failed {}; generation {} keeps {} live connection(s))",
        ok_, trigger, old_generation, change.context->generation(), info.subject, info.serial,
        info.not_after, info.sha256_fingerprint, tls::toString(config.tls.policy.min_version), ok_, failed_,
        old_generation, change.before ? change.before->liveSessions() : 0);
  } else if (change.context) {
    const auto& info = change.context->certInfo();
    spdlog::info("certificate reload #{} ({}): {}: generation {} -> {}: {} serial {} not after {} sha256 {} "
                 "(reloads ok {}, failed {}); {}",
                 ok_, trigger, name, old_generation, change.context->generation(), info.subject, info.serial,
                 info.not_after, info.sha256_fingerprint, ok_, failed_, servedBy(change.name, config));
  } else if (change.configured) {
    spdlog::info("certificate reload #{} ({}): {}: {} CA certificate(s) from {}/{} (reloads ok {}, failed {}); {}",
                 ok_, trigger, name, change.ca_certificates, config.cert_dir, tls::infoOf(change.name).cert_file,
                 ok_, failed_, servedBy(change.name, config));
  } else {
    spdlog::info("certificate reload #{} ({}): {}: not configured any more, its files are gone from {} "
                 "(reloads ok {}, failed {})",
                 ok_, trigger, name, config.cert_dir, ok_, failed_);
  }
}

void CertReloader::logClientAuthChange(const tls::ClientAuthChange& change, const tls::ClientAuthInput* input,
                                       const char* trigger) const {
  const bool crl = input != nullptr && !input->crl_pem.empty();
  spdlog::info("db {}: client certificates ({}): {} trusted CA certificate(s) from {}, CRL {}; context "
               "generation {} -> {}, new handshakes use it (generation {} keeps {} live connection(s))",
               change.database, trigger, change.ca_certificates, change.ca_source,
               crl ? input->crl_source : std::string("none"), change.before ? change.before->generation() : 0,
               change.context->generation(), change.before ? change.before->generation() : 0,
               change.before ? change.before->liveSessions() : 0);
}

void CertReloader::checkExpiry(int64_t now_epoch) {
  constexpr std::array<int, 3> kWarnDays{1, 7, 30};
  for (CertName name : tls::kCertNames) {
    auto ctx = store_.current(name);
    if (!ctx) continue;
    const size_t i = tls::indexOf(name);
    const auto& info = ctx->certInfo();
    int64_t left = info.not_after_epoch - now_epoch;
    for (int days : kWarnDays) {
      if (left > static_cast<int64_t>(days) * 86400) continue;
      // Warn once per threshold per generation: the tightest threshold reached.
      if (expiry_warned_generation_[i] == ctx->generation() && expiry_warned_days_[i] <= days) break;
      expiry_warned_generation_[i] = ctx->generation();
      expiry_warned_days_[i] = days;
      if (name == CertName::kProxy) {
        spdlog::warn("the served certificate {} (serial {}) expires within {} day(s), on {}: replace {} in the "
                     "certificate directory",
                     info.subject, info.serial, days, info.not_after, tls::kProxyCertFile);
      } else {
        spdlog::warn("the {} certificate {} (serial {}) expires within {} day(s), on {}: replace {} in the "
                     "certificate directory",
                     tls::toString(name), info.subject, info.serial, days, info.not_after,
                     tls::infoOf(name).cert_file);
      }
      break;
    }
  }
}

}  // namespace shardgate::server
