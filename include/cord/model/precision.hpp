#pragma once
// Mixed precision: with bf16, matrix work (linear layers, convolutions, attention) runs in
// bfloat16 under libtorch's autocast while the parameters, their gradients and the
// optimizer state stay float32 ("master weights"); the residual stream, norms, softmax
// and every loss (cross-entropy, KL) are computed in float32 (batch.hpp casts logits).
#include <string>

#include <torch/torch.h>

#include "cord/config/config.hpp"

namespace cord::model {

enum class Precision { kFp32, kBf16 };

// runtime.precision on `device` ("cpu", "cuda:N"): auto means bf16 on CUDA, fp32 on the CPU.
Precision resolve_precision(PrecisionOption setting, const std::string& device);
const char* precision_name(Precision precision);  // "fp32", "bf16"

// Enables bf16 autocast on `device`'s type for its lifetime (nothing for fp32), restoring
// the previous state and clearing autocast's weight-cast cache when it ends.
class AutocastScope {
 public:
  AutocastScope(Precision precision, const at::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  at::DeviceType device_type_ = at::kCPU;
  bool was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace cord::model
