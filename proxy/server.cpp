#include "proxy/server.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>

#include "proxy/listener.h"
#include "proxy/logging.h"
#include "tls/cert_files.h"

namespace shardgate::proxy {

namespace {

template <typename T>
uv_handle_t* asHandle(T* h) { return reinterpret_cast<uv_handle_t*>(h); }

constexpr uint64_t kFinishPollMs = 20;

std::string hostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

bool anyTls(const Config& config) {
  for (const auto& db : config.databases) {
    if (db.tls) return true;
  }
  return false;
}

// Reads the proxy pair from cert_dir, first generating a self-signed pair
// when the directory has none and the config allows it.
Result<tls::CertBundle> readOrGenerateProxyCert(const Config& config) {
  if (config.generate_self_signed && tls::proxyCertFilesAbsent(config.cert_dir)) {
    std::vector<std::string> names{hostName()};
    if (names[0] != "localhost") names.push_back("localhost");
    auto info = tls::generateSelfSigned(config.cert_dir, names);
    if (!info) return makeError("cannot generate a self-signed certificate: " + info.message());
    spdlog::info("generated self-signed certificate {}/{} ({}; SANs {}; not after {}; sha256 {})",
                 config.cert_dir, tls::kProxyCertFile, info->subject, fmt::join(info->sans, ", "),
                 info->not_after, info->sha256_fingerprint);
  }
  return tls::readProxyCertFiles(config.cert_dir);
}

// Keys the configuration accepts (DESIGN.md) whose feature is not built yet.
// Refusing them is better than starting without what the operator asked for.
Status checkBuilt(const Config& config) {
  auto later = [](const std::string& key, const std::string& what) {
    return makeError(key + ": " + what + " is not built yet in this version of shardgate; remove the key");
  };
  for (size_t i = 0; i < config.databases.size(); ++i) {
    if (config.databases[i].client_auth != ClientAuth::kNone) {
      return later("databases[" + std::to_string(i) + "].client_auth", "client certificate authentication");
    }
  }
  if (config.admin_listen) return later("admin.listen", "the admin API");
  if (config.metrics_listen) return later("metrics.listen", "the metrics endpoint");
  if (config.tls.audit_min_version) return later("tls.audit_min_version", "the TLS policy audit");
  return {};
}

}  // namespace

Status checkServable(const Config& config) {
  if (auto st = checkBuilt(config); !st) return st;
  for (size_t i = 0; i < config.databases.size(); ++i) {
    if (auto db = makeDatabase(config.databases[i], i); !db) return db.error();
  }
  if (!anyTls(config)) return {};
  if (config.generate_self_signed && tls::proxyCertFilesAbsent(config.cert_dir)) return {};
  auto bundle = tls::readProxyCertFiles(config.cert_dir);
  if (!bundle) return makeError("cert_dir: " + bundle.message());
  if (auto info = tls::validateCertBundle(*bundle); !info) return makeError("cert_dir: " + info.message());
  return {};
}

Server::Server(Config config) : config_(std::move(config)) {}

Server::~Server() {
  for (auto& w : workers_) w->join();
}

Result<std::unique_ptr<Server>> Server::create(Config config) {
  if (auto st = checkBuilt(config); !st) return makeError(st.message());
  std::unique_ptr<Server> server(new Server(std::move(config)));
  for (size_t i = 0; i < server->config_.databases.size(); ++i) {
    auto db = makeDatabase(server->config_.databases[i], i);
    if (!db) return db.error();
    server->databases_.push_back(std::make_unique<Database>(std::move(*db)));
  }
  if (anyTls(server->config_)) {
    if (auto st = server->loadTls(); !st) return makeError(st.message());
  }
  if (auto st = server->bindAndStart(); !st) return makeError(st.message());
  server->logListeners();
  return server;
}

Status Server::loadTls() {
  auto bundle = readOrGenerateProxyCert(config_);
  if (!bundle) return bundle.error();
  auto ctx = tls::TlsContext::createServer(*bundle, config_.tls.policy, tls_store_.nextGeneration());
  if (!ctx) return ctx.error();
  tls_store_.publish(std::move(*ctx));
  return {};
}

Status Server::bindAndStart() {
  unsigned n = config_.effectiveWorkers();
  // Bind everything before starting any thread, so a taken port fails the
  // start cleanly with its name.
  std::vector<std::vector<Worker::Binding>> bindings(n);
  auto close_all = [&] {
    for (auto& per_worker : bindings) {
      for (auto& b : per_worker) ::close(b.fd);
    }
  };
  for (size_t d = 0; d < databases_.size(); ++d) {
    for (unsigned w = 0; w < n; ++w) {
      auto fd = bindListenSocket(config_.databases[d].listen);
      if (!fd) {
        close_all();
        return makeError("databases[" + std::to_string(d) + "].listen: " + fd.message());
      }
      bindings[w].push_back({databases_[d].get(), *fd});
    }
  }
  WorkerSettings settings{config_.tls.handshake_timeout_ms, config_.drain_timeout_ms};
  for (unsigned w = 0; w < n; ++w) {
    workers_.push_back(std::make_unique<Worker>(w, tls_store_, settings));
  }
  for (unsigned w = 0; w < n; ++w) {
    if (auto st = workers_[w]->start(std::move(bindings[w])); !st) {
      for (unsigned rest = w + 1; rest < n; ++rest) {
        for (auto& b : bindings[rest]) ::close(b.fd);
      }
      for (unsigned started = 0; started < w; ++started) workers_[started]->requestDrain();
      return st;
    }
  }
  return {};
}

void Server::logListeners() const {
  auto ctx = tls_store_.current();
  for (const auto& db : databases_) {
    if (db->tls && ctx) {
      const auto& info = ctx->certInfo();
      spdlog::info(
          "db {} listening on {} (TLS, min {}, certificate {} not after {} sha256 {}) -> shard {}, {} worker(s)",
          db->name, db->listen, tls::toString(ctx->policy().min_version), info.subject, info.not_after,
          info.sha256_fingerprint, db->shard, workers_.size());
    } else {
      spdlog::info("db {} listening on {} (plaintext) -> shard {}, {} worker(s)", db->name, db->listen,
                   db->shard, workers_.size());
    }
  }
}

int Server::run() {
  uv_loop_init(&loop_);
  loop_.data = this;
  std::signal(SIGPIPE, SIG_IGN);
  auto on_stop = [](uv_signal_t* h, int signum) { static_cast<Server*>(h->data)->beginShutdown(signum); };
  for (auto* h : {&sigterm_, &sigint_, &sighup_}) {
    uv_signal_init(&loop_, h);
    h->data = this;
  }
  uv_signal_start(&sigterm_, on_stop, SIGTERM);
  uv_signal_start(&sigint_, on_stop, SIGINT);
  uv_signal_start(&sighup_, [](uv_signal_t* h, int) { static_cast<Server*>(h->data)->reload(); }, SIGHUP);
  uv_timer_init(&loop_, &finish_timer_);
  finish_timer_.data = this;
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  for (auto& w : workers_) w->join();
  logTotals();
  spdlog::info("stopped");
  return 0;
}

void Server::beginShutdown(int signum) {
  if (shutting_down_) {
    spdlog::info("{} again: still draining (at most {} ms in all)", strsignal(signum), config_.drain_timeout_ms);
    return;
  }
  shutting_down_ = true;
  spdlog::info("{}: no longer accepting; draining connections for at most {} ms", strsignal(signum),
               config_.drain_timeout_ms);
  for (auto& w : workers_) w->requestDrain();
  uv_timer_start(&finish_timer_, [](uv_timer_t* t) {
    auto* self = static_cast<Server*>(t->data);
    for (auto& w : self->workers_) {
      if (!w->finished()) return;
    }
    for (auto* h : {&self->sigterm_, &self->sigint_, &self->sighup_}) uv_close(asHandle(h), nullptr);
    uv_close(asHandle(&self->finish_timer_), nullptr);
  }, kFinishPollMs, kFinishPollMs);
}

void Server::reload() {
  if (shutting_down_) return;
  spdlog::info("SIGHUP: re-reading {} and the certificates in {}", config_.source, config_.cert_dir);
  auto fresh = loadConfig(config_.source);
  if (!fresh) {
    spdlog::error("reload failed, still serving the previous configuration: {}", fresh.message());
    return;
  }
  // Listeners and shards need a restart to change; TLS policy, certificates
  // and the log level apply to what comes next.
  config_.tls = fresh->tls;
  config_.log_level = fresh->log_level;
  if (auto st = setLogLevel(config_.log_level); !st) spdlog::error("{}", st.message());
  if (!anyTls(config_)) return;
  auto old = tls_store_.current();
  auto bundle = readOrGenerateProxyCert(config_);
  if (!bundle) {
    spdlog::error("reload failed, still serving generation {}: {}", old ? old->generation() : 0,
                  bundle.message());
    return;
  }
  auto ctx = tls::TlsContext::createServer(*bundle, config_.tls.policy, tls_store_.nextGeneration());
  if (!ctx) {
    spdlog::error("reload failed, still serving generation {}: {}", old ? old->generation() : 0,
                  ctx.message());
    return;
  }
  const auto& info = (*ctx)->certInfo();
  spdlog::info("TLS context generation {} -> {}: min {}, certificate {} not after {} sha256 {}",
               old ? old->generation() : 0, (*ctx)->generation(),
               tls::toString(config_.tls.policy.min_version), info.subject, info.not_after,
               info.sha256_fingerprint);
  tls_store_.publish(std::move(*ctx));
}

void Server::logTotals() const {
  uint64_t total = 0, ok = 0, resumed = 0, backend_fail = 0;
  std::array<uint64_t, static_cast<size_t>(HandshakeFailure::kCount)> failed{};
  for (const auto& w : workers_) {
    const Stats& s = w->stats();
    total += s.connections_total.get();
    ok += s.handshakes_ok.get();
    resumed += s.handshakes_resumed.get();
    backend_fail += s.backend_connect_failures.get();
    for (size_t i = 0; i < failed.size(); ++i) failed[i] += s.handshake_failures[i].get();
  }
  std::string failures;
  for (size_t i = 0; i < failed.size(); ++i) {
    if (failed[i] == 0) continue;
    if (!failures.empty()) failures += ", ";
    failures += std::string(toString(static_cast<HandshakeFailure>(i))) + " " + std::to_string(failed[i]);
  }
  spdlog::info("totals: {} connections, {} TLS handshakes ({} resumed), failed handshakes: {}, "
               "shard connect failures: {}",
               total, ok, resumed, failures.empty() ? "none" : failures, backend_fail);
}

}  // namespace shardgate::proxy
