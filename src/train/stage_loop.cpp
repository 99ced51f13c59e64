#include "cord/train/stage_loop.hpp"

#include <unistd.h>

#include <cstdio>
#include <limits>

#include "cord/ckpt/model_weights.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/config/load.hpp"
#include "cord/core/build_info.hpp"
#include "cord/core/error.hpp"
#include "cord/core/files.hpp"
#include "cord/core/log.hpp"
#include "cord/core/progress.hpp"
#include "cord/data/corpus.hpp"
#include "cord/eval/prompts.hpp"
#include "cord/eval/vocabulary.hpp"
#include "cord/hf/hf_config.hpp"
#include "cord/hf/hf_model.hpp"
#include "cord/model/data_parallel.hpp"
#include "cord/train/checkpointing.hpp"
#include "cord/train/optimizer.hpp"

namespace cord::train {

using nlohmann::json;

const StageConfig& StageContext::stage_config() const { return cord::stage_config(config.train); }

StageContext open_stage_context(const Config& config, const comm::ProcessGroups& groups, const std::string& device) {
  StageContext context{config, groups, device, model::Precision::kFp32, nullptr, model::Lalm(nullptr)};
  const TrainConfig& tc = config.train;
  context.precision = model::resolve_precision(config.runtime.precision, device);
  if (access(tc.corpus.c_str(), R_OK) != 0) {
    throw UsageError("train.corpus " + tc.corpus + " does not exist (make it with: cord corpus synth --out " +
                     tc.corpus + ")");
  }
  context.corpus = eval::open_corpus_for(tc.corpus, config.model);
  const int64_t vocab = eval::ModelVocabulary(config.model, context.corpus->tokenizer()).size();
  if (config.model.vocab_size < vocab) {
    throw UsageError("model.vocab_size=" + std::to_string(config.model.vocab_size) +
                     " is smaller than the vocabulary of corpus " + tc.corpus + " (" + std::to_string(vocab) +
                     " tokens)");
  }
  const std::string directory = hf::hf_directory(config.model.source);
  if (directory.empty()) {
    context.model = model::Lalm(config.model, groups.tp);
  } else {
    // The decoder comes from the files (a stage's train.init, when it has one, replaces it).
    context.model = model::Lalm(config.model, groups.tp, hf::hf_initialization(config.model));
    hf::load_hf_model(directory, context.model);
  }
  context.model->to(context.torch_device());
  return context;
}

std::vector<std::string> StageContext::vocabulary_fingerprint() const {
  return eval::ModelVocabulary(config.model, corpus->tokenizer()).fingerprint();
}

// What one step did: the window's share of it and the step line's facts.
struct StageLoop::StepResult {
  StepStats sums;        // summed over dp and over the step's finite updates
  int64_t updates = 0;   // finite updates (passes that were not skipped)
  double last_loss = 0;  // the loss of its last finite update
  double grad_norm = 0;  // of its last pass
  double lr = 0;         // of its last pass
};

struct StageLoop::State {
  StageContext& context;
  Stage& stage;
  const Config& config;
  const comm::ProcessGroups& groups;
  std::string command_line, run_dir;
  StageConfig stage_config;
  TrainableParameters params;
  std::unique_ptr<model::GradientSynchronizer> synchronizer;
  std::unique_ptr<AdamW> optimizer;
  LrSchedule schedule;
  std::unique_ptr<data::CorpusLoader> loader;
  std::unique_ptr<StageCheckpointer> checkpointer;
  std::unique_ptr<MetricsFile> metrics;  // world rank 0 only
  NonfiniteGuard nonfinite;
  std::optional<ckpt::Progress> resumed;
  std::set<int64_t> inject_nonfinite;
  double peak_flops = 0;  // matrix-multiply rate summed over the world's ranks
  StepTimer timer;
  // The steps since the last step record: their stats (checkpointed) and rank 0's times.
  LogWindow window;
  StepTimes window_times;
  int64_t window_steps = 0;
  double step_ema = 0;  // seconds per step, for the ETA
  StageSummary summary;
  Clock::time_point start = Clock::now();

  State(StageContext& c, Stage& s, std::string command)
      : context(c),
        stage(s),
        config(c.config),
        groups(c.groups),
        command_line(std::move(command)),
        run_dir(c.config.train.run_dir + "/" + name_of(c.config.train.stage)),
        stage_config(c.stage_config()),
        nonfinite(name_of(c.config.train.stage), c.config.train.max_nonfinite_steps),
        timer(c.torch_device(), {c.groups.world, c.groups.dp, c.groups.tp}) {}

  bool rank0() const { return groups.world.rank() == 0; }
  int dp() const { return groups.dp.size(); }
  int64_t local_batch() const { return stage_config.global_batch / groups.dims.dp(); }
  int64_t micro_batch() const {
    const int64_t micro = config.train.micro_batch;
    return micro > 0 ? std::min(micro, local_batch()) : local_batch();
  }
  ckpt::Progress progress() const {
    ckpt::Progress p = stage_progress(name_of(config.train.stage), summary.steps, nonfinite, summary.last_loss, *loader);
    p.log_window = window.to_text();
    return p;
  }
};

namespace {

// [train.augment] for this stage's training batches: the stages that train on audio
// (align, distill) augment; the text stage reads no audio. (The loader refuses Whisper
// features.)
data::AugmentOptions training_augmentation(const TrainConfig& tc) {
  if (!tc.augment.any() || tc.stage == StageName::kText) return {};
  const AugmentConfig& a = tc.augment;
  CORD_LOG(kInfo) << "train " << name_of(tc.stage) << ": training audio augmented: speed +-" << a.speed
                  << ", white noise on " << a.noise_fraction << " of the items at " << a.noise_snr_min_db << "-"
                  << a.noise_snr_max_db << " dB, " << a.time_masks << " time mask(s) <= " << a.time_mask_frames
                  << " frames, " << a.freq_masks << " frequency mask(s) <= " << a.freq_mask_bins << " bins";
  return a;
}

}  // namespace

StageLoop::StageLoop(StageContext& context, Stage& stage, const std::string& command_line)
    : s_(std::make_unique<State>(context, stage, command_line)) {
  State& s = *s_;
  const TrainConfig& tc = s.config.train;
  s.inject_nonfinite = parse_step_list(tc.inject_nonfinite, "train.inject_nonfinite");
  s.params = trainable_parameters(context.model, s.groups.tp);
  s.synchronizer = std::make_unique<model::GradientSynchronizer>(s.params.tensors, s.groups.dp, tc.bucket_mb);
  AdamWOptions adamw;
  adamw.beta1 = tc.beta1;
  adamw.beta2 = tc.beta2;
  adamw.weight_decay = tc.weight_decay;
  s.optimizer = std::make_unique<AdamW>(s.params.shards, adamw, tc.zero1 ? &s.groups.dp : nullptr);
  stage.configure_optimizer(*s.optimizer);
  const StageConfig& sc = s.stage_config;
  s.schedule = LrSchedule{sc.lr, sc.min_lr, sc.warmup_steps, sc.steps * stage.passes()};

  data::LoaderOptions loader_options;
  loader_options.split = data::Split::kTrain;
  loader_options.global_batch = sc.global_batch;
  loader_options.seed = static_cast<uint64_t>(tc.seed);
  loader_options.bucket_window = stage.bucket_window();
  for (const std::string& name : split_comma_list(tc.families)) {
    loader_options.families.push_back(data::parse_family(name, "train.families"));
  }
  loader_options.augment = training_augmentation(tc);
  s.loader = std::make_unique<data::CorpusLoader>(
      *context.corpus, data::shard_options(loader_options, s.groups.dims, s.groups.world.rank()));
  if (!loader_options.families.empty()) {
    CORD_LOG(kInfo) << "train " << name_of(tc.stage) << ": training items only from families " << tc.families << " ("
                    << s.loader->batches_per_epoch() << " global batches per epoch)";
  }
  s.checkpointer = std::make_unique<StageCheckpointer>(s.config, s.groups, s.run_dir, context.device,
                                                       context.vocabulary_fingerprint());
  s.resumed = s.checkpointer->resume(context.model, *s.optimizer, *s.loader);
  if (s.resumed) {
    s.summary.steps = s.resumed->step;
    s.summary.last_loss = s.resumed->last_loss;
    s.nonfinite.restore(s.resumed->skipped, s.resumed->skipped_in_a_row);
    s.window = LogWindow::from_text(s.resumed->log_window);
  }
  at::Tensor peak = torch::tensor({measure_matmul_peak(context.device, context.precision)}, torch::kDouble);
  comm::all_reduce(s.groups.world, peak, comm::ReduceOp::kSum);
  s.peak_flops = peak.item<double>();

  json header{{"corpus", tc.corpus},
              {"params", s.params.total},
              {"trainable_params", s.params.trainable},
              {"matmul_peak_flops", s.peak_flops}};
  header.update(stage.header_fields());
  header.update(s.checkpointer->resume_record());
  open_run_directory(header);
  comm::barrier(s.groups.world);
}

StageLoop::~StageLoop() = default;

int64_t StageLoop::first_step() const { return s_->resumed ? s_->resumed->step : 0; }

StageSummary StageLoop::train() {
  State& s = *s_;
  const int64_t steps = s.stage_config.steps;
  CORD_LOG(kInfo) << "train " << s.stage.label() << ": " << steps << " steps of " << s.stage_config.global_batch
                  << " items (" << s.local_batch() << " per dp rank, micro-batches of " << s.micro_batch() << "), "
                  << s.params.trainable << " of " << s.params.total << " parameters trained, "
                  << s.loader->batches_per_epoch() << " steps per epoch, " << s.stage.describe() << " -> "
                  << s.run_dir;
  s.start = Clock::now();
  if (!s.resumed && s.stage.validates_at_start()) validate(0);
  s.context.model->train();
  for (int64_t step = first_step(); step < steps; ++step) {
    mark_step_started(step + 1);
    maybe_stop_for_test("step", step + 1, s.groups.world.rank());
    s.timer.start_step();
    const StepResult result = train_step(step);
    const StepTimes times = s.timer.finish_step();
    s.summary.steps = step + 1;
    if (result.updates > 0) s.summary.last_loss = result.last_loss;
    s.step_ema = step == first_step() ? times.step : 0.9 * s.step_ema + 0.1 * times.step;
    s.window.sums += result.sums;
    s.window.updates += result.updates;
    s.window_times += times;
    ++s.window_steps;
    const bool log_due = (step + 1) % s.config.train.log_every == 0 || step + 1 == steps;
    if (log_due && s.window.updates > 0) record_step(step, result, times);
    const int64_t val_every = s.config.train.val_every;
    if (val_every > 0 && (step + 1) % val_every == 0 && step + 1 < steps) validate(step + 1);

    if (s.checkpointer->after_step(s.progress(), s.context.model, *s.optimizer, times.step, steps, s.metrics.get()) ==
        StageCheckpointer::Decision::kStop) {
      s.summary.skipped = s.nonfinite.skipped();
      s.summary.stopped = true;
      s.summary.seconds = seconds_since(s.start);
      return s.summary;
    }
  }
  validate(steps);
  finish();
  return s.summary;
}

StageLoop::StepResult StageLoop::train_step(int64_t step) {
  State& s = *s_;
  const data::Batch batch = s.loader->next();
  const StepStats once = s.stage.prepare_step(step, batch, s.timer);
  const int64_t passes = s.stage.passes();
  StepResult result;
  for (int64_t pass = 0; pass < passes; ++pass) {
    StepStats stats = pass == 0 ? once : StepStats{};
    run_pass(step, batch, pass, stats);
    stats.sum_over(s.groups.dp);
    const double loss = stats.loss / s.dp();
    result.grad_norm = global_grad_norm(s.params.shards, s.groups.tp);
    result.lr = s.schedule.at(step * passes + pass);
    if (!s.nonfinite.finite(loss, result.grad_norm, step + 1, s.groups.world, s.metrics.get())) continue;
    if (s.config.train.grad_clip > 0) clip_grad_norm(s.params.shards, result.grad_norm, s.config.train.grad_clip);
    s.checkpointer->before_update();  // an asynchronous save may still be copying the weights
    s.optimizer->step(result.lr);
    result.last_loss = loss;
    ++result.updates;
    if (pass == 0) result.sums += stats;
    else result.sums.add_losses(stats);
  }
  return result;
}

// One forward/backward over every micro-batch of the local batch, the gradients averaged
// over dp during the last backward. `stats` gains every micro-batch's.
void StageLoop::run_pass(int64_t step, const data::Batch& batch, int64_t pass, StepStats& stats) {
  State& s = *s_;
  const bool inject = s.inject_nonfinite.count(step + 1) != 0;  // train.inject_nonfinite is 1-based
  s.stage.begin_pass(pass);
  s.synchronizer->zero_grad();
  {
    const StepTimer::Scope timed = s.timer.time(Phase::kForwardBackward);
    const int64_t local = s.local_batch(), micro = s.micro_batch();
    for (int64_t begin = 0; begin < local; begin += micro) {
      const int64_t end = std::min(local, begin + micro);
      const data::Batch part = eval::slice_batch(batch, begin, end);
      s.synchronizer->set_sync_enabled(end == local);
      MicroBatchLoss out;
      {
        // Matrix work in bf16 under autocast (runtime.precision); backward outside the scope.
        const model::AutocastScope autocast(s.context.precision, s.context.torch_device());
        out = s.stage.forward(MicroBatch{part, begin, end, local, pass}, s.timer);
      }
      if (inject) out.loss = out.loss * std::numeric_limits<double>::quiet_NaN();
      out.loss.backward();
      out.stats.loss = out.loss.item<double>();
      stats += out.stats;
    }
    s.synchronizer->finish();
  }
  s.stage.end_pass(pass);
}

void StageLoop::record_step(int64_t step, const StepResult& result, const StepTimes& times) {
  State& s = *s_;
  const LogWindow& w = s.window;
  const StepTimes& t = s.window_times;
  const double n = static_cast<double>(s.window_steps);
  const auto mean_ms = [&](double seconds) { return 1000.0 * seconds / n; };
  const auto share = [&](double part) { return 100.0 * part / t.step; };
  const double mean_loss = w.mean(&StepStats::loss, s.dp());
  const double tokens_per_s = w.sums.positions / t.step;
  const double mfu = 100.0 * w.sums.flops / t.step / s.peak_flops;
  std::string stage_text;
  json record{{"type", "step"},
              {"step", step + 1},
              {"loss", mean_loss},
              {"step_loss", result.last_loss},
              {"grad_norm", result.grad_norm},
              {"lr", result.lr},
              {"ms_per_step", 1000.0 * times.step},
              {"comm_ms", 1000.0 * times.comm},
              // rank 0's time split, means over the steps since the last record
              {"window_ms_per_step", mean_ms(t.step)},
              {"rollout_ms", mean_ms(t.of(Phase::kRollout))},
              {"teacher_ms", mean_ms(t.of(Phase::kTeacher))},
              {"student_ms", mean_ms(t.of(Phase::kForwardBackward))},
              {"window_comm_ms", mean_ms(t.comm)},
              {"other_ms", mean_ms(t.other())},
              {"rollout_share", t.of(Phase::kRollout) / t.step},
              {"tokens_per_s", tokens_per_s},
              {"mfu", mfu},
              {"elapsed_s", seconds_since(s.start)}};
  s.stage.describe_window(w, s.dp(), t.step, stage_text, record);
  std::string split;
  if (t.of(Phase::kRollout) > 0) split += "rollout " + std::to_string(std::lround(share(t.of(Phase::kRollout)))) + "%, ";
  if (t.of(Phase::kTeacher) > 0) split += "teacher " + std::to_string(std::lround(share(t.of(Phase::kTeacher)))) + "%, ";
  split += "student " + std::to_string(std::lround(share(t.of(Phase::kForwardBackward)))) + "%, comm " +
           std::to_string(std::lround(share(t.comm))) + "%";
  const double eta = s.step_ema * static_cast<double>(s.stage_config.steps - step - 1);
  char line[512];
  std::snprintf(line, sizeof line,
                "step %lld/%lld | %s | loss %.4f%s | grad %.3f | lr %.2e | %.0f ms/step (%s) | %.0f tok/s | "
                "MFU %.1f%% | ETA %s",
                static_cast<long long>(step + 1), static_cast<long long>(s.stage_config.steps), s.stage.label().c_str(),
                mean_loss, stage_text.c_str(), result.grad_norm, result.lr, mean_ms(t.step), split.c_str(),
                tokens_per_s, mfu, format_duration(eta).c_str());
  const int64_t skipped = s.nonfinite.skipped();
  CORD_LOG(kInfo) << line << (skipped > 0 ? " | skipped " + std::to_string(skipped) : "");
  if (s.metrics) {
    record["skipped"] = skipped;
    s.metrics->write(record);
  }
  s.window.clear();
  s.window_times = StepTimes{};
  s.window_steps = 0;
}

// Creates RUN_DIR/STAGE (rank 0), writes the resolved config and opens metrics.jsonl with a
// header record: stage, command, commit, host, layout, device, precision, plus `fields`. A
// resumed stage keeps the earlier attempts' records; the new header follows them.
void StageLoop::open_run_directory(const json& fields) {
  State& s = *s_;
  if (!s.rank0()) return;
  make_directories(s.run_dir);
  write_file_atomically(s.run_dir + "/config.toml", to_toml(s.config));
  s.metrics = std::make_unique<MetricsFile>(s.run_dir + "/metrics.jsonl", /*append=*/s.resumed.has_value());
  json header{{"type", "header"},
              {"stage", name_of(s.config.train.stage)},
              {"command", s.command_line},
              {"commit", build_info().commit},
              {"host", process_host()},
              {"world", s.groups.world.size()},
              {"dp", s.groups.dims.dp()},
              {"tp", s.groups.dims.tp()},
              {"device", s.context.device},
              {"precision", model::precision_name(s.context.precision)}};
  header.update(fields);
  s.metrics->write(header);
}

// The end of the stage, collective: the weights to RUN_DIR/STAGE/model.h5, the end record
// and the closing log line.
void StageLoop::finish() {
  State& s = *s_;
  StageSummary& summary = s.summary;
  const std::string stage = name_of(s.config.train.stage);
  summary.skipped = s.nonfinite.skipped();
  summary.weights_path = s.run_dir + "/model.h5";
  ckpt::save_weights(summary.weights_path, s.context.model, s.groups,
                     {stage, summary.steps, to_toml(s.config), s.context.vocabulary_fingerprint()});
  summary.seconds = seconds_since(s.start);
  if (s.metrics) {
    s.metrics->write({{"type", "end"},
                      {"steps", summary.steps},
                      {"skipped", summary.skipped},
                      {"last_loss", summary.last_loss},
                      {"seconds", summary.seconds},
                      {"weights", summary.weights_path},
                      {"optimizer_steps", s.optimizer->steps_taken()}});
  }
  CORD_LOG(kInfo) << "train " << stage << ": done, " << summary.steps << " steps (" << summary.skipped
                  << " skipped) in " << format_duration(summary.seconds) << ", last loss " << summary.last_loss
                  << " -> " << summary.weights_path;
}

void StageLoop::validate(int64_t step) {
  State& s = *s_;
  if (s.config.train.val_items == 0) return;
  const auto start = Clock::now();
  set_progress_phase("validation");
  const Validation v = s.stage.validate();
  const double seconds = seconds_since(start);
  CORD_LOG(kInfo) << "validation @ step " << step << " | " << v.summary << " over " << s.config.train.val_items
                  << " items (" << seconds << " s)";
  if (s.rank0()) {
    json record{{"type", "validation"}, {"step", step}};
    record.update(v.fields);
    record["seconds"] = seconds;
    s.metrics->write(record);
  }
  s.context.model->train();
}

}  // namespace cord::train
