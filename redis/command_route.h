// CommandRoute: the router's classification of the commands it does not
// simply send to the shard owning their key (the default). Stored in
// CommandInfo::route, set once per table by annotateRoutes(), so dispatch is
// one switch per command, no string compare.
#pragma once

#include <cstdint>

#include "redis/command_table.h"

namespace shardgate::redis {

enum class CommandRoute : uint8_t {
  kDefault = 0,   // keyed: the shard of its keys; keyless: the first shard
  // answered by the proxy
  kPing, kEcho, kQuit, kHello, kAuth, kSelect, kClient, kReset, kCluster,
  // sent to every shard, replies combined
  kInfo, kDbsize, kFlush, kScript, kFunction, kKeys, kRandomKey,
  kScan,          // one shard at a time, the cursor names it
  // split by shard when their keys span several
  kMget, kMset, kSumKeys,  // DEL UNLINK EXISTS TOUCH
  // stateful: a connection of the client's own
  kMulti, kExec, kDiscard, kWatch, kUnwatch,
  kSubscribe, kPsubscribe, kUnsubscribe, kPunsubscribe,
  kPublish,       // by the channel's slot
  kMonitor,       // every shard's feed, merged
  kStalling,      // may hold its connection (WAIT, DEBUG SLEEP): a private link
  kConfig,        // CONFIG SET/RESETSTAT/REWRITE: every shard; GET: the first
  kEveryShard,    // SAVE, BGSAVE, BGREWRITEAOF: every shard, the first answer
  kPubsubInfo,    // PUBSUB CHANNELS (every shard), NUMSUB (by channel)
  // refused with a message saying why
  kUnsupported,
};

// Sets CommandInfo::route for every command of the table that has one.
void annotateRoutes(CommandTable& table);

}  // namespace shardgate::redis
