#include "server/cert_reloader.h"

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "tls/preflight.h"

namespace shardgate::server {

namespace {

std::string hostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

bool sameBundle(const tls::CertBundle& a, const tls::CertBundle& b) {
  return a.cert_pem == b.cert_pem && a.key_pem == b.key_pem && a.chain_pem == b.chain_pem;
}

// First start only: a directory with neither file of the pair gets a
// self-signed one when the config allows it. Never called on a reload: at run
// time a missing file is a failed reload and the last good pair keeps serving
// (a deleted cert_dir must not turn a CA-signed certificate into a
// self-signed one behind the operator's back).
Status generateIfAbsent(const config::Config& config) {
  if (!config.generate_self_signed || !tls::proxyCertFilesAbsent(config.cert_dir)) return {};
  std::vector<std::string> names{hostName()};
  if (names[0] != "localhost") names.push_back("localhost");
  auto info = tls::generateSelfSigned(config.cert_dir, names);
  if (!info) return makeError("cannot generate a self-signed certificate: " + info.message());
  spdlog::info("generated self-signed certificate {}/{} ({}; SANs {}; not after {}; sha256 {})",
               config.cert_dir, tls::kProxyCertFile, info->subject, fmt::join(info->sans, ", "),
               info->not_after, info->sha256_fingerprint);
  return {};
}

}  // namespace

CertReloader::CertReloader(tls::TlsContextStore& store)
    : store_(store), ticket_keys_(tls::TicketKeys::create()) {}

Result<tls::TlsContextPtr> CertReloader::build(const config::Config& config, const tls::CertBundle& bundle) {
  auto ctx = tls::TlsContext::createServer(bundle, config.tls.policy, store_.nextGeneration(),
                                           ticket_keys_);
  if (!ctx) return ctx.error();
  if (auto st = tls::preflight(*ctx); !st) return makeError(st.message());
  return std::move(*ctx);
}

bool CertReloader::sameInputs(const tls::CertBundle& bundle, const tls::TlsPolicy& policy) const {
  return sameBundle(bundle, applied_bundle_) && policy == applied_policy_;
}

Status CertReloader::loadInitial(const config::Config& config) {
  if (auto st = generateIfAbsent(config); !st) return st;
  auto bundle = tls::readProxyCertFiles(config.cert_dir);
  if (!bundle) return bundle.error();
  auto ctx = build(config, *bundle);
  if (!ctx) return ctx.error();
  store_.publish(*ctx);
  applied_bundle_ = std::move(*bundle);
  applied_policy_ = config.tls.policy;
  checkExpiry(static_cast<int64_t>(::time(nullptr)));
  return {};
}

CertReloader::Outcome CertReloader::reload(const config::Config& config, const char* trigger) {
  auto old = store_.current();
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
  auto bundle = tls::readProxyCertFiles(config.cert_dir);
  if (!bundle) {
    const int err = bundle.error().sys_errno;
    if (err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS) {
      fail(bundle.message() + "; trying again in " + std::to_string(kRetryMs) + " ms");
      return Outcome::kRetryLater;
    }
    return fail(bundle.message());
  }
  if (sameInputs(*bundle, config.tls.policy)) {
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
  if (have_failed_input_ && sameBundle(*bundle, failed_bundle_) && config.tls.policy == failed_policy_) {
    spdlog::debug("{}: same input as the last failed reload, still waiting for a change", trigger);
    return Outcome::kUnchanged;
  }
  auto ctx = build(config, *bundle);
  if (!ctx) {
    failed_bundle_ = std::move(*bundle);
    failed_policy_ = config.tls.policy;
    have_failed_input_ = true;
    return fail(ctx.message());
  }
  have_failed_input_ = false;
  last_attempt_failed_ = false;
  store_.publish(*ctx);
  ++ok_;
  const auto& info = (*ctx)->certInfo();
  spdlog::info(
      "certificate reload #{} ({}): generation {} -> {}: {} serial {} not after {} sha256 {}, TLS min {} "
      "(reloads ok {}, failed {}; generation {} keeps {} live connection(s))",
      ok_, trigger, old_generation, (*ctx)->generation(), info.subject, info.serial, info.not_after,
      info.sha256_fingerprint, tls::toString(config.tls.policy.min_version), ok_, failed_, old_generation,
      old ? old->liveSessions() : 0);
  applied_bundle_ = std::move(*bundle);
  applied_policy_ = config.tls.policy;
  checkExpiry(static_cast<int64_t>(::time(nullptr)));
  return Outcome::kApplied;
}

void CertReloader::checkExpiry(int64_t now_epoch) {
  auto ctx = store_.current();
  if (!ctx) return;
  const auto& info = ctx->certInfo();
  int64_t left = info.not_after_epoch - now_epoch;
  constexpr std::array<int, 3> kWarnDays{1, 7, 30};
  for (int days : kWarnDays) {
    if (left > static_cast<int64_t>(days) * 86400) continue;
    // Warn once per threshold per generation: the tightest threshold reached.
    if (expiry_warned_generation_ == ctx->generation() && expiry_warned_days_ <= days) return;
    expiry_warned_generation_ = ctx->generation();
    expiry_warned_days_ = days;
    spdlog::warn("the served certificate {} (serial {}) expires within {} day(s), on {}: replace {} in the "
                 "certificate directory",
                 info.subject, info.serial, days, info.not_after, tls::kProxyCertFile);
    return;
  }
}

}  // namespace shardgate::server
