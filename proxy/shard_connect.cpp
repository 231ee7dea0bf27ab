#include "proxy/shard_connect.h"

#include <uv.h>

#include <string_view>

#include "common/ascii.h"
#include "proxy/worker.h"

namespace shardgate::proxy {

Result<ShardConnection> connectShard(Worker& worker, const sockaddr_storage& addr, const ShardTls* tls,
                                     net::StreamOwner* owner, const net::ConnectOptions& options) {
  tls::TlsContextPtr ctx;
  if (tls != nullptr) {
    ctx = tls->currentContext();
    // The server builds every shard's context before the workers start.
    if (!ctx) return makeError("TLS: no client context for this shard");
  }
  net::Stream* tcp = nullptr;
  if (int rc = worker.io().connect(reinterpret_cast<const sockaddr&>(addr), owner, options, &tcp); rc != 0) {
    return makeError(asciiLower(uv_strerror(rc)));
  }
  if (tls == nullptr) return ShardConnection{tcp, nullptr};
  auto stream = net::TlsStream::create(worker.io(), tcp, std::move(ctx), owner, tls->verify_name,
                                       worker.resumptionSlot(*tls));
  if (!stream) {
    tcp->close();
    return stream.error();
  }
  // The handshake needs the shard's answers before the owner asks for anything.
  (*stream)->setReading(true);
  return ShardConnection{*stream, *stream};
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
