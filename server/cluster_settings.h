// ClusterSettings: the TLS settings an operator changed through the admin
// API (PUT /v1/cluster), kept in cert_dir/cluster_settings.json so a restart
// keeps them. cert_dir is the one directory shardgate writes (and the one a
// sandboxed service may write), which is why the file lives there.
//
//   effective value = the persisted override if there is one,
//                     else the config file's key, else the default.
//
// A JSON null in a PUT removes an override (the config file's value applies
// again). The file is written whole, atomically (temp file + rename), and
// read at start and on SIGHUP; a malformed file stops the start naming it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/config.h"
#include "tls/tls_context.h"
#include "tls/tls_version.h"

namespace shardgate::server {

inline constexpr const char* kClusterSettingsFile = "cluster_settings.json";

struct ClusterSettings {
  std::optional<tls::TlsVersion> min_data_tls_version;     // tls.min_version
  std::optional<tls::TlsVersion> min_control_tls_version;  // tls.control_min_version
  std::optional<std::string> data_cipher_list;             // tls.ciphers
  std::optional<std::string> data_cipher_suites_tls_1_3;   // tls.ciphersuites

  bool operator==(const ClusterSettings&) const = default;
};

// The API's names for the settings, with the config key each one overrides.
struct ClusterSettingName {
  const char* api_name;
  const char* config_key;
};
inline constexpr ClusterSettingName kClusterSettingNames[] = {
    {"min_data_TLS_version", "tls.min_version"},
    {"min_control_TLS_version", "tls.control_min_version"},
    {"data_cipher_list", "tls.ciphers"},
    {"data_cipher_suites_tls_1_3", "tls.ciphersuites"},
};

std::string clusterSettingsPath(const std::string& cert_dir);

// The overrides in cert_dir; none when the file does not exist. Errors name
// the file and the field.
Result<ClusterSettings> loadClusterSettings(const std::string& cert_dir);
// Writes every override (and nothing else) atomically, mode 0644.
Status saveClusterSettings(const std::string& cert_dir, const ClusterSettings& settings);

// Applies a JSON object of changes (API names; null removes an override)
// to settings. Errors name the field and what was expected; settings is
// untouched on error.
Status applyClusterSettingsJson(const std::string& json_text, ClusterSettings& settings);
// The settings as the API shows them: the effective values.
std::string clusterSettingsJson(const tls::TlsPolicy& effective);

// The config file's policy with the overrides applied, validated (cipher
// strings against OpenSSL). A lowered data minimum with the default cipher
// list also gets the legacy ciphers, as the config file's tls.min_version does.
Result<tls::TlsPolicy> effectivePolicy(const tls::TlsPolicy& from_config, const ClusterSettings& settings);

// For --check-config: one line per setting, "NAME = VALUE (SOURCE)", the
// source being the settings file, the config file's line, or the default.
// config.tls.policy is the config file's own (before the overrides).
std::vector<std::string> describeEffective(const config::Config& config, const ClusterSettings& settings);

}  // namespace shardgate::server
