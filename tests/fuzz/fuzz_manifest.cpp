// libFuzzer target: the import manifest, TSV when the first byte is even, JSON lines when odd.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cord/core/error.hpp"
#include "cord/data/manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto format = data[0] % 2 == 0 ? cord::data::ManifestFormat::kTsv : cord::data::ManifestFormat::kJsonLines;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    (void)cord::data::parse_manifest(text, format, "fuzz.manifest");
  } catch (const cord::Error&) {  // a refusal with a message (UsageError included)
  }
  return 0;
}
