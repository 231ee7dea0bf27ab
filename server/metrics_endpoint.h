// MetricsEndpoint: GET /metrics on metrics.listen, HTTPS with the
// metrics_exporter certificate (taken from the store for every connection,
// so a rotation serves the next handshake) or plain HTTP with
// metrics.tls: false. Runs on the control loop; each scrape asks the server
// for the exposition (Render), which sums the workers' counters then.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "http/http_server.h"
#include "net/socket_address.h"
#include "tls/tls_context_store.h"

namespace shardgate::server {

class MetricsEndpoint {
 public:
  using Render = std::function<std::string()>;

  // tls: the published metrics_exporter contexts, or null for plain HTTP.
  // Errors name the address.
  static Result<std::unique_ptr<MetricsEndpoint>> create(uv_loop_t* loop, const net::SocketAddress& address,
                                                         tls::TlsContextStore* tls, Render render);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // "127.0.0.1:8070", with the bound port.
  const std::string& address() const { return server_->address(); }
  void stop();

  // What a request gets: the exposition for GET /metrics, 404
  // elsewhere, 405 for other methods. Pure but for render(); for the tests.
  static http::Response answer(const http::Request& request, const Render& render);

 private:
  MetricsEndpoint() = default;
  std::unique_ptr<http::HttpServer> server_;
};

}  // namespace shardgate::server
