// Fetching the command table from a shard at startup: its own COMMAND reply
// says where each command's keys are, so a newer Redis's commands route
// without a code change here.
#pragma once

#include <optional>
#include <string>

#include "redis/command_table.h"
#include "proxy/database.h"

namespace shardgate::proxy {

struct ShardFacts {
  redis::CommandTable commands;
  uint64_t databases = 16;          // CONFIG GET databases (16 if CONFIG is refused)
  std::string version = "7.0.0";    // INFO server: redis_version
};

// Connects (blocking, bounded by timeout_ms), AUTHs with password if given,
// sends COMMAND, CONFIG GET databases and INFO server, and parses the
// replies. Errors name the shard and what failed.
Result<ShardFacts> fetchShardFacts(const ShardEndpoint& shard,
                                   const std::optional<std::string>& password, int timeout_ms);

}  // namespace shardgate::proxy
