// The texts and small parsers the routed path shares with Redis: the exact
// error lines redis-server 7.0 writes (clients match on them), and its
// strict integer and case-insensitive name rules.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shardgate::proxy {

inline constexpr std::string_view kCrossSlot =
    "CROSSSLOT Keys in request don't hash to the same slot";

// Redis's own text for a command it does not know (server.c, processCommand).
inline std::string unknownCommand(const std::vector<std::string_view>& args) {
  std::string list;
  for (size_t i = 1; i < args.size() && list.size() < 128; ++i) {
    size_t room = 128 - list.size();  // sdscatprintf's "'%.*s' " precision
    list += '\'';
    list += args[i].substr(0, room);
    list += "' ";
  }
  std::string text = "ERR unknown command '" + std::string(args[0].substr(0, 128)) +
                     "', with args beginning with: " + list;
  for (auto& c : text) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return text;
}

// s equals `lower` (already lower case) ignoring ASCII case.
inline bool equalsLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

// A whole decimal integer, nothing before or after it.
inline bool parseInt(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace shardgate::proxy
