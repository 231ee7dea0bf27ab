#include "common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <string>

namespace shardgate {

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

Status setupLogging(std::string_view level) {
  // stderr, unbuffered lines: operators and tests read them as they happen.
  auto logger = spdlog::stderr_logger_mt("shardgate");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%t] %v");
  spdlog::flush_on(spdlog::level::trace);
  return setLogLevel(level);
}

}  // namespace shardgate
