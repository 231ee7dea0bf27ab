// TicketKeys: key generation, rotation, and OpenSSL's ticket-key callback.
// The callback follows SSL_CTX_set_tlsext_ticket_key_evp_cb(3): AES-256-CBC
// for the ticket body, HMAC-SHA256 over it, a 16-byte key name in front so
// the server knows which key sealed a ticket it is handed back (RFC 5077,
// section 4, "Recommended Ticket Construction").
#include "tls/ticket_keys.h"

#include <cstring>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "tls/openssl_ptr.h"

namespace shardgate::tls {
namespace {

// One ex_data slot in every SSL_CTX for the TicketKeys it uses (a thread-safe
// static: the index is allocated once per process).
int exDataIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

std::optional<TicketKeys::Key> freshKey() {
  TicketKeys::Key key;
  if (RAND_bytes(key.name.data(), static_cast<int>(key.name.size())) != 1 ||
      RAND_bytes(key.hmac_key.data(), static_cast<int>(key.hmac_key.size())) != 1 ||
      RAND_bytes(key.aes_key.data(), static_cast<int>(key.aes_key.size())) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  return key;
}

// Fetched once: OpenSSL 3 resolves a legacy EVP_aes_256_cbc() by name (a
// locked namemap lookup) on every init, i.e. on every ticket sealed or opened.
const EVP_CIPHER* ticketCipher() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  return cipher != nullptr ? cipher : EVP_aes_256_cbc();
}

bool setHmacKey(EVP_MAC_CTX* hctx, const TicketKeys::Key& key) {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
                                        const_cast<uint8_t*>(key.hmac_key.data()),
                                        key.hmac_key.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

// Return values as OpenSSL defines them: 1 ticket sealed / opened with the
// current key; 2 opened with a previous key, so issue a renewed ticket; 0
// unknown key name (full handshake); -1 error.
int ticketKeyCallback(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                      EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* hctx, int enc) {
  static_assert(TicketKeys::kNameSize == 16);
  const auto* keys = static_cast<const TicketKeys*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), exDataIndex()));
  if (keys == nullptr) return -1;
  std::shared_ptr<const TicketKeys::KeySet> set = keys->snapshot();

  if (enc == 1) {
    if (!set || !set->current) return 0;  // no key: issue no ticket
    const TicketKeys::Key& key = *set->current;
    const int iv_len = EVP_CIPHER_get_iv_length(ticketCipher());
    if (RAND_bytes(iv, iv_len) != 1) return -1;
    std::memcpy(key_name, key.name.data(), key.name.size());
    if (EVP_EncryptInit_ex(cctx, ticketCipher(), nullptr, key.aes_key.data(), iv) != 1) {
      return -1;
    }
    return setHmacKey(hctx, key) ? 1 : -1;
  }

  auto open = [&](const TicketKeys::Key& key, int found) {
    if (!setHmacKey(hctx, key)) return -1;
    if (EVP_DecryptInit_ex(cctx, ticketCipher(), nullptr, key.aes_key.data(), iv) != 1) {
      return -1;
    }
    return found;
  };
  if (!set) return 0;
  if (set->current && std::memcmp(key_name, set->current->name.data(), TicketKeys::kNameSize) == 0) {
    return open(*set->current, 1);
  }
  for (const TicketKeys::Key& key : set->previous) {
    if (std::memcmp(key_name, key.name.data(), key.name.size()) == 0) return open(key, 2);
  }
  return 0;
}

}  // namespace

std::shared_ptr<TicketKeys> TicketKeys::create() {
  std::shared_ptr<TicketKeys> keys(new TicketKeys());
  auto set = std::make_shared<KeySet>();
  set->current = freshKey();
  keys->keys_.store(std::move(set));
  return keys;
}

bool TicketKeys::rotate() {
  std::optional<Key> key = freshKey();
  if (!key) return false;
  std::lock_guard<std::mutex> lock(rotate_mutex_);
  std::shared_ptr<const KeySet> seen = keys_.load();
  auto next = std::make_shared<KeySet>();
  next->current = *key;
  if (seen && seen->current) next->previous.push_back(*seen->current);
  if (seen) {
    for (const Key& k : seen->previous) {
      if (next->previous.size() == kMaxPrevious) break;
      next->previous.push_back(k);
    }
  }
  keys_.store(std::move(next));
  return true;
}

Status TicketKeys::attachTo(ssl_ctx_st* ctx) const {
  const int index = exDataIndex();
  if (index < 0 ||
      SSL_CTX_set_ex_data(ctx, index, const_cast<TicketKeys*>(this)) != 1 ||
      SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticketKeyCallback) != 1) {
    ERR_clear_error();
    return makeError("cannot install the session ticket keys in the TLS context");
  }
  return Status();
}

}  // namespace shardgate::tls
