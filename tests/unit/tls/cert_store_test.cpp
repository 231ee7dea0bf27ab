#include "tls/cert_store.h"

#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "tests/unit/temp_dir.h"
#include "tests/unit/tls/test_certs.h"

using namespace shardgate;
using namespace shardgate::tls;
using namespace shardgate::tls::testing;

using shardgate::testing::TempDir;

namespace {

// A bundle named like the files of `name` in /certs.
CertBundle bundleFor(CertName name, const CertSpec& spec = {}) {
  CertBundle b = selfSignedBundle(spec);
  b.cert_source = std::string("/certs/") + infoOf(name).cert_file;
  b.key_source = std::string("/certs/") + infoOf(name).key_file;
  b.chain_source = infoOf(name).chain_file ? std::string("/certs/") + infoOf(name).chain_file : "";
  return b;
}

CertSpec named(const std::string& cn) {
  CertSpec spec;
  spec.cn = cn;
  return spec;
}

CertBundle garbageFor(CertName name) {
  CertBundle b = bundleFor(name);
  b.cert_pem = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
  return b;
}

// A store whose first commit published proxy (and nothing else).
void commitProxy(CertStore& store, const CertBundle& proxy = bundleFor(CertName::kProxy)) {
  CertTransaction txn = store.begin();
  txn.stage(CertName::kProxy, proxy);
  auto changes = txn.commit();
  REQUIRE_MESSAGE(changes.ok(), (changes.ok() ? "" : changes.message()));
}

void writeFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE(out);
  out << content;
}

}  // namespace

TEST_CASE("CertStore: the first commit validates, builds, preflights and publishes proxy") {
  CertStore store;
  CHECK_FALSE(store.current(CertName::kProxy));
  CertTransaction txn = store.begin();
  txn.stage(CertName::kProxy, bundleFor(CertName::kProxy));
  CHECK_FALSE(txn.unchanged());
  auto changes = txn.commit();
  REQUIRE_MESSAGE(changes.ok(), (changes.ok() ? "" : changes.message()));
  REQUIRE(changes->size() == 1);
  CHECK((changes->at(0).name == CertName::kProxy));
  CHECK_FALSE(changes->at(0).before);
  TlsContextPtr served = store.current(CertName::kProxy);
  REQUIRE(served);
  CHECK(served == changes->at(0).context);
  CHECK(served->generation() == 1);
  CHECK(served->liveSessions() == 0);  // the preflight's sessions are gone
  CHECK((store.configured(CertName::kProxy)));
  for (CertName other : {CertName::kApi, CertName::kMetricsExporter, CertName::kMtlsTrustedCa}) {
    CHECK_FALSE(store.configured(other));
    CHECK_FALSE(store.current(other));
  }
}

TEST_CASE("CertStore: committing one name leaves the others and their generations alone") {
  CertStore store;
  commitProxy(store);
  TlsContextPtr proxy = store.current(CertName::kProxy);

  CertTransaction txn = store.begin();
  txn.stage(CertName::kApi, bundleFor(CertName::kApi, named("admin.example")));
  auto changes = txn.commit();
  REQUIRE_MESSAGE(changes.ok(), (changes.ok() ? "" : changes.message()));
  REQUIRE(changes->size() == 1);
  CHECK((changes->at(0).name == CertName::kApi));
  REQUIRE((store.current(CertName::kApi)));
  CHECK((store.current(CertName::kApi)->certInfo().subject == "CN=admin.example"));
  CHECK((store.current(CertName::kApi)->generation() == 1));
  CHECK(store.current(CertName::kProxy) == proxy);  // not rebuilt
  CHECK(proxy->generation() == 1);
}

TEST_CASE("CertStore: several names commit all or nothing, the error naming the one at fault") {
  CertStore store;
  commitProxy(store);
  TlsContextPtr proxy = store.current(CertName::kProxy);
  const CertInputs before = store.committed();

  SUBCASE("one bad name: none changes") {
    CertTransaction txn = store.begin();
    txn.stage(CertName::kProxy, bundleFor(CertName::kProxy, named("new.example")));
    txn.stage(CertName::kApi, garbageFor(CertName::kApi));
    txn.stage(CertName::kMetricsExporter, bundleFor(CertName::kMetricsExporter));
    auto changes = txn.commit();
    REQUIRE_FALSE(changes.ok());
    CHECK(changes.message().rfind("certificate api: /certs/api_cert.pem: certificate 1 could not be parsed", 0) == 0);
    REQUIRE(txn.failedName());
    CHECK((*txn.failedName() == CertName::kApi));
    CHECK((store.current(CertName::kProxy) == proxy));
    CHECK_FALSE(store.current(CertName::kApi));
    CHECK_FALSE(store.current(CertName::kMetricsExporter));
    CHECK(sameInputs(store.committed(), before));
  }
  SUBCASE("a bad proxy keeps its text and blocks a good api") {
    CertTransaction txn = store.begin();
    CertSpec dates;
    dates.not_before = "20190101000000Z";
    dates.not_after = "20200101000000Z";
    CertBundle expired = bundleFor(CertName::kProxy, dates);
    txn.stage(CertName::kProxy, expired);
    txn.stage(CertName::kApi, bundleFor(CertName::kApi));
    auto changes = txn.commit();
    REQUIRE_FALSE(changes.ok());
    CHECK(changes.message() == "/certs/proxy_cert.pem: certificate expired on 2020-01-01T00:00:00Z");
    CHECK((*txn.failedName() == CertName::kProxy));
    CHECK((store.current(CertName::kProxy) == proxy));
    CHECK_FALSE(store.current(CertName::kApi));
  }
  SUBCASE("all good: all published") {
    CertTransaction txn = store.begin();
    txn.stage(CertName::kProxy, bundleFor(CertName::kProxy, named("new.example")));
    txn.stage(CertName::kApi, bundleFor(CertName::kApi));
    txn.stage(CertName::kMetricsExporter, bundleFor(CertName::kMetricsExporter));
    auto changes = txn.commit();
    REQUIRE_MESSAGE(changes.ok(), (changes.ok() ? "" : changes.message()));
    CHECK(changes->size() == 3);
    CHECK(changes->at(0).before == proxy);
    CHECK((store.current(CertName::kProxy)->generation() == 2));
    CHECK((store.current(CertName::kProxy)->certInfo().subject == "CN=new.example"));
    CHECK((store.current(CertName::kApi)));
    CHECK((store.current(CertName::kMetricsExporter)));
  }
}

TEST_CASE("CertStore: a failing preflight handshake rejects the transaction") {
  CertStore store;
  commitProxy(store);
  TlsContextPtr proxy = store.current(CertName::kProxy);

  // Builds fine (the cipher string is valid) but an ECDSA certificate has no
  // cipher in it at TLS 1.2: only the handshake finds out.
  TlsPolicy rsa_only;
  rsa_only.ciphers = "ECDHE-RSA-AES128-GCM-SHA256";
  CertTransaction txn = store.begin();
  txn.setPolicy(rsa_only);
  auto changes = txn.commit();
  REQUIRE_FALSE(changes.ok());
  CHECK(changes.message() ==
        "preflight handshake at TLS 1.2 failed: no shared cipher "
        "(tls.ciphers has no cipher usable with this ECDSA certificate?)");
  CHECK((*txn.failedName() == CertName::kProxy));
  CHECK((store.current(CertName::kProxy) == proxy));
  CHECK(store.policy().ciphers == TlsPolicy{}.ciphers);

  // The same for a name that is not served: named, and nothing changes.
  CertTransaction api = store.begin();
  api.stage(CertName::kApi, bundleFor(CertName::kApi));
  api.setPolicy(rsa_only);
  auto failed = api.commit();
  REQUIRE_FALSE(failed.ok());
  CHECK((*api.failedName() == CertName::kProxy));  // proxy is checked first
  CHECK_FALSE(store.current(CertName::kApi));
}

TEST_CASE("CertStore: unchanged inputs are a no-op") {
  CertStore store;
  CertBundle proxy_bundle = bundleFor(CertName::kProxy);
  commitProxy(store, proxy_bundle);
  TlsContextPtr proxy = store.current(CertName::kProxy);

  CertTransaction txn = store.begin();
  CHECK(txn.unchanged());
  // The same PEM from elsewhere is still the same input.
  proxy_bundle.cert_source = "admin API";
  txn.stage(CertName::kProxy, proxy_bundle);
  txn.setPolicy(TlsPolicy{});
  CHECK(txn.unchanged());
  auto changes = txn.commit();
  REQUIRE(changes.ok());
  CHECK(changes->empty());
  CHECK((store.current(CertName::kProxy) == proxy));
  CHECK(proxy->generation() == 1);

  // A new policy alone rebuilds every server context, under a new generation.
  TlsPolicy tls13;
  tls13.min_version = TlsVersion::k1_3;
  CertTransaction policy = store.begin();
  policy.setPolicy(tls13);
  CHECK_FALSE(policy.unchanged());
  auto rebuilt = policy.commit();
  REQUIRE_MESSAGE(rebuilt.ok(), (rebuilt.ok() ? "" : rebuilt.message()));
  CHECK(rebuilt->size() == 1);
  CHECK((store.current(CertName::kProxy)->generation() == 2));
  CHECK((store.current(CertName::kProxy)->policy().min_version == TlsVersion::k1_3));
}

TEST_CASE("CertStore: readers see the old snapshot until the commit") {
  CertStore store;
  commitProxy(store);
  TlsContextStore& published = store.published(CertName::kProxy);
  TlsContextPtr old = published.current();  // what a worker took at accept

  CertTransaction txn = store.begin();
  txn.stage(CertName::kProxy, bundleFor(CertName::kProxy, named("next.example")));
  auto prepared = txn.prepare();  // validated, built, preflighted
  REQUIRE_MESSAGE(prepared.ok(), (prepared.ok() ? "" : prepared.message()));
  REQUIRE(prepared->size() == 1);
  CHECK(prepared->at(0).context->generation() == 2);
  CHECK(published.current() == old);
  CHECK(published.current()->certInfo().subject == "CN=localhost");

  auto committed = txn.commit();
  REQUIRE(committed.ok());
  CHECK(published.current() != old);
  CHECK(published.current()->certInfo().subject == "CN=next.example");
  // The reader's copy stays whole until it lets go.
  CHECK(old->certInfo().subject == "CN=localhost");
  CHECK(old->generation() == 1);
}

TEST_CASE("CertStore: an optional certificate is removed, proxy cannot be") {
  CertStore store;
  commitProxy(store);
  CertTransaction add = store.begin();
  add.stage(CertName::kMetricsExporter, bundleFor(CertName::kMetricsExporter));
  REQUIRE(add.commit().ok());
  REQUIRE((store.current(CertName::kMetricsExporter)));

  CertTransaction remove = store.begin();
  remove.stage(CertName::kMetricsExporter, std::nullopt);
  auto removed = remove.commit();
  REQUIRE(removed.ok());
  REQUIRE(removed->size() == 1);
  CHECK_FALSE(removed->at(0).configured);
  CHECK_FALSE(store.current(CertName::kMetricsExporter));
  CHECK_FALSE(store.configured(CertName::kMetricsExporter));

  CertTransaction no_proxy = store.begin();
  no_proxy.stage(CertName::kProxy, std::nullopt);
  auto refused = no_proxy.commit();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.message() == "the proxy certificate is required and cannot be removed");
  CHECK((store.current(CertName::kProxy)));
}

TEST_CASE("CertStore: a CA bundle is validated and held, with no context") {
  CertStore store;
  commitProxy(store);
  ThreeLevelChain chain;
  CertBundle ca;
  ca.cert_pem = certPem(chain.root.get()) + certPem(chain.inter.get());
  ca.cert_source = "/certs/mtls_trusted_ca.pem";

  CertTransaction bad = store.begin();
  CertBundle garbage = ca;
  garbage.cert_pem = "not a certificate\n";
  bad.stage(CertName::kMtlsTrustedCa, garbage);
  auto refused = bad.commit();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.message() == "certificate mtls_trusted_ca: /certs/mtls_trusted_ca.pem: no PEM certificate found");
  CHECK_FALSE(store.configured(CertName::kMtlsTrustedCa));

  CertTransaction good = store.begin();
  good.stage(CertName::kMtlsTrustedCa, ca);
  auto changes = good.commit();
  REQUIRE_MESSAGE(changes.ok(), (changes.ok() ? "" : changes.message()));
  REQUIRE(changes->size() == 1);
  CHECK(changes->at(0).ca_certificates == 2);
  CHECK_FALSE(changes->at(0).context);
  CHECK((store.configured(CertName::kMtlsTrustedCa)));
}

TEST_CASE("CertStore: a transaction begun before another commit is refused") {
  CertStore store;
  commitProxy(store);
  CertTransaction first = store.begin();
  CertTransaction second = store.begin();
  first.stage(CertName::kApi, bundleFor(CertName::kApi));
  REQUIRE(first.commit().ok());
  second.stage(CertName::kMetricsExporter, bundleFor(CertName::kMetricsExporter));
  auto stale = second.commit();
  REQUIRE_FALSE(stale.ok());
  CHECK_FALSE(second.failedName());
  CHECK_FALSE(store.configured(CertName::kMetricsExporter));
  CHECK(store.configured(CertName::kApi));  // the first one's commit stands
}

TEST_CASE("CertStore::check is a dry run: every configured name checked, nothing published") {
  CertInputs inputs;
  inputs[indexOf(CertName::kProxy)] = bundleFor(CertName::kProxy);
  inputs[indexOf(CertName::kApi)] = bundleFor(CertName::kApi);
  auto ok = CertStore::check(inputs, TlsPolicy{});
  REQUIRE_MESSAGE(ok.ok(), (ok.ok() ? "" : ok.message()));
  CHECK(ok->size() == 2);

  inputs[indexOf(CertName::kMetricsExporter)] = garbageFor(CertName::kMetricsExporter);
  auto bad = CertStore::check(inputs, TlsPolicy{});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.message().rfind("certificate metrics_exporter: /certs/metrics_exporter_cert.pem: ", 0) == 0);
}

TEST_CASE("readCertDir: optional certificates absent are not configured, half a pair is an error") {
  TempDir tmp;
  CertBundle proxy = selfSignedBundle();
  writeFile(tmp.path + "/proxy_cert.pem", proxy.cert_pem);
  writeFile(tmp.path + "/proxy_key.pem", proxy.key_pem);

  auto only_proxy = readCertDir(tmp.path);
  REQUIRE_MESSAGE(only_proxy.ok(), (only_proxy.ok() ? "" : only_proxy.message()));
  CHECK((*only_proxy)[indexOf(CertName::kProxy)]);
  CHECK_FALSE((*only_proxy)[indexOf(CertName::kApi)]);
  CHECK_FALSE((*only_proxy)[indexOf(CertName::kMetricsExporter)]);
  CHECK_FALSE((*only_proxy)[indexOf(CertName::kMtlsTrustedCa)]);

  CertBundle api = selfSignedBundle();
  writeFile(tmp.path + "/api_cert.pem", api.cert_pem);
  auto half = readCertDir(tmp.path);
  REQUIRE_FALSE(half.ok());
  CHECK(half.message() == "certificate api: cannot read " + tmp.path + "/api_key.pem: No such file or directory");

  writeFile(tmp.path + "/api_key.pem", api.key_pem);
  writeFile(tmp.path + "/mtls_trusted_ca.pem", api.cert_pem);
  auto both = readCertDir(tmp.path);
  REQUIRE_MESSAGE(both.ok(), (both.ok() ? "" : both.message()));
  const auto& read_api = (*both)[indexOf(CertName::kApi)];
  REQUIRE(read_api);
  CHECK(read_api->cert_source == tmp.path + "/api_cert.pem");
  CHECK(read_api->key_source == tmp.path + "/api_key.pem");
  CHECK(read_api->chain_pem.empty());
  const auto& read_ca = (*both)[indexOf(CertName::kMtlsTrustedCa)];
  REQUIRE(read_ca);
  CHECK(read_ca->key_pem.empty());
  CHECK(read_ca->cert_pem == api.cert_pem);

  // Through a store from the directory: the same path as a reload.
  CertStore store;
  CertTransaction txn = store.begin();
  txn.stageAll(std::move(*both));
  auto changes = txn.commit();
  REQUIRE_MESSAGE(changes.ok(), (changes.ok() ? "" : changes.message()));
  CHECK(changes->size() == 3);
  CHECK((store.current(CertName::kApi)));
}

TEST_CASE("cert names: parse, files, watcher list") {
  CHECK((parseCertName("metrics_exporter") == CertName::kMetricsExporter));
  CHECK_FALSE(parseCertName("syncer"));
  CHECK((std::string(infoOf(CertName::kApi).key_file) == "api_key.pem"));
  auto files = certDirFileNames();
  CHECK(files.size() == 8);
  CHECK(files.front() == "proxy_cert.pem");
  CHECK((namedReason(CertName::kProxy, "x") == "x"));
  CHECK((namedReason(CertName::kApi, "x") == "certificate api: x"));
}

TEST_CASE("CertStore: the control floor rebuilds only api and metrics_exporter; "
          "a new mtls_trusted_ca rebuilds api; liveGenerations follows the contexts") {
  CertStore store;
  {
    CertTransaction txn = store.begin();
    txn.stage(CertName::kProxy, bundleFor(CertName::kProxy));
    txn.stage(CertName::kApi, bundleFor(CertName::kApi, named("api")));
    REQUIRE(txn.commit().ok());
  }
  CHECK((store.current(CertName::kApi)->policy().min_version == TlsVersion::k1_2));

  TlsPolicy control;
  control.control_min_version = TlsVersion::k1_3;
  CertTransaction txn = store.begin();
  txn.setPolicy(control);
  auto changes = txn.commit();
  REQUIRE(changes.ok());
  REQUIRE(changes->size() == 1);
  CHECK(((*changes)[0].name == CertName::kApi));
  CHECK((store.current(CertName::kApi)->policy().min_version == TlsVersion::k1_3));
  CHECK(store.current(CertName::kApi)->generation() == 2);
  CHECK((store.current(CertName::kProxy)->policy().min_version == TlsVersion::k1_2));
  CHECK(store.current(CertName::kProxy)->generation() == 1);

  // The client CA changes what the api context asks of clients: api is rebuilt.
  ThreeLevelChain chain;
  CertBundle ca;
  ca.cert_pem = certPem(chain.root.get());
  ca.cert_source = "/certs/mtls_trusted_ca.pem";
  CertTransaction with_ca = store.begin();
  with_ca.stage(CertName::kMtlsTrustedCa, ca);
  auto ca_changes = with_ca.commit();
  REQUIRE(ca_changes.ok());
  CHECK(ca_changes->size() == 2);
  CHECK(store.current(CertName::kApi)->generation() == 3);

  // The change lists hold the older contexts; once they are gone, only the
  // current one is alive.
  CHECK(store.liveGenerations(CertName::kApi).size() == 3);
  changes = Error{"released"};
  ca_changes = Error{"released"};
  auto live = store.liveGenerations(CertName::kApi);
  REQUIRE(live.size() == 1);
  CHECK(live[0].first == 3);
  CHECK(live[0].second == 0);
}

TEST_CASE("CertStore: a client-auth endpoint is built with the proxy certificate and rebuilt when its inputs change") {
  CertStore store;
  CertBundle ca = selfSignedBundle(named("client CA"));
  ca.cert_source = "/certs/mtls_trusted_ca.pem";
  ClientAuthInput db1;
  db1.database = "db1";
  db1.required = true;

  CertTransaction first = store.begin();
  first.stage(CertName::kProxy, bundleFor(CertName::kProxy));
  first.stage(CertName::kMtlsTrustedCa, ca);
  first.stageClientAuth({db1});
  auto committed = first.commit();
  REQUIRE_MESSAGE(committed.ok(), (committed.ok() ? "" : committed.message()));
  REQUIRE(first.clientAuthChanges().size() == 1);
  CHECK(first.clientAuthChanges()[0].ca_certificates == 1);
  TlsContextStore* published = store.clientAuthPublished("db1");
  REQUIRE(published != nullptr);
  CHECK(published->current()->generation() == 1);
  CHECK(published->current()->verifiesClients());
  CHECK(store.clientAuthPublished("db2") == nullptr);

  // Nothing changed: nothing rebuilt (the list comes from the committed one).
  CertTransaction same = store.begin();
  CHECK(same.unchanged());
  REQUIRE(same.commit().ok());
  CHECK(published->current()->generation() == 1);

  // A new trusted CA bundle (a CA added): the endpoint relying on it is rebuilt.
  CertBundle two = ca;
  two.cert_pem += selfSignedBundle(named("second CA")).cert_pem;
  CertTransaction add = store.begin();
  add.stage(CertName::kMtlsTrustedCa, two);
  REQUIRE(add.commit().ok());
  REQUIRE(add.clientAuthChanges().size() == 1);
  CHECK(add.clientAuthChanges()[0].ca_certificates == 2);
  CHECK(published->current()->generation() == 2);

  // A new proxy certificate: rebuilt too, the client CAs kept.
  CertTransaction rotate = store.begin();
  rotate.stage(CertName::kProxy, bundleFor(CertName::kProxy, named("rotated")));
  REQUIRE(rotate.commit().ok());
  CHECK(published->current()->generation() == 3);
  CHECK(published->current()->certInfo().subject == "CN=rotated");

  // The trusted CAs removed while db1 relies on them: refused, naming them,
  // and nothing published.
  CertTransaction remove = store.begin();
  remove.stage(CertName::kMtlsTrustedCa, std::nullopt);
  auto refused = remove.commit();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.message().find("database db1: client certificates: no trusted CA") == 0);
  CHECK(remove.failedName() == CertName::kMtlsTrustedCa);
  CHECK(published->current()->generation() == 3);
  CHECK(store.configured(CertName::kMtlsTrustedCa));
}

TEST_CASE("CertStore: a client-auth endpoint with a CA of its own ignores mtls_trusted_ca") {
  CertStore store;
  commitProxy(store);
  ClientAuthInput db1;
  db1.database = "db1";
  db1.ca = selfSignedBundle(named("db1 CA"));
  db1.ca->cert_source = "/certs/db1_ca.pem";
  CertTransaction txn = store.begin();
  txn.stageClientAuth({db1});
  REQUIRE(txn.commit().ok());
  CHECK(store.clientAuthPublished("db1")->current()->generation() == 1);
  CHECK(txn.clientAuthChanges()[0].ca_source == "/certs/db1_ca.pem");

  CertTransaction ca_added = store.begin();
  CertBundle mtls = selfSignedBundle(named("shared CA"));
  mtls.cert_source = "/certs/mtls_trusted_ca.pem";
  ca_added.stage(CertName::kMtlsTrustedCa, mtls);
  REQUIRE(ca_added.commit().ok());
  CHECK(ca_added.clientAuthChanges().empty());

  ClientAuthInput broken = db1;
  broken.ca->cert_pem = "nothing";
  CertTransaction bad = store.begin();
  bad.stageClientAuth({broken});
  auto refused = bad.commit();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.message().find("database db1: client certificates: /certs/db1_ca.pem") == 0);
  CHECK(store.clientAuthPublished("db1")->current()->generation() == 1);
}
