#pragma once
// Reading and writing safetensors files as tensors.
//
// SafetensorsFile maps a file read-only (mmap) and hands out a tensor or one slice of it
// along a dimension: only the pages of that slice are read, so a tensor-parallel rank
// that loads its columns of a 7B model's matrices never holds the whole matrix.
// SafetensorsDirectory is a Hugging Face model directory's weights: model.safetensors, or
// the shards that model.safetensors.index.json maps each tensor to.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cord/hf/safetensors_header.hpp"

namespace cord::hf {

// A contiguous range [start, start + length) of one dimension; dim < 0 = the whole tensor.
struct Slice {
  int dim = -1;
  int64_t start = 0;
  int64_t length = 0;
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws UsageError naming the file
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }

  // A copy of `entry` (one of header().tensors) or of its `slice`, converted to `dtype`.
  at::Tensor read(const TensorEntry& entry, const Slice& slice, at::ScalarType dtype) const;

 private:
  std::string path_;
  SafetensorsHeader header_;
  const std::byte* mapped_ = nullptr;
  size_t mapped_size_ = 0;
};

class SafetensorsDirectory {
 public:
  // Opens DIR/model.safetensors.index.json and its shards when the index exists, else
  // DIR/model.safetensors. Throws UsageError naming the missing or malformed file.
  explicit SafetensorsDirectory(const std::string& directory);

  const std::string& directory() const { return directory_; }
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  std::vector<std::string> names() const;  // sorted
  // The entry of tensor `name`; throws UsageError naming the directory and the tensor.
  const TensorEntry& entry(const std::string& name) const;
  // The file that holds tensor `name`.
  const std::string& file_of(const std::string& name) const;
  at::Tensor read(const std::string& name, const Slice& slice, at::ScalarType dtype) const;

 private:
  std::string directory_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorEntry*>> where_;
};

// The torch type of a file dtype, and back (throws for types the format lacks).
at::ScalarType to_scalar_type(Dtype dtype);
Dtype to_file_dtype(at::ScalarType type);

// Writes `tensors` (name, CPU tensor; each stored in its own dtype, row-major) and
// `metadata` to `path` atomically: a temporary file, fsync, rename.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace cord::hf
