// AdminApi: the HTTPS admin API (admin.listen), in the shape Redis
// Enterprise operators script against. It runs on the control loop: an
// HttpServer with the api certificate, AdminAuth in front of every
// endpoint, and one file per concept behind it:
//
//   admin_api.cpp           routing, authentication, the audit line
//   admin_api_certs.cpp     PUT /v1/cluster/update_cert, PUT and GET /v1/cluster/certificates
//   admin_api_cluster.cpp   GET and PUT /v1/cluster (TLS settings, persisted)
//   admin_api_bdbs.cpp      GET /v1/bdbs
//
// Every change goes through the same paths as a file event or SIGHUP (the
// certificate store's transaction; the server's TLS policy), so the API can
// do nothing the files could not. Every change is logged as an audit line:
// who, from where, what, and the result.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "config/config.h"
#include "http/http_server.h"
#include "proxy/database.h"
#include "proxy/stats.h"
#include "server/admin_auth.h"
#include "server/cluster_settings.h"
#include "tls/cert_store.h"

namespace shardgate::server {

// What the API acts on: the Server, seen through what the endpoints need.
class AdminHost {
 public:
  virtual ~AdminHost() = default;
  // The running configuration; its tls.policy is the effective one
  // (config file and persisted overrides together).
  virtual const config::Config& config() const = 0;
  virtual tls::CertStore& certStore() = 0;
  virtual const ClusterSettings& clusterSettings() const = 0;
  // Persists next and applies the policy it makes to new handshakes; on
  // error nothing is written or applied, and the message names the setting.
  virtual Status updateClusterSettings(const ClusterSettings& next) = 0;
  // The last failed certificate reload (empty when the last one was good).
  virtual std::string lastCertFailure() const = 0;
  virtual const std::vector<std::unique_ptr<proxy::Database>>& databases() const = 0;
  // Every worker's counters (read on the control thread, summed per database).
  virtual std::vector<const proxy::Stats*> workerStats() const = 0;
  // When the process started, in ms since the epoch: a shard that never
  // failed has been up since then.
  virtual uint64_t startedUnixMs() const = 0;
};

class AdminApi {
 public:
  // Listens on config.admin_listen with the api certificate of host's store
  // (which must be configured). Errors name admin.listen.
  static Result<std::unique_ptr<AdminApi>> create(uv_loop_t* loop, AdminHost& host);
  ~AdminApi();

  int port() const { return server_->port(); }
  const std::string& address() const { return server_->address(); }
  // admin.users changed (SIGHUP): applies to the next login.
  void setUsers(const std::vector<config::AdminUser>& users) { auth_.setUsers(users); }
  void stop();

 private:
  AdminApi(uv_loop_t* loop, AdminHost& host);

  void handle(const http::Request& request, http::Respond respond);
  void route(const http::Request& request, const std::string& who, http::Respond respond);
  // The audit line of a change, and the answer.
  void audit(const http::Request& request, const std::string& who, const std::string& what,
             const http::Response& response);

  http::Response updateCert(const http::Request& request, std::string& what);
  http::Response putCertificates(const http::Request& request, std::string& what);
  http::Response getCertificates();
  http::Response getCluster();
  http::Response putCluster(const http::Request& request, std::string& what);
  http::Response getBdbs();

  AdminHost& host_;
  AdminAuth auth_;
  std::unique_ptr<http::HttpServer> server_;
};

// An answer with a JSON body.
http::Response jsonResponse(int status, std::string body);
// Client-supplied text made fit for one log line: control characters as
// \xNN, at most 1 KiB.
std::string logSafe(std::string_view text);

}  // namespace shardgate::server
