#include "cord/core/build_info.hpp"

#include "cord_build_commit.hpp"  // generated at build time: CORD_BUILD_COMMIT

namespace cord {

const BuildInfo& build_info() {
  static const BuildInfo info{
      CORD_VERSION, CORD_BUILD_COMMIT, CORD_BUILD_TYPE, CORD_COMPILER,
#ifdef CORD_WITH_CUDA
      true,
#else
      false,
#endif
  };
  return info;
}

}  // namespace cord
