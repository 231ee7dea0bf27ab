// The certificate endpoints. A change takes the one path every change of
// certificate takes (the store's transaction), with the files written in
// between, so that the directory, this process and every other shardgate
// watching the same cert_dir agree:
//
//   parse JSON ─► each item: known name? (403) PEM, pair, dates (400, 406)
//   ─► transaction: stage all ─► prepare: build + preflight every context (400)
//   ─► write the files atomically (key 0600 first, then the certificate)
//   ─► commit (pointer swaps that cannot fail)
//
// Nothing is written before everything validated; a failed write puts the
// previous files back, and nothing is committed.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <set>

#include "server/admin_api.h"
#include "server/admin_json.h"
#include "tls/cert_files.h"

namespace shardgate::server {

using json = nlohmann::json;
using tls::CertName;

namespace {

struct Item {
  CertName name;
  tls::CertBundle bundle;
};

http::Response badRequest(const std::string& code, const std::string& description) {
  return http::errorResponse(400, code, description);
}

// A problem with a certificate's content: its dates are 406, anything else 400.
http::Response certProblem(const std::string& description) {
  if (tls::isValidityPeriodError(description)) {
    const bool expired = description.find(" expired on ") != std::string::npos;
    return http::errorResponse(406, expired ? "cert_expired" : "cert_not_yet_valid", description);
  }
  return badRequest("invalid_certificate", description);
}

// Reads {name, certificate, key} items; on error the answer to send.
std::optional<http::Response> readItems(const json& list, std::vector<Item>& out) {
  std::set<CertName> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& item = list[i];
    const std::string at = list.size() > 1 ? "certificates[" + std::to_string(i) + "]: " : "";
    if (!item.is_object()) return badRequest("invalid_request", at + "expected an object {name, certificate, key}");
    auto name_it = item.find("name");
    if (name_it == item.end() || !name_it->is_string()) {
      return badRequest("missing_field", at + "\"name\" is required (proxy, api, metrics_exporter, mtls_trusted_ca)");
    }
    const std::string name_text = name_it->get<std::string>();
    auto name = tls::parseCertName(name_text);
    if (!name) {
      return http::errorResponse(403, "unknown_cert",
                                 at + "unknown certificate name \"" + name_text +
                                     "\" (known: proxy, api, metrics_exporter, mtls_trusted_ca)");
    }
    if (!seen.insert(*name).second) return badRequest("invalid_request", at + "\"" + name_text + "\" is given twice");
    auto cert_it = item.find("certificate");
    if (cert_it == item.end() || !cert_it->is_string() || cert_it->get<std::string>().empty()) {
      return badRequest("missing_field", at + "\"certificate\" (PEM: the certificate, then its chain) is required");
    }
    Item out_item{*name, {}};
    out_item.bundle.cert_pem = cert_it->get<std::string>();
    out_item.bundle.cert_source = "certificate \"" + name_text + "\" in the request";
    if (tls::hasServerContext(*name)) {
      auto key_it = item.find("key");
      if (key_it == item.end() || !key_it->is_string() || key_it->get<std::string>().empty()) {
        return badRequest("missing_field", at + "\"key\" (PEM) is required for " + name_text);
      }
      out_item.bundle.key_pem = key_it->get<std::string>();
      out_item.bundle.key_source = "key \"" + name_text + "\" in the request";
      if (auto info = tls::validateCertBundle(out_item.bundle); !info) return certProblem(at + info.message());
    } else {
      if (item.contains("key") && !item["key"].is_null()) {
        return badRequest("invalid_request", at + name_text + " is a CA bundle: it takes no key");
      }
      if (auto count = tls::validateCaBundle(out_item.bundle); !count) return certProblem(at + count.message());
    }
    out.push_back(std::move(out_item));
  }
  return std::nullopt;
}

std::string pathOf(const std::string& dir, const char* file) { return dir + "/" + file; }

// Writes one certificate's files: the key first, so a watcher that sees the
// new certificate finds its key in place. The proxy certificate's chain is
// in its certificate text, so an old chain_certs.pem is removed.
Status writeItem(const std::string& dir, const Item& item) {
  const tls::CertNameInfo& info = tls::infoOf(item.name);
  if (info.key_file != nullptr) {
    if (Status s = tls::writeFileAtomic(pathOf(dir, info.key_file), item.bundle.key_pem, 0600); !s) return s;
  }
  if (Status s = tls::writeFileAtomic(pathOf(dir, info.cert_file), item.bundle.cert_pem, 0644); !s) return s;
  if (info.chain_file != nullptr) {
    const std::string chain = pathOf(dir, info.chain_file);
    if (::unlink(chain.c_str()) != 0 && errno != ENOENT) {
      return makeError("cannot remove " + chain + ": " + std::strerror(errno));
    }
  }
  return {};
}

// Puts back what the store had committed for item's name (the files as
// they were), best effort: used only after a failed write.
void restoreItem(const std::string& dir, const Item& item, const tls::CertInputs& committed) {
  const tls::CertNameInfo& info = tls::infoOf(item.name);
  const auto& before = committed[tls::indexOf(item.name)];
  if (!before) {
    for (const char* f : {info.cert_file, info.key_file}) {
      if (f != nullptr) ::unlink(pathOf(dir, f).c_str());
    }
    return;
  }
  if (info.key_file != nullptr) (void)tls::writeFileAtomic(pathOf(dir, info.key_file), before->key_pem, 0600);
  (void)tls::writeFileAtomic(pathOf(dir, info.cert_file), before->cert_pem, 0644);
  if (info.chain_file != nullptr && !before->chain_pem.empty()) {
    (void)tls::writeFileAtomic(pathOf(dir, info.chain_file), before->chain_pem, 0644);
  }
}

json describeChange(const tls::CertChange& change) {
  json out = {{"name", tls::toString(change.name)}};
  if (change.context) {
    const tls::CertInfo& info = change.context->certInfo();
    out["generation"] = change.context->generation();
    out["subject"] = info.subject;
    out["serial"] = info.serial;
    out["not_after"] = info.not_after;
    out["sha256_fingerprint"] = info.sha256_fingerprint;
  } else {
    out["ca_certificates"] = change.ca_certificates;
  }
  return out;
}

// The whole change for one or several items; the answer.
http::Response applyItems(AdminHost& host, std::vector<Item> items, bool single) {
  const std::string& dir = host.config().cert_dir;
  tls::CertStore& store = host.certStore();
  tls::CertTransaction txn = store.begin();
  for (Item& item : items) {
    tls::CertBundle staged = item.bundle;
    // What the watcher will read back from the files, so it finds the
    // directory equal to what is served and rebuilds nothing.
    const tls::CertNameInfo& info = tls::infoOf(item.name);
    staged.cert_source = pathOf(dir, info.cert_file);
    if (info.key_file != nullptr) staged.key_source = pathOf(dir, info.key_file);
    if (info.chain_file != nullptr) staged.chain_source = pathOf(dir, info.chain_file);
    txn.stage(item.name, std::move(staged));
  }
  if (auto prepared = txn.prepare(); !prepared) return certProblem(prepared.message());
  const tls::CertInputs before = store.committed();
  for (size_t i = 0; i < items.size(); ++i) {
    if (Status s = writeItem(dir, items[i]); !s) {
      for (size_t j = 0; j <= i; ++j) restoreItem(dir, items[j], before);
      return http::errorResponse(500, "write_failed", s.message() + "; the previous files were put back");
    }
  }
  auto changes = txn.commit();
  if (!changes) {
    for (const Item& item : items) restoreItem(dir, item, before);
    return http::errorResponse(500, "apply_failed", changes.message() + "; the previous files were put back");
  }
  json applied = json::array();
  for (const Item& item : items) {
    const tls::CertChange* change = nullptr;
    for (const tls::CertChange& c : *changes) {
      if (c.name == item.name) change = &c;
    }
    if (change != nullptr) {
      applied.push_back(describeChange(*change));
    } else {
      // The same certificate as served: nothing to change, still a success,
      // answered in the same shape so a script run twice reads the same fields.
      tls::CertChange same;
      same.name = item.name;
      same.context = store.current(item.name);
      json described = describeChange(same);
      described["unchanged"] = true;
      applied.push_back(described);
    }
    if (change != nullptr && change->context) {
      const tls::CertInfo& info = change->context->certInfo();
      spdlog::info("certificate {} replaced through the admin API: generation {} -> {}: {} serial {} not after {} "
                   "sha256 {}",
                   tls::toString(item.name), change->before ? change->before->generation() : 0,
                   change->context->generation(), info.subject, info.serial, info.not_after, info.sha256_fingerprint);
    }
  }
  // Other certificates the change rebuilt (the api context when its client CA changed) are not listed.
  if (single) return jsonResponse(200, dumpJson(applied[0]));
  return jsonResponse(200, dumpJson(json{{"certificates", applied}}));
}

}  // namespace

http::Response AdminApi::updateCert(const http::Request& request, std::string& what) {
  json doc = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return badRequest("invalid_json", "expected a JSON object {\"name\", \"certificate\", \"key\"}");
  }
  if (doc.contains("name") && doc["name"].is_string()) what += " name=" + doc["name"].get<std::string>();
  std::vector<Item> items;
  if (auto refusal = readItems(json::array({doc}), items)) return *refusal;
  return applyItems(host_, std::move(items), true);
}

http::Response AdminApi::putCertificates(const http::Request& request, std::string& what) {
  json doc = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("certificates") || !doc["certificates"].is_array() ||
      doc["certificates"].empty()) {
    return badRequest("invalid_json", "expected a JSON object {\"certificates\": [{\"name\", \"certificate\", \"key\"}, ...]}");
  }
  std::string names;
  for (const json& item : doc["certificates"]) {
    if (item.is_object() && item.contains("name") && item["name"].is_string()) {
      names += (names.empty() ? "" : ",") + item["name"].get<std::string>();
    }
  }
  what += " names=" + names;
  std::vector<Item> items;
  if (auto refusal = readItems(doc["certificates"], items)) return *refusal;
  return applyItems(host_, std::move(items), false);
}

http::Response AdminApi::getCertificates() {
  tls::CertStore& store = host_.certStore();
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  json list = json::array();
  for (CertName name : tls::kCertNames) {
    json item = {{"name", tls::toString(name)}, {"configured", store.configured(name)}};
    if (auto ctx = store.current(name)) {
      const tls::CertInfo& info = ctx->certInfo();
      item["subject"] = info.subject;
      item["sans"] = info.sans;
      item["issuer"] = info.issuer;
      item["serial"] = info.serial;
      item["not_before"] = info.not_before;
      item["not_after"] = info.not_after;
      item["days_left"] = static_cast<int64_t>(std::floor(static_cast<double>(info.not_after_epoch - now) / 86400.0));
      item["sha256_fingerprint"] = info.sha256_fingerprint;
      item["chain_length"] = info.chain_length;
      item["generation"] = ctx->generation();
      json live = json::array();
      for (const auto& [generation, sessions] : store.liveGenerations(name)) {
        live.push_back({{"generation", generation}, {"connections", sessions}});
      }
      item["live_connections"] = live;
    } else if (const auto& input = store.committed()[tls::indexOf(name)]; input && !tls::hasServerContext(name)) {
      if (auto count = tls::validateCaBundle(*input)) item["ca_certificates"] = *count;
    }
    list.push_back(item);
  }
  json out = {{"certificates", list}};
  const std::string failure = host_.lastCertFailure();
  out["last_reload_failure"] = failure.empty() ? json(nullptr) : json(failure);
  return jsonResponse(200, dumpJson(out));
}

}  // namespace shardgate::server
