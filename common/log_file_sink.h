// LogFileSink: the spdlog sink behind the `log_file` key. Every line goes to
// one file, appended; reopen() (on SIGUSR1, after logrotate moved the file
// away) opens the path afresh and only then swaps it in under the sink's lock,
// so each line lands whole in either the old file or the new one, none is
// lost, and a reopen that fails keeps writing to the file it had.
#pragma once

#include <spdlog/sinks/base_sink.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "common/result.h"

namespace shardgate {

class LogFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // Opens path for appending, creating it (0640, less the umask) when absent;
  // its directory must exist. An error names the file and the reason.
  static Result<std::shared_ptr<LogFileSink>> create(const std::string& path);
  ~LogFileSink() override;

  LogFileSink(const LogFileSink&) = delete;
  LogFileSink& operator=(const LogFileSink&) = delete;

  // Opens the path again (a new file where logrotate moved the old one
  // away), then closes the old one once its last line is flushed.
  Status reopen();
  const std::string& path() const { return path_; }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override;

 private:
  LogFileSink(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  static Result<std::FILE*> open(const std::string& path);

  const std::string path_;
  std::FILE* file_;  // guarded by base_sink's mutex_
};

}  // namespace shardgate
