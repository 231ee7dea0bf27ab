#include "proxy/shard_connect.h"

#include <uv.h>

#include <string_view>

#include "common/ascii.h"
#include "proxy/worker.h"

namespace shardgate::proxy {

Result<ShardConnection> connectShard(Worker& worker, const ShardEndpoint& shard, net::StreamOwner* owner,
                                     const net::ConnectOptions& options) {
  tls::TlsContextPtr ctx;
  if (shard.tls) {
    ctx = shard.tls->contexts.current();
    // The server builds every shard's context before the workers start.
    if (!ctx) return makeError("TLS: no client context for this shard");
  }
  const auto& addr = reinterpret_cast<const sockaddr&>(shard.addr);
  net::Stream* tcp = nullptr;
  if (int rc = worker.io().connect(addr, owner, options, &tcp); rc != 0) {
    return makeError(asciiLower(uv_strerror(rc)));
  }
  if (!shard.tls) return ShardConnection{tcp, nullptr};
  auto tls = net::TlsStream::create(worker.io(), tcp, std::move(ctx), owner, shard.tls->verify_name,
                                    worker.resumptionSlot(*shard.tls));
  if (!tls) {
    tcp->close();
    return tls.error();
  }
  // The handshake needs the shard's answers before the owner asks for anything.
  (*tls)->setReading(true);
  return ShardConnection{*tls, *tls};
}

bool mayBeRefusedAfterHandshake(const net::TlsStream& tls) {
  // Not negotiatedVersion(): after the shard's fatal alert the handshake no
  // longer counts as finished, but the version agreed on stays.
  return std::string_view(tls.session().protocolName()) == "TLSv1.3";
}

void countShardHandshake(ShardStats& stats, const net::TlsStream& tls) {
  stats.tls_handshakes[tls.session().sessionReused() ? 1 : 0].add();
}

}  // namespace shardgate::proxy
