// Redis Cluster's key -> slot function: CRC16-XMODEM of the key, or of the
// first non-empty "{...}" hash tag in it, mod 16384. Publishers, subscribers
// and multi-key commands meet on one shard exactly when Redis Cluster says
// they would.
#pragma once

#include <cstdint>
#include <string_view>

namespace shardgate::redis {

inline constexpr uint16_t kHashSlots = 16384;

// CRC16-XMODEM (polynomial 0x1021, init 0), as Redis's crc16.c.
uint16_t crc16(std::string_view data);
// The slot CLUSTER KEYSLOT would answer for key.
uint16_t keyHashSlot(std::string_view key);

}  // namespace shardgate::redis
