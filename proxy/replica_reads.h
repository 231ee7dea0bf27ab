// Replica reads (cluster.read_from replica_preferred): the decisions alone,
// no I/O, so they are tested with values. Which commands may be read from a
// replica, which of a master's replicas takes the next one, which replies
// mean "this replica cannot serve now, ask its master", and how long such
// a replica is left alone before it is tried again.
//
// A read sent to a replica may be sent again to the master: it changes
// nothing, whether or not the replica ran it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>

#include "redis/command_table.h"

namespace shardgate::proxy {

// A command flagged readonly that neither blocks nor subscribes. (Whether
// the client is in MULTI/WATCH or pub/sub is the session's to check: those
// commands never reach the shared links this applies to.)
inline bool readableFromReplica(uint32_t command_flags) {
  constexpr uint32_t kNot = redis::CommandInfo::kWrite | redis::CommandInfo::kBlocking |
                            redis::CommandInfo::kPubsub;
  return (command_flags & redis::CommandInfo::kReadonly) != 0 && (command_flags & kNot) == 0;
}

// One of the endpoints [begin, end) for which usable(i) holds, starting at
// begin + next % (end - begin) and going round; next advances on every
// pick, so a master's replicas share its reads. -1: none is usable.
template <typename Usable>
int pickReplica(size_t begin, size_t end, uint32_t& next, Usable&& usable) {
  const size_t count = end - begin;
  if (count == 0) return -1;
  const size_t start = next++ % count;
  for (size_t k = 0; k < count; ++k) {
    const size_t i = begin + (start + k) % count;
    if (usable(i)) return static_cast<int>(i);
  }
  return -1;
}

// An error reply with which a replica refuses a read it did not run: still
// loading its data set (-LOADING), its link to the master down with
// replica-serve-stale-data no (-MASTERDOWN), or its cluster failed
// (-CLUSTERDOWN: the master answers, or retries, for it). Such a read goes
// to the master instead. -MOVED / -ASK are redirects (ClusterRedirects).
inline bool replicaRefusal(std::string_view reply) {
  return reply.starts_with("-LOADING") || reply.starts_with("-MASTERDOWN") ||
         reply.starts_with("-CLUSTERDOWN");
}

// A replica's ROLE says "connected" as soon as its master accepted a
// partial resync, before the backlog it is sent has been applied (a replica
// restarted from an old RDB would read as nearly empty until then): it is
// used once a second ROLE, this long after the first, says so again.
constexpr uint64_t kReplicaConfirmMs = 200;

// How long a replica that refused is left out: 500 ms, doubling with each
// refusal in a row, at most 8 s; a read it serves resets it.
constexpr uint64_t kFirstReplicaPauseMs = 500;
constexpr uint64_t kMaxReplicaPauseMs = 8000;
inline uint64_t nextReplicaPauseMs(uint64_t previous_ms) {
  return previous_ms == 0 ? kFirstReplicaPauseMs : std::min(previous_ms * 2, kMaxReplicaPauseMs);
}

}  // namespace shardgate::proxy
