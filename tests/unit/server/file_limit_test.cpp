#include "server/file_limit.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

using namespace shardgate;

using namespace shardgate::server;

TEST_CASE("clientsThatFit: what is left after the proxy's own descriptors, per client") {
  CHECK(clientsThatFit(20000, 20, 18, 2) == 9981);
  CHECK(clientsThatFit(20000, 20, 18, 1) == 19962);
  CHECK(clientsThatFit(256, 19, 18, 2) == 109);
  CHECK(clientsThatFit(30, 20, 18, 2) == 0);  // not even room for the proxy
  CHECK(clientsThatFit(38, 20, 18, 2) == 0);
  CHECK(clientsThatFit(100, 0, 0, 0) == 0);
}

TEST_CASE("countOpenFiles counts this process's descriptors") {
  uint64_t before = countOpenFiles();
  CHECK(before >= 3);  // stdin, stdout, stderr at least
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  CHECK(countOpenFiles() == before + 1);
  ::close(fd);
  CHECK(countOpenFiles() == before);
}

TEST_CASE("raiseOpenFileLimit: the soft limit goes up to the hard one") {
  rlimit lim{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &lim) == 0);
  rlimit saved = lim;
  lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 512);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &lim) == 0);

  // Asking for no more than the hard limit: nothing to raise but the soft one.
  server::FileLimitChange change = server::raiseOpenFileLimit(lim.rlim_max);
  CHECK(change.hard_wanted == 0);
  CHECK(change.soft_before == lim.rlim_cur);
  CHECK(change.soft == lim.rlim_max);
  CHECK(change.hard == lim.rlim_max);
  CHECK(change.soft_errno == 0);
  REQUIRE(getrlimit(RLIMIT_NOFILE, &lim) == 0);
  CHECK(lim.rlim_cur == lim.rlim_max);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
}

TEST_CASE("raiseOpenFileLimit: a hard limit it may not raise is reported, the soft one still raised") {
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit lower = saved;
  lower.rlim_cur = std::min<rlim_t>(saved.rlim_max, 512);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &lower) == 0);

  server::FileLimitChange change = server::raiseOpenFileLimit(saved.rlim_max + 1024);
  CHECK(change.hard_before == saved.rlim_max);
  if (change.hard_wanted == 0) {
    // fs.nr_open caps what may be asked for, and the hard limit is there already.
  } else if (change.hard_errno == 0) {
    // CAP_SYS_RESOURCE: raised, soft and hard alike.
    CHECK(change.hard == change.hard_wanted);
    CHECK(change.soft == change.hard_wanted);
  } else {
    CHECK(change.hard_errno == EPERM);
    CHECK(change.hard == saved.rlim_max);
    CHECK(change.soft == saved.rlim_max);
  }
  rlimit now{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &now) == 0);
  CHECK(now.rlim_cur == change.soft);
  CHECK(now.rlim_max == change.hard);
  if (change.hard == saved.rlim_max) REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
}
