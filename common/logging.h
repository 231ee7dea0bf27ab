// Logging: spdlog to stderr, one pattern for the whole process.
#pragma once

#include <string_view>

#include "common/result.h"

namespace shardgate {

// Installs the stderr logger; level is one of trace|debug|info|warn|error.
Status setupLogging(std::string_view level);
Status setLogLevel(std::string_view level);

}  // namespace shardgate
