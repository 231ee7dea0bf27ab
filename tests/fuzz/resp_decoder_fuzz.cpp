// Fuzz target for the RESP parsers (redis/request_decoder.h, redis/reply_scanner.h, redis/resp_value.h). Each input is
// read both as client requests and as a shard's reply stream, and the
// parsers are held to the promises the proxy relies on; any broken promise
// abort()s, which libFuzzer (resp_fuzz) and the replay driver
// (unit_fuzz_resp) both report as a failure:
//
//   RequestDecoder  the same commands, errors and frame lengths whole, split
//                   at input-derived points and one byte at a time; every
//                   command survives re-encoding as multibulk.
//   ReplyScanner    the same frame boundaries however the stream is split.
//   parseReply      accepts every frame the scanner delimited (streamed
//                   strings and nesting beyond its depth limit excepted,
//                   which it refuses by design), refuses
//                   what the scanner refused, and appendValue's re-encoding
//                   of what it built parses back to the same tree.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "redis/reply_scanner.h"
#include "redis/request_decoder.h"
#include "redis/resp_limits.h"
#include "redis/resp_value.h"
#include "redis/resp_encoder.h"
#include "config/config.h"

using namespace shardgate;

namespace {

using shardgate::ByteBuffer;
using shardgate::redis::parseReply;
using shardgate::redis::ReplyScanner;
using shardgate::redis::RequestDecoder;
using shardgate::redis::RespLimits;
using shardgate::redis::RespValue;
namespace resp = shardgate::redis::resp;

// What production runs when the config leaves `limits` out.
const RespLimits kDefaultLimits = shardgate::config::LimitsConfig{}.requestLimits();

[[noreturn]] void broken(const char* promise) {
  std::fprintf(stderr, "resp fuzz: broken promise: %s\n", promise);
  std::abort();
}

void require(bool ok, const char* promise) {
  if (!ok) broken(promise);
}

// Where to cut the input, derived from its bytes so a crash reproduces.
uint64_t inputHash(std::string_view input) {
  uint64_t h = 1469598103934665603u;  // FNV-1a
  for (char c : input) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211u;
  return h;
}

std::vector<std::string_view> cut(std::string_view input, std::vector<size_t> points) {
  std::vector<std::string_view> chunks;
  size_t from = 0;
  for (size_t p : points) {
    if (p < from || p > input.size()) continue;
    chunks.push_back(input.substr(from, p - from));
    from = p;
  }
  chunks.push_back(input.substr(from));
  return chunks;
}

std::vector<std::string_view> bytewise(std::string_view input) {
  std::vector<std::string_view> chunks;
  for (size_t i = 0; i < input.size(); ++i) chunks.push_back(input.substr(i, 1));
  return chunks;
}

// ---------------------------------------------------------------------------
// RequestDecoder

struct Decoded {
  std::vector<std::vector<std::string>> commands;
  std::vector<size_t> frame_lengths;
  std::vector<bool> inline_flags;
  std::string error;  // empty unless decoding ended in kError
  size_t consumed = 0;

  bool operator==(const Decoded&) const = default;
};

// As a connection would: chunks append to one buffer; kCommand consumes its
// frame; kNeedMore passes the same unconsumed bytes again once more arrive.
Decoded decodeChunks(const std::vector<std::string_view>& chunks, redis::RespLimits limits) {
  redis::RequestDecoder decoder(limits);
  Decoded out;
  std::string buffer;
  for (std::string_view chunk : chunks) {
    buffer.append(chunk);
    for (;;) {
      std::string_view pending = std::string_view(buffer).substr(out.consumed);
      redis::RequestDecoder::Status status = decoder.decode(pending);
      if (status == redis::RequestDecoder::Status::kNeedMore) break;
      if (status == redis::RequestDecoder::Status::kError) {
        require(!decoder.errorText().empty(), "an error has a text");
        require(decoder.errorText().rfind("-ERR Protocol error: ", 0) == 0,
                "errors are Redis protocol errors");
        out.error = decoder.errorText();
        return out;
      }
      require(decoder.argCount() > 0, "a command has arguments");
      require(decoder.argCount() <= limits.max_args, "max_args holds");
      require(decoder.frameLength() > 0 && decoder.frameLength() <= pending.size(),
              "a frame lies within the bytes given");
      std::vector<std::string> args;
      for (size_t i = 0; i < decoder.argCount(); ++i) {
        std::string_view a = decoder.arg(i);
        if (!decoder.isInline()) {
          require(a.data() >= pending.data() &&
                      a.data() + a.size() <= pending.data() + decoder.frameLength(),
                  "a multibulk argument is a view into its frame");
          require(a.size() <= limits.max_bulk_len, "max_bulk_len holds");
        }
        args.emplace_back(a);
      }
      out.commands.push_back(std::move(args));
      out.frame_lengths.push_back(decoder.frameLength());
      out.inline_flags.push_back(decoder.isInline());
      out.consumed += decoder.frameLength();
    }
  }
  return out;
}

void checkRequests(std::string_view input, redis::RespLimits limits) {
  const uint64_t h = inputHash(input);
  const size_t n = input.size();
  Decoded whole = decodeChunks({input}, limits);
  require(decodeChunks(cut(input, {h % (n + 1)}), limits) == whole,
          "requests: one split gives the same result");
  require(decodeChunks(cut(input, {(h >> 20) % (n + 1), (h >> 40) % (n + 1)}), limits) == whole,
          "requests: two splits give the same result");
  if (n <= 64) {
    require(decodeChunks(bytewise(input), limits) == whole,
            "requests: byte by byte gives the same result");
  }
  if (whole.error.empty()) require(whole.consumed <= n, "consumed within the input");

  // Every command, re-encoded as multibulk, decodes to itself.
  ByteBuffer encoded;
  for (const auto& args : whole.commands) {
    redis::resp::appendArrayHeader(encoded, args.size());
    for (const std::string& a : args) redis::resp::appendBulk(encoded, a);
  }
  Decoded again = decodeChunks({encoded.view()}, kDefaultLimits);
  require(again.error.empty() && again.commands == whole.commands &&
              again.consumed == encoded.size(),
          "requests: re-encoded commands decode to themselves");
}

// ---------------------------------------------------------------------------
// ReplyScanner and parseReply

struct Scanned {
  std::vector<size_t> frame_ends;  // offsets into the input
  bool failed = false;
  std::string error;
  bool idle = true;

  bool operator==(const Scanned&) const = default;
};

Scanned scanChunks(const std::vector<std::string_view>& chunks) {
  redis::ReplyScanner scanner;
  Scanned out;
  size_t offset = 0;
  for (std::string_view chunk : chunks) {
    const auto* p = reinterpret_cast<const uint8_t*>(chunk.data());
    size_t left = chunk.size();
    while (left > 0) {
      bool done = false;
      const size_t used = scanner.feed(p, left, &done);
      if (scanner.failed()) {
        require(used == 0 && !done, "a failed feed consumes nothing");
        out.failed = true;
        out.error = scanner.error();
        out.idle = scanner.idle();
        return out;
      }
      require(used <= left, "feed consumes at most what it was given");
      require(done || used == left, "feed stops early only at a frame end");
      require(used > 0, "feed makes progress");
      offset += used;
      p += used;
      left -= used;
      if (done) {
        require(scanner.idle(), "idle after a frame");
        out.frame_ends.push_back(offset);
      }
    }
  }
  out.idle = scanner.idle();
  return out;
}

bool sameTree(const redis::RespValue& a, const redis::RespValue& b) {
  using T = redis::RespValue::Type;
  if (a.type != b.type || a.str != b.str) return false;
  if ((a.type == T::kInteger || a.type == T::kBoolean || a.type == T::kNull) &&
      a.integer != b.integer) {
    return false;
  }
  if (a.elements.size() != b.elements.size()) return false;
  for (size_t i = 0; i < a.elements.size(); ++i) {
    if (!sameTree(a.elements[i], b.elements[i])) return false;
  }
  return true;
}

// The two frames parseReply refuses by design: streamed strings (no single
// view to return) and nesting deeper than the tree it builds may go.
bool isRefusalByDesign(const shardgate::Result<redis::RespValue>& r) {
  return !r.ok() && (r.message().rfind("streamed string not supported", 0) == 0 ||
                     r.message().rfind("reply nested deeper than", 0) == 0);
}

void checkFrame(std::string_view frame) {
  auto parsed = redis::parseReply(frame);
  if (isRefusalByDesign(parsed)) return;
  require(parsed.ok(), "parseReply accepts every frame the scanner delimited");

  ByteBuffer encoded;
  redis::resp::appendValue(encoded, *parsed);
  Scanned rescanned = scanChunks({encoded.view()});
  require(!rescanned.failed && rescanned.frame_ends == std::vector<size_t>{encoded.size()},
          "appendValue writes exactly one frame");
  auto reparsed = redis::parseReply(encoded.view());
  require(reparsed.ok() && sameTree(*parsed, *reparsed),
          "appendValue's frame parses back to the same value");
  ByteBuffer encoded_again;
  redis::resp::appendValue(encoded_again, *reparsed);
  require(encoded_again.view() == encoded.view(), "re-encoding is stable");
}

void checkReplies(std::string_view input) {
  const uint64_t h = inputHash(input);
  const size_t n = input.size();
  Scanned whole = scanChunks({input});
  require(scanChunks(cut(input, {h % (n + 1)})) == whole,
          "replies: one split gives the same frames");
  require(scanChunks(cut(input, {(h >> 24) % (n + 1), (h >> 44) % (n + 1)})) == whole,
          "replies: two splits give the same frames");
  if (n <= 256) {
    require(scanChunks(bytewise(input)) == whole, "replies: byte by byte gives the same frames");
  }

  size_t from = 0;
  for (size_t end : whole.frame_ends) {
    checkFrame(input.substr(from, end - from));
    from = end;
  }
  if (from < n) {
    // What follows the last frame is malformed or incomplete: the parser
    // must not find a reply there either.
    require(whole.failed || !whole.idle, "bytes left over mean a partial or bad frame");
    require(!redis::parseReply(input.substr(from)).ok(),
            "parseReply refuses what the scanner refused or has not finished");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // Small limits reach every limit error with small inputs; the defaults
  // are what production runs.
  redis::RespLimits small;
  small.max_bulk_len = 16;
  small.max_args = 6;
  small.max_inline_len = 24;
  checkRequests(input, small);
  checkRequests(input, kDefaultLimits);

  checkReplies(input);
  return 0;
}
