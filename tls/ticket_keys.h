// TicketKeys: the keys that seal TLS session tickets, kept apart from any
// certificate so a ticket issued before a rotation still resumes after it
// (the keys live apart from the certificate). Every server
// TlsContext built with the same TicketKeys accepts the same tickets.
//
// Shared by shared_ptr between the control thread (rotate()) and the workers'
// handshakes (the OpenSSL ticket callback). The key set is immutable and
// swapped whole (SharedSnapshot): a handshake copies one snapshot, and no
// lock is held across crypto. Used once per handshake, never per request.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "common/result.h"
#include "common/shared_snapshot.h"

struct ssl_ctx_st;  // SSL_CTX, kept opaque outside tls/

namespace shardgate::tls {

class TicketKeys {
 public:
  static constexpr size_t kNameSize = 16;     // names the key inside each ticket
  static constexpr size_t kHmacKeySize = 32;  // HMAC-SHA256
  static constexpr size_t kAesKeySize = 32;   // AES-256-CBC
  // Keys retired by rotate() that still open (and renew) tickets.
  static constexpr size_t kMaxPrevious = 2;

  struct Key {
    std::array<uint8_t, kNameSize> name{};
    std::array<uint8_t, kHmacKeySize> hmac_key{};
    std::array<uint8_t, kAesKeySize> aes_key{};
  };

  // Immutable once published.
  struct KeySet {
    std::optional<Key> current;  // empty only if the RNG failed: no tickets issued
    std::vector<Key> previous;   // newest first, at most kMaxPrevious
  };

  // With one fresh current key.
  static std::shared_ptr<TicketKeys> create();

  TicketKeys(const TicketKeys&) = delete;
  TicketKeys& operator=(const TicketKeys&) = delete;

  // A fresh current key; the old current becomes the newest previous one and
  // the oldest beyond kMaxPrevious is forgotten (its tickets then get a full
  // handshake, which still succeeds). Thread-safe. False, with the keys left
  // as they were, when the RNG fails.
  bool rotate();

  // The keys in force now; handshakes read one snapshot each.
  std::shared_ptr<const KeySet> snapshot() const { return keys_.load(); }

  // tls/ internal (TlsContext::createServer): makes ctx seal and open tickets
  // with these keys. The caller keeps this object alive as long as ctx.
  Status attachTo(ssl_ctx_st* ctx) const;

 private:
  TicketKeys() = default;

  SharedSnapshot<KeySet> keys_;
  // Serializes rotate() callers, so no rotation is built from a stale set.
  std::mutex rotate_mutex_;
};

}  // namespace shardgate::tls
