#include "http/http_server.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "common/rate_limited_log.h"
#include "common/uv_handle.h"
#include "http/http_connection.h"
#include "net/listen_socket.h"
#include "net/tls_stream.h"

namespace shardgate::http {

namespace {

// How often the request timeout is checked: a quarter of it, within bounds,
// so a timeout fires at most a quarter late and an idle server wakes rarely.
uint64_t tickMs(uint64_t timeout_ms) { return std::clamp<uint64_t>(timeout_ms / 4, 10, 1000); }

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::create(uv_loop_t* loop, const net::SocketAddress& address,
                                                       ServerOptions options, tls::TlsContextStore* tls,
                                                       Handler handler) {
  if (options.max_connections == 0) return makeError(options.name + ": max_connections must be at least 1");
  if (options.request_timeout_ms == 0) return makeError(options.name + ": request_timeout_ms must be at least 1");
  auto fd = net::bindListenSocket(address);
  if (!fd) return fd.error();
  auto port = net::boundPort(*fd);
  if (!port) {
    ::close(*fd);
    return port.error();
  }
  std::unique_ptr<HttpServer> server(new HttpServer(loop, std::move(options), tls, std::move(handler)));
  net::SocketAddress bound = address;
  bound.port = *port;
  server->port_ = *port;
  server->address_ = bound.toString();
  auto listener = net::Listener::start(loop, *fd, server->address_, *server);
  if (!listener) return listener.error();  // the socket is closed by then
  server->listener_ = *listener;
  server->tick_ = new uv_timer_t;
  uv_timer_init(loop, server->tick_);
  server->tick_->data = server.get();
  const uint64_t tick = tickMs(server->options_.request_timeout_ms);
  uv_timer_start(server->tick_, [](uv_timer_t* t) { static_cast<HttpServer*>(t->data)->sweep(); }, tick, tick);
  return server;
}

HttpServer::HttpServer(uv_loop_t* loop, ServerOptions options, tls::TlsContextStore* tls, Handler handler)
    : loop_(loop), options_(std::move(options)), tls_(tls), handler_(std::move(handler)), io_(loop) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (listener_) listener_->close();
  listener_ = nullptr;
  if (tick_) {
    uv_close(asHandle(tick_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    tick_ = nullptr;
  }
  // close() calls forget(), which erases from the set: iterate over a copy.
  std::vector<HttpConnection*> open(connections_.begin(), connections_.end());
  for (HttpConnection* c : open) c->close();
  connections_.clear();
}

void HttpServer::onAccepted(int fd) {
  if (stopped_) {
    ::close(fd);
    return;
  }
  if (connections_.size() >= options_.max_connections) {
    ++refused_;
    static thread_local RateLimitedLog refused(spdlog::level::warn, "refused control connections");
    if (auto pass = refused.admit(uv_now(loop_))) {
      spdlog::warn("{} on {}: {} connections open, the most allowed: a new one was closed at once{}",
                   options_.name, address_, connections_.size(), pass);
    }
    // After the line: whoever sees the close finds the reason already logged.
    ::close(fd);
    return;
  }
  net::Stream* stream = nullptr;
  if (int rc = io_.adopt(fd, nullptr, &stream); rc != 0) {
    spdlog::warn("{} on {}: cannot take a connection: {}", options_.name, address_, uv_strerror(rc));
    return;
  }
  net::TlsStream* tls_stream = nullptr;
  if (tls_) {
    tls::TlsContextPtr ctx = tls_->current();
    if (!ctx) {
      // The certificate was withdrawn (its files removed): nothing to serve with.
      stream->close();
      return;
    }
    auto made = net::TlsStream::create(io_, stream, std::move(ctx), nullptr);
    if (!made) {
      spdlog::warn("{} on {}: {}", options_.name, address_, made.message());
      stream->close();
      return;
    }
    tls_stream = *made;
    stream = tls_stream;
  }
  connections_.insert(HttpConnection::start(*this, stream, tls_stream, uv_now(loop_)));
}

void HttpServer::onAcceptPaused() {
  // Out of descriptors: the listener retries by itself; nothing of ours to free.
}

void HttpServer::forget(HttpConnection* connection) { connections_.erase(connection); }

void HttpServer::sweep() {
  const uint64_t now = uv_now(loop_);
  std::vector<HttpConnection*> open(connections_.begin(), connections_.end());
  for (HttpConnection* c : open) c->checkTimeout(now, options_.request_timeout_ms);
}

}  // namespace shardgate::http
