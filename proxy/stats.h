// Stats: the counters a worker keeps about its own connections. Each worker
// owns one and is its only writer, so a bump is a relaxed load and store (no
// lock, no locked instruction); any thread may read them for reporting. The
// metrics endpoint sums every worker's at scrape time: nothing shared is
// written on the per-request path.
//
// Per database (DbStats, indexed by Database::index) and, inside it, per
// shard (ShardStats, indexed by the shard's position in the database's shard
// list). Gauges (current connections, in-flight requests, a link that is
// down) are counters each worker raises and lowers for itself, so the sum
// over workers is the process's value.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
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
  // client_auth: required and no certificate sent; one that does not verify
  // (unknown CA, revoked, bad signature, not yet valid); an expired one; a
  // verified one whose names match no client_allow entry.
  kNoClientCert,
  kBadClientCert,
  kClientCertExpired,
  kClientNotAllowed,
  kOther,
  kCount,
};
std::string_view toString(HandshakeFailure f);
HandshakeFailure classifyHandshakeFailure(std::string_view openssl_reason);

// A multiplexed request, by the command table's flags: "write" commands,
// "readonly" ones, and everything else (PING, INFO, MULTI, AUTH, unknown).
enum class RequestKind : uint8_t { kRead, kWrite, kOther, kCount };
std::string_view toString(RequestKind k);
RequestKind classifyRequest(uint32_t command_flags);

// A latency histogram in microseconds with fixed bounds: observe() is a
// short scan and two counter bumps, no allocation. Buckets are kept apart
// (not cumulative); the renderer adds them up.
struct LatencyHistogram {
  static constexpr std::array<uint64_t, 14> kBoundsUs{50,    100,   200,    500,    1000,   2000,   5000,
                                                      10000, 20000, 50000, 100000, 200000, 500000, 1000000};
  std::array<Counter, kBoundsUs.size() + 1> buckets;  // the last: above every bound (+Inf)
  Counter sum_us;

  void observe(uint64_t us) {
    size_t i = 0;
    while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
    buckets[i].add();
    sum_us.add(us);
  }
};

// One shard of one database, as this worker sees it.
struct ShardStats {
  // 1 while this worker's connection to it is failing: the shared link's,
  // or (transparent databases) the last one a client's connection made.
  Counter down;
  Counter down_changed_ms;  // wall clock (ms since the epoch) when down last changed; 0: never
  Counter reconnects;       // connection attempts after a failure
  Counter errors;           // connections that failed (refused, lost, timed out, AUTH refused)
  Counter in_flight;        // requests sent and not answered yet
  // TLS handshakes completed with the shard: [0] full, [1] resumed.
  std::array<Counter, 2> tls_handshakes;

  // Connection outcomes, written only on a change (a connection's path
  // reads one counter): when the admin API says since when a shard is up
  // or down, it reads down_changed_ms.
  void markDown() {
    if (down.get() != 0) return;
    down.add();
    down_changed_ms.set(wallClockMs());
  }
  void markUp() {
    if (down.get() == 0) return;
    down.sub();
    down_changed_ms.set(wallClockMs());
  }
  static uint64_t wallClockMs();
};

// Shards beyond this position in a database's shard list share the last
// slot's counters (a database of more shards is far beyond what one proxy
// in front of Redis serves; the bound keeps DbStats a fixed block).
constexpr size_t kMaxShardStats = 64;

struct DbStats {
  Counter accepted;                // TCP connections accepted
  Counter established;             // ... that completed the TLS handshake (or plaintext: at accept)
  Counter current;                 // open now
  Counter disconnections;          // closed after being established
  Counter establishment_failures;  // closed before: a failed handshake, or refused plaintext
  Counter bytes_in;                // read from clients (over TLS: as on the wire)
  Counter bytes_out;               // handed to clients (plaintext, before encryption)
  std::array<Counter, static_cast<size_t>(RequestKind::kCount)> requests;
  std::array<LatencyHistogram, static_cast<size_t>(RequestKind::kCount)> latency;
  std::array<ShardStats, kMaxShardStats> shards;
  // A cluster database: replies a node redirected that the proxy followed
  // ([0] MOVED, [1] ASK), and TRYAGAIN / CLUSTERDOWN replies it retried.
  std::array<Counter, 2> cluster_redirects;
  Counter cluster_retries;
  // read_from replica_preferred: reads a replica answered, and reads meant
  // for a replica that its master served (no usable replica, or the
  // replica refused the read or its connection failed).
  Counter cluster_replica_reads;
  Counter cluster_replica_fallbacks;
  // Every replica link's connection counters (not reported per node: the
  // per-shard metrics are the masters').
  ShardStats replica_links;

  ShardStats& shard(size_t index) { return shards[index < kMaxShardStats ? index : kMaxShardStats - 1]; }
  const ShardStats& shard(size_t index) const {
    return shards[index < kMaxShardStats ? index : kMaxShardStats - 1];
  }
};

struct Stats {
  // databases: how many DbStats to keep; fixed for the life of the process
  // (a database added needs a restart), so readers never see them move.
  explicit Stats(size_t databases = 0)
      : db_count(databases), dbs(databases ? std::make_unique<DbStats[]>(databases) : nullptr) {}

  Counter handshakes_ok;
  Counter handshakes_resumed;
  std::array<Counter, 4> connections_by_version;  // TLS 1.0 .. 1.3
  std::array<Counter, static_cast<size_t>(HandshakeFailure::kCount)> handshake_failures;
  Counter backend_connect_failures;
  Counter audit_below_min;  // handshakes below tls.audit_min_version
  // Handshakes completed on databases with client_auth: with a verified
  // client certificate that was let in, and (client_auth optional) without
  // one. Refusals are handshake_failures (no_client_cert ... client_not_allowed).
  Counter client_cert_verified;
  Counter client_cert_absent;
  Counter bytes_from_backends;

  const size_t db_count;
  std::unique_ptr<DbStats[]> dbs;

  // A database's counters; one past the end (a test's database that the
  // worker was not told of) counts into a spare block nobody reports.
  DbStats& db(size_t index) { return index < db_count ? dbs[index] : spare_; }
  const DbStats& db(size_t index) const { return index < db_count ? dbs[index] : spare_; }

  // This worker's connections over all its databases, summed from theirs
  // (read for INFO and the exit totals, never on the per-request path).
  uint64_t connectionsAccepted() const { return sumDbs(&DbStats::accepted); }
  uint64_t connectionsCurrent() const { return sumDbs(&DbStats::current); }

 private:
  uint64_t sumDbs(Counter DbStats::*counter) const {
    uint64_t total = (spare_.*counter).get();
    for (size_t i = 0; i < db_count; ++i) total += (dbs[i].*counter).get();
    return total;
  }

  DbStats spare_;
};

}  // namespace shardgate::proxy
