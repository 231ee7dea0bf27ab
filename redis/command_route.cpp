#include "redis/command_route.h"

#include <utility>

namespace shardgate::redis {

void annotateRoutes(CommandTable& table) {
  static constexpr std::pair<const char*, CommandRoute> kRoutes[] = {
      {"ping", CommandRoute::kPing},           {"echo", CommandRoute::kEcho},
      {"quit", CommandRoute::kQuit},           {"hello", CommandRoute::kHello},
      {"auth", CommandRoute::kAuth},           {"select", CommandRoute::kSelect},
      {"client", CommandRoute::kClient},       {"reset", CommandRoute::kReset},
      {"cluster", CommandRoute::kCluster},     {"info", CommandRoute::kInfo},
      {"dbsize", CommandRoute::kDbsize},       {"flushall", CommandRoute::kFlush},
      {"flushdb", CommandRoute::kFlush},       {"script", CommandRoute::kScript},
      {"function", CommandRoute::kFunction},   {"keys", CommandRoute::kKeys},
      {"randomkey", CommandRoute::kRandomKey}, {"scan", CommandRoute::kScan},
      {"mget", CommandRoute::kMget},           {"mset", CommandRoute::kMset},
      {"del", CommandRoute::kSumKeys},         {"unlink", CommandRoute::kSumKeys},
      {"exists", CommandRoute::kSumKeys},      {"touch", CommandRoute::kSumKeys},
      {"multi", CommandRoute::kMulti},         {"exec", CommandRoute::kExec},
      {"discard", CommandRoute::kDiscard},     {"watch", CommandRoute::kWatch},
      {"unwatch", CommandRoute::kUnwatch},     {"subscribe", CommandRoute::kSubscribe},
      {"ssubscribe", CommandRoute::kSubscribe}, {"psubscribe", CommandRoute::kPsubscribe},
      {"unsubscribe", CommandRoute::kUnsubscribe},
      {"sunsubscribe", CommandRoute::kUnsubscribe},
      {"punsubscribe", CommandRoute::kPunsubscribe},
      {"publish", CommandRoute::kPublish},
      {"config", CommandRoute::kConfig},       {"pubsub", CommandRoute::kPubsubInfo},
      {"save", CommandRoute::kEveryShard},     {"bgsave", CommandRoute::kEveryShard},
      {"bgrewriteaof", CommandRoute::kEveryShard},
      // Keyless, not flagged "blocking", yet they can hold their connection
      // for as long as they like: never on a shared link.
      {"wait", CommandRoute::kStalling},       {"waitaof", CommandRoute::kStalling},
      {"debug", CommandRoute::kStalling},
      // Whole-server or connection-wide commands whose meaning does not
      // survive being split across shards.
      {"monitor", CommandRoute::kMonitor},     {"swapdb", CommandRoute::kUnsupported},
      {"move", CommandRoute::kUnsupported},    {"sync", CommandRoute::kUnsupported},
      {"psync", CommandRoute::kUnsupported},   {"replicaof", CommandRoute::kUnsupported},
      {"slaveof", CommandRoute::kUnsupported}, {"shutdown", CommandRoute::kUnsupported},
      {"failover", CommandRoute::kUnsupported},
  };
  for (const auto& [name, route] : kRoutes) table.setRoute(name, static_cast<uint8_t>(route));
}

}  // namespace shardgate::redis
