#pragma once
// What this process can see of CUDA, without ever crashing on a machine without a GPU:
// any failure of the runtime (no driver, error 35 "insufficient driver", no device)
// is reported as "no usable GPU" with the runtime's own words.
#include <string>
#include <vector>

namespace cord {

struct CudaProbe {
  bool compiled = false;           // built with CORD_WITH_CUDA
  int device_count = 0;            // 0 whenever the runtime reports any failure
  std::string unavailable_reason;  // empty when device_count > 0
  std::vector<std::string> device_names;
  int runtime_version = 0;         // e.g. 13000; 0 when unknown
  int driver_version = 0;          // 0 when no driver
  bool usable() const { return device_count > 0; }
};

CudaProbe probe_cuda();

// Binds this process to GPU `device_index` (cudaSetDevice); throws DeviceError
// naming the rank and host when the index is out of range or the call fails.
void select_cuda_device(int device_index);

// "13.0" from 13000; "n/a" for 0.
std::string format_cuda_version(int version);

}  // namespace cord
