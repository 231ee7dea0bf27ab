// Handshake failure reasons: the OpenSSL reason (as TlsSession words it)
// to the metric label.
#include "proxy/stats.h"

#include <doctest/doctest.h>

#include <string>

using namespace shardgate::proxy;

namespace {
// Labels compared as strings (doctest prints them on a failure).
std::string label(HandshakeFailure f) { return std::string(toString(f)); }
std::string label(const char* reason) { return label(classifyHandshakeFailure(reason)); }
}  // namespace

TEST_CASE("classifyHandshakeFailure: client certificate reasons") {
  CHECK(label("peer did not return a certificate") == label(HandshakeFailure::kNoClientCert));
  CHECK(label("certificate verify failed: certificate has expired") == label(HandshakeFailure::kClientCertExpired));
  CHECK(label("certificate verify failed: unable to get local issuer certificate") == label(HandshakeFailure::kBadClientCert));
  CHECK(label("certificate verify failed: certificate revoked") == label(HandshakeFailure::kBadClientCert));
  CHECK(std::string(toString(HandshakeFailure::kNoClientCert)) == "no_client_cert");
  CHECK(std::string(toString(HandshakeFailure::kBadClientCert)) == "bad_client_cert");
  CHECK(std::string(toString(HandshakeFailure::kClientCertExpired)) == "client_cert_expired");
  CHECK(std::string(toString(HandshakeFailure::kClientNotAllowed)) == "client_not_allowed");
  // The reasons that were there before keep their labels.
  CHECK(label("no shared cipher") == label(HandshakeFailure::kNoSharedCipher));
  CHECK(label("unsupported protocol") == label(HandshakeFailure::kProtocolVersion));
  CHECK(label("peer closed") == label(HandshakeFailure::kPeerClosed));
}
