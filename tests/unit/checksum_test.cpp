// content_checksum (core/checksum.hpp): what the corpus checksums rely on.
#include "cord/core/checksum.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace cord {
namespace {

std::vector<uint8_t> random_bytes(std::size_t n) {
  std::mt19937 rng(7);
  std::vector<uint8_t> bytes(n);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  return bytes;
}

TEST(ContentChecksum, EverySingleFlippedBitChangesIt) {
  std::vector<uint8_t> bytes = random_bytes(103);  // 25 words and a 3-byte tail
  const uint64_t original = content_checksum(bytes.data(), bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      bytes[i] ^= static_cast<uint8_t>(1U << bit);
      EXPECT_NE(content_checksum(bytes.data(), bytes.size()), original) << "byte " << i << " bit " << bit;
      bytes[i] ^= static_cast<uint8_t>(1U << bit);
    }
  }
}

TEST(ContentChecksum, SwappedWordsAndLengthsDiffer) {
  std::vector<uint8_t> bytes = random_bytes(64);
  const uint64_t original = content_checksum(bytes.data(), bytes.size());
  std::swap_ranges(bytes.begin(), bytes.begin() + 4, bytes.begin() + 4);  // words 0 and 1 trade places
  EXPECT_NE(content_checksum(bytes.data(), bytes.size()), original);
  EXPECT_NE(content_checksum(bytes.data(), 63), content_checksum(bytes.data(), 64));
  EXPECT_EQ(content_checksum(bytes.data(), 0), 0U);
}

TEST(ContentChecksum, AlignmentDoesNotMatter) {
  const std::vector<uint8_t> bytes = random_bytes(41);
  std::vector<uint8_t> shifted(bytes.size() + 1);
  std::copy(bytes.begin(), bytes.end(), shifted.begin() + 1);  // an odd address
  EXPECT_EQ(content_checksum(shifted.data() + 1, bytes.size()), content_checksum(bytes.data(), bytes.size()));
}

TEST(ContentChecksum, IsTheCheckpointSumOfWordsThenBytes) {
  const std::vector<uint8_t> bytes = random_bytes(10);
  std::vector<uint32_t> words(2);
  std::memcpy(words.data(), bytes.data(), 8);
  EXPECT_EQ(content_checksum(bytes.data(), 10), checksum_words(words.data(), 0, 2) + checksum_bytes(bytes.data() + 8, 2, 2));
}

}  // namespace
}  // namespace cord
