// tls_record_bench: the TLS layer's cost per request on an open connection,
// with no socket and no loop: a client encrypts a small GET, the server feeds
// it and encrypts a small reply, the client feeds that (TlsSession over
// memory, TLS 1.3, AES-128-GCM). Deterministic enough to compare a change to
// tls/ before and after, which a socket benchmark on this VM is not.
//   build-release/tls_record_bench [requests]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tls/cert_files.h"
#include "tls/memory_link.h"
#include "tls/tls_context.h"

using namespace shardgate;
using namespace shardgate::tls;

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 300000;
  char dir_template[] = "/tmp/tls-record-bench-XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (!dir || !generateSelfSigned(dir, {"localhost"})) {
    std::fprintf(stderr, "cannot generate a certificate\n");
    return 1;
  }
  auto bundle = readProxyCertFiles(dir);
  TlsPolicy policy;
  auto server_ctx = TlsContext::createServer(*bundle, policy, 1);
  auto client_ctx = TlsContext::createClient(policy, "");
  if (!server_ctx || !client_ctx) {
    std::fprintf(stderr, "cannot build contexts\n");
    return 1;
  }
  MemoryPeer client{TlsSession::create(*client_ctx, TlsSession::Role::kClient), {}, {}};
  MemoryPeer server{TlsSession::create(*server_ctx, TlsSession::Role::kServer), {}, {}};
  client.session->feed(nullptr, 0, client.plain, client.out);
  if (!pump(client, server, 10)) {
    std::fprintf(stderr, "handshake did not complete\n");
    return 1;
  }
  const std::string request = "*2\r\n$3\r\nGET\r\n$16\r\nkey:000000012345\r\n";
  const std::string reply = "$3\r\nxxx\r\n";
  ByteBuffer wire, plain, cipher, unused;
  auto bytes = [](const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); };
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) {
    wire.clear();
    plain.clear();
    cipher.clear();
    if (!client.session->encrypt(bytes(request), request.size(), wire)) return 1;
    server.session->feed(wire.data(), wire.size(), plain, cipher);
    cipher.clear();
    if (!server.session->encrypt(bytes(reply), reply.size(), cipher)) return 1;
    plain.clear();
    client.session->feed(cipher.data(), cipher.size(), plain, unused);
  }
  auto t1 = std::chrono::steady_clock::now();
  std::printf("%.0f ns per request (client encrypt + server feed + server encrypt + client feed), %ld requests\n",
              std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n), n);
  std::string cleanup = std::string("rm -rf ") + dir;
  return std::system(cleanup.c_str()) == 0 ? 0 : 1;
}
