// The texts and small parsers the multiplexed path shares with Redis: the exact
// error lines redis-server 7.0 writes (clients match on them), and its
// strict integer and case-insensitive name rules.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shardgate::redis {

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

// Redis's string2ll (util.c), behind every integer argument it reads
// (getLongLongFromObject): plain decimal, '-' the only sign, no leading
// zeros, no "-0", no spaces, fewer than 21 characters.
inline bool parseLongLong(std::string_view s, int64_t* value) {
  if (s.empty() || s.size() >= 21) return false;
  if (s == "0") {
    *value = 0;
    return true;
  }
  const size_t digits = s[0] == '-' ? 1 : 0;
  if (digits == s.size() || s[digits] < '1' || s[digits] > '9') return false;
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, *value);
  return ec == std::errc() && ptr == end;
}

// "ERR wrong number of arguments for 'ping' command": what a command that
// counts its own arguments answers (addReplyErrorArity).
inline std::string arityErrorText(std::string_view name) {
  return "ERR wrong number of arguments for '" + std::string(name) + "' command";
}

}  // namespace shardgate::redis
