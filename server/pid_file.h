// PidFile: the `pid_file` key. claim() runs first at start: a file naming a
// live shardgate stops this one (two processes on one config would share its
// ports through SO_REUSEPORT and split the clients between them); a stale
// file, left by a process that is gone, is removed. write() puts this
// process's pid there once the listeners are up, atomically (readers never
// see a half-written file, and a rival that wrote first wins). The
// destructor removes the file if it still names this process.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "common/result.h"

namespace shardgate::server {

class PidFile {
 public:
  static Result<PidFile> claim(std::string path);
  PidFile(PidFile&& other) noexcept;
  PidFile& operator=(PidFile&&) = delete;
  ~PidFile();

  Status write();
  const std::string& path() const { return path_; }

 private:
  explicit PidFile(std::string path) : path_(std::move(path)) {}

  std::string path_;
  bool written_ = false;
};

// The pid a pid file holds: its first line, digits only; nullopt when the
// file is absent, empty or holds anything else.
std::optional<pid_t> readPidFile(const std::string& path);

// Whether pid is a running process that may be another shardgate: it exists
// and (where /proc tells) runs a program of this one's name. A pid reused by
// an unrelated program after a reboot, or this very process (pid 1 in a
// restarted container), is not.
bool pidIsLiveShardgate(pid_t pid);

}  // namespace shardgate::server
