// The process's open-file limit (RLIMIT_NOFILE): raised at start, and said in
// clients. A plain-forwarding client holds two descriptors (its socket and its
// own shard connection); a multiplexed or multiplexed client holds one.
#pragma once

#include <cstdint>

namespace shardgate::server {

// The hard limit asked for when it is lower: systemd's default for services,
// room for a quarter of a million plain-forwarding clients. The kernel's
// descriptor table grows only with the descriptors actually open.
inline constexpr uint64_t kWantedOpenFiles = 524288;

// What raiseOpenFileLimit() did, for the start-up log.
struct FileLimitChange {
  uint64_t soft_before = 0;
  uint64_t hard_before = 0;
  uint64_t soft = 0;         // in force now
  uint64_t hard = 0;
  uint64_t hard_wanted = 0;  // what the hard limit was to be raised to; 0: high enough already
  int hard_errno = 0;        // why that failed (EPERM: no CAP_SYS_RESOURCE); 0: it did not
  int soft_errno = 0;
};

// Raises the hard limit to `wanted` (at most fs.nr_open, the kernel's own
// ceiling) when it is lower, which only a process with CAP_SYS_RESOURCE (root,
// outside most containers) may do, as HAProxy does; then the soft limit to the
// hard one, as redis-server does for maxclients.
FileLimitChange raiseOpenFileLimit(uint64_t wanted = kWantedOpenFiles);

// Descriptors this process has open now (/proc/self/fd), or 0 if unknown.
uint64_t countOpenFiles();

// Clients of per_client descriptors each that fit under limit once in_use are
// taken and reserve are kept for the proxy's own needs.
uint64_t clientsThatFit(uint64_t limit, uint64_t in_use, uint64_t reserve, unsigned per_client);

}  // namespace shardgate::server
