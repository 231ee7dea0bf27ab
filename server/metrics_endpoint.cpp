#include "server/metrics_endpoint.h"

#include "server/metrics_text.h"

namespace shardgate::server {

namespace {

// A scraper holds one keep-alive connection; a few more allow a second
// Prometheus and a curl by hand.
constexpr size_t kMaxConnections = 16;
constexpr uint64_t kRequestTimeoutMs = 10000;
// A scrape has no body.
constexpr size_t kMaxBodyBytes = 1024;

http::Response textResponse(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

}  // namespace

http::Response MetricsEndpoint::answer(const http::Request& request, const Render& render) {
  if (request.path != "/metrics") return textResponse(404, "no such page; metrics are at /metrics\n");
  if (request.method != "GET") {
    http::Response r = textResponse(405, request.method + " is not allowed on /metrics (allowed: GET)\n");
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  http::Response r;
  r.content_type = std::string(kMetricsContentType);
  r.body = render();
  return r;
}

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::create(uv_loop_t* loop, const net::SocketAddress& address,
                                                                 tls::TlsContextStore* tls, Render render) {
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  http::ServerOptions options;
  options.max_connections = kMaxConnections;
  options.request_timeout_ms = kRequestTimeoutMs;
  options.max_body_bytes = kMaxBodyBytes;
  options.name = "metrics";
  auto server = http::HttpServer::create(loop, address, options, tls,
                                         [render = std::move(render)](const http::Request& r, http::Respond respond) {
                                           respond(answer(r, render));
                                         });
  if (!server) return makeError(server.message());
  endpoint->server_ = std::move(*server);
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() { stop(); }

void MetricsEndpoint::stop() {
  if (server_) server_->stop();
}

}  // namespace shardgate::server
