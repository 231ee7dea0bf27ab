// GET and PUT /v1/cluster: the TLS settings of new handshakes. A PUT is
// validated whole (versions, cipher strings against OpenSSL), persisted in
// cert_dir/cluster_settings.json, then applied through the certificate
// store like a SIGHUP with a new tls section: every context is rebuilt and
// preflighted under the new policy, and established connections keep
// theirs. See cluster_settings.h for how persisted values and the config
// file combine.
#include <nlohmann/json.hpp>

#include "server/admin_api.h"

namespace shardgate::server {

http::Response AdminApi::getCluster() {
  return jsonResponse(200, clusterSettingsJson(host_.config().tls.policy));
}

http::Response AdminApi::putCluster(const http::Request& request, std::string& what) {
  ClusterSettings next = host_.clusterSettings();
  if (Status s = applyClusterSettingsJson(request.body, next); !s) {
    return http::errorResponse(400, "invalid_setting", s.message());
  }
  what += " " + request.body.substr(0, 512);
  if (Status s = host_.updateClusterSettings(next); !s) {
    return http::errorResponse(400, "invalid_setting", s.message());
  }
  return jsonResponse(200, clusterSettingsJson(host_.config().tls.policy));
}

}  // namespace shardgate::server
