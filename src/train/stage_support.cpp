#include "cord/train/stage_support.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <numeric>

#include <torch/cuda.h>

#include "cord/ckpt/model_weights.hpp"
#include "cord/config/load.hpp"
#include "cord/core/build_info.hpp"
#include "cord/core/error.hpp"
#include "cord/core/files.hpp"
#include "cord/core/log.hpp"
#include "cord/train/optimizer.hpp"
#include "cord/train/trainer.hpp"

namespace cord::train {

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void wait_for_device(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
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

void report_step(const std::string& line, nlohmann::json record, int64_t skipped, MetricsFile* metrics) {
  CORD_LOG(kInfo) << line << (skipped > 0 ? " | skipped " + std::to_string(skipped) : "");
  if (metrics == nullptr) return;
  record["skipped"] = skipped;
  metrics->write(record);
}

void finish_stage(StageSummary& summary, const std::string& stage_dir, const std::string& stage, model::Lalm& model,
                  const comm::ProcessGroups& groups, const Config& config, const std::vector<std::string>& vocab,
                  Clock::time_point start, MetricsFile* metrics, const nlohmann::json& extra) {
  summary.weights_path = stage_dir + "/model.h5";
  ckpt::save_weights(summary.weights_path, model, groups, {stage, summary.steps, to_toml(config), vocab});
  summary.seconds = seconds_since(start);
  if (metrics != nullptr) {
    nlohmann::json record{{"type", "end"},
                          {"steps", summary.steps},
                          {"skipped", summary.skipped},
                          {"last_loss", summary.last_loss},
                          {"seconds", summary.seconds},
                          {"weights", summary.weights_path}};
    record.update(extra);
    metrics->write(record);
  }
  CORD_LOG(kInfo) << "train " << stage << ": done, " << summary.steps << " steps (" << summary.skipped
                  << " skipped) in " << format_duration(summary.seconds) << ", last loss " << summary.last_loss
                  << " -> " << summary.weights_path;
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

std::unique_ptr<MetricsFile> open_stage_directory(const std::string& stage_dir, const Config& config,
                                                  const comm::ProcessGroups& groups, const std::string& stage,
                                                  const std::string& command_line, const std::string& device,
                                                  model::Precision precision, const nlohmann::json& extra,
                                                  bool append) {
  if (groups.world.rank() != 0) return nullptr;
  make_directories(stage_dir);
  write_file_atomically(stage_dir + "/config.toml", to_toml(config));
  auto metrics = std::make_unique<MetricsFile>(stage_dir + "/metrics.jsonl", append);
  nlohmann::json header{{"type", "header"},
                        {"stage", stage},
                        {"command", command_line},
                        {"commit", build_info().commit},
                        {"host", host_name()},
                        {"world", groups.world.size()},
                        {"dp", groups.dims.dp()},
                        {"tp", groups.dims.tp()},
                        {"device", device},
                        {"precision", model::precision_name(precision)}};
  header.update(extra);
  metrics->write(header);
  return metrics;
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
