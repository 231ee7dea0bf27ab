// CertStore: the named certificates (cert_name.h) and the one way any of
// them changes, a transaction. The start, a file event in cert_dir, SIGHUP,
// --check-certs, --check-config, the bench servers (and later the admin
// API's PUT of one or several certificates) all go through it:
//
//   begin() ─► stage(name, PEM) ... ─► prepare(): for each name whose input
//   or TLS policy differs from what is committed:
//        validate (pair, chain, dates) ─► build SSL_CTX ─► preflight handshake
//   ─► commit(): publish every built context, a swap per name that cannot fail
//
// All or nothing: the first certificate that fails ends the transaction with
// an error naming it (namedReason) and publishes nothing. Names whose inputs
// are unchanged build nothing and keep their context and generation; a
// transaction that changes nothing is a no-op.
//
// Publishing is TlsContextStore's (one per name): workers take
// published(CertName::kProxy).current() once per accepted connection, with
// no lock held across any crypto, and an old context lives until its last
// session closes. Several names are published one after the other, so a
// reader of two names may see one new and one old for an instant; each
// context is whole. Everything else is for the control thread only.
//
// Today only proxy is served. api and metrics_exporter contexts are built,
// preflighted and held when their files exist, so a bad file is reported
// naming them, but no listener serves them yet (the admin API and metrics
// listeners come later). mtls_trusted_ca is validated and held as PEM; the
// api context and every client-auth endpoint trust it.
//
// Client-auth endpoints (a database with client_auth) are a second kind of
// entry, keyed by database name: each publishes a server context of its own,
// the proxy certificate plus its client verification (its CAs: client_ca or
// mtls_trusted_ca, and its CRLs). It is rebuilt, preflighted and published in
// the same transaction whenever the proxy certificate, its CAs, its CRLs or
// the TLS policy change, so every path that changes a certificate applies it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "common/result.h"
#include "tls/cert_files.h"
#include "tls/cert_name.h"
#include "tls/tls_context.h"
#include "tls/tls_context_store.h"

namespace shardgate::tls {

class CertStore;
class TicketKeys;

// One certificate a transaction changes.
struct CertChange {
  CertName name = CertName::kProxy;
  // False: an optional certificate no longer configured (its files are gone).
  bool configured = true;
  // The new server context (null for a CA bundle and for a removal).
  TlsContextPtr context;
  // What was published for this name when the change was prepared (null: none).
  TlsContextPtr before;
  // A CA bundle's certificates.
  size_t ca_certificates = 0;
};

// One data endpoint that verifies client certificates: what its context is
// built from besides the proxy certificate and the policy.
struct ClientAuthInput {
  std::string database;  // the key, and the scope of its session id context
  bool required = false;
  // Its own CA bundle (client_ca: cert_pem and cert_source); nullopt: the
  // mtls_trusted_ca certificate's.
  std::optional<CertBundle> ca;
  std::string crl_pem;  // empty: no CRL
  std::string crl_source;
};
bool sameClientAuth(const ClientAuthInput& a, const ClientAuthInput& b);

// One client-auth endpoint a transaction rebuilt.
struct ClientAuthChange {
  std::string database;
  TlsContextPtr context;
  TlsContextPtr before;  // null: its first context
  size_t ca_certificates = 0;
  std::string ca_source;
};

class CertTransaction {
 public:
  // A certificate's new input; nullopt: not configured (refused for proxy).
  void stage(CertName name, std::optional<CertBundle> bundle);
  // Every name at once, as readCertDir() returns them.
  void stageAll(CertInputs inputs);
  void setPolicy(TlsPolicy policy);
  // Every client-auth endpoint (replaces the committed list). An endpoint
  // the store knows but the list lacks keeps its context.
  void stageClientAuth(std::vector<ClientAuthInput> inputs) { client_auth_ = std::move(inputs); }
  const std::vector<ClientAuthInput>& clientAuthInputs() const { return client_auth_; }
  // The client-auth endpoints the last prepare() or commit() rebuilt.
  const std::vector<ClientAuthChange>& clientAuthChanges() const { return client_auth_changes_; }

  const std::optional<CertBundle>& input(CertName name) const { return inputs_[indexOf(name)]; }
  const CertInputs& inputs() const { return inputs_; }
  const TlsPolicy& policy() const { return policy_; }

  // Every staged input and the policy equal what is committed: commit()
  // would change nothing.
  bool unchanged() const;
  // Validates, builds and preflights every name that would change, and
  // returns the changes without publishing anything: the dry run.
  Result<std::vector<CertChange>> prepare() const;
  // prepare(), then publishes every change. No changes: nothing differed.
  // On error nothing is published, and failedName() says which certificate
  // it was about.
  Result<std::vector<CertChange>> commit();
  // The certificate the last failed prepare() or commit() was about; nullopt
  // when it failed for no certificate of its own (a stale transaction).
  std::optional<CertName> failedName() const { return failed_; }

 private:
  friend class CertStore;
  explicit CertTransaction(CertStore& store);
  Error fail(CertName name, const std::string& reason) const;
  Status prepareClientAuth() const;

  CertStore* store_;
  CertInputs inputs_;
  std::vector<ClientAuthInput> client_auth_;
  mutable std::vector<ClientAuthChange> client_auth_changes_;
  TlsPolicy policy_;
  uint64_t base_commit_;  // the store's commit count at begin()
  mutable std::optional<CertName> failed_;
};

class CertStore {
 public:
  // kShared: each server certificate seals session tickets with its own
  // TicketKeys, shared by all its generations, so a ticket issued before a
  // rotation still resumes after it (and none crosses from one certificate's
  // listener to another's). kPerContext: OpenSSL's own keys per context, for
  // dry runs and the bench servers, which never rotate.
  enum class TicketKeyMode { kShared, kPerContext };

  explicit CertStore(TicketKeyMode mode = TicketKeyMode::kShared);
  CertStore(const CertStore&) = delete;
  CertStore& operator=(const CertStore&) = delete;

  // A transaction starting from what is committed: stage only what changes.
  // One at a time: a transaction begun before another one committed fails.
  CertTransaction begin();

  // The published server contexts of one name (workers: kProxy).
  TlsContextStore& published(CertName name) { return published_[indexOf(name)]; }
  TlsContextPtr current(CertName name) const { return published_[indexOf(name)].current(); }
  // A client-auth endpoint's published contexts; null when the store has
  // never committed one for this database. The address is stable for the
  // store's life (workers keep it).
  TlsContextStore* clientAuthPublished(const std::string& database);
  bool configured(CertName name) const { return committed_[indexOf(name)].has_value(); }
  const CertInputs& committed() const { return committed_; }
  const TlsPolicy& policy() const { return policy_; }

  // Every context of name still alive (the current one, and older ones that
  // established connections still hold), oldest first: its generation and
  // its live TLS sessions. After a rotation the old generations drain to
  // zero and drop out of the list when their last connection closes.
  std::vector<std::pair<uint64_t, int64_t>> liveGenerations(CertName name);

  // Fresh session ticket keys for every server certificate (kShared only).
  void rotateTicketKeys();

  // A dry run of inputs under policy on an empty store: every configured
  // certificate validated, built and preflighted, nothing published anywhere.
  // The error names the certificate.
  static Result<std::vector<CertChange>> check(CertInputs inputs, const TlsPolicy& policy,
                                               std::vector<ClientAuthInput> client_auth = {});

 private:
  friend class CertTransaction;

  std::array<TlsContextStore, kCertNameCount> published_;
  std::array<std::shared_ptr<TicketKeys>, kCertNameCount> ticket_keys_;
  // What each name published, as weak references: bounded by the contexts
  // alive, since expired ones are pruned at every commit and every read.
  std::array<std::vector<std::weak_ptr<const TlsContext>>, kCertNameCount> history_;
  struct ClientAuthSlot {
    ClientAuthInput input;
    std::unique_ptr<TlsContextStore> published;
  };
  ClientAuthSlot* clientAuthSlot(const std::string& database);
  std::vector<ClientAuthSlot> client_auth_;
  CertInputs committed_;
  TlsPolicy policy_;
  uint64_t commits_ = 0;
};

}  // namespace shardgate::tls
