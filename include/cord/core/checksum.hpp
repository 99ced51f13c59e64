// Content checksums of checkpoints (ckpt::block_checksum is their entry) and of corpus
// items (data/corpus.hpp).
//
// A tensor's checksum is the sum modulo 2^64 of one term per 32-bit word of its contents:
//   term(g, w) = fmix32(w + lo32(g) * 0x9E3779B1 + hi32(g) * 0x85EBCA77)   (mod 2^32)
// where g is the word's global index and fmix32 murmur3's finaliser. Words: an element of
// 4 bytes is one word with g = its flat global index; one of 8 bytes is two words, low half
// at 2g and high half at 2g + 1; one of 1 byte is one word (zero-extended) at g.
// Invariants this buys:
//   - the sum over any partition of the words into blocks is the whole tensor's checksum,
//     so each writer sums its own shard and the sums add up, whatever the layout;
//   - term is a bijection of w for a fixed g, so any single changed word changes the sum;
//   - 32-bit arithmetic vectorises (AVX2 where the CPU has it): the terms of a large
//     checkpoint cost about as much as reading it once.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cord {

// Sum of term(first_index + i, words[i]) for i < count.
uint64_t checksum_words(const uint32_t* words, uint64_t first_index, int64_t count);

// Sum of term(first_index + i, bytes[i]) for i < count.
uint64_t checksum_bytes(const uint8_t* bytes, uint64_t first_index, int64_t count);

// The checksum of `size` bytes at `data` (any alignment) as whole 32-bit words from index 0,
// the last 1..3 bytes, if any, as byte terms after them: one value per corpus item and dataset.
uint64_t content_checksum(const void* data, std::size_t size);

}  // namespace cord
