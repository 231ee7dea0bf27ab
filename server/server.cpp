#include "server/server.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>

#include "proxy/command_fetch.h"
#include "redis/command_route.h"
#include "server/file_limit.h"
#include "server/metrics_collector.h"
#include "server/metrics_text.h"
#include "server/process_stats.h"
#include "net/listen_socket.h"
#include "common/uv_handle.h"
#include "common/logging.h"
#include "config/config_diff.h"
#include "tls/cert_files.h"

namespace shardgate::server {

namespace {


constexpr uint64_t kFinishPollMs = 20;
// A burst of file events (a pair written file by file, a Kubernetes swap)
// settles this long after the last event before one reload.
constexpr uint32_t kCertSettleMs = 100;
// Fallback for lost watches and filesystems without events.
constexpr uint32_t kCertPollMs = 2000;
constexpr uint64_t kMaintenanceIntervalMs = 60 * 1000;
// Session ticket keys live apart from certificates, on their own clock; two
// previous keys stay valid for resumption.
constexpr uint64_t kTicketKeyRotationMs = 12ull * 3600 * 1000;

bool anyTls(const config::Config& config) {
  for (const auto& db : config.databases) {
    if (db.tls) return true;
  }
  return false;
}

// The certificate store is loaded when something serves TLS: a database, the
// admin API (always HTTPS), or the metrics endpoint over HTTPS.
bool usesCertStore(const config::Config& config) {
  return anyTls(config) || config.admin_listen.has_value() || (config.metrics_listen && config.metrics_tls);
}

// The config file's TLS policy with the overrides persisted in cert_dir.
// Errors name the settings file.
Result<tls::TlsPolicy> policyWithOverrides(const config::Config& config, ClusterSettings& settings) {
  auto loaded = loadClusterSettings(config.cert_dir);
  if (!loaded) return loaded.error();
  settings = *loaded;
  auto policy = effectivePolicy(config.tls.policy, settings);
  if (!policy) return makeError(clusterSettingsPath(config.cert_dir) + ": " + policy.message());
  return policy;
}

// A multiplexed database's command table: from the first shard that answers
// COMMAND, or the built-in table (common Redis 7.0 commands) if none does.
void loadShardFacts(proxy::Database& db) {
  constexpr int kFetchTimeoutMs = 2000;
  std::string why;
  const auto map = db.shard_map->current();
  for (const proxy::ShardEndpoint& shard : map->shards()) {
    auto facts = proxy::fetchShardFacts(shard, db.shard_password, kFetchTimeoutMs);
    if (facts) {
      redis::annotateRoutes(facts->commands);
      spdlog::info("db {}: {} commands known, from shard {} (redis {}, {} databases)", db.name,
                   facts->commands.size(), shard.address, facts->version, facts->databases);
      db.shard_databases = facts->databases;
      db.shard_version = facts->version;
      db.commands = std::make_shared<const redis::CommandTable>(std::move(facts->commands));
      return;
    }
    why += (why.empty() ? "" : "; ") + facts.message();
  }
  redis::CommandTable table = redis::CommandTable::builtin();
  redis::annotateRoutes(table);
  spdlog::warn("db {}: no shard answered COMMAND ({}); routing with the {} built-in commands",
               db.name, why, table.size());
  db.commands = std::make_shared<const redis::CommandTable>(std::move(table));
}

}  // namespace

Status checkServable(const config::Config& file_config) {
  config::Config config = file_config;
  ClusterSettings settings;
  auto policy = policyWithOverrides(config, settings);
  if (!policy) return makeError(config.where("cert_dir") + "cert_dir: " + policy.message());
  config.tls.policy = *policy;
  for (size_t i = 0; i < config.databases.size(); ++i) {
    if (auto db = proxy::makeDatabase(config.databases[i], config.limits, i); !db) {
      return makeError(config.where("databases[" + std::to_string(i) + "]") + db.message());
    }
  }
  if (auto shards = checkShardTls(config); !shards) return shards.error();
  if (!usesCertStore(config)) return {};
  if (config.generate_self_signed && tls::proxyCertFilesAbsent(config.cert_dir)) return {};
  const std::string cert_dir = config.where("cert_dir") + "cert_dir: ";
  auto inputs = tls::readCertDir(config.cert_dir);
  if (!inputs) return makeError(cert_dir + inputs.message());
  auto client_auth = readClientAuthInputs(config);
  if (!client_auth) return client_auth.error();
  auto changes = tls::CertStore::check(std::move(*inputs), config.tls.policy, std::move(*client_auth));
  if (!changes) return makeError(cert_dir + changes.message());
  return {};
}

Server::Server(config::Config config) : config_(std::move(config)), reloader_(cert_store_) {
  uv_loop_init(&loop_);
  loop_.data = this;
}

Server::~Server() {
  for (auto& w : workers_) w->join();
  // Only reached after run() closed every handle, or when create() failed
  // before any handle existed.
  uv_loop_close(&loop_);
}

Result<std::unique_ptr<Server>> Server::create(config::Config config) {
  // Before anything else: a shardgate already serving this configuration
  // stops this one before it generates certificates or binds a port.
  std::optional<PidFile> pid_file;
  if (!config.pid_file.empty()) {
    auto claimed = PidFile::claim(config.pid_file);
    if (!claimed) return makeError(config.where("pid_file") + "pid_file: " + claimed.message());
    pid_file.emplace(std::move(*claimed));
  }
  std::unique_ptr<Server> server(new Server(std::move(config)));
  server->file_policy_ = server->config_.tls.policy;
  if (auto policy = policyWithOverrides(server->config_, server->cluster_settings_); !policy) {
    return makeError(server->config_.where("cert_dir") + "cert_dir: " + policy.message());
  } else {
    server->config_.tls.policy = *policy;
  }
  if (pid_file) server->pid_file_.emplace(std::move(*pid_file));
  for (size_t i = 0; i < server->config_.databases.size(); ++i) {
    auto db = proxy::makeDatabase(server->config_.databases[i], server->config_.limits, i);
    if (!db) {
      return makeError(server->config_.where("databases[" + std::to_string(i) + "]") + db.message());
    }
    server->databases_.push_back(std::make_unique<proxy::Database>(std::move(*db)));
  }
  // Before the first shard connection (cluster discovery, the COMMAND fetch below).
  if (auto st = server->shard_tls_.loadInitial(server->config_, server->databases_); !st) return makeError(st.message());
  server->shard_tls_.checkExpiry(static_cast<int64_t>(::time(nullptr)));
  // A cluster database's map comes from its nodes: the start fails, naming
  // each seed and why, when none answers.
  for (size_t i = 0; i < server->databases_.size(); ++i) {
    proxy::Database& db = *server->databases_[i];
    if (!db.cluster) continue;
    auto monitor = ClusterMonitor::create(db);
    if (!monitor) {
      const std::string key = "databases[" + std::to_string(i) + "].cluster.seeds";
      return makeError(server->config_.where(key) + key + ": " + monitor.message());
    }
    server->cluster_monitors_.push_back(std::move(*monitor));
  }
  for (auto& db : server->databases_) {
    if (db->multiplex) loadShardFacts(*db);
  }
  if (usesCertStore(server->config_)) {
    if (auto st = server->loadTls(); !st) {
      return makeError(server->config_.where("cert_dir") + "cert_dir: " + st.message());
    }
  }
  // Databases with client_auth serve contexts of their own (the first
  // commit above made them).
  for (auto& db : server->databases_) {
    if (db->client_auth == config::ClientAuth::kNone) continue;
    db->tls_store = server->cert_store_.clientAuthPublished(db->name);
    // Never serve such a database with the shared context, which verifies
    // no client: that would let in what client_auth is meant to keep out.
    if (db->tls_store == nullptr || !db->tls_store->current()) {
      return makeError("db " + db->name + ": client certificates: no TLS context was built for it");
    }
  }
  if (auto st = server->bindAndStart(); !st) return makeError(st.message());
  if (auto st = server->startAdminApi(); !st) {
    for (auto& w : server->workers_) w->requestDrain();
    return makeError(st.message());
  }
  if (auto st = server->startMetrics(); !st) {
    for (auto& w : server->workers_) w->requestDrain();
    if (server->admin_api_) server->admin_api_->stop();
    return makeError(st.message());
  }
  // Written once every listener is up, before the "listening" lines that
  // tests and scripts wait for.
  if (server->pid_file_) {
    if (auto st = server->pid_file_->write(); !st) {
      for (auto& w : server->workers_) w->requestDrain();
      if (server->admin_api_) server->admin_api_->stop();
      if (server->metrics_) server->metrics_->stop();
      return makeError(server->config_.where("pid_file") + "pid_file: " + st.message());
    }
  }
  server->logListeners();
  return server;
}

Status Server::loadTls() { return reloader_.loadInitial(config_); }

Status Server::bindAndStart() {
  unsigned n = config_.effectiveWorkers();
  // Bind everything before starting any thread, so a taken port fails the
  // start cleanly with its name.
  std::vector<std::vector<proxy::Worker::Binding>> bindings(n);
  auto close_all = [&] {
    for (auto& per_worker : bindings) {
      for (auto& b : per_worker) ::close(b.fd);
    }
  };
  for (size_t d = 0; d < databases_.size(); ++d) {
    const std::string key = "databases[" + std::to_string(d) + "].listen";
    net::SocketAddress& listen = config_.databases[d].listen;
    for (unsigned w = 0; w < n; ++w) {
      auto fd = net::bindListenSocket(listen);
      if (fd && listen.port == 0) {
        // The kernel picked a port for the first worker: every other worker
        // shares it, and the log names it.
        auto port = net::boundPort(*fd);
        if (!port) {
          ::close(*fd);
          fd = port.error();
        } else {
          listen.port = *port;
          databases_[d]->listen = listen.toString();
        }
      }
      if (!fd) {
        close_all();
        return makeError(config_.where(key) + key + ": " + fd.message());
      }
      bindings[w].push_back({databases_[d].get(), *fd});
    }
  }
  open_files_at_start_ = countOpenFiles();
  proxy::WorkerSettings settings{config_.tls.handshake_timeout_ms, config_.drain_timeout_ms, databases_.size()};
  for (unsigned w = 0; w < n; ++w) {
    workers_.push_back(
        std::make_unique<proxy::Worker>(w, cert_store_.published(tls::CertName::kProxy), settings));
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

bool Server::needsCertStore() const { return usesCertStore(config_); }

Status Server::startAdminApi() {
  if (!config_.admin_listen) return {};
  auto api = AdminApi::create(&loop_, *this);
  if (!api) return makeError(api.message());
  admin_api_ = std::move(*api);
  auto ctx = cert_store_.current(tls::CertName::kApi);
  const bool client_certs = cert_store_.configured(tls::CertName::kMtlsTrustedCa);
  spdlog::info("admin API listening on {} (HTTPS, min {}, certificate {} not after {} sha256 {}; {} user(s){})",
               admin_api_->address(), tls::toString(config_.tls.policy.control_min_version),
               ctx ? ctx->certInfo().subject : "?", ctx ? ctx->certInfo().not_after : "?",
               ctx ? ctx->certInfo().sha256_fingerprint : "?", config_.admin.users.size(),
               client_certs ? ", client certificates from mtls_trusted_ca.pem accepted" : "");
  if (config_.admin.users.empty() && !client_certs) {
    spdlog::warn("admin API: no admin.users and no mtls_trusted_ca.pem in {}: every request will get 401 "
                 "(add a user with a hash from shardgate --hash-password)", config_.cert_dir);
  }
  return {};
}

Status Server::startMetrics() {
  if (!config_.metrics_listen) return {};
  tls::TlsContextStore* tls = config_.metrics_tls ? &cert_store_.published(tls::CertName::kMetricsExporter) : nullptr;
  auto endpoint = MetricsEndpoint::create(&loop_, *config_.metrics_listen, tls, [this] { return renderMetrics(); });
  if (!endpoint) return makeError(config_.where("metrics.listen") + "metrics.listen: " + endpoint.message());
  metrics_ = std::move(*endpoint);
  if (tls) {
    auto ctx = cert_store_.current(tls::CertName::kMetricsExporter);
    spdlog::info("metrics listening on {} (HTTPS, min {}, certificate {} not after {} sha256 {})", metrics_->address(),
                 tls::toString(config_.tls.policy.control_min_version), ctx ? ctx->certInfo().subject : "?",
                 ctx ? ctx->certInfo().not_after : "?", ctx ? ctx->certInfo().sha256_fingerprint : "?");
  } else {
    spdlog::info("metrics listening on {} (plain HTTP: metrics.tls is false)", metrics_->address());
  }
  return {};
}

std::string Server::renderMetrics() {
  MetricsInput in;
  for (const auto& w : workers_) in.workers.push_back(&w->stats());
  for (const auto& db : databases_) in.databases.push_back(db.get());
  if (needsCertStore()) {
    for (tls::CertName name : tls::kCertNames) {
      auto ctx = cert_store_.current(name);
      if (!ctx) continue;  // not configured, or a CA bundle (no server context)
      CertMetrics c;
      c.name = tls::toString(name);
      c.generation = ctx->generation();
      c.not_after_epoch = ctx->certInfo().not_after_epoch;
      c.live_generations = cert_store_.liveGenerations(name);
      in.certs.push_back(std::move(c));
    }
  }
  in.cert_reloads_ok = reloader_.reloadsOk();
  in.cert_reloads_failed = reloader_.reloadsFailed();
  in.process = readProcessStats();
  in.now_epoch = static_cast<int64_t>(::time(nullptr));
  return server::renderMetrics(collectMetrics(in));
}

Status Server::updateClusterSettings(const ClusterSettings& next) {
  auto policy = effectivePolicy(file_policy_, next);
  if (!policy) return makeError(policy.message());
  // Built and preflighted before anything is written: a policy no context
  // can serve under is refused, and nothing changes.
  tls::CertTransaction txn = cert_store_.begin();
  txn.setPolicy(*policy);
  if (needsCertStore()) {
    if (auto prepared = txn.prepare(); !prepared) return makeError(prepared.message());
  }
  if (Status s = saveClusterSettings(config_.cert_dir, next); !s) return s;
  if (needsCertStore()) {
    if (auto committed = txn.commit(); !committed) return makeError(committed.message());
  }
  cluster_settings_ = next;
  config_.tls.policy = *policy;
  spdlog::info("TLS settings changed through the admin API: data min {}, control min {}, ciphers \"{}\", "
               "TLS 1.3 suites \"{}\"; new handshakes only (saved in {})",
               tls::toString(policy->min_version), tls::toString(policy->control_min_version), policy->ciphers,
               policy->ciphersuites, clusterSettingsPath(config_.cert_dir));
  return {};
}

std::string Server::lastCertFailure() const {
  return reloader_.lastAttemptFailed() ? reloader_.lastFailure() : std::string();
}

std::vector<const proxy::Stats*> Server::workerStats() const {
  std::vector<const proxy::Stats*> stats;
  for (const auto& w : workers_) stats.push_back(&w->stats());
  return stats;
}

void Server::logListeners() const {
  auto ctx = cert_store_.current(tls::CertName::kProxy);
  for (const auto& db : databases_) {
    std::string behind;
    const auto map = db->shard_map->current();
    const auto& shards = map->shards();
    if (db->cluster) {
      behind = "Redis Cluster of " + std::to_string(shards.size()) + " master(s) (";
      for (size_t i = 0; i < shards.size(); ++i) behind += (i ? ", " : "") + shards[i].address;
      behind += db->password ? "), AUTH required" : ")";
      behind += ", refreshed every " + std::to_string(db->cluster_refresh_ms) + " ms";
      if (db->replica_reads) behind += ", reads from replicas (read_from replica_preferred)";
      if (db->cluster_shown_masters > 1) {
        behind += ", shown to cluster clients as " + std::to_string(db->cluster_shown_masters) + " masters";
      }
    } else if (db->multiplex && shards.size() == 1) {
      behind = "shard " + shards[0].address + " multiplexed";
      if (db->password) behind += ", AUTH required";
    } else if (db->multiplex) {
      behind = std::to_string(shards.size()) + " shard(s) by hash slot (";
      for (size_t i = 0; i < shards.size(); ++i) behind += (i ? ", " : "") + shards[i].address;
      behind += db->password ? "), AUTH required" : ")";
    } else {
      behind = "shard " + db->shard;
    }
    if (db->tls && ctx) {
      const auto& info = ctx->certInfo();
      spdlog::info(
          "db {} listening on {} (TLS, min {}, certificate {} not after {} sha256 {}) -> {}, {} worker(s)",
          db->name, db->listen, tls::toString(ctx->policy().min_version), info.subject, info.not_after,
          info.sha256_fingerprint, behind, workers_.size());
    } else {
      spdlog::info("db {} listening on {} (plaintext) -> {}, {} worker(s)", db->name, db->listen,
                   behind, workers_.size());
    }
  }
}

int Server::run() {
  std::signal(SIGPIPE, SIG_IGN);
  auto on_stop = [](uv_signal_t* h, int signum) { static_cast<Server*>(h->data)->beginShutdown(signum); };
  for (auto* h : {&sigterm_, &sigint_, &sighup_, &sigusr1_}) {
    uv_signal_init(&loop_, h);
    h->data = this;
  }
  uv_signal_start(&sigterm_, on_stop, SIGTERM);
  uv_signal_start(&sigint_, on_stop, SIGINT);
  uv_signal_start(&sighup_, [](uv_signal_t* h, int) { static_cast<Server*>(h->data)->reload(); }, SIGHUP);
  uv_signal_start(&sigusr1_, [](uv_signal_t* h, int) { static_cast<Server*>(h->data)->reopenLog(); },
                  SIGUSR1);
  uv_timer_init(&loop_, &finish_timer_);
  finish_timer_.data = this;
  startCertMaintenance();
  for (auto& monitor : cluster_monitors_) monitor->start(&loop_);
  // Every listener is bound and every worker runs (create() did both), and
  // from here a SIGHUP reloads instead of killing: the service manager may
  // now send clients and `systemctl reload`.
  notify_.ready(serviceStatus());
  uv_run(&loop_, UV_RUN_DEFAULT);
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
  notify_.stopping("draining connections for at most " + std::to_string(config_.drain_timeout_ms) +
                   " ms");
  for (auto& w : workers_) w->requestDrain();
  if (admin_api_) admin_api_->stop();
  if (metrics_) metrics_->stop();
  uv_timer_start(&finish_timer_, [](uv_timer_t* t) {
    auto* self = static_cast<Server*>(t->data);
    for (auto& w : self->workers_) {
      if (!w->finished()) return;
    }
    for (auto* h : {&self->sigterm_, &self->sigint_, &self->sighup_, &self->sigusr1_}) {
      uv_close(asHandle(h), nullptr);
    }
    uv_close(asHandle(&self->finish_timer_), nullptr);
    self->stopCertMaintenance();
    // After the workers: none of them can ask for a refresh any more.
    for (auto& monitor : self->cluster_monitors_) monitor->stop();
  }, kFinishPollMs, kFinishPollMs);
}

void Server::startCertMaintenance() {
  if (!needsCertStore() && !shard_tls_.any()) return;
  auto watcher = tls::CertWatcher::create(
      &loop_, config_.cert_dir, watchedCertFiles(config_), kCertSettleMs, kCertPollMs, [this] {
        if (shutting_down_) return;
        if (needsCertStore()) reloadCerts("file change");
        shard_tls_.reload("file change");
      });
  if (watcher) {
    cert_watcher_ = std::move(*watcher);
    if (!cert_watcher_->eventError().empty()) {
      spdlog::warn("{}: no file events ({}); polling every {} ms instead", config_.cert_dir,
                   cert_watcher_->eventError(), kCertPollMs);
    }
  } else {
    spdlog::error("not watching {} for certificate changes: {}; SIGHUP still reloads", config_.cert_dir,
                  watcher.message());
  }
  uv_timer_init(&loop_, &cert_retry_timer_);
  cert_retry_timer_.data = this;
  uv_timer_init(&loop_, &maintenance_timer_);
  maintenance_timer_.data = this;
  uv_timer_start(&maintenance_timer_, [](uv_timer_t* t) {
    auto* self = static_cast<Server*>(t->data);
    self->reloader_.checkExpiry(static_cast<int64_t>(::time(nullptr)));
    self->shard_tls_.checkExpiry(static_cast<int64_t>(::time(nullptr)));
    uint64_t now = uv_now(&self->loop_);
    if (now - self->ticket_keys_rotated_ms_ >= kTicketKeyRotationMs) {
      self->cert_store_.rotateTicketKeys();
      self->ticket_keys_rotated_ms_ = now;
      spdlog::debug("session ticket keys rotated");
    }
  }, kMaintenanceIntervalMs, kMaintenanceIntervalMs);
  ticket_keys_rotated_ms_ = uv_now(&loop_);
  maintenance_started_ = true;
}

void Server::stopCertMaintenance() {
  if (cert_watcher_) cert_watcher_->close();
  if (maintenance_started_) {
    uv_close(asHandle(&maintenance_timer_), nullptr);
    uv_close(asHandle(&cert_retry_timer_), nullptr);
  }
  maintenance_started_ = false;
}

void Server::reload() {
  if (shutting_down_) return;
  notify_.reloading("reloading " + config_.source);
  spdlog::info("SIGHUP: re-reading {} and the certificates in {}", config_.source, config_.cert_dir);
  auto fresh = config::loadConfig(config_.source);
  if (!fresh) {
    spdlog::error("reload failed, still serving the previous configuration: {}", fresh.message());
    notify_.ready("reload failed, serving the previous configuration: " + fresh.message());
    return;
  }
  // Listeners and shards need a restart to change; TLS policy, certificates
  // and the log level apply to what comes next. What cannot apply is named,
  // so an edit is never ignored silently.
  for (const config::ConfigChange& change : config::diffConfigs(config_, *fresh)) {
    if (change.needs_restart) spdlog::warn("{} changed: needs a restart", change.key);
  }
  // The overrides persisted through the admin API are read again too: an
  // operator may have edited or removed the file.
  ClusterSettings settings;
  config::Config with_overrides = *fresh;
  auto policy = policyWithOverrides(with_overrides, settings);
  if (!policy) {
    spdlog::error("reload: {}; keeping the TLS settings in use", policy.message());
  } else {
    file_policy_ = fresh->tls.policy;
    cluster_settings_ = settings;
    config_.tls.policy = *policy;
  }
  config_.log_level = fresh->log_level;
  if (auto st = setLogLevel(config_.log_level); !st) spdlog::error("{}", st.message());
  if (admin_api_ && !(config_.admin.users == fresh->admin.users)) {
    config_.admin.users = fresh->admin.users;
    admin_api_->setUsers(config_.admin.users);
    spdlog::info("admin.users reloaded: {} user(s)", config_.admin.users.size());
  }
  if (needsCertStore()) reloadCerts("SIGHUP");
  shard_tls_.reload("SIGHUP");
  notify_.ready(serviceStatus());
}

void Server::reopenLog() {
  if (logFilePath().empty()) {
    spdlog::info("SIGUSR1: logging to stderr, no log file to reopen");
    return;
  }
  if (auto st = reopenLogFile(); !st) {
    spdlog::error("SIGUSR1: {}; still logging to the file open before", st.message());
    return;
  }
  spdlog::info("SIGUSR1: reopened the log file {}", logFilePath());
}

std::string Server::serviceStatus() const {
  std::string status = "serving";
  for (size_t i = 0; i < databases_.size(); ++i) {
    status += (i ? ", " : " ") + databases_[i]->name + " on " + databases_[i]->listen;
  }
  return status + " with " + std::to_string(workers_.size()) + " worker(s)";
}

void Server::reloadCerts(const char* trigger) {
  if (reloader_.reload(config_, trigger) != CertReloader::Outcome::kRetryLater) {
    uv_timer_stop(&cert_retry_timer_);
    return;
  }
  uv_timer_start(&cert_retry_timer_, [](uv_timer_t* t) {
    auto* self = static_cast<Server*>(t->data);
    if (!self->shutting_down_) self->reloadCerts("retry");
  }, CertReloader::kRetryMs, 0);
}

void Server::logTotals() const {
  uint64_t total = 0, ok = 0, resumed = 0, backend_fail = 0, audit = 0;
  std::array<uint64_t, static_cast<size_t>(proxy::HandshakeFailure::kCount)> failed{};
  for (const auto& w : workers_) {
    const proxy::Stats& s = w->stats();
    total += s.connectionsAccepted();
    ok += s.handshakes_ok.get();
    resumed += s.handshakes_resumed.get();
    backend_fail += s.backend_connect_failures.get();
    audit += s.audit_below_min.get();
    for (size_t i = 0; i < failed.size(); ++i) failed[i] += s.handshake_failures[i].get();
  }
  // Handshakes with TLS shards, every database and shard, full and resumed.
  uint64_t shard_tls = 0, shard_tls_resumed = 0;
  for (const auto& w : workers_) {
    for (const auto& db : databases_) {
      const size_t shards = std::min(db->shard_map->current()->shardCount(), proxy::kMaxShardStats);
      for (size_t i = 0; i < shards; ++i) {
        const proxy::ShardStats& s = w->stats().db(db->index).shard(i);
        shard_tls += s.tls_handshakes[0].get() + s.tls_handshakes[1].get();
        shard_tls_resumed += s.tls_handshakes[1].get();
      }
    }
  }
  std::string failures;
  for (size_t i = 0; i < failed.size(); ++i) {
    if (failed[i] == 0) continue;
    if (!failures.empty()) failures += ", ";
    failures += std::string(toString(static_cast<proxy::HandshakeFailure>(i))) + " " + std::to_string(failed[i]);
  }
  spdlog::info("totals: {} connections, {} TLS handshakes ({} resumed), failed handshakes: {}, "
               "shard connect failures: {}, handshakes below tls.audit_min_version: {}, "
               "TLS handshakes with shards: {} ({} resumed)",
               total, ok, resumed, failures.empty() ? "none" : failures, backend_fail, audit, shard_tls,
               shard_tls_resumed);
}

}  // namespace shardgate::server
