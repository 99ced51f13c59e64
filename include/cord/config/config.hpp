#pragma once
// The configuration tree: one struct per TOML section, a comment on every field.
// Defaults are the embedded configuration `cord` runs with when no --config is given.
// Every field is also listed once in config_fields() (src/config/config.cpp), which is
// what loading, --set overrides, unknown-key detection and the resolved dump walk.
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cord {

// [parallel] how the world's ranks are arranged. world = dp * tp; tp is innermost,
// so tensor-parallel peers are consecutive ranks (on the same node when possible).
struct ParallelConfig {
  int dp = 0;  // data-parallel degree; 0 = world size / tp
  int tp = 1;  // tensor-parallel degree; must divide the world size
};

// [runtime] where and how each rank computes.
struct RuntimeConfig {
  std::string device = "auto";  // "cpu", "cuda" (GPU = local rank), or "auto" (cuda if usable)
  int threads = 0;              // torch intra-op threads per rank; 0 = cores on the node / local ranks
};

struct Config {
  ParallelConfig parallel;
  RuntimeConfig runtime;
};

// A typed reference to one field of a Config, with its dotted key and documentation.
using FieldRef = std::variant<int*, std::int64_t*, double*, bool*, std::string*>;
struct Field {
  std::string_view key;  // "section.name"
  std::string_view doc;
  FieldRef ref;
};

// Every field of `config`, in dump order. The references point into `config`.
std::vector<Field> config_fields(Config& config);

// Checks values that do not depend on the world size (choices, ranges); the parallel
// layout is checked by comm::ParallelDims::resolve once the world size is known.
// Throws UsageError with the exact field and value.
void validate(const Config& config);

}  // namespace cord
