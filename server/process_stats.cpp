#include "server/process_stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <sstream>
#include <string>

#include "server/file_limit.h"

namespace shardgate::server {

namespace {

std::string readFile(const char* path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The index-th space-separated field of text (0-based).
std::string_view field(std::string_view text, size_t index) {
  size_t pos = 0;
  for (size_t i = 0;; ++i) {
    while (pos < text.size() && text[pos] == ' ') ++pos;
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    if (i == index) return text.substr(pos, end - pos);
    if (end >= text.size()) return {};
    pos = end;
  }
}

bool toU64(std::string_view text, uint64_t* out) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.empty()) return false;
  auto res = std::from_chars(text.data(), text.data() + text.size(), *out);
  return res.ec == std::errc() && res.ptr == text.data() + text.size();
}

// Seconds since the epoch of the last boot, for the start time.
double bootTimeSeconds() {
  std::istringstream in(readFile("/proc/stat"));
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double v = 0;
      in >> v;
      return v;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

}  // namespace

bool parseProcStat(std::string_view stat, uint64_t* utime, uint64_t* stime, uint64_t* start) {
  // "pid (comm) state ppid ...": the fields after the last ')' start with
  // state (field 3 of proc(5)); utime is 14, stime 15, starttime 22.
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return false;
  std::string_view rest = stat.substr(close + 1);
  return toU64(field(rest, 14 - 3), utime) && toU64(field(rest, 15 - 3), stime) &&
         toU64(field(rest, 22 - 3), start);
}

bool parseStatmResident(std::string_view statm, uint64_t* pages) { return toU64(field(statm, 1), pages); }

ProcessStats readProcessStats() {
  ProcessStats p;
  const long ticks = ::sysconf(_SC_CLK_TCK);
  uint64_t utime = 0, stime = 0, start = 0;
  if (ticks > 0 && parseProcStat(readFile("/proc/self/stat"), &utime, &stime, &start)) {
    p.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(ticks);
    p.start_time_seconds = bootTimeSeconds() + static_cast<double>(start) / static_cast<double>(ticks);
  }
  uint64_t pages = 0;
  if (parseStatmResident(readFile("/proc/self/statm"), &pages)) {
    p.resident_bytes = pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  }
  p.open_fds = countOpenFiles();
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) p.max_fds = lim.rlim_cur;
  return p;
}

}  // namespace shardgate::server
