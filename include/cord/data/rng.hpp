#pragma once
// Deterministic random numbers for the corpus: SplitMix64 streams derived from
// (corpus seed, stream, index). Everything random about item i is drawn from streams
// seeded by (seed, i) only, never from shared state, so an item is identical whichever
// rank generates it and in whatever order. Implemented here (not <random>'s
// distributions) because the standard leaves distribution algorithms to the library.
#include <cmath>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace cord::data {

// Independent random streams of one item (or of the corpus, for index 0).
enum class Stream : std::uint64_t {
  kProblem = 1,  // the problem's content and wording
  kFacts = 2,    // the fact base (per entity)
  kVoice = 3,    // voice, rate, pitch
  kNoise = 4,    // additive noise samples
  kTts = 5,      // libc rand() seed handed to the TTS engine
  kShuffle = 6,  // loader epoch permutations
  kBuckets = 7,  // loader bucket-order permutations
  kAugment = 8,  // training-time feature augmentation (per epoch and corpus row)
};

inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

inline std::uint64_t derive_seed(std::uint64_t seed, Stream stream, std::uint64_t index) {
  return mix64(mix64(seed ^ mix64(static_cast<std::uint64_t>(stream))) + index);
}

// FNV-1a, for hashing content keys (splits).
inline std::uint64_t hash_text(std::string_view text) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Uniform integer in [lo, hi] (inclusive), unbiased (rejection sampling).
  std::int64_t uniform(std::int64_t lo, std::int64_t hi) {
    const std::uint64_t span = static_cast<std::uint64_t>(hi - lo) + 1;
    if (span == 0) return static_cast<std::int64_t>(next());  // the full 64-bit range
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % span;
    std::uint64_t draw = next();
    while (draw >= limit) draw = next();
    return lo + static_cast<std::int64_t>(draw % span);
  }

  // Uniform double in [0, 1) with 53 random bits.
  double uniform01() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // Standard normal (Box-Muller; one draw per call, the pair's second value discarded).
  double normal() {
    const double u1 = 1.0 - uniform01();  // (0, 1]
    const double u2 = uniform01();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  template <typename T>
  const T& pick(const std::vector<T>& values) {
    return values[static_cast<std::size_t>(uniform(0, static_cast<std::int64_t>(values.size()) - 1))];
  }

  // Fisher-Yates.
  template <typename T>
  void shuffle(std::vector<T>& values) {
    for (std::size_t i = values.size(); i > 1; --i) {
      const auto j = static_cast<std::size_t>(uniform(0, static_cast<std::int64_t>(i) - 1));
      std::swap(values[i - 1], values[j]);
    }
  }

 private:
  std::uint64_t state_;
};

}  // namespace cord::data
