// The admin API's JSON output: nlohmann::json, dumped so that no string
// can make it throw (bytes that are not UTF-8, from a certificate's subject
// say, are replaced with U+FFFD instead of raising type_error 316).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace shardgate::server {

inline std::string dumpJson(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace shardgate::server
