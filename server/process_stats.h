// ProcessStats: what the kernel says about this process (/proc/self): CPU
// time, resident memory, open descriptors and their limit, start time. Read
// at scrape time on the control thread; a field that cannot be read stays 0.
#pragma once

#include <cstdint>
#include <string_view>

namespace shardgate::server {

struct ProcessStats {
  double cpu_seconds = 0;  // user + system
  uint64_t resident_bytes = 0;
  uint64_t open_fds = 0;
  uint64_t max_fds = 0;       // the soft RLIMIT_NOFILE
  double start_time_seconds = 0;  // since the epoch
};

ProcessStats readProcessStats();

// Pieces, exposed for the tests: /proc/self/stat's text (utime, stime and
// starttime in clock ticks, after the parenthesised command name, which may
// itself hold spaces and parentheses) and /proc/self/statm's (resident pages).
bool parseProcStat(std::string_view stat, uint64_t* utime_ticks, uint64_t* stime_ticks, uint64_t* start_ticks);
bool parseStatmResident(std::string_view statm, uint64_t* pages);

}  // namespace shardgate::server
