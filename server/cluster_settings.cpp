#include "server/cluster_settings.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "server/admin_json.h"
#include "tls/cert_files.h"

namespace shardgate::server {

using json = nlohmann::json;

namespace {

// Reads one field of a settings object: absent leaves out alone, null
// clears it, anything else must be the right kind.
Status readVersion(const json& obj, const char* name, std::optional<tls::TlsVersion>& out) {
  auto it = obj.find(name);
  if (it == obj.end()) return {};
  if (it->is_null()) {
    out.reset();
    return {};
  }
  if (!it->is_string()) return makeError(std::string(name) + ": expected one of \"1.0\", \"1.1\", \"1.2\", \"1.3\" or null");
  auto v = tls::parseTlsVersion(it->get<std::string>());
  if (!v) return makeError(std::string(name) + ": " + v.message());
  out = *v;
  return {};
}

Status readString(const json& obj, const char* name, std::optional<std::string>& out) {
  auto it = obj.find(name);
  if (it == obj.end()) return {};
  if (it->is_null()) {
    out.reset();
    return {};
  }
  if (!it->is_string() || it->get<std::string>().empty()) {
    return makeError(std::string(name) + ": expected a non-empty string or null");
  }
  out = it->get<std::string>();
  return {};
}

Status applyObject(const json& obj, ClusterSettings& settings) {
  if (!obj.is_object()) return makeError("expected a JSON object");
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool known = false;
    for (const auto& n : kClusterSettingNames) known = known || it.key() == n.api_name;
    if (!known) {
      return makeError("unknown setting \"" + it.key() +
                       "\" (known: min_data_TLS_version, min_control_TLS_version, data_cipher_list, "
                       "data_cipher_suites_tls_1_3)");
    }
  }
  ClusterSettings next = settings;
  if (Status s = readVersion(obj, "min_data_TLS_version", next.min_data_tls_version); !s) return s;
  if (Status s = readVersion(obj, "min_control_TLS_version", next.min_control_tls_version); !s) return s;
  if (Status s = readString(obj, "data_cipher_list", next.data_cipher_list); !s) return s;
  if (Status s = readString(obj, "data_cipher_suites_tls_1_3", next.data_cipher_suites_tls_1_3); !s) return s;
  settings = std::move(next);
  return {};
}

}  // namespace

std::string clusterSettingsPath(const std::string& cert_dir) { return cert_dir + "/" + kClusterSettingsFile; }

Result<ClusterSettings> loadClusterSettings(const std::string& cert_dir) {
  const std::string path = clusterSettingsPath(cert_dir);
  std::ifstream in(path, std::ios::binary);
  ClusterSettings settings;
  if (!in) return settings;  // no overrides
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > 64 * 1024) return makeError(path + ": larger than 64 KiB; not a settings file");
  json doc = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return makeError(path + ": not valid JSON");
  if (Status s = applyObject(doc, settings); !s) return makeError(path + ": " + s.message());
  return settings;
}

Status saveClusterSettings(const std::string& cert_dir, const ClusterSettings& settings) {
  json doc = json::object();
  if (settings.min_data_tls_version) doc["min_data_TLS_version"] = tls::toString(*settings.min_data_tls_version);
  if (settings.min_control_tls_version) {
    doc["min_control_TLS_version"] = tls::toString(*settings.min_control_tls_version);
  }
  if (settings.data_cipher_list) doc["data_cipher_list"] = *settings.data_cipher_list;
  if (settings.data_cipher_suites_tls_1_3) doc["data_cipher_suites_tls_1_3"] = *settings.data_cipher_suites_tls_1_3;
  return tls::writeFileAtomic(clusterSettingsPath(cert_dir), doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n", 0644);
}

Status applyClusterSettingsJson(const std::string& json_text, ClusterSettings& settings) {
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return makeError("the body is not valid JSON");
  return applyObject(doc, settings);
}

std::string clusterSettingsJson(const tls::TlsPolicy& effective) {
  json doc = {
      {"min_data_TLS_version", tls::toString(effective.min_version)},
      {"min_control_TLS_version", tls::toString(effective.control_min_version)},
      {"data_cipher_list", effective.ciphers},
      {"data_cipher_suites_tls_1_3", effective.ciphersuites},
  };
  return dumpJson(doc);
}

Result<tls::TlsPolicy> effectivePolicy(const tls::TlsPolicy& from_config, const ClusterSettings& settings) {
  tls::TlsPolicy policy = from_config;
  if (settings.min_data_tls_version) policy.min_version = *settings.min_data_tls_version;
  if (settings.min_control_tls_version) policy.control_min_version = *settings.min_control_tls_version;
  if (settings.data_cipher_list) {
    policy.ciphers = *settings.data_cipher_list;
  } else if (policy.min_version < tls::TlsVersion::k1_2 && from_config.ciphers == tls::kDefaultCiphers) {
    policy.ciphers = std::string(tls::kDefaultCiphers) + ":" + tls::kLegacyCiphers;
  }
  if (settings.data_cipher_suites_tls_1_3) policy.ciphersuites = *settings.data_cipher_suites_tls_1_3;
  if (Status s = tls::validatePolicy(policy); !s) {
    // validatePolicy names the config keys; say which API setting that is.
    std::string message = s.message();
    if (message.rfind("tls.ciphers:", 0) == 0) message = "data_cipher_list" + message.substr(11);
    if (message.rfind("tls.ciphersuites:", 0) == 0) message = "data_cipher_suites_tls_1_3" + message.substr(16);
    return makeError(message);
  }
  tls::TlsPolicy control = policy;
  control.min_version = policy.control_min_version;
  if (Status s = tls::validatePolicy(control); !s) return makeError("min_control_TLS_version: " + s.message());
  return policy;
}

std::vector<std::string> describeEffective(const config::Config& config, const ClusterSettings& settings) {
  auto effective = effectivePolicy(config.tls.policy, settings);
  const tls::TlsPolicy& p = effective.ok() ? *effective : config.tls.policy;
  const std::string values[] = {tls::toString(p.min_version), tls::toString(p.control_min_version), p.ciphers,
                                p.ciphersuites};
  const bool overridden[] = {settings.min_data_tls_version.has_value(), settings.min_control_tls_version.has_value(),
                             settings.data_cipher_list.has_value(), settings.data_cipher_suites_tls_1_3.has_value()};
  std::vector<std::string> lines;
  for (size_t i = 0; i < 4; ++i) {
    const ClusterSettingName& n = kClusterSettingNames[i];
    std::string source;
    if (overridden[i]) {
      source = "set through the admin API in " + clusterSettingsPath(config.cert_dir) + ", overriding " + n.config_key;
    } else {
      bool given = false;
      for (const auto& [key, line] : config.key_lines) given = given || key == n.config_key;
      source = given ? n.config_key + std::string(" at ") + config.where(n.config_key) : std::string("default");
      if (!source.empty() && source.back() == ' ') source.pop_back();
      if (source.size() >= 1 && source.back() == ':') source.pop_back();
    }
    lines.push_back(std::string(n.api_name) + " = " + values[i] + " (" + source + ")");
  }
  return lines;
}

}  // namespace shardgate::server
