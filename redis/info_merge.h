// INFO on a multiplexed database: every shard answers the client's own INFO
// command (its sections, its arguments), and the replies become the one text
// a client of one Redis expects. A pure function of bytes, unit-tested alone.
//
// What each section becomes with several shards (one shard: its text as is):
//   server, replication, modules, cluster, latencystats and any section this
//     code does not know: the first shard's lines;
//   clients, stats, cpu: numbers summed (counters of the whole database),
//     except the few fields kInfoRules names (maxclients: the first shard's;
//     client_recent_max_*: the largest; pubsub_patterns: the first shard's,
//     since every shard holds every pattern);
//   memory: byte counts summed and their *_human twins recomputed; ratios,
//     percentages, policies and script/function counts (every shard holds
//     every script): the first shard's;
//   persistence: "in progress" flags the largest (1 if any shard), change and
//     save counts summed, statuses "ok" only if every shard says so, the last
//     save time the oldest; the rest the first shard's;
//   keyspace: each dbN line summed (keys, expires; avg_ttl weighted by expires);
//   commandstats, errorstats: each line summed (usec_per_call recomputed).
// Then the proxy's own fields, all named shardgate_*, are appended to the
// server, clients and stats sections when the reply has them.
#pragma once

#include <string>

#include "redis/reply_merge.h"
#include "common/byte_buffer.h"

namespace shardgate::redis {

// The proxy's own fields, "shardgate_name:value\r\n" lines per section.
struct InfoAdditions {
  std::string server;
  std::string clients;
  std::string stats;
};

// parts: each shard's reply to the same INFO command. The first error passes
// through unchanged; the merged text is a bulk string, or RESP3's verbatim
// text when the shards answered with one.
void mergeInfo(const ReplyParts& parts, const InfoAdditions& own, ByteBuffer& out);

// The merged text alone (parts as INFO texts, not RESP replies): what
// mergeInfo encodes.
std::string mergeInfoText(const std::vector<std::string_view>& texts, const InfoAdditions& own);

}  // namespace shardgate::redis
