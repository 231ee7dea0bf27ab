// preflight: a client session and a server session joined back to back in
// memory. The client context verifies nothing (it has no trust anchors for the
// operator's certificate, and trust is cert_files' job); it offers every
// cipher OpenSSL has, so a failure is the server's configuration, not the
// probe's.
//
//   client ──ClientHello──► server ──ServerHello..Finished──► client ──► ...
//   (at most kMaxRoundTrips; both sides open, then one record each way)
#include "tls/preflight.h"

#include <memory>
#include <string>

#include <openssl/ssl.h>

#include "common/byte_buffer.h"
#include "tls/memory_link.h"
#include "tls/tls_session.h"

namespace shardgate::tls {
namespace {

// A full TLS 1.2 handshake is 2 round trips, TLS 1.3 is 1.5, plus the ticket;
// anything still talking after this is broken.
constexpr int kMaxRoundTrips = 20;

// Everything the probe may offer: the operator's lists restrict the server.
constexpr const char* kProbeCiphers = "ALL";
constexpr const char* kProbeCiphersuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"
    "TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256";

const char* keyTypeName(const TlsContext& ctx) {
  EVP_PKEY* key = SSL_CTX_get0_privatekey(ctx.sslCtx());
  if (key == nullptr) return "";
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC: return "ECDSA";
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS: return "RSA";
    case EVP_PKEY_ED25519: return "Ed25519";
    case EVP_PKEY_ED448: return "Ed448";
    default: return "";
  }
}

// "no shared cipher" is the one failure whose fix lies in the config; say
// which key of it.
std::string hintFor(const std::string& code, TlsVersion at, const TlsContext& server) {
  if (code != "no shared cipher") return "";
  if (at == TlsVersion::k1_3) {
    return " (tls.ciphersuites has no TLS 1.3 ciphersuite usable here?)";
  }
  std::string type = keyTypeName(server);
  return " (tls.ciphers has no cipher usable with this " + (type.empty() ? "" : type + " ") +
         "certificate?)";
}

Status handshake(const TlsContextPtr& server_ctx, TlsVersion max_version) {
  const std::string what = "preflight handshake at TLS " + toString(max_version) + " failed: ";

  TlsPolicy probe;
  probe.min_version = server_ctx->policy().min_version;
  probe.ciphers = kProbeCiphers;
  probe.ciphersuites = kProbeCiphersuites;
  auto client_ctx = TlsContext::createClient(probe, "", max_version);
  if (!client_ctx) return makeError(what + client_ctx.message());

  MemoryPeer client;
  MemoryPeer server;
  client.session = TlsSession::create(*client_ctx, TlsSession::Role::kClient);
  server.session = TlsSession::create(server_ctx, TlsSession::Role::kServer);
  if (!client.session || !server.session) return makeError(what + "out of memory");
  // A context that verifies clients still asks for a certificate (that path
  // runs), but the probe has none from the operator's CAs: any outcome passes.
  if (server_ctx->verifiesClients()) server.session->acceptAnyClientCertificate();

  client.session->startHandshake(client.out);
  bool settled = pump(client, server, kMaxRoundTrips);

  // The server's reason first: it is the side whose configuration we test.
  for (const MemoryPeer* side : {&server, &client}) {
    if (side->session->state() == TlsSession::State::kFailed) {
      const std::string& code = side->session->failureCode();
      return makeError(what + code + hintFor(code, max_version, *server_ctx));
    }
  }
  if (!settled) return makeError(what + "the handshake did not finish in " +
                                 std::to_string(kMaxRoundTrips) + " round trips");
  if (!client.session->isOpen() || !server.session->isOpen()) {
    return makeError(what + "the handshake did not complete");
  }

  // One record each way: the keys both sides derived really agree.
  static constexpr uint8_t kPing[] = {'P', 'I', 'N', 'G'};
  if (Status s = client.session->encrypt(kPing, sizeof kPing, client.out); !s) {
    return makeError(what + s.message());
  }
  if (Status s = server.session->encrypt(kPing, sizeof kPing, server.out); !s) {
    return makeError(what + s.message());
  }
  pump(client, server, kMaxRoundTrips);
  if (server.plain.view() != "PING" || client.plain.view() != "PING") {
    return makeError(what + "application data did not pass after the handshake");
  }
  return Status();
}

}  // namespace

Status preflight(const TlsContextPtr& server) {
  if (!server || !server->isServer()) return makeError("preflight: not a server TLS context");
  if (Status s = handshake(server, TlsVersion::k1_3); !s) return s;
  if (server->policy().min_version <= TlsVersion::k1_2) {
    if (Status s = handshake(server, TlsVersion::k1_2); !s) return s;
  }
  return Status();
}

}  // namespace shardgate::tls
