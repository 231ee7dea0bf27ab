#include "server/process_stats.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace shardgate::server;

TEST_CASE("process stats: /proc/self/stat fields after a command name with spaces and parentheses") {
  // proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt
  // cminflt majflt cmajflt utime stime cutime cstime priority nice
  // num_threads itrealvalue starttime ...
  std::string stat = "1234 (shard gate) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 9876 1000000 500";
  uint64_t utime = 0, stime = 0, start = 0;
  REQUIRE(parseProcStat(stat, &utime, &stime, &start));
  CHECK(utime == 250);
  CHECK(stime == 75);
  CHECK(start == 9876);
  CHECK_FALSE(parseProcStat("garbage", &utime, &stime, &start));
  CHECK_FALSE(parseProcStat("1 (x) S 1", &utime, &stime, &start));
}

TEST_CASE("process stats: resident pages from /proc/self/statm") {
  uint64_t pages = 0;
  REQUIRE(parseStatmResident("5000 1200 300 10 0 800 0\n", &pages));
  CHECK(pages == 1200);
  CHECK_FALSE(parseStatmResident("", &pages));
}

TEST_CASE("process stats: this process has CPU time, memory and descriptors") {
  ProcessStats p = readProcessStats();
  CHECK(p.resident_bytes > 0);
  CHECK(p.open_fds >= 3);
  CHECK(p.max_fds >= p.open_fds);
  CHECK(p.start_time_seconds > 1.6e9);
  CHECK(p.cpu_seconds >= 0);
}
