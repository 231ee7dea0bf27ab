// Stats: the counters a worker keeps about its own connections. Each worker
// owns one and is its only writer, so a bump is a relaxed load and store (no
// lock, no locked instruction); any thread may read them for reporting.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "common/counter.h"

namespace shardgate::proxy {

using shardgate::Counter;

// Why a handshake failed, as a small closed set usable as a metric label.
enum class HandshakeFailure {
  kProtocolVersion,  // client's version below tls.min_version
  kNoSharedCipher,
  kTimeout,          // tls.handshake_timeout_ms passed
  kNotTls,           // plaintext or garbage on a TLS port
  kPeerClosed,       // client went away mid-handshake
  kOther,
  kCount,
};
std::string_view toString(HandshakeFailure f);
HandshakeFailure classifyHandshakeFailure(std::string_view openssl_reason);

struct Stats {
  Counter connections_total;
  Counter connections_current;
  Counter handshakes_ok;
  Counter handshakes_resumed;
  std::array<Counter, 4> connections_by_version;  // TLS 1.0 .. 1.3
  std::array<Counter, static_cast<size_t>(HandshakeFailure::kCount)> handshake_failures;
  Counter backend_connect_failures;
  Counter audit_below_min;  // handshakes below tls.audit_min_version
  Counter bytes_from_clients;
  Counter bytes_from_backends;
};

}  // namespace shardgate::proxy
