#include "cord/core/checksum.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace cord {
namespace {

constexpr uint32_t kLowFactor = 0x9E3779B1u;
constexpr uint32_t kHighFactor = 0x85EBCA77u;

inline uint32_t fmix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85EBCA6Bu;
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  return x ^ (x >> 16);
}

// Words whose indices share their high 32 bits: index i is (high << 32) + low + i, and
// low + i does not wrap. A plain loop the compiler vectorises; the x86 build also carries an
// AVX2 clone picked at load time, so the binary still runs on CPUs without AVX2. Not under
// ThreadSanitizer: the clone's resolver runs while the loader relocates the program, before
// TSan's runtime is up, and its instrumented code crashes there.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx2", "default")))
#endif
uint64_t sum_segment(const uint32_t* words, uint32_t low, uint32_t high_term, int64_t count) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < count; ++i) {
    sum += fmix32(words[i] + (low + static_cast<uint32_t>(i)) * kLowFactor + high_term);
  }
  return sum;
}

}  // namespace

uint64_t checksum_words(const uint32_t* words, uint64_t first_index, int64_t count) {
  uint64_t sum = 0;
  while (count > 0) {
    const auto low = static_cast<uint32_t>(first_index);
    const int64_t until_wrap = (int64_t{1} << 32) - static_cast<int64_t>(low);
    const int64_t n = std::min(count, until_wrap);
    sum += sum_segment(words, low, static_cast<uint32_t>(first_index >> 32) * kHighFactor, n);
    words += n;
    first_index += static_cast<uint64_t>(n);
    count -= n;
  }
  return sum;
}

uint64_t checksum_bytes(const uint8_t* bytes, uint64_t first_index, int64_t count) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t index = first_index + static_cast<uint64_t>(i);
    sum += fmix32(bytes[i] + static_cast<uint32_t>(index) * kLowFactor +
                  static_cast<uint32_t>(index >> 32) * kHighFactor);
  }
  return sum;
}

uint64_t content_checksum(const void* data, std::size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  const std::size_t words = size / 4;
  uint64_t sum = 0;
  if (reinterpret_cast<std::uintptr_t>(bytes) % alignof(uint32_t) == 0) {
    sum = checksum_words(reinterpret_cast<const uint32_t*>(bytes), 0, static_cast<int64_t>(words));
  } else {
    std::vector<uint32_t> aligned(words);
    std::memcpy(aligned.data(), bytes, words * 4);
    sum = checksum_words(aligned.data(), 0, static_cast<int64_t>(words));
  }
  return sum + checksum_bytes(bytes + words * 4, words, static_cast<int64_t>(size % 4));
}

}  // namespace cord
