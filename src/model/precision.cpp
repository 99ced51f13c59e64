#include "cord/model/precision.hpp"

#include <ATen/autocast_mode.h>

#include "cord/core/error.hpp"

namespace cord::model {

Precision resolve_precision(PrecisionOption setting, const std::string& device) {
  switch (setting) {
    case PrecisionOption::kFp32: return Precision::kFp32;
    case PrecisionOption::kBf16: return Precision::kBf16;
    case PrecisionOption::kAuto: return at::Device(device).is_cuda() ? Precision::kBf16 : Precision::kFp32;
  }
  throw Error("runtime.precision: no such setting");  // unreachable: the enum has no other value
}

const char* precision_name(Precision precision) { return precision == Precision::kBf16 ? "bf16" : "fp32"; }

AutocastScope::AutocastScope(Precision precision, const at::Device& device) {
  if (precision != Precision::kBf16) return;
  active_ = true;
  device_type_ = device.type();
  was_enabled_ = at::autocast::is_autocast_enabled(device_type_);
  previous_dtype_ = at::autocast::get_autocast_dtype(device_type_);
  at::autocast::set_autocast_enabled(device_type_, true);
  at::autocast::set_autocast_dtype(device_type_, at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_type_, was_enabled_);
  at::autocast::set_autocast_dtype(device_type_, previous_dtype_);
}

}  // namespace cord::model
