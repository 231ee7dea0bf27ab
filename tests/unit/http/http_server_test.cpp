// HttpServer on a real loop over 127.0.0.1, with a blocking client on a
// thread of its own: answers now and later, keep-alive, the connection
// cap, the request timeout, the size bounds, and TLS with a published
// context that changes between connections.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "http/http_server.h"
#include "tests/unit/tls/test_certs.h"
#include "net/socket_address.h"

using namespace shardgate;
using namespace shardgate::http;

namespace {

struct Loop {
  uv_loop_t loop{};
  Loop() { uv_loop_init(&loop); }
  ~Loop() {
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
  }
  // Runs the loop until done() or 5 s.
  bool runUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(&loop, UV_RUN_NOWAIT);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }
};

int connectTo(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void sendAll(int fd, const std::string& text) {
  size_t at = 0;
  while (at < text.size()) {
    ssize_t n = ::send(fd, text.data() + at, text.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return;
    at += static_cast<size_t>(n);
  }
}

// Reads until the peer closes (or the 5 s receive timeout).
std::string readToEnd(int fd) {
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Reads until `count` responses (counted by their status lines) and their
// bodies have arrived; bodies here are short and have no status line.
std::string readResponses(int fd, int count) {
  std::string out;
  char buf[4096];
  auto complete = [&] {
    int seen = 0;
    size_t at = 0;
    while ((at = out.find("HTTP/1.1 ", at)) != std::string::npos) {
      size_t head_end = out.find("\r\n\r\n", at);
      if (head_end == std::string::npos) return false;
      size_t cl = out.find("Content-Length: ", at);
      size_t len = std::stoul(out.substr(cl + 16));
      if (out.size() < head_end + 4 + len) return false;
      ++seen;
      at = head_end + 4 + len;
    }
    return seen >= count;
  };
  while (!complete()) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// The client side of a test, on its own thread while the loop runs here.
struct Client {
  std::thread thread;
  std::atomic<bool> done{false};
  template <typename F>
  explicit Client(F body) : thread([this, body] { body(); done = true; }) {}
  ~Client() { if (thread.joinable()) thread.join(); }
};

std::unique_ptr<HttpServer> makeServer(Loop& l, ServerOptions options, Handler handler,
                                       tls::TlsContextStore* store = nullptr) {
  auto server = HttpServer::create(&l.loop, net::SocketAddress{"127.0.0.1", 0}, std::move(options), store,
                                   std::move(handler));
  REQUIRE_MESSAGE(server.ok(), (server.ok() ? "" : server.message()));
  return std::move(server).value();
}

Handler echoPath() {
  return [](const Request& r, Respond respond) {
    Response out;
    out.content_type = "text/plain";
    out.body = r.method + " " + r.path + " " + r.body;
    respond(std::move(out));
  };
}

}  // namespace

TEST_CASE("HttpServer: keep-alive answers each request in order, pipelined or not") {
  Loop l;
  auto server = makeServer(l, ServerOptions{}, echoPath());
  CHECK(server->port() > 0);
  std::string got;
  Client c([&] {
    int fd = connectTo(server->port());
    sendAll(fd, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
    got = readResponses(fd, 1);
    sendAll(fd, "PUT /two HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /three HTTP/1.1\r\n\r\n");
    got += readResponses(fd, 2);
    ::close(fd);
  });
  REQUIRE(l.runUntil([&] { return c.done.load(); }));
  CHECK(got.find("GET /one ") != std::string::npos);
  CHECK(got.find("PUT /two hi") < got.find("GET /three "));
  CHECK(got.find("Connection: close") == std::string::npos);
}

TEST_CASE("HttpServer: an answer given later, and one given after the client left") {
  Loop l;
  Respond later;
  auto server = makeServer(l, ServerOptions{}, [&](const Request&, Respond respond) { later = respond; });
  std::string got;
  Client c([&] {
    int fd = connectTo(server->port());
    sendAll(fd, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    got = readToEnd(fd);
    ::close(fd);
  });
  REQUIRE(l.runUntil([&] { return static_cast<bool>(later); }));
  Response r;
  r.body = "{}";
  later(r);
  later(r);  // a second call is ignored
  REQUIRE(l.runUntil([&] { return c.done.load(); }));
  CHECK(got.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(got.find("Connection: close\r\n\r\n{}") != std::string::npos);

  // The client goes away before the answer (reading is off meanwhile, so
  // that is noticed once the answer is written), then the server stops:
  // a Respond held past both is a no-op.
  later = nullptr;
  Client gone([&] {
    int fd = connectTo(server->port());
    sendAll(fd, "GET / HTTP/1.1\r\n\r\n");
    ::close(fd);
  });
  REQUIRE(l.runUntil([&] { return gone.done.load() && static_cast<bool>(later); }));
  Respond kept = later;
  later(r);
  REQUIRE(l.runUntil([&] { return server->connections() == 0; }));
  server.reset();
  kept(r);
}

TEST_CASE("HttpServer: over max_connections a connection is closed at once") {
  Loop l;
  ServerOptions options;
  options.max_connections = 1;
  auto server = makeServer(l, options, echoPath());
  std::string second;
  std::atomic<bool> first_open{false};
  std::atomic<bool> release{false};
  Client holder([&] {
    int fd = connectTo(server->port());
    first_open = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ::close(fd);
  });
  REQUIRE(l.runUntil([&] { return first_open.load() && server->connections() == 1; }));
  Client c([&] {
    int fd = connectTo(server->port());
    sendAll(fd, "GET / HTTP/1.1\r\n\r\n");
    second = readToEnd(fd);
    ::close(fd);
  });
  REQUIRE(l.runUntil([&] { return c.done.load(); }));
  CHECK(second.empty());
  CHECK(server->refused() == 1);
  release = true;
  REQUIRE(l.runUntil([&] { return holder.done.load() && server->connections() == 0; }));
}

TEST_CASE("HttpServer: a request not whole in time gets 408; an idle connection just closes") {
  Loop l;
  ServerOptions options;
  options.request_timeout_ms = 100;
  auto server = makeServer(l, options, echoPath());
  std::string partial, idle;
  Client c([&] {
    int fd = connectTo(server->port());
    sendAll(fd, "GET / HTTP/1.1\r\nHost:");
    partial = readToEnd(fd);
    ::close(fd);
    int fd2 = connectTo(server->port());
    idle = readToEnd(fd2);
    ::close(fd2);
  });
  REQUIRE(l.runUntil([&] { return c.done.load(); }));
  CHECK(partial.rfind("HTTP/1.1 408 Request Timeout\r\n", 0) == 0);
  CHECK(partial.find("\"error_code\": \"request_timeout\"") != std::string::npos);
  CHECK(idle.empty());
}

TEST_CASE("HttpServer: headers and body over their bounds get 431 and 413, then close") {
  Loop l;
  ServerOptions options;
  options.max_header_bytes = 256;
  options.max_body_bytes = 16;
  auto server = makeServer(l, options, echoPath());
  std::string headers, body, malformed;
  Client c([&] {
    int fd = connectTo(server->port());
    sendAll(fd, "GET / HTTP/1.1\r\nX: " + std::string(400, 'a') + "\r\n\r\n");
    headers = readToEnd(fd);
    ::close(fd);
    fd = connectTo(server->port());
    sendAll(fd, "PUT / HTTP/1.1\r\nContent-Length: 17\r\n\r\n");
    body = readToEnd(fd);
    ::close(fd);
    fd = connectTo(server->port());
    sendAll(fd, "HELLO\r\n\r\n");
    malformed = readToEnd(fd);
    ::close(fd);
  });
  REQUIRE(l.runUntil([&] { return c.done.load(); }));
  CHECK(headers.rfind("HTTP/1.1 431 ", 0) == 0);
  CHECK(body.rfind("HTTP/1.1 413 ", 0) == 0);
  CHECK(malformed.rfind("HTTP/1.1 400 ", 0) == 0);
}

TEST_CASE("HttpServer: a handler that throws answers 500") {
  Loop l;
  auto server = makeServer(l, ServerOptions{}, [](const Request&, Respond) -> void { throw std::runtime_error("boom"); });
  std::string got;
  Client c([&] {
    int fd = connectTo(server->port());
    sendAll(fd, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    got = readToEnd(fd);
    ::close(fd);
  });
  REQUIRE(l.runUntil([&] { return c.done.load(); }));
  CHECK(got.rfind("HTTP/1.1 500 ", 0) == 0);
}

TEST_CASE("HttpServer: stop() closes connections and the listener") {
  Loop l;
  auto server = makeServer(l, ServerOptions{}, [](const Request&, Respond) {});
  const int port = server->port();
  std::string got = "unset";
  Client c([&] {
    int fd = connectTo(port);
    sendAll(fd, "GET / HTTP/1.1\r\n\r\n");
    got = readToEnd(fd);
    ::close(fd);
  });
  REQUIRE(l.runUntil([&] { return server->connections() == 1; }));
  server.reset();
  REQUIRE(l.runUntil([&] { return c.done.load(); }));
  CHECK(got.empty());
  CHECK(connectTo(port) == -1);
}

// ---- TLS ----------------------------------------------------------------------

namespace {

// One HTTPS request with OpenSSL on a blocking socket; returns the answer
// and the CN of the server's certificate.
struct TlsAnswer {
  std::string text;
  std::string server_cn;
};

tls::testing::CertSpec strangerSpec() {
  tls::testing::CertSpec spec;
  spec.cn = "stranger";
  return spec;
}

TlsAnswer httpsGet(int port, const tls::TlsContext& client) {
  TlsAnswer out;
  int fd = connectTo(port);
  if (fd < 0) return out;
  SSL* ssl = SSL_new(client.sslCtx());
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) == 1) {
    X509* peer = SSL_get1_peer_certificate(ssl);
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    out.server_cn = cn;
    X509_free(peer);
    std::string req = "GET /whoami HTTP/1.1\r\nConnection: close\r\n\r\n";
    SSL_write(ssl, req.data(), static_cast<int>(req.size()));
    char buf[4096];
    int n;
    while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) out.text.append(buf, static_cast<size_t>(n));
  }
  SSL_free(ssl);
  ::close(fd);
  return out;
}

}  // namespace

TEST_CASE("HttpServer over TLS: each connection takes the context published at its accept; "
          "a client certificate that chains to the trusted CAs is reported") {
  using namespace tls::testing;
  using tls::EvpPkeyPtr;
  using tls::X509Ptr;
  // The clients' CA and one client certificate it issued.
  EvpPkeyPtr ca_key = makeKey();
  CertSpec ca_spec;
  ca_spec.cn = "Ops CA";
  ca_spec.ca = true;
  X509Ptr ca = makeCert(ca_spec, ca_key.get(), nullptr, nullptr);
  EvpPkeyPtr ops_key = makeKey();
  CertSpec ops_spec;
  ops_spec.cn = "ops";
  X509Ptr ops = makeCert(ops_spec, ops_key.get(), ca.get(), ca_key.get());
  const std::string ca_pem = certPem(ca.get());
  tls::CertBundle ops_bundle;
  ops_bundle.cert_pem = certPem(ops.get());
  ops_bundle.key_pem = keyPem(ops_key.get());
  // A client certificate nobody trusts.
  tls::CertBundle stranger = selfSignedBundle(strangerSpec());

  CertSpec first_spec;
  first_spec.cn = "first";
  CertSpec second_spec;
  second_spec.cn = "second";
  auto first = tls::TlsContext::createServer(selfSignedBundle(first_spec), tls::TlsPolicy{}, 1, nullptr, &ca_pem);
  REQUIRE_MESSAGE(first.ok(), (first.ok() ? "" : first.message()));
  auto second = tls::TlsContext::createServer(selfSignedBundle(second_spec), tls::TlsPolicy{}, 2, nullptr, &ca_pem);
  REQUIRE(second.ok());
  tls::TlsContextStore store;
  store.publish(*first);

  auto with_cert = tls::TlsContext::createClient(tls::TlsPolicy{}, "", std::nullopt, &ops_bundle);
  REQUIRE_MESSAGE(with_cert.ok(), (with_cert.ok() ? "" : with_cert.message()));
  auto untrusted = tls::TlsContext::createClient(tls::TlsPolicy{}, "", std::nullopt, &stranger);
  REQUIRE(untrusted.ok());
  auto without = tls::TlsContext::createClient(tls::TlsPolicy{}, "");
  REQUIRE(without.ok());

  Loop l;
  auto server = makeServer(l, ServerOptions{}, [](const Request& r, Respond respond) {
    Response out;
    out.body = "subject=" + r.client_cert_subject;
    respond(std::move(out));
  }, &store);

  TlsAnswer a, b, c, d;
  std::atomic<int> step{0};
  Client client([&] {
    a = httpsGet(server->port(), **with_cert);
    b = httpsGet(server->port(), **untrusted);
    c = httpsGet(server->port(), **without);
    step = 1;
    while (step != 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    d = httpsGet(server->port(), **without);
  });
  REQUIRE(l.runUntil([&] { return step == 1; }));
  store.publish(*second);
  step = 2;
  REQUIRE(l.runUntil([&] { return client.done.load(); }));
  CHECK(a.server_cn == "first");
  CHECK(a.text.find("subject=CN=ops") != std::string::npos);
  CHECK(b.text.find("HTTP/1.1 200") == 0);
  CHECK(b.text.find("subject=\r") == std::string::npos);
  CHECK(b.text.find("subject=CN") == std::string::npos);
  CHECK(c.text.find("HTTP/1.1 200") == 0);
  CHECK(c.text.find("subject=CN") == std::string::npos);
  CHECK(d.server_cn == "second");
}
