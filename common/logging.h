// Logging: spdlog, one pattern for the whole process, to stderr or to the
// `log_file` (reopened on SIGUSR1 for logrotate).
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace shardgate {

// Installs the logger; level is one of trace|debug|info|warn|error. An empty
// log_file logs to stderr; otherwise to that file, which must open (an error
// names it).
Status setupLogging(std::string_view level, const std::string& log_file = {});
Status setLogLevel(std::string_view level);

// The log file, or "" when logging to stderr.
const std::string& logFilePath();
// Opens the log file afresh (logrotate moved it away); lines logged
// meanwhile go whole to the old file or the new one. Logging to stderr:
// nothing to do.
Status reopenLogFile();

}  // namespace shardgate
