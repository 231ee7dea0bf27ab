// Password hashes for the admin API's users: scrypt (RFC 7914) with a random
// salt, in a self-describing text form that carries its parameters, so a
// stronger setting later still verifies the hashes written before it:
//
//   $scrypt$ln=15,r=8,p=1$<salt, base64>$<hash, base64>
//
// (ln: log2 of scrypt's N). A verification costs about 32 MiB and tens of
// milliseconds by design: callers run it off the event loop. Comparison is
// constant-time. tls/ holds it because it is OpenSSL's (EVP_PBE_scrypt).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace shardgate::tls {

struct ScryptParams {
  unsigned log2_n = 15;
  unsigned r = 8;
  unsigned p = 1;
};

struct PasswordHash {
  ScryptParams params;
  std::string salt;  // raw bytes
  std::string hash;  // raw bytes
};

// A new hash of password with a fresh 16-byte random salt, in the text form above.
Result<std::string> hashPassword(std::string_view password, ScryptParams params = {});

// Parses the text form. The parameters are bounded (ln 10-20, r 1-32, p 1-4,
// so at most 256 MiB per verification: a hash from a config file cannot
// make a verification take the machine's memory). Errors say what part is wrong.
Result<PasswordHash> parsePasswordHash(std::string_view text);

// True when password hashes to hash.hash under its salt and parameters;
// the final comparison takes the same time wherever the bytes differ.
bool verifyPassword(std::string_view password, const PasswordHash& hash);

}  // namespace shardgate::tls
