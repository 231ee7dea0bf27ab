#include "redis/hash_slot.h"

#include <array>
#include <cstddef>

namespace shardgate::redis {
namespace {

// The 256-entry table of Redis's crc16.c, built by the compiler from the
// polynomial instead of pasted, so a typo cannot hide in 256 hex numbers.
constexpr std::array<uint16_t, 256> makeCrc16Table() {
  std::array<uint16_t, 256> table{};
  for (unsigned byte = 0; byte < 256; ++byte) {
    unsigned crc = byte << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000u) ? (crc << 1) ^ 0x1021u : crc << 1;
    }
    table[byte] = static_cast<uint16_t>(crc);
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrc16Table = makeCrc16Table();
static_assert(kCrc16Table[1] == 0x1021 && kCrc16Table[255] == 0x1ef0,
              "not the table of Redis's crc16.c");

}  // namespace

uint16_t crc16(std::string_view data) {
  uint16_t crc = 0;
  for (char c : data) {
    const auto byte = static_cast<uint8_t>(c);
    crc = static_cast<uint16_t>((crc << 8) ^ kCrc16Table[((crc >> 8) ^ byte) & 0xff]);
  }
  return crc;
}

// Redis Cluster spec, "Hash tags" (cluster.c keyHashSlot): only the first '{'
// counts, and the tag ends at the first '}' after it; an empty tag ("{}")
// means the whole key is hashed, so "foo{}{bar}" does not hash "bar".
uint16_t keyHashSlot(std::string_view key) {
  const size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1) {
      return crc16(key.substr(open + 1, close - open - 1)) & (kHashSlots - 1);
    }
  }
  return crc16(key) & (kHashSlots - 1);
}

}  // namespace shardgate::redis
