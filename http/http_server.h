// HttpServer: an HTTP/1.1 server on a libuv loop, plain or TLS, for the
// control side of shardgate (the admin API, the metrics endpoint). It runs
// on the control loop over net:: streams, so the data path's workers never
// see it.
//
//   listener ─accept─► (over max_connections: closed at once)
//            ─► TcpStream [─► TlsStream with the store's current context]
//            ─► HttpConnection: RequestParser ─► Handler(request, respond)
//                                      ◄── respond(response), now or later
//
// Bounds: at most max_connections at once; a request (its headers and body)
// must arrive whole within request_timeout_ms of its first byte (else 408
// and close; an idle keep-alive connection is simply closed after as long);
// headers over max_header_bytes get 431, a body over max_body_bytes 413,
// then the connection closes. A connection holds one request at a time:
// pipelined requests wait in the kernel until the answer is written.
//
// Lifetime: create() binds and listens; stop() (or the destructor) closes
// the listener and every connection. Connections free themselves once their
// socket is closed and never touch the server after stop(), so the server
// may be destroyed right after it. Control thread only.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>

#include "common/result.h"
#include "http/http_message.h"
#include "http/request_parser.h"
#include "net/listener.h"
#include "net/socket_address.h"
#include "net/uv_io_driver.h"
#include "tls/tls_context_store.h"

namespace shardgate::http {

class HttpConnection;

struct ServerOptions {
  size_t max_connections = 32;
  uint64_t request_timeout_ms = 10000;
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 1024 * 1024;
  // For log lines: "admin API", "metrics".
  std::string name = "http";
};

class HttpServer final : private net::AcceptHandler {
 public:
  // Binds address (port 0: the kernel picks; see port()) and listens.
  // tls: the published context of the listener's certificate, taken anew
  // for every connection (so a rotation serves the next handshake); null
  // for plain HTTP. It must outlive the server. Errors name the address.
  static Result<std::unique_ptr<HttpServer>> create(uv_loop_t* loop, const net::SocketAddress& address,
                                                    ServerOptions options, tls::TlsContextStore* tls,
                                                    Handler handler);
  ~HttpServer() override;
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port.
  int port() const { return port_; }
  // "127.0.0.1:9443": the address with the bound port.
  const std::string& address() const { return address_; }
  size_t connections() const { return connections_.size(); }
  // Connections closed at once because max_connections were open.
  uint64_t refused() const { return refused_; }
  // Stops accepting and closes every connection (answers not yet written
  // are dropped). Idempotent.
  void stop();

 private:
  friend class HttpConnection;

  HttpServer(uv_loop_t* loop, ServerOptions options, tls::TlsContextStore* tls, Handler handler);
  void onAccepted(int fd) override;
  void onAcceptPaused() override;
  void forget(HttpConnection* connection);  // a connection is closing
  void sweep();                             // the request timeout, checked on a tick

  uv_loop_t* loop_;
  ServerOptions options_;
  tls::TlsContextStore* tls_;
  Handler handler_;
  net::UvIoDriver io_;
  net::Listener* listener_ = nullptr;
  uv_timer_t* tick_ = nullptr;  // freed in its close callback
  std::unordered_set<HttpConnection*> connections_;
  std::string address_;
  int port_ = 0;
  uint64_t refused_ = 0;
  bool stopped_ = false;
};

}  // namespace shardgate::http
