#include "server/file_limit.h"

#include <dirent.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace shardgate::server {

namespace {

// The most any process may have (fs.nr_open): asking above it fails even for root.
uint64_t kernelCeiling() {
  uint64_t ceiling = 1048576;  // the kernel's default
  if (std::FILE* f = std::fopen("/proc/sys/fs/nr_open", "r")) {
    unsigned long long v = 0;
    if (std::fscanf(f, "%llu", &v) == 1 && v > 0) ceiling = v;
    std::fclose(f);
  }
  return ceiling;
}

}  // namespace

FileLimitChange raiseOpenFileLimit(uint64_t wanted) {
  FileLimitChange change;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    change.soft_errno = errno;
    return change;
  }
  change.soft_before = change.soft = lim.rlim_cur;
  change.hard_before = change.hard = lim.rlim_max;
  wanted = std::min(wanted, kernelCeiling());
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < wanted) {
    change.hard_wanted = wanted;
    rlimit raised{static_cast<rlim_t>(wanted), static_cast<rlim_t>(wanted)};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      change.soft = change.hard = wanted;
      return change;
    }
    change.hard_errno = errno;
  }
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) == 0) {
      change.soft = lim.rlim_max;
    } else {
      change.soft_errno = errno;
    }
  }
  return change;
}

uint64_t countOpenFiles() {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return 0;
  uint64_t n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n > 0 ? n - 1 : 0;  // not the directory's own descriptor
}

uint64_t clientsThatFit(uint64_t limit, uint64_t in_use, uint64_t reserve, unsigned per_client) {
  if (per_client == 0 || limit <= in_use + reserve) return 0;
  return (limit - in_use - reserve) / per_client;
}

}  // namespace shardgate::server
