#include "common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "common/log_file_sink.h"

namespace shardgate {

namespace {

// Set once by setupLogging, before any other thread runs; reopened on the
// control thread only.
std::shared_ptr<LogFileSink>& logFile() {
  static std::shared_ptr<LogFileSink> sink;
  return sink;
}

}  // namespace

Status setLogLevel(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  // from_str answers "off" for anything it does not know.
  if (parsed == spdlog::level::off && level != "off") {
    return makeError("log_level: expected one of trace, debug, info, warn, error, got \"" +
                     std::string(level) + "\"");
  }
  spdlog::set_level(parsed);
  return {};
}

Status setupLogging(std::string_view level, const std::string& log_file) {
  std::shared_ptr<spdlog::logger> logger;
  if (log_file.empty()) {
    // stderr, unbuffered lines: operators and tests read them as they happen.
    logger = spdlog::stderr_logger_mt("shardgate");
  } else {
    auto sink = LogFileSink::create(log_file);
    if (!sink) return makeError("log_file: " + sink.message());
    logFile() = *sink;
    logger = std::make_shared<spdlog::logger>("shardgate", logFile());
  }
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%t] %v");
  // Every line is flushed as it is written: a line logged just before a
  // crash, a kill or a log rotation is in the file.
  spdlog::flush_on(spdlog::level::trace);
  return setLogLevel(level);
}

const std::string& logFilePath() {
  static const std::string none;
  return logFile() ? logFile()->path() : none;
}

Status reopenLogFile() {
  if (!logFile()) return {};
  return logFile()->reopen();
}

}  // namespace shardgate
