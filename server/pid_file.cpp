#include "server/pid_file.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <fstream>
#include <string>

namespace shardgate::server {

namespace {

// The kernel's name of a process's program (/proc/PID/comm), "" when unknown.
std::string programName(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

std::string runningError(const std::string& path, pid_t pid) {
  return path + " names pid " + std::to_string(pid) +
         ", which is running: another shardgate is serving with this configuration (stop it "
         "first), or, if that process is not shardgate, remove the file";
}

}  // namespace

std::optional<pid_t> readPidFile(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  while (!line.empty() && (line.back() == ' ' || line.back() == '\r' || line.back() == '\t')) {
    line.pop_back();
  }
  if (line.empty() || line.size() > 10) return std::nullopt;
  long long pid = 0;
  for (char c : line) {
    if (c < '0' || c > '9') return std::nullopt;
    pid = pid * 10 + (c - '0');
  }
  if (pid <= 0 || pid > 0x3fffffff) return std::nullopt;  // PID_MAX_LIMIT is 2^22
  return static_cast<pid_t>(pid);
}

bool pidIsLiveShardgate(pid_t pid) {
  if (pid == ::getpid()) return false;
  // EPERM: it exists, run by another user.
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  std::string theirs = programName(std::to_string(pid));
  std::string ours = programName("self");
  // Unreadable (hidden by hidepid or ProtectProc=): it exists, so it may be
  // shardgate; the operator is told which pid to check.
  return theirs.empty() || ours.empty() || theirs == ours;
}

Result<PidFile> PidFile::claim(std::string path) {
  auto pid = readPidFile(path);
  if (pid && pidIsLiveShardgate(*pid)) return makeError(runningError(path, *pid));
  if (::unlink(path.c_str()) == 0) {
    if (pid) {
      spdlog::info("pid_file {}: removed a stale one naming pid {}, which is no longer running "
                   "shardgate", path, *pid);
    } else {
      spdlog::info("pid_file {}: removed a stale one that held no pid", path);
    }
  } else if (errno != ENOENT) {
    return makeError("cannot remove the stale pid file " + path + ": " + std::strerror(errno));
  }
  return PidFile(std::move(path));
}

PidFile::PidFile(PidFile&& other) noexcept
    : path_(std::move(other.path_)), written_(std::exchange(other.written_, false)) {}

PidFile::~PidFile() {
  // Only our own: a file a later shardgate wrote is not ours to remove.
  if (written_ && readPidFile(path_) == ::getpid()) ::unlink(path_.c_str());
}

Status PidFile::write() {
  // Written beside the target, then linked into place: the file appears
  // whole, and link() fails if another process created it meanwhile, where
  // rename() would silently replace its pid.
  const std::string tmp = path_ + ".tmp." + std::to_string(::getpid());
  const std::string text = std::to_string(::getpid()) + "\n";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return makeError("cannot write " + path_ + ": " + std::strerror(errno));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  int err = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (ok && ::link(tmp.c_str(), path_.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  ::unlink(tmp.c_str());
  if (ok) {
    written_ = true;
    return {};
  }
  if (err == EEXIST) {
    auto pid = readPidFile(path_);
    if (pid && pidIsLiveShardgate(*pid)) return makeError(runningError(path_, *pid));
    return makeError("cannot write " + path_ + ": another process created it while shardgate was "
                     "starting");
  }
  return makeError("cannot write " + path_ + ": " + std::strerror(err));
}

}  // namespace shardgate::server
