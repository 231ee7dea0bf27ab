// RespValue and parseReply: one complete reply frame -> a tree of views
// into the frame, for the few replies the proxy must read (COMMAND, merges
// of MGET/DBSIZE/KEYS/SCAN, INFO, ...).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace shardgate::redis {

struct RespValue {
  enum class Type : uint8_t {
    kSimpleString,  // +
    kError,         // -  and RESP3 blob error !
    kInteger,       // :
    kBulkString,    // $
    kNull,          // $-1, *-1, _
    kArray,         // *
    kMap,           // %  (elements: key, value, key, value, ...)
    kSet,           // ~
    kPush,          // >
    kDouble,        // ,  (str holds the text)
    kBoolean,       // #  (integer 0/1)
    kBigNumber,     // (  (str holds the digits)
    kVerbatim,      // =  (str holds "txt:..." as sent)
  };
  Type type = Type::kNull;
  std::string_view str;  // view into the frame
  int64_t integer = 0;
  std::vector<RespValue> elements;
};

// Parses exactly one complete frame (attributes are skipped, the value after
// them is returned). Errors say what was malformed and at which byte.
Result<RespValue> parseReply(std::string_view frame);

// "an array", "a bulk string", ...: what error messages call a value's type.
const char* typeName(RespValue::Type type);

}  // namespace shardgate::redis
