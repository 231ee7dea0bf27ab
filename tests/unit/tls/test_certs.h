// Test-only helpers that craft keys and certificates with OpenSSL directly,
// for the cases generateSelfSigned never produces (expired, not yet valid,
// CA chains, chains that do not chain).
#pragma once

#include <string>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "tls/cert_files.h"
#include "tls/openssl_ptr.h"

namespace shardgate::tls::testing {

inline EvpPkeyPtr makeKey() {
  return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
}

struct CertSpec {
  std::string cn = "localhost";
  bool ca = false;
  // Either explicit dates ("20200101000000Z") or offsets from now in seconds.
  std::string not_before;
  std::string not_after;
  long not_before_offset = -3600;
  long not_after_offset = 30L * 24 * 3600;
  // Issuer name override: when set, the issuer name is this CN even though
  // the certificate is signed by issuer_key (for "wrong name" cases).
  std::string issuer_cn_override;
};

// Signs with issuer_key; issuer == nullptr means self-signed.
inline X509Ptr makeCert(const CertSpec& spec, EVP_PKEY* key, const X509* issuer,
                        EVP_PKEY* issuer_key) {
  X509Ptr x(X509_new());
  X509_set_version(x.get(), X509_VERSION_3);
  static long serial = 1000;
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), ++serial);
  if (spec.not_before.empty()) {
    X509_gmtime_adj(X509_getm_notBefore(x.get()), spec.not_before_offset);
  } else {
    ASN1_TIME_set_string_X509(X509_getm_notBefore(x.get()), spec.not_before.c_str());
  }
  if (spec.not_after.empty()) {
    X509_gmtime_adj(X509_getm_notAfter(x.get()), spec.not_after_offset);
  } else {
    ASN1_TIME_set_string_X509(X509_getm_notAfter(x.get()), spec.not_after.c_str());
  }
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1, 0);
  if (!spec.issuer_cn_override.empty()) {
    X509NamePtr iname(X509_NAME_new());
    X509_NAME_add_entry_by_txt(iname.get(), "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(
                                   spec.issuer_cn_override.c_str()),
                               -1, -1, 0);
    X509_set_issuer_name(x.get(), iname.get());
  } else {
    X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name);
  }
  X509_set_pubkey(x.get(), key);
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, issuer ? const_cast<X509*>(issuer) : x.get(), x.get(), nullptr, nullptr, 0);
  auto add = [&](int nid, const char* value) {
    X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &v3, nid, value));
    if (ext) X509_add_ext(x.get(), ext.get(), -1);
  };
  add(NID_basic_constraints, spec.ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add(NID_key_usage, spec.ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  add(NID_subject_key_identifier, "hash");
  if (!spec.ca) add(NID_subject_alt_name, ("DNS:" + spec.cn + ",IP:127.0.0.1").c_str());
  X509_sign(x.get(), issuer_key ? issuer_key : key, EVP_sha256());
  ERR_clear_error();
  return x;
}

inline std::string certPem(const X509* x) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), x);
  char* p = nullptr;
  long n = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, static_cast<size_t>(n));
}

inline std::string keyPem(const EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* p = nullptr;
  long n = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, static_cast<size_t>(n));
}

// A self-signed leaf bundle with the given spec, sources named like files.
inline CertBundle selfSignedBundle(const CertSpec& spec = {}) {
  EvpPkeyPtr key = makeKey();
  X509Ptr cert = makeCert(spec, key.get(), nullptr, nullptr);
  CertBundle b;
  b.cert_pem = certPem(cert.get());
  b.key_pem = keyPem(key.get());
  b.cert_source = "/certs/proxy_cert.pem";
  b.key_source = "/certs/proxy_key.pem";
  b.chain_source = "/certs/chain_certs.pem";
  return b;
}

// Root CA -> intermediate CA -> leaf.
struct ThreeLevelChain {
  EvpPkeyPtr root_key, inter_key, leaf_key;
  X509Ptr root, inter, leaf;

  ThreeLevelChain() {
    root_key = makeKey();
    inter_key = makeKey();
    leaf_key = makeKey();
    CertSpec r;
    r.cn = "Test Root";
    r.ca = true;
    root = makeCert(r, root_key.get(), nullptr, nullptr);
    CertSpec i;
    i.cn = "Test Intermediate";
    i.ca = true;
    inter = makeCert(i, inter_key.get(), root.get(), root_key.get());
    CertSpec l;
    l.cn = "localhost";
    leaf = makeCert(l, leaf_key.get(), inter.get(), inter_key.get());
  }

  CertBundle bundle() const {
    CertBundle b;
    b.cert_pem = certPem(leaf.get());
    b.key_pem = keyPem(leaf_key.get());
    b.chain_pem = certPem(inter.get()) + certPem(root.get());
    b.cert_source = "/certs/proxy_cert.pem";
    b.key_source = "/certs/proxy_key.pem";
    b.chain_source = "/certs/chain_certs.pem";
    return b;
  }
};

}  // namespace shardgate::tls::testing
