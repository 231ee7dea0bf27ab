// Runs a libFuzzer target without libFuzzer, so the fuzz promises are checked
// with any compiler on every test run: each file of the seed corpus, then a
// fixed number of seeded mutations of them (RESP-aware: CRLFs, type bytes,
// lengths, quotes). Deterministic, a few seconds; a broken promise abort()s.
//
//   unit_fuzz_resp [corpus_dir] [iterations] [seed]
//
// The last line is doctest's summary, which scripts/test counts.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#ifndef SHARDGATE_FUZZ_CORPUS
#error "SHARDGATE_FUZZ_CORPUS must name the seed corpus directory"
#endif

namespace {

constexpr size_t kDefaultIterations = 200000;
constexpr uint64_t kDefaultSeed = 0x5eed5eed12345678u;
constexpr size_t kMaxInput = 1024;

// Bytes that steer RESP parsers somewhere interesting.
constexpr std::string_view kTokens[] = {
    "\r\n", "\r", "\n", "*", "$", "+", "-", ":", "_", ",", "#", "(", "!", "=", "%", "~", ">",
    "|", "?", ".", ";", "0", "1", "-1", "9", "*1\r\n", "*0\r\n", "$0\r\n\r\n", "$?\r\n",
    ";0\r\n", ".\r\n", "|1\r\n", "*?\r\n", "%?\r\n", "\"", "'", "\\", "\\x4", " ", "\t",
    "9223372036854775807", "9223372036854775808", "2147483648", "1048577",
    std::string_view("\0", 1),
};

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 1) {}
  uint64_t next() {  // xorshift64*
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 2685821657736338717u;
  }
  size_t below(size_t n) { return n ? static_cast<size_t>(next() % n) : 0; }

 private:
  uint64_t s_;
};

void mutate(std::string& s, const std::vector<std::string>& corpus, Rng& rng) {
  const size_t steps = 1 + rng.below(4);
  for (size_t i = 0; i < steps; ++i) {
    switch (rng.below(8)) {
      case 0:  // flip a byte
        if (!s.empty()) s[rng.below(s.size())] = static_cast<char>(rng.next());
        break;
      case 1:  // insert a random byte
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(rng.below(s.size() + 1)),
                 static_cast<char>(rng.next()));
        break;
      case 2:
      case 3: {  // insert a token
        std::string_view t = kTokens[rng.below(std::size(kTokens))];
        s.insert(rng.below(s.size() + 1), t.data(), t.size());
        break;
      }
      case 4:  // erase a range
        if (!s.empty()) {
          size_t at = rng.below(s.size());
          s.erase(at, 1 + rng.below(std::min<size_t>(8, s.size() - at)));
        }
        break;
      case 5:  // duplicate a range
        if (!s.empty()) {
          size_t at = rng.below(s.size());
          std::string piece = s.substr(at, 1 + rng.below(32));
          s.insert(rng.below(s.size() + 1), piece);
        }
        break;
      case 6:  // splice in part of another seed
        if (!corpus.empty()) {
          const std::string& other = corpus[rng.below(corpus.size())];
          size_t at = rng.below(other.size() + 1);
          s.insert(rng.below(s.size() + 1), other.substr(at, rng.below(64)));
        }
        break;
      case 7:  // truncate
        s.resize(rng.below(s.size() + 1));
        break;
    }
  }
  if (s.size() > kMaxInput) s.resize(kMaxInput);
}

void run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path dir = argc > 1 ? argv[1] : SHARDGATE_FUZZ_CORPUS;
  const size_t iterations = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : kDefaultIterations;
  const uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 0) : kDefaultSeed;

  std::vector<std::string> corpus;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes(static_cast<size_t>(entry.file_size()), '\0');
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    corpus.push_back(std::move(bytes));
  }
  if (ec || corpus.empty()) {
    std::fprintf(stderr, "unit_fuzz_resp: no seed corpus in %s\n", dir.c_str());
    std::printf("[doctest] test cases: 1 | 0 passed | 1 failed | 0 skipped\n");
    return 1;
  }

  const auto start = std::chrono::steady_clock::now();
  for (const std::string& seed_input : corpus) run(seed_input);
  Rng rng(seed);
  for (size_t i = 0; i < iterations; ++i) {
    std::string input = corpus[rng.below(corpus.size())];
    mutate(input, corpus, rng);
    run(input);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("unit_fuzz_resp: %zu seed files and %zu mutated inputs (seed 0x%llx) in %.1f s\n",
              corpus.size(), iterations, static_cast<unsigned long long>(seed), seconds);
  std::printf("[doctest] test cases: 1 | 1 passed | 0 failed | 0 skipped\n");
  return 0;
}
