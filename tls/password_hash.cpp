#include "tls/password_hash.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <charconv>
#include <optional>
#include <vector>

namespace shardgate::tls {

namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
constexpr std::string_view kPrefix = "$scrypt$";

std::string base64(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

std::optional<std::string> unbase64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * text.size() / 4 + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes: drop them.
  size_t len = static_cast<size_t>(n);
  if (text.back() == '=') --len;
  if (text.size() >= 2 && text[text.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

// What scrypt needs: 128 * r * N * p for its arrays, plus room: OpenSSL
// refuses to run when the bound it is given is below that.
uint64_t memoryFor(const ScryptParams& p) {
  return 128ull * p.r * ((1ull << p.log2_n) + p.p + 2) + (1ull << 20);
}

bool derive(std::string_view password, const std::string& salt, const ScryptParams& p, std::string& out,
            size_t len) {
  out.assign(len, '\0');
  int ok = EVP_PBE_scrypt(password.data(), password.size(), reinterpret_cast<const unsigned char*>(salt.data()),
                          salt.size(), uint64_t{1} << p.log2_n, p.r, p.p, memoryFor(p),
                          reinterpret_cast<unsigned char*>(out.data()), len);
  ERR_clear_error();
  return ok == 1;
}

bool parseUnsigned(std::string_view text, unsigned& out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

Result<std::string> hashPassword(std::string_view password, ScryptParams params) {
  std::string salt(kSaltBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), static_cast<int>(salt.size())) != 1) {
    ERR_clear_error();
    return makeError("cannot get random bytes for a salt");
  }
  std::string hash;
  if (!derive(password, salt, params, hash, kHashBytes)) {
    return makeError("scrypt failed (ln=" + std::to_string(params.log2_n) + ", r=" + std::to_string(params.r) +
                     ", p=" + std::to_string(params.p) + ")");
  }
  std::string text = std::string(kPrefix) + "ln=" + std::to_string(params.log2_n) + ",r=" +
                     std::to_string(params.r) + ",p=" + std::to_string(params.p) + "$" + base64(salt) + "$" +
                     base64(hash);
  OPENSSL_cleanse(hash.data(), hash.size());
  return text;
}

Result<PasswordHash> parsePasswordHash(std::string_view text) {
  const std::string expected = "expected a hash printed by shardgate --hash-password "
                               "($scrypt$ln=N,r=N,p=N$SALT$HASH)";
  if (text.substr(0, kPrefix.size()) != kPrefix) return makeError(expected);
  text.remove_prefix(kPrefix.size());
  size_t d1 = text.find('$');
  if (d1 == std::string_view::npos) return makeError(expected);
  size_t d2 = text.find('$', d1 + 1);
  if (d2 == std::string_view::npos || text.find('$', d2 + 1) != std::string_view::npos) {
    return makeError(expected);
  }
  PasswordHash out;
  std::string_view params = text.substr(0, d1);
  bool seen[3] = {false, false, false};
  while (!params.empty()) {
    size_t comma = params.find(',');
    std::string_view item = params.substr(0, comma);
    params = comma == std::string_view::npos ? std::string_view{} : params.substr(comma + 1);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) return makeError(expected);
    std::string_view key = item.substr(0, eq);
    unsigned value = 0;
    if (!parseUnsigned(item.substr(eq + 1), value)) return makeError(expected);
    if (key == "ln") {
      out.params.log2_n = value;
      seen[0] = true;
    } else if (key == "r") {
      out.params.r = value;
      seen[1] = true;
    } else if (key == "p") {
      out.params.p = value;
      seen[2] = true;
    } else {
      return makeError("unknown scrypt parameter \"" + std::string(key) + "\"; " + expected);
    }
  }
  if (!seen[0] || !seen[1] || !seen[2]) return makeError(expected);
  if (out.params.log2_n < 10 || out.params.log2_n > 20 || out.params.r < 1 || out.params.r > 32 ||
      out.params.p < 1 || out.params.p > 4 || memoryFor(out.params) > (256ull << 20) + (1ull << 20)) {
    return makeError("scrypt parameters out of range (ln 10-20, r 1-32, p 1-4, at most 256 MiB)");
  }
  auto salt = unbase64(text.substr(d1 + 1, d2 - d1 - 1));
  auto hash = unbase64(text.substr(d2 + 1));
  if (!salt || salt->size() < 8) return makeError("the salt is not base64 of at least 8 bytes; " + expected);
  if (!hash || hash->size() < 16 || hash->size() > 64) {
    return makeError("the hash is not base64 of 16 to 64 bytes; " + expected);
  }
  out.salt = std::move(*salt);
  out.hash = std::move(*hash);
  return out;
}

bool verifyPassword(std::string_view password, const PasswordHash& hash) {
  std::string derived;
  if (!derive(password, hash.salt, hash.params, derived, hash.hash.size())) return false;
  bool same = CRYPTO_memcmp(derived.data(), hash.hash.data(), hash.hash.size()) == 0;
  OPENSSL_cleanse(derived.data(), derived.size());
  return same;
}

}  // namespace shardgate::tls
