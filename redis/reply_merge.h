// Reply merging: how the replies of several shards to the parts of one client
// command become the one reply the client expects, as if
// one Redis had answered. Pure functions of bytes, so each rule is unit-tested alone.
//
// Every merge passes the first error (in part order) through unchanged: a
// client that split nothing would have seen that error too.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/byte_buffer.h"

namespace shardgate::redis {

using ReplyParts = std::vector<std::string>;

// MGET: parts are arrays; key_part[i] is the part that holds key i, and each
// part lists its keys in the client's order.
// per_key: elements per key in each part (PUBSUB NUMSUB: name and count).
void mergeMget(const ReplyParts& parts, const std::vector<uint16_t>& key_part, ByteBuffer& out,
               size_t per_key = 1);
// MSET, FLUSHALL, FLUSHDB, SCRIPT FLUSH: +OK when every part is +OK.
void mergeAllOk(const ReplyParts& parts, ByteBuffer& out);
// SCRIPT KILL, FUNCTION KILL: +OK when any part is +OK (the shard that was
// running the script); otherwise the first error (NOTBUSY from all).
void mergeAnyOk(const ReplyParts& parts, ByteBuffer& out);
// DEL, UNLINK, EXISTS, TOUCH, DBSIZE: the integers summed.
void mergeSumIntegers(const ReplyParts& parts, ByteBuffer& out);
// KEYS: the arrays concatenated.
void mergeConcatArrays(const ReplyParts& parts, ByteBuffer& out);
// RANDOMKEY: the first non-nil part from `start` on (wrapping); nil if all are.
void mergeRandomKey(const ReplyParts& parts, size_t start, ByteBuffer& out);
// SCRIPT LOAD: the shards agree; their one answer.
void mergeSameReply(const ReplyParts& parts, ByteBuffer& out);
// SCRIPT EXISTS: 1 where every shard has the script.
void mergeAndArrays(const ReplyParts& parts, ByteBuffer& out);

// SCAN across shards. The client's cursor encodes the shard being walked:
// cursor = shard_cursor * shards + shard. A shard that finishes hands over to
// the next one with cursor 0, and the last one ends the walk with 0, so a full
// iteration visits every shard's keyspace once, with Redis's guarantees.
struct ScanPosition {
  uint32_t shard = 0;
  uint64_t cursor = 0;
};
// nullopt: not a cursor this proxy handed out ("ERR invalid cursor").
std::optional<ScanPosition> decodeScanCursor(std::string_view text, uint32_t shards);
// A shard's [cursor, keys] reply with the cursor re-encoded.
void rewriteScanReply(const std::string& part, uint32_t shard, uint32_t shards, ByteBuffer& out);

}  // namespace shardgate::redis
