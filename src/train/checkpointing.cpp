#include "cord/train/checkpointing.hpp"

#include <unistd.h>

#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>

#include "cord/ckpt/async_checkpoint.hpp"
#include "cord/comm/agree.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/config/load.hpp"
#include "cord/core/error.hpp"
#include "cord/core/log.hpp"
#include "cord/core/progress.hpp"
#include "cord/data/loader.hpp"
#include "cord/train/optimizer.hpp"
#include "cord/train/stage_support.hpp"

namespace cord::train {
namespace {

// Wall time counts from the start of the process (static initialisation).
const Clock::time_point g_process_start = Clock::now();

// Set by the signal handler, read once per step; the signal's number (0: none).
volatile std::sig_atomic_t g_signal = 0;

extern "C" void remember_signal(int signal) { g_signal = signal; }

constexpr int kSignals[] = {SIGUSR1, SIGTERM, SIGINT};

const char* signal_name(int signal) {
  switch (signal) {
    case SIGUSR1: return "SIGUSR1";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    default: return "a signal";
  }
}

std::string new_run_id() {
  const auto now = std::chrono::system_clock::now().time_since_epoch().count();
  char text[17];
  std::snprintf(text, sizeof text, "%016llx",
                static_cast<unsigned long long>(now) ^ (static_cast<unsigned long long>(getpid()) << 40));
  return text;
}

double megabytes(int64_t bytes) { return static_cast<double>(bytes) / 1e6; }

}  // namespace

struct StageCheckpointer::Clocks {
  Clock::time_point started = g_process_start;  // wall time counts from the start of the process
  Clock::time_point last_save = Clock::now();
  struct sigaction previous[3] {};
};

ckpt::Progress stage_progress(const std::string& stage, int64_t steps, const NonfiniteGuard& nonfinite,
                              double last_loss, const data::CorpusLoader& loader) {
  ckpt::Progress progress;
  progress.stage = stage;
  progress.step = steps;
  progress.skipped = nonfinite.skipped();
  progress.skipped_in_a_row = nonfinite.in_a_row();
  progress.last_loss = last_loss;
  const data::LoaderState position = loader.export_state();
  progress.loader_epoch = position.epoch;
  progress.loader_next_batch = position.next_batch;
  progress.loader_seed = static_cast<int64_t>(position.seed);
  return progress;
}

std::vector<ckpt::ShardedTensor> checkpoint_tensors(model::Lalm& model, const AdamW& optimizer,
                                                    const comm::ProcessGroups& groups, bool zero1) {
  std::vector<ckpt::ShardedTensor> tensors;
  std::map<std::string, model::ParamShard> shards;
  const bool tp_writer = groups.tp.rank() == 0;
  for (const model::ParamShard& shard : model::sharded_parameters(*model, groups.tp)) {
    const bool writes = groups.dp.rank() == 0 && (shard.split_dim >= 0 ? shard.primary : tp_writer);
    // Only the rows in the global tensor (a padded vocabulary's tail is not saved).
    tensors.push_back({"params/" + shard.name, shard.in_global(), shard.global_shape, shard.split_dim, shard.offset,
                       writes});
    shards.emplace(shard.name, shard);
  }
  for (const char* moment : {"exp_avg", "exp_avg_sq"}) {
    for (const AdamW::ParamState& state : optimizer.state()) {
      const model::ParamShard& shard = shards.at(state.name);
      const at::Tensor& full = std::string(moment) == "exp_avg" ? state.exp_avg : state.exp_avg_sq;
      const at::Tensor local = full.defined() && shard.split_dim >= 0 && shard.length != full.size(shard.split_dim)
                                   ? full.narrow(shard.split_dim, 0, shard.length)
                                   : full;
      const int owner = zero1 ? state.owner : 0;
      const bool writes = groups.dp.rank() == owner && (shard.split_dim >= 0 ? shard.primary : tp_writer);
      tensors.push_back({std::string("optim/") + moment + "/" + state.name, local, shard.global_shape, shard.split_dim,
                         shard.offset, writes && local.defined()});
    }
  }
  return tensors;
}

StageCheckpointer::StageCheckpointer(const Config& config, const comm::ProcessGroups& groups,
                                     const std::string& stage_dir, const std::string& device,
                                     std::vector<std::string> vocab)
    : config_(config),
      groups_(groups),
      directory_(config.ckpt.dir.empty() ? stage_dir + "/checkpoints" : config.ckpt.dir),
      device_(device),
      vocab_(std::move(vocab)),
      clocks_(std::make_unique<Clocks>()) {
  g_signal = 0;
  struct sigaction action {};
  action.sa_handler = &remember_signal;
  sigemptyset(&action.sa_mask);
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &action, &clocks_->previous[i]);
  if (config.ckpt.async) async_ = std::make_unique<ckpt::AsyncCheckpointer>(groups);
}

StageCheckpointer::~StageCheckpointer() {
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &clocks_->previous[i], nullptr);
  async_.reset();     // waits for a save in flight (only after an error: the stage's end collects it)
  removals_.wait();   // the stage ends with only the kept checkpoints
}

std::optional<ckpt::Progress> StageCheckpointer::resume(model::Lalm& model, AdamW& optimizer,
                                                        data::CorpusLoader& loader) {
  // Rank 0 chooses (it reads and verifies the candidates); the others learn the outcome.
  std::string failure;
  ckpt::ResumeChoice choice;
  if (groups_.world.rank() == 0) {
    try {
      choice = ckpt::choose_checkpoint(config_.ckpt.resume, directory_);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    for (const std::string& rejected : choice.rejected) CORD_LOG(kWarn) << "resume: passed over " << rejected;
    for (const std::string& file : choice.uncommitted) {
      CORD_LOG(kWarn) << "resume: ignoring " << file << " (not covered by the commit marker "
                      << directory_ << "/latest, so not a committed checkpoint)";
    }
  }
  const comm::Agreement agreed = comm::agree(groups_.world, failure);
  if (!agreed.ok()) throw UsageError(agreed.message);
  const std::string path = comm::broadcast_string(groups_.world, choice.path, 0);
  if (path.empty()) {
    // A fresh start: an earlier run's checkpoints in the folder stay committed until this
    // run commits its first one, which replaces them.
    for (const std::string& name : choice.existing) superseded_.push_back(name);
    for (const std::string& file : choice.uncommitted) superseded_.push_back(file.substr(file.rfind('/') + 1));
    run_id_ = comm::broadcast_string(groups_.world, new_run_id(), 0);
    if (config_.ckpt.resume == "auto") {
      CORD_LOG(kInfo) << "resume auto: no committed checkpoint in " << directory_ << ", starting at step 0";
    }
    return std::nullopt;
  }
  const auto start = Clock::now();
  const ckpt::Progress progress =
      ckpt::load_checkpoint(path, checkpoint_tensors(model, optimizer, groups_, config_.train.zero1), groups_,
                            config_.model, name_of(config_.train.stage));
  optimizer.set_steps_taken(progress.optimizer_steps);
  loader.restore({progress.loader_epoch, progress.loader_next_batch, static_cast<uint64_t>(progress.loader_seed)});
  run_id_ = progress.run_id;
  resumed_from_ = path;
  resumed_step_ = progress.step;
  previous_seconds_ = progress.train_seconds;
  CORD_LOG(kInfo) << "resume: " << path << " (step " << progress.step << ", " << progress.optimizer_steps
                  << " optimizer steps, loader epoch " << progress.loader_epoch << " batch "
                  << progress.loader_next_batch << ") loaded in " << seconds_since(start) << " s";
  return progress;
}

nlohmann::json StageCheckpointer::resume_record() const {
  if (resumed_step_ < 0) return nlohmann::json::object();
  return {{"resumed_from", resumed_from_}, {"resumed_step", resumed_step_},
          {"seconds_to_resume", seconds_since(clocks_->started)}};
}

void StageCheckpointer::save(ckpt::Progress progress, model::Lalm& model, const AdamW& optimizer, Pending pending,
                             bool wait, MetricsFile* metrics) {
  ckpt::SaveRequest request;
  request.directory = directory_;
  progress.run_id = run_id_;
  progress.optimizer_steps = optimizer.steps_taken();
  progress.train_seconds = previous_seconds_ + seconds_since(clocks_->started);
  request.progress = progress;
  request.config_toml = to_toml(config_);
  request.vocab = vocab_;
  request.model = config_.model;
  request.device = device_;
  request.zero1 = config_.train.zero1;
  request.sampler = "rollouts: CPU generator seeded per step from (train.seed, step, dp rank); no other sampling";
  const ckpt::Retention retention{config_.ckpt.keep_last, config_.ckpt.keep_every, &removals_};
  const std::vector<ckpt::ShardedTensor> tensors = checkpoint_tensors(model, optimizer, groups_, config_.train.zero1);
  if (async_ == nullptr) {
    const ckpt::SavedCheckpoint saved = ckpt::save_checkpoint(request, tensors, groups_, retention, superseded_);
    superseded_.clear();
    last_save_seconds_ = saved.seconds;
    clocks_->last_save = Clock::now();
    pending.stall_seconds = saved.seconds;
    log_saved(saved, pending, metrics);
    return;
  }
  const auto start = Clock::now();
  async_->start(request, tensors, retention, std::move(superseded_));
  superseded_.clear();
  clocks_->last_save = Clock::now();
  pending.stall_seconds += seconds_since(start);
  in_flight_ = pending;
  if (wait) collect(metrics);
}

void StageCheckpointer::before_update() {
  if (async_ == nullptr || !async_->in_flight()) return;
  const auto start = Clock::now();
  set_progress_phase("checkpoint save (waiting for the host copy)");
  async_->wait_until_copied();
  in_flight_.stall_seconds += seconds_since(start);
}

void StageCheckpointer::collect(MetricsFile* metrics) {
  set_progress_phase("checkpoint save (waiting for the writer thread)");
  const ckpt::SavedCheckpoint saved = async_->wait();  // its error: on every rank together
  last_save_seconds_ = saved.seconds;
  if (!reported_host_memory_) {
    reported_host_memory_ = true;
    CORD_LOG(kInfo) << "asynchronous checkpoints: " << megabytes(async_->host_bytes())
                    << " MB of host memory hold this rank's copy (copied in " << async_->copy_seconds()
                    << " s by the writer thread)";
  }
  log_saved(saved, in_flight_, metrics);
}

void StageCheckpointer::log_saved(const ckpt::SavedCheckpoint& saved, const Pending& pending,
                                  MetricsFile* metrics) const {
  char timing[240];
  std::snprintf(timing, sizeof timing, "%.1f MB in %.3f s, %.0f MB/s; write %.3f s, fsync+commit %.3f s; training waited %.3f s",
                megabytes(saved.bytes), saved.seconds, megabytes(saved.bytes) / std::max(saved.seconds, 1e-9),
                saved.write_seconds, saved.commit_seconds, pending.stall_seconds);
  CORD_LOG(kInfo) << "checkpoint @ step " << pending.step << " (" << pending.reason << (async_ ? ", async" : "")
                  << ") -> " << saved.path << " (" << timing
                  << (saved.removed.empty() ? "" : "; " + std::to_string(saved.removed.size()) + " older removed")
                  << ")";
  if (metrics != nullptr) {
    metrics->write({{"type", "checkpoint"},
                    {"step", pending.step},
                    {"reason", pending.reason},
                    {"path", saved.path},
                    {"bytes", saved.bytes},
                    {"seconds", saved.seconds},
                    {"write_seconds", saved.write_seconds},
                    {"commit_seconds", saved.commit_seconds},
                    {"cleanup_seconds", saved.cleanup_seconds},
                    {"async", async_ != nullptr},
                    {"stall_seconds", pending.stall_seconds},
                    {"host_bytes", async_ != nullptr ? async_->host_bytes() : 0},
                    {"removed", saved.removed}});
  }
}

bool StageCheckpointer::make_room(int64_t step, const std::string& reason, bool must, double& waited_seconds,
                                  MetricsFile* metrics) {
  const bool skip = !must && config_.ckpt.async_busy == AsyncBusy::kSkip;
  if (skip) {
    CORD_LOG(kInfo) << "checkpoint @ step " << step << " (" << reason << ") skipped: the checkpoint of step "
                    << in_flight_.step << " is still being written (ckpt.async_busy = skip)";
    if (metrics != nullptr) {
      metrics->write({{"type", "checkpoint_skipped"}, {"step", step}, {"reason", reason}, {"writing_step", in_flight_.step}});
    }
    return false;
  }
  const auto start = Clock::now();
  collect(metrics);
  waited_seconds = seconds_since(start);
  CORD_LOG(kInfo) << "checkpoint @ step " << step << " (" << reason << ") waited " << waited_seconds
                  << " s for the checkpoint of step " << in_flight_.step << " to commit";
  return true;
}

StageCheckpointer::Decision StageCheckpointer::after_step(ckpt::Progress progress, model::Lalm& model,
                                                          const AdamW& optimizer, double step_seconds,
                                                          int64_t total_steps, MetricsFile* metrics) {
  const CheckpointConfig& cc = config_.ckpt;
  step_ema_ = step_ema_ == 0 ? step_seconds : 0.9 * step_ema_ + 0.1 * step_seconds;
  // [signal, minutes due, wall limit near, an asynchronous writer still busy]: rank 0's
  // clock decides the time triggers.
  at::Tensor flags = torch::zeros({4}, torch::kInt64);
  flags[0] = static_cast<int64_t>(g_signal);
  flags[3] = async_ != nullptr && async_->in_flight() && !async_->finished() ? 1 : 0;
  if (groups_.world.rank() == 0) {
    flags[1] = cc.every_minutes > 0 && seconds_since(clocks_->last_save) >= 60.0 * cc.every_minutes ? 1 : 0;
    // Stop while the next step and a save (with a margin) still fit in the limit.
    const double needed = seconds_since(clocks_->started) + 1.5 * (step_ema_ + last_save_seconds_) + 5.0;
    flags[2] = cc.max_wall_minutes > 0 && needed >= 60.0 * cc.max_wall_minutes ? 1 : 0;
  }
  comm::all_reduce(groups_.world, flags, comm::ReduceOp::kMax);
  // Every rank's writer has returned: collect the save (on every rank at this same step).
  if (async_ != nullptr && async_->in_flight() && flags[3].item<int64_t>() == 0) collect(metrics);
  const int signal = static_cast<int>(flags[0].item<int64_t>());
  const bool last = progress.step >= total_steps;
  std::string reason;
  if (signal != 0 && !last) reason = signal_name(signal);  // after the last step the stage just finishes
  else if (flags[2].item<int64_t>() != 0 && !last) reason = "wall-time limit";
  const bool stop = !reason.empty();
  if (!stop) {
    if (last && cc.at_end) reason = "end of stage";
    else if (cc.every_steps > 0 && progress.step % cc.every_steps == 0) reason = "every " + std::to_string(cc.every_steps) + " steps";
    else if (flags[1].item<int64_t>() != 0) reason = "every " + std::to_string(cc.every_minutes) + " minutes";
  }
  const bool must = stop || last;  // the commit must come before the stage ends or exits 75
  Pending pending{progress.step, reason, 0};
  if (!reason.empty() && (async_ == nullptr || !async_->in_flight() ||
                          make_room(progress.step, reason, must, pending.stall_seconds, metrics))) {
    save(progress, model, optimizer, pending, must, metrics);
  }
  if (must && async_ != nullptr && async_->in_flight()) collect(metrics);
  if (!stop) return Decision::kContinue;
  CORD_LOG(kWarn) << "stopping after step " << progress.step << " (" << reason << "): checkpoint saved; exit code "
                  << static_cast<int>(ExitCode::kRequeue) << " asks the job script to requeue";
  if (metrics != nullptr) metrics->write({{"type", "stop"}, {"step", progress.step}, {"reason", reason}});
  return Decision::kStop;
}

}  // namespace cord::train
