// libFuzzer target: a safetensors file's header (its 8-byte length, then the JSON), as
// cord reads it before mapping any tensor. The input is the start of the file; its size is
// also the file size the header's offsets are checked against.
#include <cstddef>
#include <cstdint>

#include "cord/core/error.hpp"
#include "cord/hf/safetensors_header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  try {
    const std::uint64_t header = cord::hf::safetensors_header_bytes(bytes, size, size, "fuzz.safetensors");
    if (header > size - 8) return 0;  // what the file reader then refuses: a header past the end
    (void)cord::hf::parse_safetensors_header(bytes, size, size, "fuzz.safetensors");
  } catch (const cord::Error&) {  // a refusal with a message (UsageError included)
  }
  return 0;
}
