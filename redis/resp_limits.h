// Protocol limits of a multiplexed database's requests, from the config
// (the defaults live in config/config.h with the other keys).
#pragma once

#include <cstddef>

namespace shardgate::redis {

struct RespLimits {
  size_t max_bulk_len = 512u * 1024 * 1024;  // Redis's proto-max-bulk-len default
  size_t max_args = 1024 * 1024;             // arguments per command
  size_t max_inline_len = 64 * 1024;         // Redis's PROTO_INLINE_MAX_SIZE
};

}  // namespace shardgate::redis
