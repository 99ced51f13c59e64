#include "cord/hf/safetensors_header.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "cord/core/error.hpp"

namespace cord::hf {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the format's own limit

struct DtypeInfo {
  Dtype dtype;
  const char* name;
  int64_t size;
};

constexpr std::array<DtypeInfo, 10> kDtypes{{{Dtype::kF64, "F64", 8},
                                             {Dtype::kF32, "F32", 4},
                                             {Dtype::kF16, "F16", 2},
                                             {Dtype::kBF16, "BF16", 2},
                                             {Dtype::kI64, "I64", 8},
                                             {Dtype::kI32, "I32", 4},
                                             {Dtype::kI16, "I16", 2},
                                             {Dtype::kI8, "I8", 1},
                                             {Dtype::kU8, "U8", 1},
                                             {Dtype::kBool, "BOOL", 1}}};

const DtypeInfo& info(Dtype dtype) {
  for (const DtypeInfo& entry : kDtypes) {
    if (entry.dtype == dtype) return entry;
  }
  throw Error("safetensors: dtype enum value out of range");
}

[[noreturn]] void bad(const std::string& file_name, const std::string& what) {
  throw UsageError(file_name + ": " + what);
}

Dtype parse_dtype(const json& value, const std::string& file_name, const std::string& tensor) {
  if (value.is_string()) {
    const auto& text = value.get_ref<const std::string&>();
    for (const DtypeInfo& entry : kDtypes) {
      if (text == entry.name) return entry.dtype;
    }
    std::string known;
    for (const DtypeInfo& entry : kDtypes) known += std::string(known.empty() ? "" : ", ") + entry.name;
    bad(file_name, "tensor '" + tensor + "': dtype '" + text + "' is not supported (cord reads " + known + ")");
  }
  bad(file_name, "tensor '" + tensor + "': \"dtype\" is not a string");
}

uint64_t parse_unsigned(const json& value, const std::string& file_name, const std::string& where) {
  if (!value.is_number_unsigned()) bad(file_name, where + " is not a non-negative integer");
  return value.get<uint64_t>();
}

TensorEntry parse_entry(const std::string& name, const json& value, uint64_t data_size, const std::string& file_name) {
  const std::string where = "tensor '" + name + "'";
  if (!value.is_object()) bad(file_name, where + " is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) bad(file_name, where + " has no \"" + key + "\"");
  }
  TensorEntry entry;
  entry.name = name;
  entry.dtype = parse_dtype(value["dtype"], file_name, name);
  const json& shape = value["shape"];
  if (!shape.is_array()) bad(file_name, where + ": \"shape\" is not an array");
  // The byte count, checked for overflow as it grows (a fuzzed shape can be anything).
  uint64_t bytes = static_cast<uint64_t>(dtype_size(entry.dtype));
  for (const json& dim : shape) {
    const uint64_t extent = parse_unsigned(dim, file_name, where + ": a \"shape\" entry");
    if (extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      bad(file_name, where + ": shape entry " + std::to_string(extent) + " is too large");
    }
    if (extent != 0 && bytes > std::numeric_limits<uint64_t>::max() / extent) {
      bad(file_name, where + ": shape has more bytes than a file can hold");
    }
    bytes *= extent;
    entry.shape.push_back(static_cast<int64_t>(extent));
  }
  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) bad(file_name, where + ": \"data_offsets\" is not [begin, end]");
  entry.begin = parse_unsigned(offsets[0], file_name, where + ": data_offsets[0]");
  entry.end = parse_unsigned(offsets[1], file_name, where + ": data_offsets[1]");
  if (entry.begin > entry.end || entry.end > data_size) {
    bad(file_name, where + ": data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) +
                       "] lie outside the data section of " + std::to_string(data_size) + " bytes");
  }
  if (entry.end - entry.begin != bytes) {
    bad(file_name, where + ": data_offsets span " + std::to_string(entry.end - entry.begin) + " bytes but " +
                       dtype_name(entry.dtype) + " of that shape needs " + std::to_string(bytes));
  }
  return entry;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& file_name) {
  if (!value.is_object()) bad(file_name, "\"__metadata__\" is not a JSON object");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string()) bad(file_name, "\"__metadata__\"." + key + " is not a string");
    metadata[key] = text.get<std::string>();
  }
  return metadata;
}

// Sorted by begin, each must start at or after the previous one's end (empty tensors
// occupy nothing and may share an offset).
void check_no_overlap(std::vector<TensorEntry> tensors, const std::string& file_name) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& entry : tensors) {
    if (entry.begin == entry.end) continue;
    if (previous != nullptr && entry.begin < previous->end) {
      bad(file_name, "tensors '" + previous->name + "' and '" + entry.name + "' overlap in the data section");
    }
    previous = &entry;
  }
}

uint64_t read_u64_le(const std::byte* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint64_t>(bytes[i]);
  return value;
}

}  // namespace

const char* dtype_name(Dtype dtype) { return info(dtype).name; }
int64_t dtype_size(Dtype dtype) { return info(dtype).size; }

int64_t TensorEntry::elements() const {
  int64_t n = 1;
  for (const int64_t extent : shape) n *= extent;
  return n;
}

const TensorEntry* SafetensorsHeader::find(const std::string& name) const {
  const auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                                   [](const TensorEntry& entry, const std::string& key) { return entry.name < key; });
  return it != tensors.end() && it->name == name ? &*it : nullptr;
}

uint64_t safetensors_header_bytes(const std::byte* first8, size_t first8_size, uint64_t file_size, const std::string& file_name) {
  if (first8_size < 8 || file_size < 8) bad(file_name, "is not a safetensors file (shorter than 8 bytes)");
  const uint64_t header_size = read_u64_le(first8);
  if (header_size > kMaxHeaderBytes || header_size > file_size - 8) {
    bad(file_name, "is not a safetensors file: it declares a " + std::to_string(header_size) +
                       "-byte header, but the file has " + std::to_string(file_size) + " bytes");
  }
  return 8 + header_size;
}

SafetensorsHeader parse_safetensors_header(const std::byte* prefix, size_t prefix_size, uint64_t file_size,
                                           const std::string& file_name) {
  const uint64_t needed = safetensors_header_bytes(prefix, prefix_size, file_size, file_name);
  if (prefix_size < needed) {
    bad(file_name, "header needs " + std::to_string(needed) + " bytes, " + std::to_string(prefix_size) + " given");
  }
  const auto* text = reinterpret_cast<const char*>(prefix + 8);
  const json root = json::parse(text, text + (needed - 8), /*callback=*/nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) bad(file_name, "safetensors header is not valid JSON");
  if (!root.is_object()) bad(file_name, "safetensors header is not a JSON object");
  SafetensorsHeader header;
  header.data_offset = needed;
  const uint64_t data_size = file_size - needed;
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      header.metadata = parse_metadata(value, file_name);
    } else {
      header.tensors.push_back(parse_entry(name, value, data_size, file_name));
    }
  }
  check_no_overlap(header.tensors, file_name);
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.name < b.name; });
  return header;
}

std::string format_safetensors_header(const std::vector<TensorEntry>& tensors,
                                      const std::map<std::string, std::string>& metadata) {
  json root = json::object();
  if (!metadata.empty()) root["__metadata__"] = metadata;
  for (const TensorEntry& entry : tensors) {
    root[entry.name] = {{"dtype", dtype_name(entry.dtype)},
                        {"shape", entry.shape},
                        {"data_offsets", {entry.begin, entry.end}}};
  }
  std::string text = root.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace cord::hf
