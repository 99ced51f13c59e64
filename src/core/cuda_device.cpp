#include "cord/core/cuda_device.hpp"

#include "cord/core/error.hpp"

#ifdef CORD_WITH_CUDA
#include <cuda_runtime_api.h>

// CORD_CUDA_CHECK(call): throws DeviceError with the CUDA error string, file:line and rank.
#define CORD_CUDA_CHECK(call)                                                             \
  do {                                                                                    \
    const cudaError_t cord_cuda_status = (call);                                          \
    if (cord_cuda_status != cudaSuccess) {                                                \
      ::cord::raise_library_error(::cord::ExitCode::kDeviceError, "CUDA", #call,          \
                                  cudaGetErrorString(cord_cuda_status), __FILE__, __LINE__); \
    }                                                                                     \
  } while (0)
#endif

namespace cord {

CudaProbe probe_cuda() {
  CudaProbe probe;
#ifdef CORD_WITH_CUDA
  probe.compiled = true;
  cudaRuntimeGetVersion(&probe.runtime_version);
  if (cudaDriverGetVersion(&probe.driver_version) != cudaSuccess) probe.driver_version = 0;
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    probe.unavailable_reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(status);
    cudaGetLastError();  // reset the runtime's last-error slot so later calls start clean
    return probe;
  }
  if (count == 0) {
    probe.unavailable_reason = "no CUDA device visible";
    return probe;
  }
  probe.device_count = count;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp props{};
    if (cudaGetDeviceProperties(&props, i) == cudaSuccess) probe.device_names.emplace_back(props.name);
  }
#else
  probe.unavailable_reason = "cord was built without CUDA (CORD_WITH_CUDA=OFF)";
#endif
  return probe;
}

void select_cuda_device(int device_index) {
#ifdef CORD_WITH_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device_index >= count) {
    throw DeviceError("GPU " + std::to_string(device_index) + " requested but only " +
                      std::to_string(count) + " visible (" + process_identity() + ")");
  }
  CORD_CUDA_CHECK(cudaSetDevice(device_index));
#else
  throw DeviceError("GPU " + std::to_string(device_index) +
                    " requested but cord was built without CUDA (" + process_identity() + ")");
#endif
}

std::string format_cuda_version(int version) {
  if (version <= 0) return "n/a";
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

}  // namespace cord
