// MemoryLink: two TlsSessions joined in memory, no socket. Preflight uses it
// to prove a context can complete a handshake before it is published; tests
// use it to drive both ends of a connection.
#pragma once

#include <memory>

#include "common/byte_buffer.h"
#include "tls/tls_session.h"

namespace shardgate::tls {

struct MemoryPeer {
  std::unique_ptr<TlsSession> session;
  ByteBuffer plain;  // what this side decrypted
  ByteBuffer out;    // ciphertext waiting to reach the other side
};

// Moves from's pending ciphertext to to. False when there was none.
inline bool deliver(MemoryPeer& from, MemoryPeer& to) {
  if (from.out.empty()) return false;
  ByteBuffer wire;
  wire.swap(from.out);  // to may answer into its own out while it is fed
  to.session->feed(wire.data(), wire.size(), to.plain, to.out);
  return true;
}

// Shuttles ciphertext both ways until both are quiet (true) or max_rounds
// round trips passed (false).
inline bool pump(MemoryPeer& client, MemoryPeer& server, int max_rounds) {
  for (int round = 0; round < max_rounds; ++round) {
    bool moved = deliver(client, server);
    moved = deliver(server, client) || moved;
    if (!moved) return true;
  }
  return false;
}

}  // namespace shardgate::tls
