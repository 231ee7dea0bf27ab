#include "proxy/command_fetch.h"

#include <charconv>

#include "proxy/node_query.h"

namespace shardgate::proxy {

Result<ShardFacts> fetchShardFacts(const ShardEndpoint& shard,
                                   const std::optional<std::string>& password, int timeout_ms) {
  auto fail = [&](const std::string& what) {
    return makeError("shard " + shard.address + ": COMMAND: " + what);
  };
  auto replies = queryNode(shard, password, {{"COMMAND"}, {"CONFIG", "GET", "databases"}, {"INFO", "server"}},
                           timeout_ms);
  if (!replies) {
    // AUTH refused is about the password, not the COMMAND exchange.
    if (replies.message().rfind(kAuthRefused, 0) == 0) return makeError("shard " + shard.address + ": " + replies.message());
    return fail(replies.message());
  }
  auto frame = [&](size_t i) { return replies->reply(i); };
  const size_t first = 0;
  auto value = redis::parseReply(frame(first));
  if (!value) return fail("malformed reply: " + value.message());
  if (value->type == redis::RespValue::Type::kError) {
    // The proxy's shared shard connections carry no client's AUTH: only
    // shard_password can open them.
    if (!password && value->str.starts_with("NOAUTH"))
      return fail(std::string(value->str) +
                  " (the shard has a password: set this database's shard_password)");
    return fail(std::string(value->str));
  }
  auto table = redis::CommandTable::fromCommandReply(*value);
  if (!table) return fail(table.message());
  ShardFacts facts{std::move(*table)};
  // CONFIG may be renamed or refused by ACL: then Redis's default of 16.
  if (auto config = redis::parseReply(frame(first + 1));
      config && config->type == redis::RespValue::Type::kArray && config->elements.size() == 2) {
    uint64_t n = 0;
    std::string_view text = config->elements[1].str;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec == std::errc() && end == text.data() + text.size() && n > 0) facts.databases = n;
  }
  if (auto info = redis::parseReply(frame(first + 2)); info && !info->str.empty()) {
    std::string_view text = info->str;
    size_t at = text.find("redis_version:");
    if (at != std::string_view::npos) {
      text = text.substr(at + 14);
      facts.version = std::string(text.substr(0, text.find_first_of("\r\n")));
    }
  }
  return facts;
}

}  // namespace shardgate::proxy
