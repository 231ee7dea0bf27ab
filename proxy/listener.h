// Listener: one database's listening socket on one worker. Every worker binds
// its own socket to the same address with SO_REUSEPORT, so the kernel spreads
// new connections across workers and no accept lock is shared.
#pragma once

#include <uv.h>

#include "proxy/config.h"
#include "proxy/database.h"
#include "tls/result.h"

namespace shardgate::proxy {

class Worker;

// Creates a socket bound to address with SO_REUSEPORT (libuv 1.44 has no flag
// for it, so the socket is made here and handed to libuv). Fails when another
// process holds the address, naming the address and the reason.
Result<int> bindListenSocket(const SocketAddress& address);

class Listener {
 public:
  // Takes ownership of fd. The Listener frees itself after close().
  static Result<Listener*> start(Worker& worker, const Database& db, int fd);
  void close();

 private:
  Listener(Worker& worker, const Database& db) : worker_(worker), db_(db) {}
  static void onConnection(uv_stream_t* server, int status);

  Worker& worker_;
  const Database& db_;
  uv_tcp_t handle_{};
};

}  // namespace shardgate::proxy
