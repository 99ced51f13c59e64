#pragma once
// Building a Config: defaults < TOML job file < `--set section.key=value` overrides
// (applied in command-line order), then validate(). Every failure is a UsageError
// that names the key and the file or override it came from.
#include <string>
#include <string_view>
#include <vector>

#include "cord/config/config.hpp"

namespace cord {

// Applies every key of the TOML file at `path`. Unknown sections or keys, and values
// of the wrong type, are errors naming the key, the file and the line.
void apply_toml_file(Config& config, const std::string& path);

// The same for TOML text in memory; `source_name` stands for the file in messages.
void apply_toml_text(Config& config, std::string_view text, const std::string& source_name);

// Applies one "section.key=value" override; the value is parsed as the field's type.
void apply_override(Config& config, std::string_view assignment);

// Defaults, then the file (when `path` is not empty), then the overrides; validated.
Config load_config(const std::string& path, const std::vector<std::string>& overrides);

// The resolved config as TOML with each field's documentation as a comment;
// apply_toml_file() of this text reproduces `config` exactly.
std::string to_toml(const Config& config);

}  // namespace cord
