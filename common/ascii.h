// ASCII helpers for the protocol text the proxy reads and writes: Redis
// command names are case-insensitive ASCII, and libuv's error texts are
// lower-cased before they go into "-ERR" lines.
#pragma once

#include <string>
#include <string_view>

namespace shardgate {

inline std::string asciiLower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace shardgate
