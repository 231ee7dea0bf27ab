#include "tests/unit/temp_dir.h"
#include "tls/cert_files.h"

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>

#include "tests/unit/tls/test_certs.h"

using namespace shardgate::tls;
using namespace shardgate::tls::testing;
namespace fs = std::filesystem;

using shardgate::testing::TempDir;

namespace {


unsigned modeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

void writeFile(const std::string& path, const std::string& content) {
  std::ofstream(path) << content;
}

std::string readAll(const std::string& path) {
  std::string content(static_cast<size_t>(fs::file_size(path)), '\0');
  std::ifstream(path).read(content.data(), static_cast<std::streamsize>(content.size()));
  return content;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("generateSelfSigned writes a 0600 key and a 0644 certificate in a new 0700 dir") {
  TempDir tmp;
  std::string dir = tmp.path + "/certs";
  CHECK(proxyCertFilesAbsent(dir));
  auto info = generateSelfSigned(dir, {"localhost", "db.example.com"});
  REQUIRE_MESSAGE(info.ok(), (info.ok() ? "" : info.message()));

  CHECK(modeOf(dir) == 0700);
  CHECK(modeOf(dir + "/proxy_key.pem") == 0600);
  CHECK(modeOf(dir + "/proxy_cert.pem") == 0644);
  CHECK_FALSE(proxyCertFilesAbsent(dir));
  // No temporary files left behind.
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 2);

  CHECK(info->subject == "CN=localhost");
  CHECK(info->issuer == "CN=localhost");
  auto has = [&](const char* san) {
    return std::find(info->sans.begin(), info->sans.end(), san) != info->sans.end();
  };
  CHECK(has("DNS:localhost"));
  CHECK(has("DNS:db.example.com"));
  CHECK(has("IP:127.0.0.1"));
  CHECK(std::regex_match(info->sha256_fingerprint, std::regex("([0-9A-F]{2}:){31}[0-9A-F]{2}")));
  CHECK(std::regex_match(info->not_after, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
  CHECK(std::regex_match(info->serial, std::regex("[0-9A-F]+")));
  CHECK(info->chain_length == 0);
  int64_t year = info->not_after_epoch - static_cast<int64_t>(std::time(nullptr));
  CHECK(year > 364L * 24 * 3600);
  CHECK(year < 366L * 24 * 3600);

  // What was written reads back and validates to the same certificate.
  auto bundle = readProxyCertFiles(dir);
  REQUIRE(bundle.ok());
  CHECK(bundle->cert_source == dir + "/proxy_cert.pem");
  CHECK(bundle->chain_pem.empty());
  auto again = validateCertBundle(*bundle);
  REQUIRE(again.ok());
  CHECK(again->sha256_fingerprint == info->sha256_fingerprint);

  // Two generations differ (random serial, fresh key).
  auto other = generateSelfSigned(dir, {"localhost"});
  REQUIRE(other.ok());
  CHECK(other->serial != info->serial);
  CHECK(other->sha256_fingerprint != info->sha256_fingerprint);
}

TEST_CASE("generateSelfSigned refuses a name that is not a DNS name") {
  TempDir tmp;
  auto info = generateSelfSigned(tmp.path, {"a,b"});
  REQUIRE_FALSE(info.ok());
  CHECK(contains(info.message(), "\"a,b\""));
}

TEST_CASE("readProxyCertFiles names the missing file") {
  TempDir tmp;
  writeFile(tmp.path + "/proxy_cert.pem", "x");
  auto r = readProxyCertFiles(tmp.path);
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() == "cannot read " + tmp.path + "/proxy_key.pem: No such file or directory");

  // A directory that is gone (rm -rf cert_dir at run time) is named as such.
  auto none = readProxyCertFiles(tmp.path + "/nope");
  REQUIRE_FALSE(none.ok());
  CHECK(none.message() == "cannot read " + tmp.path + "/nope/proxy_cert.pem: the directory " +
                              tmp.path + "/nope does not exist");
}

TEST_CASE("readProxyCertFiles carries the errno, so a lack of descriptors is told from a bad file") {
  TempDir tmp;
  writeFile(tmp.path + "/proxy_cert.pem", "x");
  auto missing = readProxyCertFiles(tmp.path);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().sys_errno == ENOENT);

  // The open-file limit at the lowest free descriptor: the next open() fails.
  int lowest_free = ::dup(0);
  REQUIRE(lowest_free >= 0);
  ::close(lowest_free);
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
  auto r = readProxyCertFiles(tmp.path);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().sys_errno == EMFILE);
  CHECK(r.message() == "cannot read " + tmp.path + "/proxy_cert.pem: Too many open files");
}

TEST_CASE("readProxyCertFiles refuses a file over the size bound, naming it, its size and the bound") {
  TempDir tmp;
  writeFile(tmp.path + "/proxy_cert.pem", "C");
  writeFile(tmp.path + "/proxy_key.pem", "K");
  // Exactly at the bound: read whole.
  writeFile(tmp.path + "/chain_certs.pem", std::string(kMaxCertFileBytes, 'x'));
  auto at_bound = readProxyCertFiles(tmp.path);
  REQUIRE_MESSAGE(at_bound.ok(), (at_bound.ok() ? "" : at_bound.message()));
  CHECK(at_bound->chain_pem.size() == kMaxCertFileBytes);

  // One byte over, and far over (10 MB): the same named error, nothing kept.
  for (size_t size : {kMaxCertFileBytes + 1, size_t{10} * 1024 * 1024}) {
    CAPTURE(size);
    writeFile(tmp.path + "/chain_certs.pem", std::string(size, 'x'));
    auto r = readProxyCertFiles(tmp.path);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.message(), tmp.path + "/chain_certs.pem is " + std::to_string(size) +
                                    " bytes, over the limit of " +
                                    std::to_string(kMaxCertFileBytes) + " bytes"));
  }
  // Every file of the directory is bounded, not only the chain.
  ::unlink((tmp.path + "/chain_certs.pem").c_str());
  writeFile(tmp.path + "/proxy_key.pem", std::string(kMaxCertFileBytes + 1, 'k'));
  auto key = readProxyCertFiles(tmp.path);
  REQUIRE_FALSE(key.ok());
  CHECK(contains(key.message(), tmp.path + "/proxy_key.pem is "));
}

TEST_CASE("readProxyCertFiles refuses a FIFO instead of blocking on it") {
  TempDir tmp;
  writeFile(tmp.path + "/proxy_cert.pem", "C");
  writeFile(tmp.path + "/proxy_key.pem", "K");
  REQUIRE(::mkfifo((tmp.path + "/chain_certs.pem").c_str(), 0600) == 0);
  auto r = readProxyCertFiles(tmp.path);  // no writer: a blocking open() would hang here
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() == "cannot read " + tmp.path + "/chain_certs.pem: not a regular file");
}

TEST_CASE("readProxyCertFiles reads the optional chain file") {
  TempDir tmp;
  writeFile(tmp.path + "/proxy_cert.pem", "C");
  writeFile(tmp.path + "/proxy_key.pem", "K");
  auto r = readProxyCertFiles(tmp.path);
  REQUIRE(r.ok());
  CHECK(r->cert_pem == "C");
  CHECK(r->key_pem == "K");
  CHECK(r->chain_pem.empty());
  writeFile(tmp.path + "/chain_certs.pem", "CH");
  auto with_chain = readProxyCertFiles(tmp.path);
  REQUIRE(with_chain.ok());
  CHECK(with_chain->chain_pem == "CH");
  CHECK(with_chain->chain_source == tmp.path + "/chain_certs.pem");
}

TEST_CASE("readProxyCertFiles reports an unreadable file (a directory)") {
  TempDir tmp;
  fs::create_directory(tmp.path + "/proxy_cert.pem");
  writeFile(tmp.path + "/proxy_key.pem", "K");
  auto r = readProxyCertFiles(tmp.path);
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() == "cannot read " + tmp.path + "/proxy_cert.pem: Is a directory");
}

TEST_CASE("writeFileAtomic replaces the file and sets the mode") {
  TempDir tmp;
  std::string path = tmp.path + "/f.pem";
  REQUIRE(writeFileAtomic(path, "one", 0600).ok());
  CHECK(modeOf(path) == 0600);
  REQUIRE(writeFileAtomic(path, "two", 0644).ok());
  CHECK(modeOf(path) == 0644);
  CHECK(readAll(path) == "two");
  CHECK(std::distance(fs::directory_iterator(tmp.path), fs::directory_iterator()) == 1);

  auto bad = writeFileAtomic(tmp.path + "/missing/f.pem", "x", 0600);
  REQUIRE_FALSE(bad.ok());
  CHECK(contains(bad.message(), tmp.path + "/missing/f.pem"));
}

TEST_CASE("validateCertBundle accepts a good self-signed pair") {
  auto info = validateCertBundle(selfSignedBundle());
  REQUIRE_MESSAGE(info.ok(), (info.ok() ? "" : info.message()));
  CHECK(info->subject == "CN=localhost");
  CHECK(info->chain_length == 0);
}

TEST_CASE("validateCertBundle: key that does not match the certificate") {
  CertBundle a = selfSignedBundle();
  CertBundle b = selfSignedBundle();
  a.key_pem = b.key_pem;
  auto r = validateCertBundle(a);
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() ==
        "/certs/proxy_key.pem: private key does not match the certificate in /certs/proxy_cert.pem");
  CHECK(ERR_peek_error() == 0);  // the OpenSSL error queue is left clean
}

TEST_CASE("validateCertBundle: garbage instead of PEM") {
  CertBundle b = selfSignedBundle();
  CertBundle garbage_cert = b;
  garbage_cert.cert_pem = "this is not a certificate\n";
  auto r = validateCertBundle(garbage_cert);
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() == "/certs/proxy_cert.pem: no PEM certificate found");

  CertBundle broken_cert = b;
  broken_cert.cert_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  auto broken = validateCertBundle(broken_cert);
  REQUIRE_FALSE(broken.ok());
  CHECK(contains(broken.message(), "/certs/proxy_cert.pem: certificate 1 could not be parsed"));

  CertBundle garbage_key = b;
  garbage_key.key_pem = "nope";
  auto k = validateCertBundle(garbage_key);
  REQUIRE_FALSE(k.ok());
  CHECK(k.message() == "/certs/proxy_key.pem: no PEM private key found");

  CertBundle broken_key = b;
  broken_key.key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  auto bk = validateCertBundle(broken_key);
  REQUIRE_FALSE(bk.ok());
  CHECK(contains(bk.message(), "/certs/proxy_key.pem: the private key could not be parsed"));
  CHECK_FALSE(contains(bk.message(), "AAAA"));

  CertBundle garbage_chain = b;
  garbage_chain.chain_pem = "junk";
  auto c = validateCertBundle(garbage_chain);
  REQUIRE_FALSE(c.ok());
  CHECK(c.message() == "/certs/chain_certs.pem: no PEM certificate found");
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("validateCertBundle: encrypted key is reported, not prompted for") {
  EvpPkeyPtr key = makeKey();
  X509Ptr cert = makeCert(CertSpec{}, key.get(), nullptr, nullptr);
  BioPtr bio(BIO_new(BIO_s_mem()));
  const char* pass = "secret";
  PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), EVP_aes_128_cbc(), pass, 6, nullptr,
                                nullptr);
  char* p = nullptr;
  long n = BIO_get_mem_data(bio.get(), &p);
  CertBundle b = selfSignedBundle();
  b.cert_pem = certPem(cert.get());
  b.key_pem.assign(p, static_cast<size_t>(n));
  auto r = validateCertBundle(b);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.message(), "/certs/proxy_key.pem: the private key is encrypted"));
}

TEST_CASE("validateCertBundle: expired and not yet valid certificates") {
  CertSpec expired;
  expired.not_before = "20190101000000Z";
  expired.not_after = "20200101000000Z";
  auto r = validateCertBundle(selfSignedBundle(expired));
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() == "/certs/proxy_cert.pem: certificate expired on 2020-01-01T00:00:00Z");

  CertSpec future;
  future.not_before = "20990101000000Z";
  future.not_after = "21000101000000Z";
  auto f = validateCertBundle(selfSignedBundle(future));
  REQUIRE_FALSE(f.ok());
  CHECK(f.message() ==
        "/certs/proxy_cert.pem: certificate is not valid yet: not before 2099-01-01T00:00:00Z");
}

TEST_CASE("validateCertBundle: a good root -> intermediate -> leaf chain") {
  ThreeLevelChain chain;
  auto info = validateCertBundle(chain.bundle());
  REQUIRE_MESSAGE(info.ok(), (info.ok() ? "" : info.message()));
  CHECK(info->chain_length == 2);
  CHECK(info->issuer == "CN=Test Intermediate");

  // Intermediates may also follow the leaf in the certificate file itself.
  CertBundle in_cert_file = chain.bundle();
  in_cert_file.cert_pem += certPem(chain.inter.get());
  in_cert_file.chain_pem.clear();
  auto info2 = validateCertBundle(in_cert_file);
  REQUIRE_MESSAGE(info2.ok(), (info2.ok() ? "" : info2.message()));
  CHECK(info2->chain_length == 1);
}

TEST_CASE("validateCertBundle: a chain that does not chain") {
  ThreeLevelChain chain;
  CertBundle wrong_order = chain.bundle();
  wrong_order.chain_pem = certPem(chain.root.get()) + certPem(chain.inter.get());
  auto r = validateCertBundle(wrong_order);
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() ==
        "/certs/chain_certs.pem: certificate 1 (CN=Test Root) did not issue "
        "/certs/proxy_cert.pem (issuer CN=Test Intermediate)");

  // Same name, different key: the signature check catches it.
  ThreeLevelChain other;
  CertBundle impostor = chain.bundle();
  impostor.chain_pem = certPem(other.inter.get());
  auto s = validateCertBundle(impostor);
  REQUIRE_FALSE(s.ok());
  CHECK(contains(s.message(), "/certs/chain_certs.pem: certificate 1 (CN=Test Intermediate)"));
  CHECK(contains(s.message(), "did not sign /certs/proxy_cert.pem"));

  // The second link is named by its position.
  CertBundle bad_second = chain.bundle();
  bad_second.chain_pem = certPem(chain.inter.get()) + certPem(other.root.get());
  auto t = validateCertBundle(bad_second);
  REQUIRE_FALSE(t.ok());
  CHECK(contains(t.message(), "certificate 2 (CN=Test Root)"));
  CHECK(contains(t.message(), "certificate 1 (CN=Test Intermediate) in /certs/chain_certs.pem"));
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("validateCertBundle: at most kMaxChainCerts chain certificates, over both files") {
  // A self-signed root issues itself, so root, root, ... after the
  // intermediate is a chain that checks link by link: only the count fails it.
  ThreeLevelChain chain;
  auto roots = [&](size_t n) {
    std::string pem;
    for (size_t i = 0; i < n; ++i) pem += certPem(chain.root.get());
    return pem;
  };
  CertBundle longest = chain.bundle();
  longest.chain_pem = certPem(chain.inter.get()) + roots(kMaxChainCerts - 1);
  auto ok = validateCertBundle(longest);
  REQUIRE_MESSAGE(ok.ok(), (ok.ok() ? "" : ok.message()));
  CHECK(ok->chain_length == kMaxChainCerts);

  CertBundle one_more = chain.bundle();
  one_more.chain_pem = certPem(chain.inter.get()) + roots(kMaxChainCerts);
  auto r = validateCertBundle(one_more);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.message(), "/certs/chain_certs.pem: more than " + std::to_string(kMaxChainCerts) +
                                  " chain certificates"));

  // Intermediates in the certificate file count too, and the chain file then
  // has less room.
  CertBundle split = chain.bundle();
  split.cert_pem += certPem(chain.inter.get()) + roots(kMaxChainCerts / 2);
  split.chain_pem = roots(kMaxChainCerts / 2);
  auto s = validateCertBundle(split);
  REQUIRE_FALSE(s.ok());
  CHECK(contains(s.message(), "/certs/chain_certs.pem: more than "));
  CertBundle in_cert_file = chain.bundle();
  in_cert_file.cert_pem += certPem(chain.inter.get()) + roots(kMaxChainCerts);
  in_cert_file.chain_pem.clear();
  auto c = validateCertBundle(in_cert_file);
  REQUIRE_FALSE(c.ok());
  CHECK(contains(c.message(), "/certs/proxy_cert.pem: more than "));

  // Thousands of certificates are refused after parsing kMaxChainCerts + 1.
  CertBundle huge = chain.bundle();
  huge.chain_pem = roots(5000);
  auto h = validateCertBundle(huge);
  REQUIRE_FALSE(h.ok());
  CHECK(contains(h.message(), "/certs/chain_certs.pem: more than "));
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("validateCertBundle: an expired intermediate is named") {
  ThreeLevelChain chain;
  CertSpec i;
  i.cn = "Test Intermediate";
  i.ca = true;
  i.not_before = "20190101000000Z";
  i.not_after = "20200101000000Z";
  X509Ptr old_inter = makeCert(i, chain.inter_key.get(), chain.root.get(), chain.root_key.get());
  CertBundle b = chain.bundle();
  b.chain_pem = certPem(old_inter.get());
  auto r = validateCertBundle(b);
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() ==
        "/certs/chain_certs.pem: certificate 1 (CN=Test Intermediate) expired on "
        "2020-01-01T00:00:00Z");
}
