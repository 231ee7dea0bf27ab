// RESP encoding into a ByteBuffer: what the proxy writes itself (its own
// replies, merged replies, commands on its backend links). No I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "redis/resp_value.h"
#include "common/byte_buffer.h"

namespace shardgate::redis::resp {

void appendSimple(ByteBuffer& out, std::string_view text);   // +text\r\n
void appendError(ByteBuffer& out, std::string_view text);    // -text\r\n ("ERR ...", "CROSSSLOT ...")
void appendInteger(ByteBuffer& out, int64_t value);          // :value\r\n
void appendBulk(ByteBuffer& out, std::string_view value);    // $len\r\nvalue\r\n
void appendNullBulk(ByteBuffer& out);                        // $-1\r\n
// RESP3's verbatim text (=len\r\ntxt:value\r\n): INFO, CLIENT INFO and CLIENT
// LIST answer a RESP3 client with it, a RESP2 one with a bulk string.
void appendVerbatimText(ByteBuffer& out, std::string_view value);
void appendArrayHeader(ByteBuffer& out, size_t count);       // *count\r\n
void appendNullArray(ByteBuffer& out);                       // *-1\r\n
// A command as a multibulk request: *N\r\n$len\r\narg\r\n...
void appendCommand(ByteBuffer& out, std::initializer_list<std::string_view> args);
// Re-encodes a parsed value in the protocol it was parsed from (RESP2 or RESP3).
void appendValue(ByteBuffer& out, const RespValue& value);

}  // namespace shardgate::redis::resp
