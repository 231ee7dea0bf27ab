// CertStore: stage, validate, build, preflight, commit. The commit itself is
// a series of pointer swaps that cannot fail, so once prepare() succeeded
// nothing can leave the store half changed.
#include "tls/cert_store.h"

#include <utility>

#include "tls/preflight.h"
#include "tls/ticket_keys.h"

namespace shardgate::tls {
namespace {

bool sameInput(const std::optional<CertBundle>& a, const std::optional<CertBundle>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || samePem(*a, *b);
}

// The policy a certificate's context is built under: the control listeners'
// certificates take the control floor instead of the data one.
TlsPolicy policyFor(CertName name, const TlsPolicy& policy) {
  if (name != CertName::kApi && name != CertName::kMetricsExporter) {
    // The data contexts ignore the control floor: changing it rebuilds none of them.
    TlsPolicy data = policy;
    data.control_min_version = TlsPolicy{}.control_min_version;
    return data;
  }
  TlsPolicy control = policy;
  control.min_version = policy.control_min_version;
  control.audit_min_version.reset();
  return control;
}

// The api certificate's context asks clients for a certificate chaining to
// mtls_trusted_ca (passwordless admin access), so it depends on that input too.
bool dependsOnClientCa(CertName name) { return name == CertName::kApi; }

}  // namespace

bool sameClientAuth(const ClientAuthInput& a, const ClientAuthInput& b) {
  return a.database == b.database && a.required == b.required && sameInput(a.ca, b.ca) &&
         a.crl_pem == b.crl_pem && a.crl_source == b.crl_source;
}

CertTransaction::CertTransaction(CertStore& store)
    : store_(&store), inputs_(store.committed_), policy_(store.policy_), base_commit_(store.commits_) {}

void CertTransaction::stage(CertName name, std::optional<CertBundle> bundle) {
  inputs_[indexOf(name)] = std::move(bundle);
}

void CertTransaction::stageAll(CertInputs inputs) { inputs_ = std::move(inputs); }

void CertTransaction::setPolicy(TlsPolicy policy) { policy_ = std::move(policy); }

bool CertTransaction::unchanged() const {
  if (store_->commits_ == 0) return false;  // nothing committed yet: the first commit always builds
  for (const ClientAuthInput& in : client_auth_) {
    const CertStore::ClientAuthSlot* slot = store_->clientAuthSlot(in.database);
    if (slot == nullptr || !sameClientAuth(in, slot->input)) return false;
  }
  return sameInputs(inputs_, store_->committed_) && policy_ == store_->policy_;
}

// Each client-auth endpoint whose inputs differ from what it was built from:
// its CAs validated, its context built on the staged proxy certificate and
// policy, then preflighted (the probe is asked for a certificate and sends
// none; a required endpoint's verdict is not part of the probe).
Status CertTransaction::prepareClientAuth() const {
  const size_t proxy = indexOf(CertName::kProxy);
  const size_t ca = indexOf(CertName::kMtlsTrustedCa);
  const bool first = store_->commits_ == 0;
  const bool proxy_changed = first || !sameInput(inputs_[proxy], store_->committed_[proxy]) ||
                             policyFor(CertName::kProxy, policy_) != policyFor(CertName::kProxy, store_->policy_);
  const bool default_ca_changed = !sameInput(inputs_[ca], store_->committed_[ca]);
  for (const ClientAuthInput& in : client_auth_) {
    const CertStore::ClientAuthSlot* slot = store_->clientAuthSlot(in.database);
    const bool rebuild = slot == nullptr || proxy_changed || !sameClientAuth(in, slot->input) ||
                         (!in.ca && default_ca_changed);
    if (!rebuild) continue;
    const std::string what = "database " + in.database + ": client certificates: ";
    const CertBundle* bundle = in.ca ? &*in.ca : (inputs_[ca] ? &*inputs_[ca] : nullptr);
    if (bundle == nullptr) {
      // The trusted CA file went away under a database that relies on it.
      failed_ = CertName::kMtlsTrustedCa;
      return makeError(what + "no trusted CA: " + std::string(kMtlsCaFile) +
                       " is not in cert_dir and the database has no client_ca");
    }
    auto count = validateCaBundle(*bundle);
    if (!count) {
      if (!in.ca) failed_ = CertName::kMtlsTrustedCa;
      return makeError(what + count.message());
    }
    ClientVerify verify;
    verify.required = in.required;
    verify.ca_pem = bundle->cert_pem;
    verify.crl_pem = in.crl_pem;
    verify.scope = in.database;
    const uint64_t generation = slot ? slot->published->nextGeneration() : 1;
    auto ctx = TlsContext::createServer(*inputs_[proxy], policyFor(CertName::kProxy, policy_), generation,
                                        store_->ticket_keys_[proxy], nullptr, &verify);
    if (!ctx) {
      std::string message = ctx.message();
      if (message.rfind("client CRL", 0) == 0) message = in.crl_source + ": " + message;
      else if (message.rfind("client CA", 0) == 0) message = bundle->cert_source + ": " + message;
      return makeError(what + message);
    }
    if (Status st = preflight(*ctx); !st) return makeError(what + st.message());
    ClientAuthChange change;
    change.database = in.database;
    change.context = std::move(*ctx);
    change.before = slot ? slot->published->current() : nullptr;
    change.ca_certificates = *count;
    change.ca_source = bundle->cert_source;
    client_auth_changes_.push_back(std::move(change));
  }
  return Status();
}

Error CertTransaction::fail(CertName name, const std::string& reason) const {
  failed_ = name;
  return makeError(namedReason(name, reason));
}

Result<std::vector<CertChange>> CertTransaction::prepare() const {
  failed_.reset();
  client_auth_changes_.clear();
  if (base_commit_ != store_->commits_) {
    return makeError("the certificates changed while this change was prepared; try it again");
  }
  const bool first = store_->commits_ == 0;
  const size_t ca = indexOf(CertName::kMtlsTrustedCa);
  const bool client_ca_changed = !sameInput(inputs_[ca], store_->committed_[ca]);
  std::vector<CertChange> changes;
  for (CertName name : kCertNames) {
    const size_t i = indexOf(name);
    const std::optional<CertBundle>& staged = inputs_[i];
    if (!staged && infoOf(name).required) {
      return fail(name, std::string("the ") + toString(name) + " certificate is required and cannot be removed");
    }
    // A CA bundle does not depend on the TLS policy; a server context does.
    const bool policy_changed = first || policyFor(name, policy_) != policyFor(name, store_->policy_);
    const bool rebuild = staged && hasServerContext(name) &&
                         (policy_changed || (dependsOnClientCa(name) && client_ca_changed));
    if (sameInput(staged, store_->committed_[i]) && !rebuild) continue;

    CertChange change;
    change.name = name;
    change.before = store_->published_[i].current();
    if (!staged) {
      change.configured = false;
    } else if (!hasServerContext(name)) {
      auto count = validateCaBundle(*staged);
      if (!count) return fail(name, count.message());
      change.ca_certificates = *count;
    } else {
      const std::string* client_ca =
          dependsOnClientCa(name) && inputs_[ca] ? &inputs_[ca]->cert_pem : nullptr;
      auto ctx = TlsContext::createServer(*staged, policyFor(name, policy_),
                                          store_->published_[i].nextGeneration(), store_->ticket_keys_[i],
                                          client_ca);
      if (!ctx) return fail(name, ctx.message());
      if (Status st = preflight(*ctx); !st) return fail(name, st.message());
      change.context = std::move(*ctx);
    }
    changes.push_back(std::move(change));
  }
  client_auth_changes_.clear();
  if (!inputs_[indexOf(CertName::kProxy)]) return changes;  // refused above
  if (Status st = prepareClientAuth(); !st) {
    client_auth_changes_.clear();
    return makeError(st.message());
  }
  return changes;
}

Result<std::vector<CertChange>> CertTransaction::commit() {
  auto changes = prepare();
  if (!changes) return changes;
  if (changes->empty() && client_auth_changes_.empty()) return changes;
  // From here nothing can fail: swaps and assignments only (a new slot is
  // made only by the first commit, before any worker reads the store).
  for (const ClientAuthChange& change : client_auth_changes_) {
    CertStore::ClientAuthSlot* slot = store_->clientAuthSlot(change.database);
    if (slot == nullptr) {
      ClientAuthInput named;
      named.database = change.database;
      store_->client_auth_.push_back({std::move(named), std::make_unique<TlsContextStore>()});
      slot = &store_->client_auth_.back();
    }
    slot->published->publish(change.context);
  }
  for (const ClientAuthInput& in : client_auth_) {
    if (CertStore::ClientAuthSlot* slot = store_->clientAuthSlot(in.database)) slot->input = in;
  }
  for (const CertChange& change : *changes) {
    TlsContextStore& slot = store_->published_[indexOf(change.name)];
    if (change.context) {
      slot.publish(change.context);
      store_->history_[indexOf(change.name)].push_back(change.context);
    } else if (!change.configured) {
      slot.withdraw();
    }
  }
  store_->committed_ = inputs_;
  store_->policy_ = policy_;
  ++store_->commits_;
  base_commit_ = store_->commits_;
  return changes;
}

CertStore::CertStore(TicketKeyMode mode) {
  if (mode != TicketKeyMode::kShared) return;
  for (CertName name : kCertNames) {
    if (hasServerContext(name)) ticket_keys_[indexOf(name)] = TicketKeys::create();
  }
}

CertTransaction CertStore::begin() {
  CertTransaction txn(*this);
  for (const ClientAuthSlot& slot : client_auth_) txn.client_auth_.push_back(slot.input);
  return txn;
}

CertStore::ClientAuthSlot* CertStore::clientAuthSlot(const std::string& database) {
  for (ClientAuthSlot& slot : client_auth_) {
    if (slot.input.database == database) return &slot;
  }
  return nullptr;
}

TlsContextStore* CertStore::clientAuthPublished(const std::string& database) {
  ClientAuthSlot* slot = clientAuthSlot(database);
  return slot ? slot->published.get() : nullptr;
}

std::vector<std::pair<uint64_t, int64_t>> CertStore::liveGenerations(CertName name) {
  auto& history = history_[indexOf(name)];
  std::erase_if(history, [](const std::weak_ptr<const TlsContext>& w) { return w.expired(); });
  std::vector<std::pair<uint64_t, int64_t>> out;
  for (const auto& w : history) {
    if (auto ctx = w.lock()) out.emplace_back(ctx->generation(), ctx->liveSessions());
  }
  return out;
}

void CertStore::rotateTicketKeys() {
  for (const auto& keys : ticket_keys_) {
    if (keys) keys->rotate();
  }
}

Result<std::vector<CertChange>> CertStore::check(CertInputs inputs, const TlsPolicy& policy,
                                                 std::vector<ClientAuthInput> client_auth) {
  CertStore scratch(TicketKeyMode::kPerContext);
  CertTransaction txn = scratch.begin();
  txn.stageAll(std::move(inputs));
  txn.stageClientAuth(std::move(client_auth));
  txn.setPolicy(policy);
  return txn.prepare();
}

}  // namespace shardgate::tls
