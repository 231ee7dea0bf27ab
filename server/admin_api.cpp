#include "server/admin_api.h"

#include <spdlog/spdlog.h>

#include <exception>

namespace shardgate::server {

std::string logSafe(std::string_view text) {
  // What a client sent (a user name, a path, a body) goes into log lines: no
  // control character may start a forged line, and a line stays short.
  constexpr size_t kMaxLogged = 1024;
  std::string out;
  for (char c : text.substr(0, kMaxLogged)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  if (text.size() > kMaxLogged) out += "...";
  return out;
}

http::Response jsonResponse(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Result<std::unique_ptr<AdminApi>> AdminApi::create(uv_loop_t* loop, AdminHost& host) {
  const config::Config& config = host.config();
  if (!config.admin_listen) return makeError("admin.listen is not set");
  std::unique_ptr<AdminApi> api(new AdminApi(loop, host));
  api->auth_.setUsers(config.admin.users);
  http::ServerOptions options;
  options.max_connections = config.admin.max_connections;
  options.request_timeout_ms = config.admin.request_timeout_ms;
  options.max_body_bytes = config.admin.max_body_bytes;
  options.name = "admin API";
  AdminApi* self = api.get();
  auto server = http::HttpServer::create(loop, *config.admin_listen, options,
                                         &host.certStore().published(tls::CertName::kApi),
                                         [self](const http::Request& r, http::Respond respond) {
                                           self->handle(r, std::move(respond));
                                         });
  if (!server) return makeError(config.where("admin.listen") + "admin.listen: " + server.message());
  api->server_ = std::move(*server);
  return api;
}

AdminApi::AdminApi(uv_loop_t* loop, AdminHost& host) : host_(host), auth_(loop) {}

AdminApi::~AdminApi() { stop(); }

void AdminApi::stop() {
  if (server_) server_->stop();
}

void AdminApi::handle(const http::Request& request, http::Respond respond) {
  // The request is copied into the callback: authentication may finish
  // after the connection's own copy is gone.
  auth_.authenticate(request, [this, request, respond](AdminAuth::Outcome outcome) {
    if (!outcome.allowed) {
      if (request.method != "GET") {
        audit(request, outcome.who.empty() ? "anonymous" : outcome.who, request.method + " " + request.path,
              outcome.refusal);
      }
      respond(std::move(outcome.refusal));
      return;
    }
    // This may run from a libuv callback (a verification that finished on
    // the thread pool), where no exception may pass: an endpoint that throws
    // answers 500.
    try {
      route(request, outcome.who, respond);
    } catch (const std::exception& e) {
      spdlog::error("admin API: {} {} from {}: {}", request.method, logSafe(request.path), request.peer, e.what());
      respond(http::errorResponse(500, "internal_error", "the request could not be handled"));
    } catch (...) {
      respond(http::errorResponse(500, "internal_error", "the request could not be handled"));
    }
  });
}

void AdminApi::route(const http::Request& request, const std::string& who, http::Respond respond) {
  const std::string& path = request.path;
  const std::string& method = request.method;
  auto wrongMethod = [&](const char* allowed) {
    http::Response r = http::errorResponse(405, "method_not_allowed",
                                           method + " is not allowed on " + path + " (allowed: " + allowed + ")");
    r.headers.emplace_back("Allow", allowed);
    return r;
  };
  std::string what = method + " " + path;
  if (path == "/v1/cluster/update_cert") {
    if (method != "PUT") return respond(wrongMethod("PUT"));
    http::Response r = updateCert(request, what);
    audit(request, who, what, r);
    return respond(std::move(r));
  }
  if (path == "/v1/cluster/certificates") {
    if (method == "GET") return respond(getCertificates());
    if (method != "PUT") return respond(wrongMethod("GET, PUT"));
    http::Response r = putCertificates(request, what);
    audit(request, who, what, r);
    return respond(std::move(r));
  }
  if (path == "/v1/cluster") {
    if (method == "GET") return respond(getCluster());
    if (method != "PUT") return respond(wrongMethod("GET, PUT"));
    http::Response r = putCluster(request, what);
    audit(request, who, what, r);
    return respond(std::move(r));
  }
  if (path == "/v1/bdbs") {
    if (method != "GET") return respond(wrongMethod("GET"));
    return respond(getBdbs());
  }
  respond(http::errorResponse(404, "not_found", "no endpoint " + path));
}

void AdminApi::audit(const http::Request& request, const std::string& who, const std::string& what,
                     const http::Response& response) {
  // The result is the status and, on failure, the description that went
  // back to the client (never a key: no endpoint echoes one).
  std::string result = std::to_string(response.status);
  if (response.status >= 400) result += " " + response.body;
  spdlog::info("audit: {} from {}: {}: {}", logSafe(who), request.peer, logSafe(what), logSafe(result));
}

}  // namespace shardgate::server
