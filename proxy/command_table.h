// CommandTable: what the router must know about each command: its arity and
// where its keys are. Built from a shard's own COMMAND reply, so commands a
// newer Redis adds route without a code change; a small built-in table serves
// until a shard has answered. Commands whose keys move (movablekeys) are
// handled by a table of their own key rules here.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/resp_decoder.h"
#include "tls/result.h"

namespace shardgate::proxy {

struct CommandInfo {
  std::string name;  // lower case, e.g. "get", "client"
  int arity = 0;     // Redis's: N exact, -N at least N (the name counts)
  int first_key = 0; // 0: no keys
  int last_key = 0;  // negative: from the end (-1 = last argument)
  int step = 0;
  uint32_t flags = 0;

  static constexpr uint32_t kWrite = 1u << 0;
  static constexpr uint32_t kReadonly = 1u << 1;
  static constexpr uint32_t kBlocking = 1u << 2;   // Redis 7 flag "blocking"
  static constexpr uint32_t kPubsub = 1u << 3;
  static constexpr uint32_t kMovableKeys = 1u << 4;
  static constexpr uint32_t kNoScript = 1u << 5;
  static constexpr uint32_t kAdmin = 1u << 6;
};

class CommandTable {
 public:
  // The commands of Redis 7.0 a client most often sends (strings, hashes,
  // lists, sets, sorted sets, keys, transactions, pub/sub, scripting, server).
  static CommandTable builtin();
  // From the reply to COMMAND (RESP2 array of command entries, Redis >= 6).
  // Errors name the entry that was malformed.
  static Result<CommandTable> fromCommandReply(const RespValue& reply);

  // Case-insensitive, no allocation.
  const CommandInfo* find(std::string_view name) const;
  size_t size() const { return commands_.size(); }

  // Appends the indices into args of cmd's keys (args[0] is the command
  // name). Returns an error carrying Redis's own text (without "-") for a
  // wrong number of arguments: "ERR wrong number of arguments for 'get' command".
  // Movable-keys commands (EVAL, ZUNIONSTORE, XREAD, SORT, MIGRATE, ...) use
  // their own rules; one whose rules are unknown is an error naming it.
  Status keyPositions(const CommandInfo& cmd, std::span<const std::string_view> args,
                      std::vector<uint32_t>& out) const;

 private:
  std::unordered_map<std::string, CommandInfo> commands_;  // key: lower-case name
};

}  // namespace shardgate::proxy
