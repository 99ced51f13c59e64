#pragma once
// One training loop for every stage (`cord train`): StageLoop owns what every stage shares
// (the model being trained, its optimizer, gradient synchronizer, loader, metrics file,
// checkpointer and non-finite guard) and runs the cadence: steps, step records, validation,
// checkpoints, stop on a signal or the wall-time limit, the weights at the end. A Stage
// (text and align: train/text_stage.hpp; distill: train/distill_stage.hpp) supplies only
// what differs: the loss of a micro-batch, what a step prepares before its micro-batches
// (rollouts), and its validation.
//
// train() -> train_step() for each step:
//   batch = loader.next()                      this dp rank's share of the global batch
//   once = stage.prepare_step(step, batch)     e.g. rollouts, rewards, the loss scale
//   for pass in 0 .. stage.passes():           optimizer updates per batch (PPO: > 1)
//     zero the gradients; for each micro-batch [begin, end) of the local batch:
//       loss, stats = stage.forward(micro)     under autocast; the loop calls backward
//     gradients averaged over dp during the last backward; stats summed over dp
//     global gradient norm; non-finite (agreed by every rank): skip, count, log;
//     else clip and AdamW at the schedule's lr for update step * passes + pass
// Loss scaling (the stage's business) makes the update the same for any dp x micro-batch
// layout: the stage scales each micro-batch so that the dp average of the summed
// micro-batch losses is the global batch's loss.
//
// The run directory RUN_DIR/STAGE/:
//   config.toml     the resolved config
//   metrics.jsonl   a header record (command line, commit, machine, layout, sizes), per
//                   logged step a record (loss = mean over the finite updates since the
//                   previous record, resume-exact; step_loss = this step's), per skipped step,
//                   validation, checkpoint and stop a record, and an end record
//   model.h5        the weights at the end of the stage (ckpt/model_weights.hpp)
//   checkpoints/    training checkpoints and their commit marker (train/checkpointing.hpp);
//                   a resumed stage appends to metrics.jsonl after a new header record
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cord/comm/process_group.hpp"
#include "cord/config/config.hpp"
#include "cord/data/loader.hpp"
#include "cord/model/lalm.hpp"
#include "cord/model/precision.hpp"
#include "cord/train/stage_support.hpp"
#include "cord/train/step_stats.hpp"
#include "cord/train/step_timer.hpp"

namespace cord::data {
class CorpusReader;
}

namespace cord::train {

class AdamW;
class StageCheckpointer;

struct StageSummary {
  int64_t steps = 0;    // steps run, skipped ones included
  int64_t skipped = 0;  // non-finite updates skipped
  double last_loss = 0; // loss of the last finite update
  double seconds = 0;
  std::string weights_path;
  bool stopped = false;  // saved a checkpoint and stopped early (signal or wall-time limit): requeue
};

// What every stage is built from: the config, the layout, the corpus and the model, with
// its weights loaded and its frozen parts frozen by the stage before the loop takes it.
struct StageContext {
  Config config;
  const comm::ProcessGroups& groups;
  std::string device;
  model::Precision precision = model::Precision::kFp32;
  std::unique_ptr<data::CorpusReader> corpus;
  model::Lalm model{nullptr};

  at::Device torch_device() const { return torch::Device(device); }
  // The StageConfig of train.stage.
  const StageConfig& stage_config() const;
  // What weights files record of the model's vocabulary (eval::ModelVocabulary::fingerprint).
  std::vector<std::string> vocabulary_fingerprint() const;
};

// Collective: opens train.corpus (UsageError naming it when missing; its questions and
// solutions in the model's vocabulary, eval/vocabulary.hpp) and builds the model of
// `config.model` on `device`, with fresh weights, or for model.source = hf:DIR with DIR's
// decoder (the audio encoder and projector fresh).
StageContext open_stage_context(const Config& config, const comm::ProcessGroups& groups, const std::string& device);

// One micro-batch of a step: items [begin, end) of this rank's local batch.
struct MicroBatch {
  const data::Batch& part;  // the batch sliced to [begin, end)
  int64_t begin = 0, end = 0;
  int64_t local_batch = 0;  // items in this rank's share of the global batch
  int64_t pass = 0;         // optimizer pass over the batch (0 unless PPO inner steps)
};

struct MicroBatchLoss {
  at::Tensor loss;   // scalar, scaled as stage_loop.hpp describes; backward is the loop's
  StepStats stats;   // this micro-batch's diagnostics and work (the loop adds `loss` itself)
};

// A validation pass's outcome.
struct Validation {
  nlohmann::json fields;  // added to the validation record
  std::string summary;    // "loss 0.1234 | text accuracy 50.0%": the log line's middle
};

class Stage {
 public:
  virtual ~Stage() = default;
  // The step line's label: "text", "align", "distill cord".
  virtual std::string label() const = 0;
  // One log line: what is trained and how, after the loop's own facts.
  virtual std::string describe() const = 0;
  // Fields of the metrics header (init, method...).
  virtual nlohmann::json header_fields() const = 0;
  // Data order: bucket items of similar audio length together (0 = off).
  virtual int64_t bucket_window() const = 0;
  // Optimizer updates per global batch (the schedule runs over steps * passes()).
  virtual int64_t passes() const { return 1; }
  // After the optimizer is built: per-group learning-rate scales.
  virtual void configure_optimizer(AdamW& /*optimizer*/) {}
  // Whether a fresh (not resumed) stage validates before its first step.
  virtual bool validates_at_start() const { return false; }

  // Collective over dp (and tp): what a step needs before its micro-batches, for this
  // rank's share `batch` of global batch `step` (0-based). Returns statistics counted once
  // per step (rollouts), which the loop adds to the first pass's.
  virtual StepStats prepare_step(int64_t step, const data::Batch& batch, StepTimer& timer) = 0;
  virtual void begin_pass(int64_t /*pass*/) {}
  virtual void end_pass(int64_t /*pass*/) {}
  // The loss of one micro-batch, under the loop's autocast scope; collective over tp.
  virtual MicroBatchLoss forward(const MicroBatch& micro, StepTimer& timer) = 0;
  // Step-record fields and step-line text of the stage's own statistics, from the window's
  // sums over dp; `seconds` is the window's wall time.
  virtual void describe_window(const LogWindow& /*window*/, int /*dp*/, double /*seconds*/,
                               std::string& /*line*/, nlohmann::json& /*record*/) const {}
  // Collective: a validation pass (the loop puts the model back in training mode after it).
  virtual Validation validate() = 0;
};

class StageLoop {
 public:
  // Collective. Takes the context's model (weights loaded, frozen parts frozen by `stage`),
  // builds the optimizer, loader and checkpointer, resumes per ckpt.resume, measures the
  // matrix-multiply peak (MFU's denominator) and opens the run directory.
  StageLoop(StageContext& context, Stage& stage, const std::string& command_line);
  ~StageLoop();
  StageLoop(const StageLoop&) = delete;
  StageLoop& operator=(const StageLoop&) = delete;

  // Collective: every step from the resumed one, validation, checkpoints; the weights at the
  // end. Returns early with `stopped` after a signal or the wall-time limit (checkpoint saved).
  StageSummary train();

  // The step after resume (0 for a fresh stage).
  int64_t first_step() const;

 private:
  struct StepResult;
  StepResult train_step(int64_t step);
  void run_pass(int64_t step, const data::Batch& batch, int64_t pass, StepStats& stats);
  void record_step(int64_t step, const StepResult& result, const StepTimes& times);
  void validate(int64_t step);
  void open_run_directory(const nlohmann::json& fields);
  void finish();

  struct State;
  std::unique_ptr<State> s_;
};

// `cord train`: the stage that train.stage names, ready to train. Construction is the
// set-up (corpus, weights, vocabulary, architecture, resume), which `cord train` agrees on
// across ranks before any step runs; train() is StageLoop::train().
class StageRun {
 public:
  StageRun(const Config& config, const comm::ProcessGroups& groups, const std::string& device,
           const std::string& command_line);
  ~StageRun();
  StageSummary train() { return loop_->train(); }

 private:
  StageContext context_;
  std::unique_ptr<Stage> stage_;
  std::unique_ptr<StageLoop> loop_;
};

}  // namespace cord::train
