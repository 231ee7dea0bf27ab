#include "server/pid_file.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "tests/unit/temp_dir.h"

using namespace shardgate::server;
using shardgate::testing::TempDir;

namespace {

void writeText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// A child process that waits to be killed; name it to look like another program.
struct Child {
  pid_t pid = -1;
  explicit Child(const char* name = nullptr) {
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (name != nullptr) ::prctl(PR_SET_NAME, name, 0, 0, 0);
      char c = 1;
      (void)!::write(ready[1], &c, 1);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    char c = 0;
    REQUIRE(::read(ready[0], &c, 1) == 1);  // renamed by now
    ::close(ready[0]);
  }
  void stop() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  ~Child() { stop(); }
};

}  // namespace

TEST_CASE("readPidFile: digits on the first line, else nothing") {
  TempDir dir;
  const std::string path = dir.path + "/p.pid";
  CHECK_FALSE(readPidFile(path).has_value());  // absent
  writeText(path, "1234\n");
  CHECK(readPidFile(path) == 1234);
  writeText(path, "1234");
  CHECK(readPidFile(path) == 1234);
  writeText(path, "");
  CHECK_FALSE(readPidFile(path).has_value());
  writeText(path, "12ab\n");
  CHECK_FALSE(readPidFile(path).has_value());
  writeText(path, "-5\n");
  CHECK_FALSE(readPidFile(path).has_value());
  writeText(path, "0\n");
  CHECK_FALSE(readPidFile(path).has_value());
}

TEST_CASE("PidFile: claimed, written after start with this pid, removed at the end") {
  TempDir dir;
  const std::string path = dir.path + "/shardgate.pid";
  {
    auto pid_file = PidFile::claim(path);
    REQUIRE(pid_file);
    CHECK_FALSE(exists(path));  // nothing until write()
    REQUIRE(pid_file->write());
    CHECK(readPidFile(path) == ::getpid());
  }
  CHECK_FALSE(exists(path));
  CHECK_FALSE(exists(path + ".tmp." + std::to_string(::getpid())));
}

TEST_CASE("PidFile: a stale file from a process that is gone is replaced") {
  TempDir dir;
  const std::string path = dir.path + "/shardgate.pid";
  pid_t gone = 0;
  {
    Child child;
    gone = child.pid;
  }
  writeText(path, std::to_string(gone) + "\n");
  auto pid_file = PidFile::claim(path);
  REQUIRE(pid_file);
  CHECK_FALSE(exists(path));
  REQUIRE(pid_file->write());
  CHECK(readPidFile(path) == ::getpid());
}

TEST_CASE("PidFile: a file holding no pid, or this process's own, is stale") {
  TempDir dir;
  const std::string path = dir.path + "/shardgate.pid";
  writeText(path, "garbage\n");
  CHECK(PidFile::claim(path));
  writeText(path, std::to_string(::getpid()) + "\n");  // pid 1 again in a restarted container
  CHECK(PidFile::claim(path));
}

TEST_CASE("PidFile: a pid now used by another program is stale") {
  TempDir dir;
  const std::string path = dir.path + "/shardgate.pid";
  Child other("not-shardgate");
  CHECK_FALSE(pidIsLiveShardgate(other.pid));
  writeText(path, std::to_string(other.pid) + "\n");
  CHECK(PidFile::claim(path));
}

TEST_CASE("PidFile: a live shardgate's file is an error naming its pid, and is left alone") {
  TempDir dir;
  const std::string path = dir.path + "/shardgate.pid";
  Child live;  // same program name as this process: a running shardgate
  CHECK(pidIsLiveShardgate(live.pid));
  writeText(path, std::to_string(live.pid) + "\n");
  auto pid_file = PidFile::claim(path);
  REQUIRE_FALSE(pid_file);
  CHECK(pid_file.message().find(path + " names pid " + std::to_string(live.pid) + ", which is running") == 0);
  CHECK(readPidFile(path) == live.pid);
}

TEST_CASE("PidFile::write loses to a rival that wrote first, and does not remove its file") {
  TempDir dir;
  const std::string path = dir.path + "/shardgate.pid";
  Child rival;
  {
    auto pid_file = PidFile::claim(path);
    REQUIRE(pid_file);
    writeText(path, std::to_string(rival.pid) + "\n");  // it started meanwhile
    auto st = pid_file->write();
    REQUIRE_FALSE(st);
    CHECK(st.message().find("names pid " + std::to_string(rival.pid)) != std::string::npos);
  }
  CHECK(readPidFile(path) == rival.pid);
}

TEST_CASE("PidFile::write into a directory that does not exist names the file") {
  TempDir dir;
  const std::string path = dir.path + "/missing/shardgate.pid";
  auto pid_file = PidFile::claim(path);
  REQUIRE(pid_file);
  auto st = pid_file->write();
  REQUIRE_FALSE(st);
  CHECK(st.message() == "cannot write " + path + ": No such file or directory");
}
