#pragma once
// One training stage of the base LALM (`cord train`, train.stage = text | align): the
// step loop, with its run directory RUN_DIR/STAGE/:
//   config.toml     the resolved config
//   metrics.jsonl   a header record (command line, commit, machine, layout, sizes), one
//                   record per logged step (loss = mean over the steps since the previous
//                   record, step_loss = this step's), per skipped step and per validation,
//                   an end record
//   model.h5        the weights at the end of the stage (ckpt/model_weights.hpp)
//   checkpoints/    training checkpoints and their commit marker (train/checkpointing.hpp);
//                   a resumed stage appends to metrics.jsonl after a new header record
//
// One step: the loader's global batch (every dp rank its share) is cut into micro-batches;
// each is forwarded and backwarded with the loss scaled so that the accumulated gradient
// is the gradient of the mean loss over every response token of the global batch (the
// same for any dp x micro-batch split); the gradient buckets are averaged over dp during
// the last backward; then the global gradient norm, a finite check agreed by every rank
// (a non-finite step is skipped, counted and logged; too many in a row stop the run),
// clipping, and AdamW at the scheduled learning rate.
#include <memory>
#include <string>

#include "cord/comm/process_group.hpp"
#include "cord/config/config.hpp"

namespace cord::train {

struct StageSummary {
  int64_t steps = 0;    // steps run, skipped ones included
  int64_t skipped = 0;  // non-finite steps skipped
  double last_loss = 0; // training loss of the last finite step
  double seconds = 0;
  std::string weights_path;
  bool stopped = false;  // saved a checkpoint and stopped early (signal or wall-time limit): requeue
};

class Trainer {
 public:
  // Collective. Opens the corpus, builds the model (and loads train.init, or for the align
  // stage RUN_DIR/text/model.h5), checks vocabulary and architecture against them,
  // creates the run directory. Throws UsageError/Error naming the file or field at fault.
  Trainer(const Config& config, const comm::ProcessGroups& groups, const std::string& device,
          const std::string& command_line);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Collective: runs every step of the stage (from the resumed step, when ckpt.resume found
  // one), validates, saves the weights; returns early with `stopped` after a signal or the
  // wall-time limit (checkpoint saved, no weights file).
  StageSummary run();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace cord::train
