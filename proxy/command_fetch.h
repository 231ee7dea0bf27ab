// Fetching the command table from a shard at startup: its own COMMAND reply
// says where each command's keys are, so a newer Redis's commands route
// without a code change here.
#pragma once

#include <optional>
#include <string>

#include "proxy/command_table.h"
#include "proxy/database.h"

namespace shardgate::proxy {

// Connects (blocking, bounded by timeout_ms), AUTHs with password if given,
// sends COMMAND and parses the reply. Errors name the shard and what failed.
Result<CommandTable> fetchCommandTable(const ShardEndpoint& shard,
                                       const std::optional<std::string>& password,
                                       int timeout_ms);

}  // namespace shardgate::proxy
