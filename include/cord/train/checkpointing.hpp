#pragma once
// Checkpoint-restart of a training stage ([ckpt] config; the file format is in
// ckpt/checkpoint.hpp): what a stage resumes from, when it saves, and when it stops so that
// the job can be requeued.
//
// Triggers, decided by every rank together once per step (one small all-reduce):
//   every ckpt.every_steps steps; every ckpt.every_minutes minutes (rank 0's clock);
//   before ckpt.max_wall_minutes runs out (the next step plus a save would overrun it);
//   SIGUSR1, SIGTERM or SIGINT on any rank (the current step finishes first);
//   the end of the stage (ckpt.at_end).
// After a signal or the wall-time limit the stage saves and stops: `cord train` exits with
// ExitCode::kRequeue (75), which the Slurm scripts take as "requeue me".
//
// With ckpt.async the save is ckpt/async_checkpoint.hpp's: its writer thread copies the
// tensors during the next step's forward and backward (before_update() holds the
// optimizer step until the copy is done) and writes them while training goes on; the same per-step all-reduce tells every rank whether every writer has
// returned, and the first step after that collects the save (logs it, or throws its error
// on every rank together, e.g. a full disk). A save due while one is still being written
// waits or is skipped (ckpt.async_busy); a stop and the end of the stage always wait for
// the commit, so exit code 75 and the stage's end come after it.
//
// Resume restores parameters, AdamW m, v and t, the loader position, the non-finite step
// counters and every rank's generators; rollouts of the distill stage are seeded from
// (train.seed, step, dp rank), so the same layout continues bit for bit. A checkpoint
// written under another dp x tp layout loads too (tensors are stored in global shape).
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cord/ckpt/checkpoint.hpp"
#include "cord/comm/process_group.hpp"
#include "cord/config/config.hpp"
#include "cord/model/lalm.hpp"

namespace cord::data {
class CorpusLoader;
}
namespace cord::ckpt {
class AsyncCheckpointer;
}

namespace cord::train {

class AdamW;
class MetricsFile;
class NonfiniteGuard;

// The progress of a stage after `steps` steps, for a checkpoint: counters and the loader's position.
ckpt::Progress stage_progress(const std::string& stage, int64_t steps, const NonfiniteGuard& nonfinite,
                              double last_loss, const data::CorpusLoader& loader);

// Every tensor of a checkpoint of `model` and `optimizer` as this rank holds it: the
// parameters (written by the tp ranks of dp rank 0) and AdamW's m and v (written by their
// ZeRO-1 owner, or dp rank 0); replicated tensors by tp rank 0 only.
std::vector<ckpt::ShardedTensor> checkpoint_tensors(model::Lalm& model, const AdamW& optimizer,
                                                    const comm::ProcessGroups& groups, bool zero1);

class StageCheckpointer {
 public:
  // Installs the SIGUSR1/SIGTERM/SIGINT handlers (restored by the destructor).
  StageCheckpointer(const Config& config, const comm::ProcessGroups& groups, const std::string& stage_dir,
                    const std::string& device, std::vector<std::string> vocab);
  ~StageCheckpointer();
  StageCheckpointer(const StageCheckpointer&) = delete;
  StageCheckpointer& operator=(const StageCheckpointer&) = delete;

  // Collective: resolves ckpt.resume (rank 0 chooses, every rank loads). With a checkpoint,
  // loads it into `model`, `optimizer` (m, v, t) and `loader` (its position) and returns its
  // progress, whose counters the stage restores; nullopt: start from step 0. Throws
  // UsageError on every rank for a damaged named checkpoint or another architecture or stage.
  std::optional<ckpt::Progress> resume(model::Lalm& model, AdamW& optimizer, data::CorpusLoader& loader);

  enum class Decision { kContinue, kStop };
  // Collective, after every step (skipped ones too): saves when a trigger fires, logs it
  // and records it in `metrics` (rank 0). kStop: a signal or the wall-time limit; the
  // checkpoint is saved and the stage must stop now.
  Decision after_step(ckpt::Progress progress, model::Lalm& model, const AdamW& optimizer, double step_seconds,
                      int64_t total_steps, MetricsFile* metrics);

  // Before every optimizer step: waits until an asynchronous save in flight has copied
  // the tensors it saves (the step changes them). At once without one.
  void before_update();

  // The header fields of a resumed stage ({} for a fresh one).
  nlohmann::json resume_record() const;
  const std::string& directory() const { return directory_; }

 private:
  // What the save is for (its log line and record are written when it is collected).
  struct Pending {
    int64_t step = 0;
    std::string reason;
    double stall_seconds = 0;  // how long the training waited for it (host copy, earlier save)
  };
  // Saves (`wait`: and, when asynchronous, waits for the commit).
  void save(ckpt::Progress progress, model::Lalm& model, const AdamW& optimizer, Pending pending, bool wait,
            MetricsFile* metrics);
  // The asynchronous save in flight: waits for it and logs it (throws its error).
  void collect(MetricsFile* metrics);
  void log_saved(const ckpt::SavedCheckpoint& saved, const Pending& pending, MetricsFile* metrics) const;
  // A trigger fired while an asynchronous save is still being written somewhere: waits for
  // it, or skips (returns false) as ckpt.async_busy says; `must` (a stop, the stage's end) waits.
  bool make_room(int64_t step, const std::string& reason, bool must, double& waited_seconds, MetricsFile* metrics);

  Config config_;
  const comm::ProcessGroups& groups_;
  std::string directory_, device_;
  std::vector<std::string> vocab_;
  std::string run_id_;
  std::string resumed_from_;
  int64_t resumed_step_ = -1;
  double previous_seconds_ = 0;             // train_seconds of the resumed checkpoint
  double last_save_seconds_ = 0;            // how long the last save took (the wall-time margin)
  double step_ema_ = 0;
  std::vector<std::string> superseded_;     // an earlier run's files, deleted at this run's first commit
  ckpt::BackgroundRemover removals_;        // the retention deletes of the last save
  std::unique_ptr<ckpt::AsyncCheckpointer> async_;  // ckpt.async only
  Pending in_flight_;                       // what async_'s save in flight is for
  bool reported_host_memory_ = false;
  struct Clocks;
  std::unique_ptr<Clocks> clocks_;
};

}  // namespace cord::train
