// connectShard: how every shard connection of the proxy is opened -- the
// shared and private links of multiplexed databases and the per-client
// connection of transparent ones. TCP, and over it TLS in the client role
// when the shard has tls on: the context current now (kept for the
// connection's life), the name its certificate must carry, and this
// worker's resumption slot for the shard (its latest session offered, new
// tickets stored). Once per connection, never per command.
//
// The owner hears onStreamConnected() for TCP; over TLS then
// onStreamHandshake() or onStreamTlsFailed(), and only a completed
// handshake means the shard is reachable.
#pragma once

#include <cstdint>

#include "common/result.h"
#include "net/io_driver.h"
#include "net/stream.h"
#include "net/tls_stream.h"
#include "proxy/shard_map.h"
#include "proxy/stats.h"

namespace shardgate::proxy {

class Worker;

// A shard connection that is not up by then (TCP connected and, over TLS,
// the handshake done) fails, so the requests waiting on it get their error.
inline constexpr uint64_t kShardConnectTimeoutMs = 2000;

struct ShardConnection {
  net::Stream* stream = nullptr;   // what the owner reads and writes
  net::TlsStream* tls = nullptr;   // the same stream when it is TLS, else null
};

// addr: the shard's; tls: its TLS (null: plaintext). On error (the connect
// could not start, no TLS context) nothing is left open and the message is
// what the "unavailable" line says.
Result<ShardConnection> connectShard(Worker& worker, const sockaddr_storage& addr, const ShardTls* tls,
                                     net::StreamOwner* owner, const net::ConnectOptions& options);

// A completed handshake with a shard: counted as full or resumed.
void countShardHandshake(ShardStats& stats, const net::TlsStream& tls);

// TLS 1.3 (RFC 8446 section 4.4.2): the shard checks our client
// certificate after our side of the handshake completed, so a connection
// that ends before the shard said anything may be a refused certificate
// (its alert often lost to the reset our first write draws). Before TLS
// 1.3 a completed handshake means the shard accepted it.
bool mayBeRefusedAfterHandshake(const net::TlsStream& tls);

}  // namespace shardgate::proxy
