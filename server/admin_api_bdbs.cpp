// GET /v1/bdbs: the databases this shardgate serves, as configured and as
// running, as a JSON array (the shape of Redis Enterprise's GET /v1/bdbs).
// Workers count connections per process, not per database, so each entry's
// "connections" is null, and "process_client_connections" gives the
// process-wide figure (every database together).
#include <nlohmann/json.hpp>

#include "server/admin_api.h"
#include "server/admin_json.h"

namespace shardgate::server {

using json = nlohmann::json;

namespace {

const char* clientAuthName(config::ClientAuth a) {
  switch (a) {
    case config::ClientAuth::kNone: return "none";
    case config::ClientAuth::kOptional: return "optional";
    case config::ClientAuth::kRequired: return "required";
  }
  return "none";
}

std::string slotText(const std::vector<config::SlotRange>& ranges) {
  if (ranges.empty()) return "0-16383";
  std::string out;
  for (const auto& r : ranges) {
    if (!out.empty()) out += ",";
    out += r.first == r.last ? std::to_string(r.first) : std::to_string(r.first) + "-" + std::to_string(r.last);
  }
  return out;
}

}  // namespace

http::Response AdminApi::getBdbs() {
  const config::Config& config = host_.config();
  const auto& dbs = host_.databases();
  json list = json::array();
  for (size_t i = 0; i < dbs.size() && i < config.databases.size(); ++i) {
    const proxy::Database& db = *dbs[i];
    const config::DatabaseConfig& dc = config.databases[i];
    json tls_policy = {{"tls", db.tls}};
    if (db.tls) {
      tls_policy["min_version"] = tls::toString(config.tls.policy.min_version);
      tls_policy["client_auth"] = clientAuthName(dc.client_auth);
    }
    json shards = json::array();
    for (const auto& s : dc.shards) shards.push_back({{"address", s.address.toString()}, {"slots", slotText(s.slots)}});
    list.push_back({
        {"uid", i + 1},
        {"name", db.name},
        {"endpoint", db.listen},
        {"tls", tls_policy},
        {"mode", db.multiplex ? "multiplexed" : "transparent"},
        {"auth_required", db.password.has_value()},
        {"shards", shards},
        {"connections", nullptr},
        {"process_client_connections", host_.clientConnections()},
    });
  }
  return jsonResponse(200, dumpJson(list));
}

}  // namespace shardgate::server
