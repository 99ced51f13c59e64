// libFuzzer target: a TOML job file (apply_toml_text), then validation, as `--config` does.
// Every input must end in a Config or a UsageError; anything else (a crash, another
// exception, ASan/UBSan reports) is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cord/config/config.hpp"
#include "cord/config/load.hpp"
#include "cord/core/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    cord::Config config;
    cord::apply_toml_text(config, text, "fuzz.toml");
    cord::validate(config);
    (void)cord::to_toml(config);
  } catch (const cord::Error&) {  // a refusal with a message (UsageError included)
  }
  return 0;
}
