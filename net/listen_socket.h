// Listening sockets: bound with SO_REUSEPORT so every worker can have its
// own socket on the same address (the kernel spreads new connections
// across them and no accept lock is shared).
#pragma once

#include <cstdint>

#include "common/result.h"
#include "net/socket_address.h"

namespace shardgate::net {

// Creates a socket bound to address with SO_REUSEPORT. Fails when another
// process holds the address, naming the address and the reason.
// Port 0: the kernel picks a free port (no probe needed: nobody holds it);
// boundPort() tells which, for the other workers and the log.
Result<int> bindListenSocket(const SocketAddress& address);
Result<uint16_t> boundPort(int fd);

}  // namespace shardgate::net
