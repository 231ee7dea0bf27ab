// CommandTable: what the router must know about each command: its arity and
// where its keys are. Built from a shard's own COMMAND reply, so commands a
// newer Redis adds route without a code change; a small built-in table serves
// until a shard has answered. Commands whose keys move (movablekeys) are
// handled by a table of their own key rules here.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "redis/resp_value.h"
#include "common/result.h"

namespace shardgate::redis {

struct CommandInfo {
  std::string name;  // lower case, e.g. "get", "client"
  int arity = 0;     // Redis's: N exact, -N at least N (the name counts)
  int first_key = 0; // 0: no keys
  int last_key = 0;  // negative: from the end (-1 = last argument)
  int step = 0;
  uint32_t flags = 0;
  uint8_t route = 0;  // the router's CommandRoute (command_route.h); 0: by key
  // A container (CLIENT, CONFIG, OBJECT, ...): its first argument names one
  // of the table's "name|sub" entries.
  bool has_subcommands = false;

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
  // A container's subcommand ("object" + "ENCODING" -> "object|encoding"),
  // case-insensitive, no allocation; nullptr if container has none such.
  const CommandInfo* findSubcommand(const CommandInfo& container, std::string_view sub) const;
  // Top-level commands (subcommands not counted).
  size_t size() const { return commands_.size(); }
  // Sets CommandInfo::route of a top-level command, if the table has it.
  void setRoute(std::string_view name, uint8_t route);

  // The checks redis-server 7.0 makes before it runs any command (server.c
  // processCommand): a container's subcommand must exist, and the argument
  // count must fit the (sub)command's arity. Returns Redis's own error text
  // (without "-"): "ERR unknown subcommand 'x'. Try CLIENT HELP.",
  // "ERR wrong number of arguments for 'client|setname' command", or for
  // EXEC "EXECABORT Transaction discarded because of: wrong number ...".
  // A command's own argument parsing (PING's "at most one message", ...)
  // is the command's business, not this check's.
  Status checkCall(const CommandInfo& cmd, std::span<const std::string_view> args) const;

  // Appends the indices into args of cmd's keys (args[0] is the command
  // name). Returns an error carrying Redis's own text (without "-") for a
  // wrong number of arguments: "ERR wrong number of arguments for 'get' command".
  // Movable-keys commands (EVAL, ZUNIONSTORE, XREAD, SORT, MIGRATE, ...) use
  // their own rules; where those cannot find the keys (a bad numkeys, an odd
  // STREAMS list) the error is what redis-server 7.0 answers for that input.
  // A movable-keys command with no rule here is an error naming it.
  // A container (OBJECT, XINFO, CLIENT, ...) uses its subcommand's arity and
  // keys when the table knows the subcommand.
  Status keyPositions(const CommandInfo& cmd, std::span<const std::string_view> args,
                      std::vector<uint32_t>& out) const;

 private:
  // Heterogeneous lookup: find() hashes a string_view of a stack buffer, so
  // the per-command lookup never builds a std::string.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Map = std::unordered_map<std::string, CommandInfo, NameHash, std::equal_to<>>;

  void add(CommandInfo info);
  static const CommandInfo* lookup(const Map& map, size_t max_len, std::string_view prefix,
                                   std::string_view name);
  Status rangeKeys(const CommandInfo& cmd, std::span<const std::string_view> args,
                   std::vector<uint32_t>& out) const;

  Map commands_;     // key: lower-case name
  Map subcommands_;  // key: "container|sub", lower case, as COMMAND names them
  size_t max_name_len_ = 0;     // longer names cannot be in commands_
  size_t max_subname_len_ = 0;  // nor in subcommands_
};

}  // namespace shardgate::redis
