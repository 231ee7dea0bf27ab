// ClusterSettings: a PUT's JSON applied to the overrides (null removes
// one), the effective policy, and the file round trip.
#include <doctest/doctest.h>

#include <fstream>

#include "server/cluster_settings.h"
#include "tests/unit/temp_dir.h"

using namespace shardgate;
using namespace shardgate::server;

TEST_CASE("ClusterSettings: apply, remove with null, refuse whole") {
  ClusterSettings s;
  REQUIRE(applyClusterSettingsJson(R"({"min_data_TLS_version": "1.3", "data_cipher_list": "ECDHE-RSA-AES128-GCM-SHA256"})", s));
  CHECK((s.min_data_tls_version == tls::TlsVersion::k1_3));
  CHECK(s.data_cipher_list == std::optional<std::string>("ECDHE-RSA-AES128-GCM-SHA256"));
  CHECK_FALSE(s.min_control_tls_version.has_value());

  ClusterSettings before = s;
  Status bad = applyClusterSettingsJson(R"({"min_control_TLS_version": "1.3", "min_data_TLS_version": "2.0"})", s);
  CHECK_FALSE(bad.ok());
  CHECK(bad.message().find("min_data_TLS_version") != std::string::npos);
  CHECK(s == before);  // untouched on error
  CHECK_FALSE(applyClusterSettingsJson(R"({"bogus": 1})", s).ok());
  CHECK_FALSE(applyClusterSettingsJson("[1]", s).ok());
  CHECK_FALSE(applyClusterSettingsJson("{", s).ok());
  CHECK_FALSE(applyClusterSettingsJson(R"({"data_cipher_list": ""})", s).ok());

  REQUIRE(applyClusterSettingsJson(R"({"min_data_TLS_version": null})", s));
  CHECK_FALSE(s.min_data_tls_version.has_value());
  CHECK(s.data_cipher_list.has_value());
}

TEST_CASE("ClusterSettings: the effective policy takes overrides over the file's values") {
  tls::TlsPolicy file;
  file.min_version = tls::TlsVersion::k1_2;
  file.ciphersuites = "TLS_AES_128_GCM_SHA256";
  ClusterSettings s;
  s.min_control_tls_version = tls::TlsVersion::k1_3;
  auto p = effectivePolicy(file, s);
  REQUIRE(p.ok());
  CHECK((p->min_version == tls::TlsVersion::k1_2));
  CHECK((p->control_min_version == tls::TlsVersion::k1_3));
  CHECK(p->ciphersuites == "TLS_AES_128_GCM_SHA256");

  s.min_data_tls_version = tls::TlsVersion::k1_0;  // the default list gains the legacy ciphers
  auto legacy = effectivePolicy(tls::TlsPolicy{}, s);
  REQUIRE(legacy.ok());
  CHECK(legacy->ciphers.find(tls::kLegacyCiphers) != std::string::npos);

  s.data_cipher_list = "NOT-A-CIPHER";
  auto bad = effectivePolicy(file, s);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.message().rfind("data_cipher_list", 0) == 0);
}

TEST_CASE("ClusterSettings: saved atomically, loaded back; no file is no override; a bad file is named") {
  shardgate::testing::TempDir dir;
  auto none = loadClusterSettings(dir.path);
  REQUIRE(none.ok());
  CHECK(*none == ClusterSettings{});
  ClusterSettings s;
  s.min_data_tls_version = tls::TlsVersion::k1_3;
  s.data_cipher_suites_tls_1_3 = "TLS_AES_256_GCM_SHA384";
  REQUIRE(saveClusterSettings(dir.path, s));
  auto loaded = loadClusterSettings(dir.path);
  REQUIRE(loaded.ok());
  CHECK(*loaded == s);
  std::ofstream(clusterSettingsPath(dir.path)) << "{not json";
  auto broken = loadClusterSettings(dir.path);
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.message().find("cluster_settings.json: not valid JSON") != std::string::npos);
}
