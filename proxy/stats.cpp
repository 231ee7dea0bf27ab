#include "proxy/stats.h"

#include <chrono>

#include "redis/command_table.h"

namespace shardgate::proxy {

uint64_t ShardStats::wallClockMs() {
  using namespace std::chrono;
  return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

std::string_view toString(HandshakeFailure f) {
  switch (f) {
    case HandshakeFailure::kProtocolVersion: return "protocol_version";
    case HandshakeFailure::kNoSharedCipher: return "no_shared_cipher";
    case HandshakeFailure::kTimeout: return "timeout";
    case HandshakeFailure::kNotTls: return "not_tls";
    case HandshakeFailure::kPeerClosed: return "peer_closed";
    case HandshakeFailure::kNoClientCert: return "no_client_cert";
    case HandshakeFailure::kBadClientCert: return "bad_client_cert";
    case HandshakeFailure::kClientCertExpired: return "client_cert_expired";
    case HandshakeFailure::kClientNotAllowed: return "client_not_allowed";
    case HandshakeFailure::kOther:
    case HandshakeFailure::kCount: break;
  }
  return "other";
}

HandshakeFailure classifyHandshakeFailure(std::string_view reason) {
  auto has = [&](std::string_view s) { return reason.find(s) != std::string_view::npos; };
  // A client certificate refused by the server (TlsSession adds the
  // verification error to "certificate verify failed").
  if (has("peer did not return a certificate")) return HandshakeFailure::kNoClientCert;
  if (has("certificate verify failed")) {
    return has("expired") ? HandshakeFailure::kClientCertExpired : HandshakeFailure::kBadClientCert;
  }
  if (has("protocol") && (has("version") || has("unsupported"))) return HandshakeFailure::kProtocolVersion;
  if (has("no shared cipher") || has("no cipher")) return HandshakeFailure::kNoSharedCipher;
  if (has("http request") || has("wrong version number") || has("record layer failure") ||
      has("packet length too long") || has("unknown protocol")) {
    return HandshakeFailure::kNotTls;
  }
  if (has("peer closed") || has("unexpected eof")) return HandshakeFailure::kPeerClosed;
  return HandshakeFailure::kOther;
}

std::string_view toString(RequestKind k) {
  switch (k) {
    case RequestKind::kRead: return "read";
    case RequestKind::kWrite: return "write";
    case RequestKind::kOther:
    case RequestKind::kCount: break;
  }
  return "other";
}

RequestKind classifyRequest(uint32_t flags) {
  // A command flagged both ways does not exist in Redis; write wins, as a
  // write is what an operator must not miss.
  if (flags & redis::CommandInfo::kWrite) return RequestKind::kWrite;
  if (flags & redis::CommandInfo::kReadonly) return RequestKind::kRead;
  return RequestKind::kOther;
}

}  // namespace shardgate::proxy
