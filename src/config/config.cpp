#include "cord/config/config.hpp"

#include "cord/core/error.hpp"

namespace cord {

std::vector<Field> config_fields(Config& config) {
  return {
      {"parallel.dp", "data-parallel degree; 0 = world size / tp", &config.parallel.dp},
      {"parallel.tp", "tensor-parallel degree; must divide the world size", &config.parallel.tp},
      {"runtime.device", "cpu | cuda | auto (cuda when a GPU is usable); GPU index = local rank",
       &config.runtime.device},
      {"runtime.threads", "torch intra-op threads per rank; 0 = node cores / ranks on the node",
       &config.runtime.threads},
  };
}

void validate(const Config& config) {
  // The parallel layout depends on the world size: comm::ParallelDims::resolve checks it.
  const auto& rt = config.runtime;
  if (rt.device != "cpu" && rt.device != "cuda" && rt.device != "auto") {
    throw UsageError("runtime.device='" + rt.device + "' is not one of cpu, cuda, auto");
  }
  if (rt.threads < 0) {
    throw UsageError("runtime.threads=" + std::to_string(rt.threads) + " must be >= 0");
  }
}

}  // namespace cord
