#pragma once
// The header of a safetensors file, parsed and checked from bytes (no libtorch, no file):
//
//   [u64 little-endian N][N bytes of JSON, may end in spaces][data section]
//   JSON: {"__metadata__": {str: str}?,  NAME: {"dtype": D, "shape": [..], "data_offsets": [b, e]}, ...}
//
// Offsets are relative to the start of the data section. The checks: N fits in the file
// and is at most 100 MB; the JSON is an object; every entry has a known dtype, a shape of
// non-negative integers and offsets with b <= e <= data size and e - b = elements x dtype
// size; no two entries overlap. Every failure is a UsageError naming the file and the
// tensor or field, so a file from outside never reaches a tensor constructor unchecked.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cord::hf {

// The element types of the format that cord reads (the others, e.g. F8_E4M3, are refused).
enum class Dtype { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

const char* dtype_name(Dtype dtype);  // "F32", ...
int64_t dtype_size(Dtype dtype);      // bytes per element

struct TensorEntry {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte range [begin, end) in the data section
  uint64_t end = 0;
  int64_t elements() const;
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + N: where the data section starts in the file

  const TensorEntry* find(const std::string& name) const;  // nullptr when absent
};

// `prefix`: the first `prefix_size` bytes of the file (at least 8 + N of them for success; fewer gives
// an error saying how many are needed). `file_size`: the whole file's size.
SafetensorsHeader parse_safetensors_header(const std::byte* prefix, size_t prefix_size, uint64_t file_size,
                                           const std::string& file_name);

// How many leading bytes parse_safetensors_header needs, from the first 8 bytes (throws
// UsageError naming the file when they declare a header larger than the file or 100 MB).
uint64_t safetensors_header_bytes(const std::byte* first8, size_t first8_size, uint64_t file_size, const std::string& file_name);

// The JSON header for `tensors` (their offsets as given) and `metadata`, padded with
// spaces to a multiple of 8 bytes so that the data section is aligned.
std::string format_safetensors_header(const std::vector<TensorEntry>& tensors,
                                      const std::map<std::string, std::string>& metadata);

}  // namespace cord::hf
