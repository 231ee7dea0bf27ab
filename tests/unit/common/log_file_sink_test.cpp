#include "common/log_file_sink.h"

#include <doctest/doctest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/temp_dir.h"

using shardgate::LogFileSink;
using shardgate::testing::TempDir;

namespace {

std::string readAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::shared_ptr<spdlog::logger> loggerFor(std::shared_ptr<LogFileSink> sink) {
  auto logger = std::make_shared<spdlog::logger>("file-test", std::move(sink));
  logger->set_pattern("%v");
  logger->flush_on(spdlog::level::trace);
  return logger;
}

}  // namespace

TEST_CASE("LogFileSink appends lines to its file, creating it") {
  TempDir dir;
  const std::string path = dir.path + "/shardgate.log";
  {
    std::ofstream(path) << "an earlier line\n";
  }
  auto sink = LogFileSink::create(path);
  REQUIRE(sink);
  auto logger = loggerFor(*sink);
  logger->info("first");
  logger->info("second");
  CHECK(readAll(path) == "an earlier line\nfirst\nsecond\n");
}

TEST_CASE("LogFileSink: a file that cannot be opened is an error naming it") {
  TempDir dir;
  const std::string path = dir.path + "/no-such-dir/shardgate.log";
  auto sink = LogFileSink::create(path);
  REQUIRE_FALSE(sink);
  CHECK(sink.message() == "cannot open log file " + path + ": No such file or directory");
}

TEST_CASE("LogFileSink::reopen after the file was moved away: old lines stay, new ones go to a new file") {
  TempDir dir;
  const std::string path = dir.path + "/shardgate.log";
  auto sink = LogFileSink::create(path);
  REQUIRE(sink);
  auto logger = loggerFor(*sink);
  logger->info("before the move");
  REQUIRE(std::rename(path.c_str(), (path + ".1").c_str()) == 0);
  logger->info("after the move, before the reopen");
  REQUIRE((*sink)->reopen());
  logger->info("after the reopen");
  CHECK(readAll(path + ".1") == "before the move\nafter the move, before the reopen\n");
  CHECK(readAll(path) == "after the reopen\n");
}

TEST_CASE("LogFileSink::reopen that fails keeps writing to the open file") {
  TempDir dir;
  const std::string sub = dir.path + "/logs";
  REQUIRE(::mkdir(sub.c_str(), 0700) == 0);
  const std::string path = sub + "/shardgate.log";
  auto sink = LogFileSink::create(path);
  REQUIRE(sink);
  auto logger = loggerFor(*sink);
  REQUIRE(std::rename(sub.c_str(), (dir.path + "/moved").c_str()) == 0);
  auto st = (*sink)->reopen();
  REQUIRE_FALSE(st);
  CHECK(st.message() == "cannot open log file " + path + ": No such file or directory");
  logger->info("still logged");
  CHECK(readAll(dir.path + "/moved/shardgate.log") == "still logged\n");
}

TEST_CASE("LogFileSink: lines logged from other threads across reopens are all kept, each whole") {
  TempDir dir;
  const std::string path = dir.path + "/shardgate.log";
  auto sink = LogFileSink::create(path);
  REQUIRE(sink);
  auto logger = loggerFor(*sink);
  constexpr int kThreads = 3;
  constexpr int kLines = 3000;
  constexpr int kRotations = 20;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kLines; ++i) logger->info("line {} {} end", t, i);
    });
  }
  std::vector<std::string> files;
  for (int r = 0; r < kRotations; ++r) {
    const std::string rotated = path + "." + std::to_string(r);
    REQUIRE(std::rename(path.c_str(), rotated.c_str()) == 0);
    files.push_back(rotated);
    REQUIRE((*sink)->reopen());
    std::this_thread::yield();
  }
  for (auto& w : writers) w.join();
  files.push_back(path);

  std::set<std::string> seen;
  size_t total = 0;
  for (const std::string& f : files) {
    std::istringstream lines(readAll(f));
    for (std::string line; std::getline(lines, line);) {
      ++total;
      CHECK_MESSAGE(line.rfind("line ", 0) == 0, line);
      CHECK_MESSAGE(line.size() > 4, line);
      CHECK_MESSAGE(line.substr(line.size() - 4) == " end", line);
      seen.insert(line);
    }
  }
  CHECK(total == size_t{kThreads} * kLines);
  CHECK(seen.size() == size_t{kThreads} * kLines);
}
