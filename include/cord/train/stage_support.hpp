#pragma once
// Small pieces of the stage loop (train/stage_loop.hpp): the metrics file, the step-line
// clock and duration format, the MFU denominator, the trainable-parameter set of a partly
// frozen model, and the non-finite step guard.
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cord/comm/process_group.hpp"
#include "cord/config/config.hpp"
#include "cord/model/lalm.hpp"
#include "cord/model/precision.hpp"

namespace cord::train {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start);
// Blocks until `device` has finished the work queued on it (CUDA; nothing on the CPU), so
// that a host clock read next covers that work: CUDA kernels run asynchronously, and a
// phase's time would otherwise land in whichever later phase first waits for the GPU.
void wait_for_device(const at::Device& device);
std::string format_duration(double seconds);  // "12m05s", "1h03m"

// The matrix-multiply rate of this rank (FLOP/s) in the precision of the matrix work, the
// denominator of MFU: a few n^3 products on the training device (n = 1024 on the CPU, 8192
// on a GPU, which smaller products do not fill).
double measure_matmul_peak(const std::string& device, model::Precision precision);

// "3, 7" -> {3, 7}; throws UsageError naming `key` for an item that is not a number.
std::set<int64_t> parse_step_list(const std::string& list, const std::string& key);

// Appends JSON records, one per line, flushed as written (world rank 0 only).
class MetricsFile {
 public:
  // `append`: keep the records of earlier attempts (a resumed stage); otherwise truncate.
  explicit MetricsFile(const std::string& path, bool append = false);
  void write(const nlohmann::json& record);

 private:
  std::ofstream out_;
};

// The parameters of `model` that require a gradient (freeze the others first), and the
// global parameter counts.
struct TrainableParameters {
  std::vector<model::ParamShard> shards;
  std::vector<at::Tensor> tensors;  // the shards' local tensors, same order
  int64_t total = 0, trainable = 0;
};
TrainableParameters trainable_parameters(model::Lalm& model, const comm::ProcessGroup& tp_group);

// Non-finite steps: agreed on by every rank, skipped, counted and logged; too many in a row
// stop the run with an Error (the weights keep the last finite update; no model.h5 is written).
class NonfiniteGuard {
 public:
  NonfiniteGuard(std::string stage, int max_in_a_row) : stage_(std::move(stage)), max_in_a_row_(max_in_a_row) {}
  // True when `loss` and `grad_norm` are finite on every rank of `world`; otherwise logs,
  // records a skip record in `metrics` (rank 0; may be null elsewhere), and throws once
  // max_in_a_row consecutive steps were skipped. `step` is 1-based.
  bool finite(double loss, double grad_norm, int64_t step, const comm::ProcessGroup& world, MetricsFile* metrics);
  int64_t skipped() const { return skipped_; }
  int64_t in_a_row() const { return in_a_row_; }
  // Resuming from a checkpoint.
  void restore(int64_t skipped, int64_t in_a_row) { skipped_ = skipped, in_a_row_ = in_a_row; }

 private:
  std::string stage_;
  int max_in_a_row_;
  int64_t skipped_ = 0, in_a_row_ = 0;
};

}  // namespace cord::train
