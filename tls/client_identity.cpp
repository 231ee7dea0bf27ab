// ClientIdentity: names read from an X509 with OpenSSL's accessors, and the
// allow-list matcher, which is plain string work.
#include "tls/client_identity.h"

#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/ascii.h"
#include "tls/openssl_ptr.h"

namespace shardgate::tls {
namespace {

std::string asn1Text(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, s);
  if (len < 0) return {};
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

std::string rfc2253(X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return {};
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

}  // namespace

ClientIdentity identityOfCertificate(x509_st* cert) {
  ClientIdentity id;
  if (cert == nullptr) return id;
  X509_NAME* subject = X509_get_subject_name(cert);
  id.subject = rfc2253(subject);
  for (int i = -1; (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0;) {
    id.cn = asn1Text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
  }
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      switch (gn->type) {
        case GEN_DNS: id.dns.push_back(asn1Text(gn->d.dNSName)); break;
        case GEN_EMAIL: id.email.push_back(asn1Text(gn->d.rfc822Name)); break;
        case GEN_URI: id.uri.push_back(asn1Text(gn->d.uniformResourceIdentifier)); break;
        default: break;
      }
    }
    GENERAL_NAMES_free(sans);
  }
  return id;
}

bool wildcardMatch(std::string_view pattern, std::string_view text) {
  // Greedy with one backtrack point: linear in practice, no recursion.
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Result<ClientAllowList::Entry> ClientAllowList::parseEntry(std::string_view entry) {
  static constexpr std::pair<std::string_view, Kind> kPrefixes[] = {
      {"cn:", Kind::kCn}, {"dns:", Kind::kDns}, {"email:", Kind::kEmail}, {"uri:", Kind::kUri}};
  for (const auto& [prefix, kind] : kPrefixes) {
    if (entry.substr(0, prefix.size()) != prefix) continue;
    std::string pattern(entry.substr(prefix.size()));
    if (pattern.empty()) {
      return makeError("\"" + std::string(entry) + "\" has nothing after " + std::string(prefix) +
                       " (a name, or a pattern with '*')");
    }
    if (kind == Kind::kDns) pattern = asciiLower(pattern);
    return Entry{kind, std::move(pattern)};
  }
  return makeError("expected cn:, dns:, email: or uri: followed by a name or a '*' pattern, got \"" +
                   std::string(entry) + "\"");
}

Result<ClientAllowList> ClientAllowList::create(const std::vector<std::string>& entries) {
  ClientAllowList list;
  for (size_t i = 0; i < entries.size(); ++i) {
    auto entry = parseEntry(entries[i]);
    if (!entry) return makeError("[" + std::to_string(i) + "]: " + entry.message());
    list.entries_.push_back(std::move(*entry));
  }
  return list;
}

bool ClientAllowList::allows(const ClientIdentity& id) const {
  for (const Entry& e : entries_) {
    switch (e.kind) {
      case Kind::kCn:
        if (!id.cn.empty() && wildcardMatch(e.pattern, id.cn)) return true;
        break;
      case Kind::kDns:
        for (const std::string& name : id.dns) {
          if (wildcardMatch(e.pattern, asciiLower(name))) return true;
        }
        break;
      case Kind::kEmail:
        for (const std::string& name : id.email) {
          if (wildcardMatch(e.pattern, name)) return true;
        }
        break;
      case Kind::kUri:
        for (const std::string& name : id.uri) {
          if (wildcardMatch(e.pattern, name)) return true;
        }
        break;
    }
  }
  return false;
}

}  // namespace shardgate::tls
