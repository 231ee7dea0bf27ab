#include "common/log_file_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace shardgate {

Result<std::FILE*> LogFileSink::open(const std::string& path) {
  // O_APPEND: every write lands at the end, also when another writer (a
  // second process, or `>>` by hand) appends to the same file.
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return Error{"cannot open log file " + path + ": " + std::strerror(errno), errno};
  }
  std::FILE* file = ::fdopen(fd, "a");
  if (file == nullptr) {
    int err = errno;
    ::close(fd);
    return Error{"cannot open log file " + path + ": " + std::strerror(err), err};
  }
  return file;
}

Result<std::shared_ptr<LogFileSink>> LogFileSink::create(const std::string& path) {
  auto file = open(path);
  if (!file) return file.error();
  return std::shared_ptr<LogFileSink>(new LogFileSink(path, *file));
}

LogFileSink::~LogFileSink() {
  if (file_ != nullptr) std::fclose(file_);
}

Status LogFileSink::reopen() {
  // Open first, outside the lock: a failure leaves the old file in use, and
  // the threads logging meanwhile never wait on the file system.
  auto fresh = open(path_);
  if (!fresh) return fresh.error();
  std::FILE* old = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::fflush(file_);
    old = std::exchange(file_, *fresh);
  }
  std::fclose(old);
  return {};
}

void LogFileSink::sink_it_(const spdlog::details::log_msg& msg) {
  spdlog::memory_buf_t line;
  formatter_->format(msg, line);
  // A full disk loses the line, not the process: there is nowhere better to
  // say so than the log itself.
  std::fwrite(line.data(), 1, line.size(), file_);
}

void LogFileSink::flush_() { std::fflush(file_); }

}  // namespace shardgate
