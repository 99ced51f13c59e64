#include "cord/train/stage_support.hpp"


#include <cmath>
#include <cstdio>
#include <numeric>

#include <torch/cuda.h>

#include "cord/core/error.hpp"
#include "cord/core/log.hpp"
#include "cord/train/optimizer.hpp"

namespace cord::train {

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void wait_for_device(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  char text[32];
  if (s >= 3600) {
    std::snprintf(text, sizeof text, "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60));
  } else {
    std::snprintf(text, sizeof text, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return text;
}

double measure_matmul_peak(const std::string& device, model::Precision precision) {
  const int64_t n = device == "cpu" ? 1024 : 8192;
  const auto options =
      torch::TensorOptions().dtype(precision == model::Precision::kBf16 ? torch::kBFloat16 : torch::kFloat).device(device);
  const at::Tensor a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  at::Tensor c = torch::mm(a, b);
  (void)c.sum().item<float>();
  constexpr int kRepeats = 8;
  const auto start = Clock::now();
  for (int i = 0; i < kRepeats; ++i) c = torch::mm(a, b);
  (void)c.sum().item<float>();  // waits for the device
  return kRepeats * 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) /
         seconds_since(start);
}

std::set<int64_t> parse_step_list(const std::string& list, const std::string& key) {
  std::set<int64_t> steps;
  for (const std::string& item : split_comma_list(list)) {
    try {
      steps.insert(std::stoll(item));
    } catch (const std::exception&) {
      throw UsageError(key + ": '" + item + "' is not a step number");
    }
  }
  return steps;
}

MetricsFile::MetricsFile(const std::string& path, bool append)
    : out_(path, append ? std::ios::app : std::ios::trunc) {
  if (!out_) throw Error("cannot create " + path);
}

void MetricsFile::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
}

TrainableParameters trainable_parameters(model::Lalm& model, const comm::ProcessGroup& tp_group) {
  TrainableParameters out;
  for (const model::ParamShard& shard : model::sharded_parameters(*model, tp_group)) {
    const int64_t numel = std::accumulate(shard.global_shape.begin(), shard.global_shape.end(), int64_t{1},
                                          std::multiplies<int64_t>());
    out.total += numel;
    if (!shard.param.requires_grad()) continue;
    out.trainable += numel;
    out.shards.push_back(shard);
    out.tensors.push_back(shard.param);
  }
  return out;
}

bool NonfiniteGuard::finite(double loss, double grad_norm, int64_t step, const comm::ProcessGroup& world,
                            MetricsFile* metrics) {
  if (finite_on_all_ranks(loss + grad_norm, world)) {
    in_a_row_ = 0;
    return true;
  }
  ++skipped_;
  ++in_a_row_;
  CORD_LOG(kWarn) << "step " << step << ": non-finite loss (" << loss << ") or gradient norm (" << grad_norm
                  << ") on some rank: step skipped (" << skipped_ << " skipped so far, " << in_a_row_ << " in a row)";
  if (metrics != nullptr) {
    metrics->write({{"type", "skip"},
                    {"step", step},
                    {"loss", std::isfinite(loss) ? nlohmann::json(loss) : nlohmann::json("nan")},
                    {"consecutive", in_a_row_}});
  }
  if (in_a_row_ >= max_in_a_row_) {
    throw Error("train " + stage_ + ": " + std::to_string(in_a_row_) +
                " consecutive steps had a non-finite loss or gradient (last: step " + std::to_string(step) +
                "); stopping (train.max_nonfinite_steps=" + std::to_string(max_in_a_row_) +
                "). The weights were not updated by those steps; no model.h5 was written for this stage.");
  }
  return false;
}

}  // namespace cord::train
