// libFuzzer target: `--set SECTION.KEY=VALUE` overrides, one per input line, then validation.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cord/config/config.hpp"
#include "cord/config/load.hpp"
#include "cord/core/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    cord::Config config;
    while (!text.empty()) {
      const std::size_t end = text.find('\n');
      cord::apply_override(config, text.substr(0, end));
      text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    }
    cord::validate(config);
    (void)cord::to_toml(config);
  } catch (const cord::Error&) {  // a refusal with a message (UsageError included)
  }
  return 0;
}
