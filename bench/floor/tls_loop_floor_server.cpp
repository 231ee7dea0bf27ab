// tls_loop_floor_server: tls_floor_server's work on a libuv event loop, for
// bench/run's handshake floor of a non-blocking server. One thread, one loop,
// no backend, no timers, no bookkeeping: accept, feed what arrives to tls/
// (the same TlsContext and TlsSession shardgate uses), write what it answers,
// close at EOF. Its CPU per handshake minus tls-floor's is what serving many
// connections from one loop costs (epoll registration, readiness waits, the
// accept loop's EAGAIN); the rest of shardgate's figure is shardgate's own.
//   tls_loop_floor_server CERT_DIR PORT
#include <netinet/in.h>
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "bench/floor/floor_context.h"
#include "tls/tls_session.h"

using namespace shardgate;

namespace {

tls::TlsContextPtr g_ctx;

struct Conn {
  uv_tcp_t tcp{};
  std::unique_ptr<tls::TlsSession> session;
  ByteBuffer plain, cipher;
};

char g_read_buf[65536];

void onClose(uv_handle_t* h) { delete static_cast<Conn*>(h->data); }

void closeConn(Conn* c) {
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp)))
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), onClose);
}

void onAlloc(uv_handle_t*, size_t, uv_buf_t* buf) { *buf = uv_buf_init(g_read_buf, sizeof g_read_buf); }

void onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(s->data);
  if (n < 0) return closeConn(c);
  if (n == 0) return;
  c->session->feed(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(n), c->plain,
                   c->cipher);
  c->plain.clear();
  if (!c->cipher.empty()) {
    // Handshake flights are small: the socket takes them whole, and a floor
    // server that could not would close rather than lose bytes.
    uv_buf_t out = uv_buf_init(reinterpret_cast<char*>(c->cipher.data()),
                               static_cast<unsigned>(c->cipher.size()));
    if (uv_try_write(s, &out, 1) != static_cast<int>(c->cipher.size())) return closeConn(c);
    c->cipher.clear();
  }
  if (c->session->state() == tls::TlsSession::State::kFailed) closeConn(c);
}

void onConnection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* c = new Conn;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) return closeConn(c);
  uv_tcp_nodelay(&c->tcp, 1);
  c->session = tls::TlsSession::create(g_ctx, tls::TlsSession::Role::kServer);
  if (!c->session) return closeConn(c);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), onAlloc, onRead);
}

}  // namespace

int main(int argc, char** argv) {
  g_ctx = bench::contextFromArgs(argc, argv, "tls_loop_floor_server");
  if (!g_ctx) return 1;
  uv_loop_t* loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", std::atoi(argv[2]), &addr);
  if (uv_tcp_bind(&server, reinterpret_cast<const sockaddr*>(&addr), 0) != 0 ||
      uv_listen(reinterpret_cast<uv_stream_t*>(&server), 1024, onConnection) != 0) {
    std::fprintf(stderr, "bind/listen 127.0.0.1:%s failed\n", argv[2]);
    return 1;
  }
  return uv_run(loop, UV_RUN_DEFAULT);
}
