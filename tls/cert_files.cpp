// cert_files: reading, describing and validating the files of the named
// certificates, and generating the proxy's self-signed pair. Every error
// names the file it is about and says what is wrong in words; none ever
// contains key material.
#include "tls/cert_files.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string_view>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "tls/openssl_ptr.h"

namespace shardgate::tls {
namespace {

std::string joinPath(const std::string& dir, const char* name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// The reason of the first queued OpenSSL error, then an empty queue.
std::string takeOpenSslError() {
  unsigned long code = ERR_peek_error();
  std::string reason;
  if (code != 0) {
    const char* r = ERR_reason_error_string(code);
    reason = r ? r : "unknown OpenSSL error";
  }
  ERR_clear_error();
  return reason;
}

std::string withReason(std::string message) {
  std::string reason = takeOpenSslError();
  if (!reason.empty()) message += " (" + reason + ")";
  return message;
}

std::string dirOf(const std::string& path) {
  std::string::size_type slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// A file of the certificate directory, whole, or an error naming it. Past
// kMaxCertFileBytes nothing more is read: a huge file (a CA bundle or a log
// put there by mistake) would otherwise hold the control thread and its
// memory. Only regular files: a FIFO would block the open() or read(), a
// device would never end. missing_ok: a missing file reads as empty.
Result<std::string> readCertDirFile(const std::string& path, bool missing_ok) {
  // O_NONBLOCK: open() of a FIFO with no writer returns at once instead of
  // waiting; the S_ISREG check below then refuses it.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT && missing_ok) return std::string();
    if (err == ENOENT) {
      struct stat dir_st {};
      std::string dir = dirOf(path);
      if (::stat(dir.c_str(), &dir_st) != 0 && errno == ENOENT) {
        return makeError("cannot read " + path + ": the directory " + dir + " does not exist");
      }
    }
    return Error{"cannot read " + path + ": " + std::strerror(err), err};
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return makeError("cannot read " + path + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return makeError("cannot read " + path + ": " + std::strerror(EISDIR));
  if (!S_ISREG(st.st_mode)) return makeError("cannot read " + path + ": not a regular file");
  auto tooLarge = [&](const std::string& size) {
    return makeError(path + " is " + size + " bytes, over the limit of " +
                     std::to_string(kMaxCertFileBytes) +
                     " bytes for a file in the certificate directory (a certificate, its key "
                     "and a few intermediates take a few kilobytes)");
  };
  if (static_cast<uint64_t>(st.st_size) > kMaxCertFileBytes) return tooLarge(std::to_string(st.st_size));
  // Room for what fstat() said plus one byte: reading that byte means the
  // file grew since; keep reading then, but never past one byte over the bound.
  std::string content(static_cast<size_t>(st.st_size) + 1, '\0');
  size_t done = 0;
  for (;;) {
    if (done == content.size()) {
      if (content.size() > kMaxCertFileBytes) break;
      content.resize(std::min(content.size() * 2, kMaxCertFileBytes + 1));
    }
    ssize_t n = ::read(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      return Error{"cannot read " + path + ": " + std::strerror(err), err};
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  if (done > kMaxCertFileBytes) return tooLarge("more than " + std::to_string(kMaxCertFileBytes));
  content.resize(done);
  return content;
}

// Refuses to ask for a passphrase: the proxy starts unattended, so an
// encrypted key is reported instead of prompting on a terminal.
int noPassphrase(char*, int, int, void*) { return -1; }

BioPtr memBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// All certificates in pem, in order. An empty vector with an empty error
// means the text holds no certificate at all.
struct ParsedCerts {
  std::vector<X509Ptr> certs;
  std::string error;  // set when a certificate was present but broken
};

// Stops after max_certs + 1 certificates: the caller reports "too many"
// without parsing the rest.
ParsedCerts parseCerts(const std::string& pem, size_t max_certs) {
  ParsedCerts out;
  if (pem.empty()) return out;
  BioPtr bio = memBio(pem);
  while (out.certs.size() <= max_certs) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr);
    if (x == nullptr) {
      unsigned long code = ERR_peek_last_error();
      if (ERR_GET_LIB(code) == ERR_LIB_PEM && ERR_GET_REASON(code) == PEM_R_NO_START_LINE) {
        ERR_clear_error();  // end of input, or only non-PEM text left
      } else {
        out.error = "certificate " + std::to_string(out.certs.size() + 1) +
                    " could not be parsed";
        out.error = withReason(std::move(out.error));
      }
      break;
    }
    out.certs.emplace_back(x);
  }
  return out;
}

std::string nameText(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* p = nullptr;
  long n = BIO_get_mem_data(bio.get(), &p);
  return n > 0 ? std::string(p, static_cast<size_t>(n)) : std::string();
}

bool asn1TimeToTm(const ASN1_TIME* t, std::tm* tm) {
  return ASN1_TIME_to_tm(t, tm) == 1;
}

std::string isoTime(const ASN1_TIME* t) {
  std::tm tm{};
  if (!asn1TimeToTm(t, &tm)) return "(invalid time)";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int64_t epochOf(const ASN1_TIME* t) {
  std::tm tm{};
  if (!asn1TimeToTm(t, &tm)) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

std::string hexBytes(const unsigned char* p, size_t n, bool colons) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string s;
  s.reserve(n * 3);
  for (size_t i = 0; i < n; ++i) {
    if (colons && i > 0) s += ':';
    s += kHex[p[i] >> 4];
    s += kHex[p[i] & 0xF];
  }
  return s;
}

std::vector<std::string> sansOf(const X509* x) {
  std::vector<std::string> out;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    int type = 0;
    const void* value = GENERAL_NAME_get0_value(gn, &type);
    const auto* s = static_cast<const ASN1_STRING*>(value);
    auto text = [s] {
      return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<size_t>(ASN1_STRING_length(s)));
    };
    switch (type) {
      case GEN_DNS: out.push_back("DNS:" + text()); break;
      case GEN_EMAIL: out.push_back("email:" + text()); break;
      case GEN_URI: out.push_back("URI:" + text()); break;
      case GEN_IPADD: {
        char buf[INET6_ADDRSTRLEN] = {};
        int len = ASN1_STRING_length(s);
        const unsigned char* d = ASN1_STRING_get0_data(s);
        if (len == 4) inet_ntop(AF_INET, d, buf, sizeof buf);
        else if (len == 16) inet_ntop(AF_INET6, d, buf, sizeof buf);
        out.push_back(std::string("IP:") + (buf[0] ? buf : "(malformed)"));
        break;
      }
      default: break;
    }
  }
  return out;
}

CertInfo describe(const X509* leaf, size_t chain_length) {
  CertInfo info;
  info.subject = nameText(X509_get_subject_name(leaf));
  info.issuer = nameText(X509_get_issuer_name(leaf));
  info.sans = sansOf(leaf);
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), nullptr));
  if (serial) {
    char* hex = BN_bn2hex(serial.get());
    if (hex) {
      info.serial = hex;
      OPENSSL_free(hex);
    }
  }
  info.not_before = isoTime(X509_get0_notBefore(leaf));
  info.not_after = isoTime(X509_get0_notAfter(leaf));
  info.not_after_epoch = epochOf(X509_get0_notAfter(leaf));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(leaf, EVP_sha256(), md, &md_len) == 1) {
    info.sha256_fingerprint = hexBytes(md, md_len, true);
  }
  info.chain_length = chain_length;
  return info;
}

// A certificate of the bundle, with how an error message should name it.
struct Located {
  X509* cert;
  std::string label;  // "/certs/proxy_cert.pem" or "certificate 1 (CN=Foo) in /certs/chain_certs.pem"
  std::string source;
  std::string short_label;  // "certificate 1 (CN=Foo)"
};

std::string cnOrSubject(const X509* x) {
  std::string s = nameText(X509_get_subject_name(x));
  return s.empty() ? "no subject" : s;
}

// who: "/certs/proxy_cert.pem: certificate" or "/certs/chain_certs.pem: certificate 1 (CN=Foo)".
// The wording here is what isValidityPeriodError() recognizes.
constexpr std::string_view kNotYetValid = " is not valid yet: not before ";
constexpr std::string_view kExpiredOn = " expired on ";

Status checkValidity(const X509* x, const std::string& who) {
  if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
    ERR_clear_error();
    return makeError(who + std::string(kNotYetValid) + isoTime(X509_get0_notBefore(x)));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
    ERR_clear_error();
    return makeError(who + std::string(kExpiredOn) + isoTime(X509_get0_notAfter(x)));
  }
  return Status();
}

Status mkdirPrivate(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return makeError("cannot use " + dir + ": not a directory");
    return Status();
  }
  // Create missing parents too (0755 for those, 0700 for the key directory).
  std::string::size_type pos = 0;
  while ((pos = dir.find('/', pos + 1)) != std::string::npos) {
    std::string parent = dir.substr(0, pos);
    if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
      return makeError("cannot create directory " + parent + ": " + std::strerror(errno));
    }
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return makeError("cannot create directory " + dir + ": " + std::strerror(errno));
  }
  return Status();
}

bool addExtension(X509* x, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  return ext && X509_add_ext(x, ext.get(), -1) == 1;
}

std::string bioText(BIO* bio) {
  char* p = nullptr;
  long n = BIO_get_mem_data(bio, &p);
  return n > 0 ? std::string(p, static_cast<size_t>(n)) : std::string();
}

}  // namespace

bool samePem(const CertBundle& a, const CertBundle& b) {
  return a.cert_pem == b.cert_pem && a.key_pem == b.key_pem && a.chain_pem == b.chain_pem;
}

bool sameInputs(const CertInputs& a, const CertInputs& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].has_value() != b[i].has_value()) return false;
    if (a[i] && !samePem(*a[i], *b[i])) return false;
  }
  return true;
}

Result<std::optional<CertBundle>> readCertFiles(const std::string& dir, CertName name) {
  const CertNameInfo& files = infoOf(name);
  CertBundle b;
  b.cert_source = joinPath(dir, files.cert_file);
  if (files.key_file != nullptr) b.key_source = joinPath(dir, files.key_file);
  if (files.chain_file != nullptr) b.chain_source = joinPath(dir, files.chain_file);

  if (!files.required) {
    // Not configured only when none of its own files is there; one half of a
    // pair is read below, and the missing half named as for the proxy pair.
    struct stat st {};
    bool cert = ::stat(b.cert_source.c_str(), &st) == 0 || errno != ENOENT;
    bool key = files.key_file != nullptr && (::stat(b.key_source.c_str(), &st) == 0 || errno != ENOENT);
    if (!cert && !key) return std::optional<CertBundle>();
  }

  auto cert = readCertDirFile(b.cert_source, false);
  if (!cert) return cert.error();
  b.cert_pem = std::move(*cert);
  if (files.key_file != nullptr) {
    auto key = readCertDirFile(b.key_source, false);
    if (!key) return key.error();
    b.key_pem = std::move(*key);
  }
  if (files.chain_file != nullptr) {
    auto chain = readCertDirFile(b.chain_source, true);
    if (!chain) return chain.error();
    b.chain_pem = std::move(*chain);
  }
  return std::optional<CertBundle>(std::move(b));
}

Result<CertBundle> readProxyCertFiles(const std::string& dir) {
  auto bundle = readCertFiles(dir, CertName::kProxy);
  if (!bundle) return bundle.error();
  assert(bundle->has_value());  // the proxy certificate is required
  return std::move(**bundle);
}

Result<CertInputs> readCertDir(const std::string& dir) {
  CertInputs inputs;
  for (CertName name : kCertNames) {
    auto bundle = readCertFiles(dir, name);
    if (!bundle) return Error{namedReason(name, bundle.message()), bundle.error().sys_errno};
    inputs[indexOf(name)] = std::move(*bundle);
  }
  return inputs;
}

bool certFilesAbsent(const std::string& dir, CertName name) {
  const CertNameInfo& info = infoOf(name);
  struct stat st {};
  for (const char* file : {info.cert_file, info.key_file}) {
    if (file == nullptr) continue;
    if (::stat(joinPath(dir, file).c_str(), &st) == 0 || errno != ENOENT) return false;
  }
  return true;
}

bool proxyCertFilesAbsent(const std::string& dir) { return certFilesAbsent(dir, CertName::kProxy); }

Status writeFileAtomic(const std::string& path, const std::string& content,
                       unsigned mode) {
  std::string dir = dirOf(path);
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) {
    return makeError("cannot create a temporary file beside " + path + ": " +
                     std::strerror(errno));
  }
  auto failWith = [&](const std::string& what) -> Status {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return makeError("cannot write " + path + ": " + what + ": " + std::strerror(err));
  };
  // mkostemp creates 0600; set the final mode before any byte is written.
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) return failWith("fchmod");
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return failWith("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return failWith("fsync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return makeError("cannot write " + path + ": close: " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return makeError("cannot write " + path + ": rename: " + std::strerror(err));
  }
  // Make the rename itself durable.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status();
}

Result<CertInfo> generateSelfSigned(const std::string& dir,
                                    const std::vector<std::string>& dns_names, CertName cert_name) {
  if (!hasServerContext(cert_name)) {
    return makeError(std::string("cannot generate ") + toString(cert_name) + ": it is a CA bundle, not a pair");
  }
  std::vector<std::string> names = dns_names;
  if (names.empty()) names.push_back("localhost");
  for (const std::string& n : names) {
    // The names go into an OpenSSL config string: keep it unambiguous.
    if (n.empty() || n.find_first_of(",:\n\r") != std::string::npos) {
      return makeError("cannot generate a certificate for the name \"" + n +
                       "\": not a DNS name");
    }
  }
  if (Status s = mkdirPrivate(dir); !s) return Error{s.message()};

  EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return makeError(withReason("cannot generate an ECDSA P-256 key"));

  X509Ptr x(X509_new());
  if (!x) return makeError(withReason("cannot allocate a certificate"));
  X509_set_version(x.get(), X509_VERSION_3);

  // A random positive 127-bit serial: unique without any state (RFC 5280 4.1.2.2).
  BignumPtr serial(BN_new());
  if (!serial || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(x.get())) == nullptr) {
    return makeError(withReason("cannot make a certificate serial number"));
  }
  // Backdated a little so a peer whose clock is slightly behind accepts it.
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 365L * 24 * 3600);

  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(names[0].c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509_set_pubkey(x.get(), key.get());

  std::string san;
  for (const std::string& n : names) san += "DNS:" + n + ",";
  san += "IP:127.0.0.1";

  // A leaf (CA:FALSE, so strict clients such as rustls accept it as a server
  // certificate) that clients also use as its own trust anchor
  // (`redis-cli --tls --cacert proxy_cert.pem`). OpenSSL accepts that, also
  // with X509_V_FLAG_X509_STRICT as Python 3.13 sets it; the key identifiers
  // are there because strict mode wants them. No keyCertSign: RFC 5280
  // 4.2.1.3 forbids it without CA:TRUE.
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, x.get(), x.get(), nullptr, nullptr, 0);
  bool ext_ok = addExtension(x.get(), &v3, NID_basic_constraints, "critical,CA:FALSE") &&
                addExtension(x.get(), &v3, NID_key_usage, "critical,digitalSignature") &&
                addExtension(x.get(), &v3, NID_ext_key_usage, "serverAuth,clientAuth") &&
                addExtension(x.get(), &v3, NID_subject_key_identifier, "hash") &&
                addExtension(x.get(), &v3, NID_authority_key_identifier, "keyid:always") &&
                addExtension(x.get(), &v3, NID_subject_alt_name, san);
  if (!ext_ok) return makeError(withReason("cannot add certificate extensions"));

  if (X509_sign(x.get(), key.get(), EVP_sha256()) <= 0) {
    return makeError(withReason("cannot sign the certificate"));
  }

  BioPtr key_bio(BIO_new(BIO_s_mem()));
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  if (!key_bio || !cert_bio ||
      PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr,
                               nullptr) != 1 ||
      PEM_write_bio_X509(cert_bio.get(), x.get()) != 1) {
    return makeError(withReason("cannot encode the certificate pair as PEM"));
  }

  CertBundle bundle;
  bundle.cert_pem = bioText(cert_bio.get());
  bundle.key_pem = bioText(key_bio.get());
  bundle.cert_source = joinPath(dir, infoOf(cert_name).cert_file);
  bundle.key_source = joinPath(dir, infoOf(cert_name).key_file);
  // Wipe the PEM copy held by the BIO before it is freed.
  {
    char* p = nullptr;
    long n = BIO_get_mem_data(key_bio.get(), &p);
    if (n > 0) OPENSSL_cleanse(p, static_cast<size_t>(n));
  }

  Result<CertInfo> info = validateCertBundle(bundle);
  if (info.ok()) {
    // Key first: a watcher that sees the new certificate finds its key in place.
    if (Status s = writeFileAtomic(bundle.key_source, bundle.key_pem, 0600); !s) {
      info = Error{s.message()};
    } else if (Status c = writeFileAtomic(bundle.cert_source, bundle.cert_pem, 0644); !c) {
      info = Error{c.message()};
    }
  }
  OPENSSL_cleanse(bundle.key_pem.data(), bundle.key_pem.size());
  return info;
}

bool isValidityPeriodError(std::string_view message) {
  return message.find(kNotYetValid) != std::string_view::npos || message.find(kExpiredOn) != std::string_view::npos;
}

Result<size_t> validateCaBundle(const CertBundle& bundle) {
  const std::string src = bundle.cert_source.empty() ? "CA bundle" : bundle.cert_source;
  // The file's byte bound (kMaxCertFileBytes) is what limits the count here.
  ParsedCerts cas = parseCerts(bundle.cert_pem, kMaxCertFileBytes);
  if (!cas.error.empty()) return makeError(src + ": " + cas.error);
  if (cas.certs.empty()) return makeError(src + ": no PEM certificate found");
  return cas.certs.size();
}

Result<CertInfo> validateCertBundle(const CertBundle& bundle) {
  const std::string cert_src = bundle.cert_source.empty() ? "certificate" : bundle.cert_source;
  const std::string key_src = bundle.key_source.empty() ? "private key" : bundle.key_source;
  const std::string chain_src = bundle.chain_source.empty() ? "chain" : bundle.chain_source;

  // The leaf plus at most kMaxChainCerts intermediates, over both files:
  // parsing (and later checking each link of) thousands of certificates
  // would hold the control thread for seconds.
  auto tooMany = [](const std::string& src) {
    return makeError(src + ": more than " + std::to_string(kMaxChainCerts) +
                     " chain certificates (the leaf's intermediates, up to its root); "
                     "a chain that long is a mistake, such as a whole CA bundle");
  };
  ParsedCerts leaf_file = parseCerts(bundle.cert_pem, kMaxChainCerts + 1);
  if (!leaf_file.error.empty()) return makeError(cert_src + ": " + leaf_file.error);
  if (leaf_file.certs.empty()) return makeError(cert_src + ": no PEM certificate found");
  if (leaf_file.certs.size() > kMaxChainCerts + 1) return tooMany(cert_src);

  const size_t chain_room = kMaxChainCerts + 1 - leaf_file.certs.size();
  ParsedCerts chain_file = parseCerts(bundle.chain_pem, chain_room);
  if (!chain_file.error.empty()) return makeError(chain_src + ": " + chain_file.error);
  if (chain_file.certs.size() > chain_room) return tooMany(chain_src);
  if (chain_file.certs.empty() &&
      bundle.chain_pem.find_first_not_of(" \t\r\n") != std::string::npos) {
    return makeError(chain_src + ": no PEM certificate found");
  }

  if (bundle.key_pem.find("-----BEGIN") == std::string::npos) {
    return makeError(key_src + ": no PEM private key found");
  }
  EvpPkeyPtr key;
  {
    BioPtr bio = memBio(bundle.key_pem);
    key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassphrase, nullptr));
  }
  if (!key) {
    std::string reason = takeOpenSslError();
    if (reason == "bad decrypt" || reason == "bad password read" ||
        bundle.key_pem.find("ENCRYPTED") != std::string::npos) {
      return makeError(key_src + ": the private key is encrypted; shardgate needs it unencrypted");
    }
    if (reason == "no start line") return makeError(key_src + ": no PEM private key found");
    return makeError(key_src + ": the private key could not be parsed" +
                     (reason.empty() ? "" : " (" + reason + ")"));
  }

  X509* leaf = leaf_file.certs[0].get();
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    return makeError(key_src + ": private key does not match the certificate in " + cert_src);
  }

  // The chain in serving order: extra certificates after the leaf in the
  // certificate file, then the chain file.
  std::vector<Located> chain;
  for (size_t i = 1; i < leaf_file.certs.size(); ++i) {
    X509* c = leaf_file.certs[i].get();
    std::string short_label = "certificate " + std::to_string(i + 1) + " (" + cnOrSubject(c) + ")";
    chain.push_back({c, short_label + " in " + cert_src, cert_src, short_label});
  }
  for (size_t i = 0; i < chain_file.certs.size(); ++i) {
    X509* c = chain_file.certs[i].get();
    std::string short_label = "certificate " + std::to_string(i + 1) + " (" + cnOrSubject(c) + ")";
    chain.push_back({c, short_label + " in " + chain_src, chain_src, short_label});
  }

  X509* prev = leaf;
  std::string prev_label = cert_src;
  for (const Located& c : chain) {
    std::string issuer = nameText(X509_get_issuer_name(prev));
    if (X509_NAME_cmp(X509_get_issuer_name(prev), X509_get_subject_name(c.cert)) != 0) {
      return makeError(c.source + ": " + c.short_label + " did not issue " + prev_label +
                       " (issuer " + (issuer.empty() ? "empty" : issuer) + ")");
    }
    EVP_PKEY* issuer_key = X509_get0_pubkey(c.cert);
    if (issuer_key == nullptr || X509_verify(prev, issuer_key) != 1) {
      ERR_clear_error();
      return makeError(c.source + ": " + c.short_label + " has the issuer's name but did not sign " +
                       prev_label + " (signature check failed)");
    }
    prev = c.cert;
    prev_label = c.label;
  }

  if (Status s = checkValidity(leaf, cert_src + ": certificate"); !s) return Error{s.message()};
  for (const Located& c : chain) {
    if (Status s = checkValidity(c.cert, c.source + ": " + c.short_label); !s) {
      return Error{s.message()};
    }
  }

  ERR_clear_error();
  return describe(leaf, chain.size());
}

}  // namespace shardgate::tls
