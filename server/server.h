// Server: the process. The control thread (this object's loop) owns the
// configuration, the certificate store and the signals; the workers own the
// data path. Certificates and TLS policy change here, never on a worker:
// build a new context, then publish it.
#pragma once

#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/admin_api.h"
#include "server/cert_reloader.h"
#include "server/cluster_monitor.h"
#include "server/cluster_settings.h"
#include "server/metrics_endpoint.h"
#include "server/pid_file.h"
#include "server/service_notify.h"
#include "server/shard_tls_contexts.h"
#include "config/config.h"
#include "proxy/database.h"
#include "proxy/worker.h"
#include "common/result.h"
#include "tls/cert_store.h"
#include "tls/cert_watcher.h"

namespace shardgate::server {

// What --check-config checks beyond the YAML: every database can be served,
// and the certificate directory holds a valid proxy pair (or may generate
// one) and valid files for every other certificate it holds.
// Touches nothing.
Status checkServable(const config::Config& config);

class Server final : private AdminHost {
 public:
  // Loads (or generates) certificates, binds every listener and starts the
  // workers. Any failure is an error naming the file, key or address.
  static Result<std::unique_ptr<Server>> create(config::Config config);
  ~Server() override;

  // Runs the control loop until SIGTERM/SIGINT and the drain end; tells the
  // service manager READY=1 once the signals are handled. Returns the exit code.
  int run();
  // Descriptors open once every listener was bound, before any worker ran:
  // counted then, on one thread, so no client connection is among them.
  uint64_t openFilesAtStart() const { return open_files_at_start_; }

 private:
  explicit Server(config::Config config);
  Status loadTls();
  Status bindAndStart();
  void logListeners() const;
  void reload();
  void reopenLog();
  // The STATUS= line for the service manager: what is being served.
  std::string serviceStatus() const;
  // One certificate reload, and a retry after CertReloader::kRetryMs when it
  // could not read the files for want of descriptors or memory.
  void reloadCerts(const char* trigger);
  void startCertMaintenance();
  void stopCertMaintenance();
  void beginShutdown(int signum);
  void logTotals() const;
  bool needsCertStore() const;
  Status startAdminApi();
  Status startMetrics();
  // The exposition of every metric now (control thread).
  std::string renderMetrics();

  // AdminHost
  const config::Config& config() const override { return config_; }
  tls::CertStore& certStore() override { return cert_store_; }
  const ClusterSettings& clusterSettings() const override { return cluster_settings_; }
  Status updateClusterSettings(const ClusterSettings& next) override;
  std::string lastCertFailure() const override;
  const std::vector<std::unique_ptr<proxy::Database>>& databases() const override { return databases_; }
  std::vector<const proxy::Stats*> workerStats() const override;
  uint64_t startedUnixMs() const override { return started_unix_ms_; }

  // config_.tls.policy is the effective policy: the config file's
  // (file_policy_) with the overrides persisted through the admin API.
  config::Config config_;
  tls::TlsPolicy file_policy_;
  ClusterSettings cluster_settings_;
  std::vector<std::unique_ptr<proxy::Database>> databases_;
  // One per cluster database: discovery at create(), refreshes on loop_.
  std::vector<std::unique_ptr<ClusterMonitor>> cluster_monitors_;
  // Every named certificate; workers serve cert_store_.published(kProxy).
  tls::CertStore cert_store_;
  CertReloader reloader_;
  // The client contexts of the TLS shards (rebuilt with the certificates).
  ShardTlsContexts shard_tls_;
  std::unique_ptr<tls::CertWatcher> cert_watcher_;
  uv_timer_t maintenance_timer_{};  // expiry warnings, ticket key rotation
  uv_timer_t cert_retry_timer_{};
  uint64_t ticket_keys_rotated_ms_ = 0;
  bool maintenance_started_ = false;
  const uint64_t started_unix_ms_ = proxy::ShardStats::wallClockMs();
  std::vector<std::unique_ptr<proxy::Worker>> workers_;
  std::unique_ptr<AdminApi> admin_api_;
  std::unique_ptr<MetricsEndpoint> metrics_;
  uv_loop_t loop_{};
  uv_signal_t sigterm_{};
  uv_signal_t sigint_{};
  uv_signal_t sighup_{};
  uv_signal_t sigusr1_{};  // reopen the log file (logrotate)
  std::optional<PidFile> pid_file_;
  ServiceNotify notify_;
  uv_timer_t finish_timer_{};
  bool shutting_down_ = false;
  uint64_t open_files_at_start_ = 0;
};

}  // namespace shardgate::server
