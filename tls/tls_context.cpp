// TlsContext: builds an SSL_CTX whole from a validated bundle and a policy.
// Nothing here is changed after create() returns; sessions on any worker
// thread share the context read-only.
#include "tls/tls_context.h"
#include "tls/tls_session.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tls/openssl_ptr.h"
#include "tls/ticket_keys.h"

namespace shardgate::tls {
namespace {

constexpr unsigned char kSessionIdContext[] = "shardgate";

// Never prompt for a passphrase (validateCertBundle already refused
// encrypted keys; this keeps a terminal prompt impossible by construction).
int noPassphrase(char*, int, int, void*) { return -1; }

Error openSslError(const std::string& what) {
  std::string message = what;
  unsigned long code = ERR_peek_error();
  if (code != 0) {
    const char* reason = ERR_reason_error_string(code);
    message += std::string(" (") + (reason ? reason : "unknown OpenSSL error") + ")";
  }
  ERR_clear_error();
  return makeError(std::move(message));
}

// Version floor, security level and cipher strings, shared by server,
// client and the scratch context of validatePolicy.
Status applyPolicy(SSL_CTX* ctx, const TlsPolicy& policy) {
  if (SSL_CTX_set_min_proto_version(ctx, toOpenSslVersion(policy.min_version)) != 1) {
    return openSslError("cannot set the minimum TLS version " + toString(policy.min_version));
  }
  // OpenSSL 3 refuses TLS 1.0/1.1 at security level 1 and above (they sign
  // with SHA-1), so an operator who asks for them gets them only at level 0.
  if (policy.min_version < TlsVersion::k1_2) SSL_CTX_set_security_level(ctx, 0);
  if (SSL_CTX_set_cipher_list(ctx, policy.ciphers.c_str()) != 1) {
    ERR_clear_error();
    return makeError("tls.ciphers: no cipher matches \"" + policy.ciphers + "\"");
  }
  if (SSL_CTX_set_ciphersuites(ctx, policy.ciphersuites.c_str()) != 1) {
    ERR_clear_error();
    return makeError("tls.ciphersuites: invalid TLS 1.3 ciphersuite list \"" +
                     policy.ciphersuites + "\"");
  }
  return Status();
}

// Options for every context: no buffers while idle, writes may come from a
// buffer that moved (ByteBuffer grows), no renegotiation (a DoS lever and
// never needed by Redis clients).
void applyCommonOptions(SSL_CTX* ctx) {
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
}

// Loads the same PEM that validateCertBundle accepted into ctx: leaf
// first, then any extra certificates from the certificate file, then the
// chain file, then the key.
Status useCertBundle(SSL_CTX* ctx, const CertBundle& bundle) {
  std::vector<X509Ptr> certs;
  for (const std::string* pem : {&bundle.cert_pem, &bundle.chain_pem}) {
    if (pem->empty()) continue;
    BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
    while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr)) {
      certs.emplace_back(x);
    }
    ERR_clear_error();  // the end of the PEM text is reported as an error
  }
  EvpPkeyPtr key;
  {
    BioPtr bio(BIO_new_mem_buf(bundle.key_pem.data(), static_cast<int>(bundle.key_pem.size())));
    key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassphrase, nullptr));
  }
  if (certs.empty() || !key) return openSslError("cannot load the validated certificate pair");

  if (SSL_CTX_use_certificate(ctx, certs[0].get()) != 1) {
    return openSslError(bundle.cert_source + ": the TLS library refused the certificate");
  }
  for (size_t i = 1; i < certs.size(); ++i) {
    // SSL_CTX_add1_chain_cert() is a macro with a C cast; this is its body.
    if (SSL_CTX_ctrl(ctx, SSL_CTRL_CHAIN_CERT, 1, static_cast<void*>(certs[i].get())) != 1) {
      return openSslError("cannot add chain certificate " + std::to_string(i) + " to the context");
    }
  }
  // The chain served is exactly the one given above. Without this, OpenSSL
  // tries to build one from the context's (empty) trust store on every
  // handshake: an X509_STORE_CTX and a failing X509_verify_cert per client.
  SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) {
    return openSslError(bundle.key_source + ": the TLS library refused the private key");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return openSslError(bundle.key_source + ": private key does not match the certificate in " +
                        bundle.cert_source);
  }

  return Status();
}

// Asks for a client certificate and checks it against ca_pem, letting the
// handshake finish whatever the outcome: the verdict is read afterwards
// (SSL_get_verify_result), where a failed one just means "no certificate".
Status requestClientCertificate(SSL_CTX* ctx, const std::string& ca_pem) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
  BioPtr bio(BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size())));
  int added = 0;
  while (X509* raw = PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr)) {
    X509Ptr x(raw);
    if (X509_STORE_add_cert(store, x.get()) != 1) {
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      return openSslError("cannot add a trusted client CA certificate");
    }
    if (names) {
      X509_NAME* name = X509_NAME_dup(X509_get_subject_name(x.get()));
      if (name && sk_X509_NAME_push(names, name) == 0) X509_NAME_free(name);
    }
    ++added;
  }
  ERR_clear_error();
  if (added == 0) {
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    return makeError("trusted client CA: no PEM certificate found");
  }
  if (names) SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
  return Status();
}

// Trusts ca_pem's CAs (and nothing else) for client certificates, checks
// crl_pem's revocations on every handshake, and fails a handshake whose
// client certificate does not verify. The session id context is derived
// from everything that decides a verdict (see createServer).
Status verifyClients(SSL_CTX* ctx, const ClientVerify& verify) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
  if (names == nullptr) return openSslError("out of memory");
  SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership; filled below
  BioPtr bio(BIO_new_mem_buf(verify.ca_pem.data(), static_cast<int>(verify.ca_pem.size())));
  int added = 0;
  while (X509* raw = PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr)) {
    X509Ptr x(raw);
    if (X509_STORE_add_cert(store, x.get()) != 1) return openSslError("cannot add a trusted client CA certificate");
    X509_NAME* name = X509_NAME_dup(X509_get_subject_name(x.get()));
    if (name && sk_X509_NAME_push(names, name) == 0) X509_NAME_free(name);
    ++added;
  }
  ERR_clear_error();
  if (added == 0) return makeError("client CA: no PEM certificate found");
  if (!verify.crl_pem.empty()) {
    BioPtr crl_bio(BIO_new_mem_buf(verify.crl_pem.data(), static_cast<int>(verify.crl_pem.size())));
    int crls = 0;
    while (X509_CRL* crl = PEM_read_bio_X509_CRL(crl_bio.get(), nullptr, noPassphrase, nullptr)) {
      int ok = X509_STORE_add_crl(store, crl);
      X509_CRL_free(crl);
      if (ok != 1) return openSslError("cannot add a client CRL");
      ++crls;
    }
    ERR_clear_error();
    if (crls == 0) return makeError("client CRL: no PEM CRL (-----BEGIN X509 CRL-----) found");
    // The client's own certificate is checked against its issuer's CRL,
    // which must be present: a CA without one fails every handshake
    // ("unable to get certificate CRL") rather than passing unchecked.
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  }
  int mode = SSL_VERIFY_PEER | (verify.required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
  SSL_CTX_set_verify(ctx, mode, nullptr);

  // SHA-256 of what decides a verdict, 32 bytes: SSL_MAX_SID_CTX_LENGTH.
  std::string material = "shardgate client-auth\n" + verify.scope + "\n" +
                         (verify.required ? "required\n" : "optional\n") + verify.ca_pem + "\n--crl--\n" +
                         verify.crl_pem;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(material.data(), material.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return openSslError("cannot digest the client CA set");
  }
  if (SSL_CTX_set_session_id_context(ctx, digest, std::min<unsigned int>(len, SSL_MAX_SID_CTX_LENGTH)) != 1) {
    return openSslError("cannot set the session id context");
  }
  return Status();
}

Result<std::string> readFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return makeError(std::string(what) + " " + path + ": cannot open: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

Status validatePolicy(const TlsPolicy& policy) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_method()));
  if (!ctx) return openSslError("cannot create a TLS context");
  return applyPolicy(ctx.get(), policy);
}

TlsContext::TlsContext(ssl_ctx_st* ctx, CertInfo info, TlsPolicy policy,
                       uint64_t generation, bool server)
    : ctx_(ctx),
      info_(std::move(info)),
      policy_(std::move(policy)),
      generation_(generation),
      server_(server) {}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Result<TlsContextPtr> TlsContext::createServer(const CertBundle& bundle,
                                               const TlsPolicy& policy,
                                               uint64_t generation,
                                               std::shared_ptr<TicketKeys> ticket_keys,
                                               const std::string* client_ca_pem,
                                               const ClientVerify* client_verify) {
  Result<CertInfo> info = validateCertBundle(bundle);
  if (!info) return info.error();

  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return openSslError("cannot create a TLS server context");
  if (Status s = applyPolicy(ctx.get(), policy); !s) return Error{s.message()};
  applyCommonOptions(ctx.get());
  // The server's cipher order wins: the operator's list is a preference.
  SSL_CTX_set_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE);

  // Resumption by stateless tickets only (the default in OpenSSL 3): no
  // server-side session cache is shared (and locked) between worker threads.
  // The ticket keys are this context's own, or shared ones that outlive
  // certificate rotations. The session id context is the same for every
  // generation, so a ticket sealed by one generation opens in the next.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx.get(), 1);
  SSL_CTX_set_session_id_context(ctx.get(), kSessionIdContext, sizeof kSessionIdContext - 1);
  if (ticket_keys) {
    if (Status s = ticket_keys->attachTo(ctx.get()); !s) return Error{s.message()};
  }

  if (Status s = useCertBundle(ctx.get(), bundle); !s) return Error{s.message()};
  if (client_ca_pem != nullptr && !client_ca_pem->empty()) {
    if (Status s = requestClientCertificate(ctx.get(), *client_ca_pem); !s) return Error{s.message()};
  }
  if (client_verify != nullptr) {
    if (Status s = verifyClients(ctx.get(), *client_verify); !s) return Error{s.message()};
  }

  ERR_clear_error();
  auto* context = new TlsContext(ctx.release(), std::move(info).value(), policy, generation, true);
  context->ticket_keys_ = std::move(ticket_keys);
  context->verifies_clients_ = client_verify != nullptr;
  return TlsContextPtr(context);
}

Result<TlsContextPtr> TlsContext::createClient(const TlsPolicy& policy,
                                               const std::string& trusted_ca_pem,
                                               std::optional<TlsVersion> max_version,
                                               const CertBundle* client_cert, uint64_t generation) {
  CertInfo info;
  if (client_cert != nullptr) {
    Result<CertInfo> checked = validateCertBundle(*client_cert);
    if (!checked) return checked.error();
    info = std::move(checked).value();
  }
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return openSslError("cannot create a TLS client context");
  if (Status s = applyPolicy(ctx.get(), policy); !s) return Error{s.message()};
  applyCommonOptions(ctx.get());
  if (max_version) {
    if (*max_version < policy.min_version) {
      return makeError("TLS client: maximum version " + toString(*max_version) +
                       " is below the minimum " + toString(policy.min_version));
    }
    if (SSL_CTX_set_max_proto_version(ctx.get(), toOpenSslVersion(*max_version)) != 1) {
      return openSslError("cannot set the maximum TLS version " + toString(*max_version));
    }
  }

  if (!trusted_ca_pem.empty()) {
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    BioPtr bio(BIO_new_mem_buf(trusted_ca_pem.data(), static_cast<int>(trusted_ca_pem.size())));
    int added = 0;
    while (X509* raw = PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr)) {
      X509Ptr x(raw);
      if (X509_STORE_add_cert(store, x.get()) != 1) {
        return openSslError("cannot add a trusted CA certificate");
      }
      ++added;
    }
    ERR_clear_error();
    if (added == 0) return makeError("trusted CA: no PEM certificate found");
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  }
  if (client_cert != nullptr) {
    if (Status s = useCertBundle(ctx.get(), *client_cert); !s) return Error{s.message()};
  }

  // Sessions are handed to the connection's slot, not kept in the context:
  // a context is shared by every shard connection of every worker, and a
  // session is only worth offering to the shard that issued it.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx.get(), storeNewSession);

  ERR_clear_error();
  return TlsContextPtr(new TlsContext(ctx.release(), std::move(info), policy, generation, false));
}

Result<TlsContextPtr> TlsContext::createClientFromFiles(const TlsPolicy& policy,
                                                        const std::string& ca_file,
                                                        const std::string& cert_file,
                                                        const std::string& key_file) {
  if (ca_file.empty()) return makeError("TLS client: a CA file is needed to verify the server");
  if (cert_file.empty() != key_file.empty()) {
    return makeError("TLS client: a client certificate needs both a certificate file and a key file");
  }
  Result<std::string> ca = readFile(ca_file, "CA file");
  if (!ca) return ca.error();
  // Errors about the CA text name the file it came from.
  auto nameCaFile = [&](Result<TlsContextPtr> made) -> Result<TlsContextPtr> {
    if (!made && made.message().rfind("trusted CA", 0) == 0) {
      return makeError(ca_file + ": " + made.message());
    }
    return made;
  };
  if (cert_file.empty()) return nameCaFile(createClient(policy, *ca));
  CertBundle bundle;
  Result<std::string> cert = readFile(cert_file, "certificate file");
  if (!cert) return cert.error();
  Result<std::string> key = readFile(key_file, "key file");
  if (!key) return key.error();
  bundle.cert_pem = std::move(cert).value();
  bundle.key_pem = std::move(key).value();
  bundle.cert_source = cert_file;
  bundle.key_source = key_file;
  return nameCaFile(createClient(policy, *ca, std::nullopt, &bundle));
}

}  // namespace shardgate::tls
