#pragma once
// Facts about this build, recorded in logs, results files and checkpoints.
#include <string>

namespace cord {

struct BuildInfo {
  std::string version;     // project version, e.g. "0.1.0"
  std::string commit;      // `git describe --always --dirty` at build time, or "unknown"
  std::string build_type;  // CMAKE_BUILD_TYPE
  std::string compiler;    // compiler id and version
  bool with_cuda = false;  // CORD_WITH_CUDA
};

const BuildInfo& build_info();

}  // namespace cord
