// ClientIdentity: the names a verified client certificate carries (subject
// CN and SANs of type DNS, email and URI; SPIFFE ids are URIs), as plain
// strings, and ClientAllowList: a database's client_allow entries matched
// against them. Both are built at handshake or config time, never per
// request; nothing outside tls/ sees an X509.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

struct x509_st;  // X509, kept opaque outside tls/

namespace shardgate::tls {

struct ClientIdentity {
  std::string subject;  // RFC 2253 ("CN=app-1.example.com,O=Example")
  std::string cn;       // the subject's (last) commonName; empty when none
  std::vector<std::string> dns;
  std::vector<std::string> email;
  std::vector<std::string> uri;
};

ClientIdentity identityOfCertificate(x509_st* cert);

// '*' matches any run of characters (also none, also dots); everything else
// matches itself. Case-sensitive: the names are compared as the certificate
// spells them, except that DNS entries are compared in lower case.
bool wildcardMatch(std::string_view pattern, std::string_view text);

class ClientAllowList {
 public:
  enum class Kind { kCn, kDns, kEmail, kUri };
  struct Entry {
    Kind kind;
    std::string pattern;
  };

  // Entries "cn:...", "dns:...", "email:...", "uri:..." with a non-empty
  // pattern. The error names the index of the first bad entry and why.
  static Result<ClientAllowList> create(const std::vector<std::string>& entries);
  // Checks one entry; the message (without the index) says what is expected.
  static Result<Entry> parseEntry(std::string_view entry);

  ClientAllowList() = default;
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  // True when any entry matches any of the identity's names.
  bool allows(const ClientIdentity& id) const;

 private:
  std::vector<Entry> entries_;
};

}  // namespace shardgate::tls
