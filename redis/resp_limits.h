// Protocol limits of a multiplexed database's requests. Plain values with no
// defaults of their own: they come from the config (config::LimitsConfig,
// requestLimits()), where the defaults live with the other keys.
#pragma once

#include <cstddef>

namespace shardgate::redis {

struct RespLimits {
  size_t max_bulk_len;    // limits.max_bulk_len: longest bulk argument
  size_t max_args;        // limits.max_args: arguments per command
  size_t max_inline_len;  // longest inline command line
};

}  // namespace shardgate::redis
