#include "cord/hf/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "cord/core/error.hpp"
#include "cord/core/files.hpp"

namespace cord::hf {
namespace {

// The shard file names of an index (weight_map: tensor -> file), checked.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  const nlohmann::json root = nlohmann::json::parse(read_whole_file(index_path), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) throw UsageError(index_path + " is not a JSON object");
  if (!root.contains("weight_map") || !root["weight_map"].is_object()) {
    throw UsageError(index_path + " has no \"weight_map\" object");
  }
  std::map<std::string, std::string> weight_map;
  for (const auto& [tensor, file] : root["weight_map"].items()) {
    if (!file.is_string()) throw UsageError(index_path + ": weight_map." + tensor + " is not a file name");
    const auto& name = file.get_ref<const std::string&>();
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      throw UsageError(index_path + ": weight_map." + tensor + " = '" + name + "' is not a file in the directory");
    }
    weight_map[tensor] = name;
  }
  return weight_map;
}

}  // namespace

at::ScalarType to_scalar_type(Dtype dtype) {
  switch (dtype) {
    case Dtype::kF64: return at::kDouble;
    case Dtype::kF32: return at::kFloat;
    case Dtype::kF16: return at::kHalf;
    case Dtype::kBF16: return at::kBFloat16;
    case Dtype::kI64: return at::kLong;
    case Dtype::kI32: return at::kInt;
    case Dtype::kI16: return at::kShort;
    case Dtype::kI8: return at::kChar;
    case Dtype::kU8: return at::kByte;
    case Dtype::kBool: return at::kBool;
  }
  throw Error("safetensors: dtype enum value out of range");
}

Dtype to_file_dtype(at::ScalarType type) {
  for (const Dtype dtype : {Dtype::kF64, Dtype::kF32, Dtype::kF16, Dtype::kBF16, Dtype::kI64, Dtype::kI32,
                            Dtype::kI16, Dtype::kI8, Dtype::kU8, Dtype::kBool}) {
    if (to_scalar_type(dtype) == type) return dtype;
  }
  throw UsageError(std::string("safetensors cannot store tensors of type ") + c10::toString(type));
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UsageError("cannot open " + path + ": " + std::strerror(errno));
  struct stat info {};
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    close(fd);
    throw UsageError(path + " is not a regular file");
  }
  mapped_size_ = static_cast<size_t>(info.st_size);
  if (mapped_size_ > 0) {
    void* address = mmap(nullptr, mapped_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int saved_errno = errno;
    close(fd);
    if (address == MAP_FAILED) throw UsageError("cannot map " + path + ": " + std::strerror(saved_errno));
    mapped_ = static_cast<const std::byte*>(address);
  } else {
    close(fd);
  }
  try {
    header_ = parse_safetensors_header(mapped_, mapped_size_, mapped_size_, path);
  } catch (...) {
    if (mapped_ != nullptr) munmap(const_cast<std::byte*>(mapped_), mapped_size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (mapped_ != nullptr) munmap(const_cast<std::byte*>(mapped_), mapped_size_);
}

at::Tensor SafetensorsFile::read(const TensorEntry& entry, const Slice& slice, at::ScalarType dtype) const {
  // A view of the mapped bytes (never written: from_blob needs a non-const pointer), then
  // the slice, then one copy into `dtype`. Pages outside the slice are not touched.
  auto* data = const_cast<std::byte*>(mapped_ + header_.data_offset + entry.begin);
  at::Tensor whole = torch::from_blob(data, entry.shape, torch::TensorOptions().dtype(to_scalar_type(entry.dtype)));
  if (slice.dim >= 0) {
    CORD_CHECK(slice.dim < whole.dim() && slice.start >= 0 && slice.start + slice.length <= whole.size(slice.dim),
               path_ + ": slice out of range of tensor " + entry.name);
    whole = whole.narrow(slice.dim, slice.start, slice.length);
  }
  return whole.to(dtype, /*non_blocking=*/false, /*copy=*/true).contiguous();
}

SafetensorsDirectory::SafetensorsDirectory(const std::string& directory) : directory_(directory) {
  const std::string index_path = directory + "/model.safetensors.index.json";
  const std::string single_path = directory + "/model.safetensors";
  if (regular_file_exists(index_path)) {
    const std::map<std::string, std::string> weight_map = read_weight_map(index_path);
    std::map<std::string, const SafetensorsFile*> opened;
    for (const auto& [tensor, file] : weight_map) {
      if (opened.count(file) == 0) {
        const std::string shard_path = directory + "/" + file;
        if (!regular_file_exists(shard_path)) {
          throw UsageError(index_path + " names shard " + file + " (for tensor " + tensor + "), which does not exist");
        }
        files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
        opened[file] = files_.back().get();
      }
      const SafetensorsFile* shard = opened[file];
      const TensorEntry* entry = shard->header().find(tensor);
      if (entry == nullptr) throw UsageError(index_path + " maps tensor " + tensor + " to " + shard->path() + ", which lacks it");
      where_[tensor] = {shard, entry};
    }
  } else if (regular_file_exists(single_path)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single_path));
    for (const TensorEntry& entry : files_.back()->header().tensors) where_[entry.name] = {files_.back().get(), &entry};
  } else {
    throw UsageError(directory + " has neither model.safetensors nor model.safetensors.index.json");
  }
}

std::vector<std::string> SafetensorsDirectory::names() const {
  std::vector<std::string> names;
  for (const auto& item : where_) names.push_back(item.first);
  return names;
}

const TensorEntry& SafetensorsDirectory::entry(const std::string& name) const {
  const auto found = where_.find(name);
  if (found == where_.end()) throw UsageError(directory_ + ": tensor " + name + " is in no safetensors file");
  return *found->second.second;
}

const std::string& SafetensorsDirectory::file_of(const std::string& name) const {
  entry(name);
  return where_.at(name).first->path();
}

at::Tensor SafetensorsDirectory::read(const std::string& name, const Slice& slice, at::ScalarType dtype) const {
  const TensorEntry& found = entry(name);
  return where_.at(name).first->read(found, slice, dtype);
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorEntry> entries;
  std::vector<at::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    TensorEntry entry;
    entry.name = name;
    entry.dtype = to_file_dtype(tensor.scalar_type());
    entry.shape = tensor.sizes().vec();
    entry.begin = offset;
    entry.end = offset + static_cast<uint64_t>(tensor.numel() * dtype_size(entry.dtype));
    offset = entry.end;
    entries.push_back(std::move(entry));
    contiguous.push_back(tensor.to(at::kCPU).contiguous());
  }
  const std::string header = format_safetensors_header(entries, metadata);
  const std::string temporary = temporary_name(path, static_cast<long>(getpid()));
  FILE* file = std::fopen(temporary.c_str(), "wb");
  if (file == nullptr) throw Error("cannot create " + temporary + ": " + std::strerror(errno));
  uint64_t size = header.size();
  unsigned char size_bytes[8];
  for (int i = 0; i < 8; ++i) size_bytes[i] = static_cast<unsigned char>((size >> (8 * i)) & 0xff);
  bool ok = std::fwrite(size_bytes, 1, 8, file) == 8 && std::fwrite(header.data(), 1, header.size(), file) == header.size();
  for (const at::Tensor& tensor : contiguous) {
    const size_t bytes = static_cast<size_t>(tensor.numel()) * tensor.element_size();
    ok = ok && std::fwrite(tensor.data_ptr(), 1, bytes, file) == bytes;
  }
  ok = ok && std::fflush(file) == 0 && fsync(fileno(file)) == 0;
  const int saved_errno = errno;
  ok = std::fclose(file) == 0 && ok;
  if (!ok) {
    std::remove(temporary.c_str());
    throw Error("cannot write " + path + ": " + std::strerror(saved_errno));
  }
  commit_rename(temporary, path);
}

}  // namespace cord::hf
