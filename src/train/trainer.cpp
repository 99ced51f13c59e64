#include "cord/train/trainer.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <numeric>
#include <nlohmann/json.hpp>
#include <set>

#include "cord/ckpt/model_weights.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"
#include "cord/core/log.hpp"
#include "cord/data/corpus.hpp"
#include "cord/data/loader.hpp"
#include "cord/data/rng.hpp"
#include "cord/eval/evaluate.hpp"
#include "cord/eval/prompts.hpp"
#include "cord/model/data_parallel.hpp"
#include "cord/model/model_stats.hpp"
#include "cord/model/precision.hpp"
#include "cord/train/checkpointing.hpp"
#include "cord/train/optimizer.hpp"
#include "cord/train/stage_support.hpp"

namespace cord::train {
namespace {

using nlohmann::json;
using eval::Input;
using eval::Task;

}  // namespace

struct Trainer::State {
  Config config;
  const comm::ProcessGroups& groups;
  std::string device;
  std::string command_line;
  bool align = false;
  StageConfig stage;
  std::string run_dir;
  std::unique_ptr<data::CorpusReader> corpus;
  model::Lalm model{nullptr};
  std::vector<model::ParamShard> trainable;
  int64_t total_params = 0, trainable_params = 0;
  std::unique_ptr<model::GradientSynchronizer> synchronizer;
  std::unique_ptr<AdamW> optimizer;
  LrSchedule schedule;
  std::unique_ptr<data::CorpusLoader> loader;
  std::unique_ptr<MetricsFile> metrics;  // rank 0
  std::unique_ptr<StageCheckpointer> checkpointer;
  std::optional<ckpt::Progress> resumed;
  std::set<int64_t> inject_nonfinite;
  model::Precision precision = model::Precision::kFp32;
  double peak_flops = 0;  // summed over the world's ranks

  State(const Config& c, const comm::ProcessGroups& g, std::string d, std::string cmd)
      : config(c), groups(g), device(std::move(d)), command_line(std::move(cmd)) {}

  Input input() const { return align ? Input::kAudio : Input::kText; }

  // The task of corpus row `row` in this stage: a fixed draw per (seed, row), so that an
  // item keeps its task over epochs and layouts.
  Task task_of(int64_t row) const {
    const double share = align ? config.train.align_solution_fraction : 1.0 - config.train.text_repeat_fraction;
    const uint64_t draw = data::mix64(data::mix64(static_cast<uint64_t>(config.train.seed) ^ 0x7461736bULL) +
                                      static_cast<uint64_t>(row));
    const double u = static_cast<double>(draw >> 11) * 0x1.0p-53;
    return u < share ? Task::kSolve : Task::kTranscribe;
  }

  std::vector<Task> tasks_of(const data::Batch& batch) const {
    std::vector<Task> tasks;
    for (const int64_t row : batch.items) tasks.push_back(task_of(row));
    return tasks;
  }

  // Mean response-token loss of the solve task over the first train.val_items items of
  // the validation split (dealt round-robin to the dp ranks), under no-grad.
  double validation_loss() {
    torch::NoGradGuard no_grad;
    std::vector<int64_t> rows;
    int64_t seen = 0;
    for (int64_t row = 0; row < corpus->size() && seen < config.train.val_items; ++row) {
      if (corpus->split(row) != data::Split::kValidation) continue;
      if (seen++ % groups.dp.size() == groups.dp.rank()) rows.push_back(row);
    }
    at::Tensor totals = torch::zeros({2}, torch::kDouble);  // [loss sum, tokens]
    const auto chunk = static_cast<size_t>(std::max<int64_t>(1, config.eval.batch));
    for (size_t begin = 0; begin < rows.size(); begin += chunk) {
      const data::Batch batch =
          data::load_batch(*corpus, {rows.begin() + begin, rows.begin() + std::min(rows.size(), begin + chunk)});
      const model::AutocastScope autocast(precision, torch::Device(device));
      const model::DecoderBatch inputs =
          eval::training_inputs(model, batch, input(), std::vector<Task>(batch.items.size(), Task::kSolve));
      const at::Tensor logits = model->decoder->forward(inputs.embeds, inputs.positions, inputs.mask);
      const model::TokenLoss loss = model::response_cross_entropy(logits, inputs.targets, groups.tp);
      totals[0] += loss.sum.item<double>();
      totals[1] += static_cast<double>(loss.tokens);
    }
    if (groups.dp.size() > 1) comm::all_reduce(groups.dp, totals, comm::ReduceOp::kSum);
    return totals[1].item<double>() > 0 ? totals[0].item<double>() / totals[1].item<double>() : 0.0;
  }

  // Model FLOPs of one forward+backward over `batch` (PaLM convention, model_stats.hpp):
  // 3x forward for trained parts; a frozen decoder costs 2x forward (input gradients only).
  double step_flops(const data::Batch& batch, const model::DecoderBatch& inputs) const {
    const int64_t positions = std::accumulate(inputs.lengths.begin(), inputs.lengths.end(), int64_t{0});
    const int64_t context = inputs.embeds.size(1);
    const int64_t frames = batch.features.size(1);
    const model::ModelStats stats = model::compute_model_stats(config.model, context, std::max<int64_t>(frames, 1));
    const double decoder = (align ? 2.0 : 3.0) * stats.decoder_forward_flops_per_token * static_cast<double>(positions);
    const double encoder =
        align ? 3.0 * stats.encoder_forward_flops_per_frame * static_cast<double>(batch.feature_lengths.sum().item<int64_t>())
              : 0.0;
    return decoder + encoder;
  }
};

Trainer::Trainer(const Config& config, const comm::ProcessGroups& groups, const std::string& device,
                 const std::string& command_line)
    : state_(std::make_unique<State>(config, groups, device, command_line)) {
  State& s = *state_;
  const TrainConfig& tc = s.config.train;
  s.stage = stage_config(tc);
  s.align = tc.stage == "align";
  s.inject_nonfinite = parse_step_list(tc.inject_nonfinite, "train.inject_nonfinite");
  s.precision = model::resolve_precision(s.config.runtime.precision, device);
  s.run_dir = tc.run_dir + "/" + tc.stage;

  if (access(tc.corpus.c_str(), R_OK) != 0) {
    throw UsageError("train.corpus " + tc.corpus + " does not exist (make it with: cord corpus synth --out " +
                     tc.corpus + ")");
  }
  s.corpus = std::make_unique<data::CorpusReader>(tc.corpus);
  const int vocab = s.corpus->tokenizer().size();
  if (s.config.model.vocab_size < vocab) {
    throw UsageError("model.vocab_size=" + std::to_string(s.config.model.vocab_size) +
                     " is smaller than the vocabulary of corpus " + tc.corpus + " (" + std::to_string(vocab) +
                     " tokens)");
  }

  s.model = model::Lalm(s.config.model, groups.tp);
  s.model->to(torch::Device(device));
  const std::string init = !tc.init.empty() ? tc.init : s.align ? tc.run_dir + "/text/model.h5" : "";
  if (!init.empty()) {
    const ckpt::WeightsHeader header = ckpt::load_weights(init, s.model);
    ckpt::check_same_vocab(header, s.corpus->tokenizer().vocab(), tc.corpus);
    CORD_LOG(kInfo) << "train " << tc.stage << ": starting from " << init << " (stage " << header.stage << ", "
                    << header.step << " steps, commit " << header.commit << ")";
  }
  // text: the decoder learns (the audio path is unused); align: the decoder is frozen.
  if (s.align) {
    for (at::Tensor& p : s.model->decoder->parameters()) p.requires_grad_(false);
  } else {
    for (at::Tensor& p : s.model->encoder->parameters()) p.requires_grad_(false);
    for (at::Tensor& p : s.model->projector->parameters()) p.requires_grad_(false);
  }
  TrainableParameters params = trainable_parameters(s.model, groups.tp);
  s.total_params = params.total;
  s.trainable_params = params.trainable;
  s.trainable = params.shards;
  s.synchronizer = std::make_unique<model::GradientSynchronizer>(params.tensors, groups.dp, tc.bucket_mb);
  AdamWOptions adamw;
  adamw.beta1 = tc.beta1;
  adamw.beta2 = tc.beta2;
  adamw.weight_decay = tc.weight_decay;
  s.optimizer = std::make_unique<AdamW>(s.trainable, adamw, tc.zero1 ? &groups.dp : nullptr);
  s.schedule = LrSchedule{s.stage.lr, s.stage.min_lr, s.stage.warmup_steps, s.stage.steps};

  data::LoaderOptions loader_options;
  loader_options.split = data::Split::kTrain;
  loader_options.global_batch = s.stage.global_batch;
  loader_options.seed = static_cast<uint64_t>(tc.seed);
  loader_options.bucket_window = s.align ? 8 : 0;  // audio lengths vary 4x: bucket to pad less
  s.loader = std::make_unique<data::CorpusLoader>(*s.corpus, data::shard_options(loader_options, groups.dims,
                                                                                   groups.world.rank()));
  s.checkpointer = std::make_unique<StageCheckpointer>(s.config, groups, s.run_dir, device, s.corpus->tokenizer().vocab());
  s.resumed = s.checkpointer->resume(s.model, *s.optimizer, *s.loader);
  at::Tensor peak = torch::tensor({measure_matmul_peak(device, s.precision)}, torch::kDouble);
  comm::all_reduce(groups.world, peak, comm::ReduceOp::kSum);
  s.peak_flops = peak.item<double>();

  json header{{"corpus", tc.corpus},
              {"init", init},
              {"params", s.total_params},
              {"trainable_params", s.trainable_params},
              {"matmul_peak_flops", s.peak_flops}};
  header.update(s.checkpointer->resume_record());
  s.metrics = open_stage_directory(s.run_dir, s.config, groups, tc.stage, s.command_line, device, s.precision,
                                   header, s.resumed.has_value());
  comm::barrier(groups.world);
}

Trainer::~Trainer() = default;

StageSummary Trainer::run() {
  State& s = *state_;
  const TrainConfig& tc = s.config.train;
  const comm::ProcessGroups& groups = s.groups;
  const bool rank0 = groups.world.rank() == 0;
  const int64_t local_batch = s.stage.global_batch / groups.dims.dp();
  const int64_t micro = tc.micro_batch > 0 ? std::min(tc.micro_batch, local_batch) : local_batch;
  CORD_LOG(kInfo) << "train " << tc.stage << ": " << s.stage.steps << " steps of " << s.stage.global_batch
                  << " items (" << local_batch << " per dp rank, micro-batches of " << micro << "), "
                  << s.trainable_params << " of " << s.total_params << " parameters trained, "
                  << s.loader->batches_per_epoch() << " steps per epoch -> " << s.run_dir;

  // Validation: loss of the solve task on the stage's input, and greedy accuracy.
  auto validate = [&](int64_t step) {
    if (tc.val_items == 0) return;
    const auto start = Clock::now();
    const double loss = s.validation_loss();
    eval::EvalOptions options;
    options.split = data::Split::kValidation;
    options.max_items = tc.val_items;
    options.text = !s.align;
    options.audio = s.align;
    options.max_new_tokens = s.config.eval.max_new_tokens;
    options.batch = s.config.eval.batch;
    options.precision = s.precision;
    const eval::EvalOutcome outcome = eval::evaluate(s.model, *s.corpus, options, groups);
    const double accuracy = s.align ? outcome.scores.audio_accuracy() : outcome.scores.text_accuracy();
    json record{{"type", "validation"}, {"step", step}, {"loss", loss}, {"accuracy", accuracy},
                {"seconds", seconds_since(start)}, {"scores", eval::scores_json(outcome.scores)}};
    CORD_LOG(kInfo) << "validation @ step " << step << " | loss " << std::fixed << std::setprecision(4) << loss
                    << " | " << eval::input_name(s.input()) << " accuracy " << std::setprecision(1) << accuracy
                    << "% over " << tc.val_items << " items (" << seconds_since(start) << " s)";
    if (rank0) s.metrics->write(record);
    s.model->train();
  };

  const auto stage_start = Clock::now();
  StageSummary summary;
  NonfiniteGuard nonfinite(tc.stage, tc.max_nonfinite_steps);
  int64_t first_step = 0;
  if (s.resumed) {
    first_step = summary.steps = s.resumed->step;
    summary.last_loss = s.resumed->last_loss;
    nonfinite.restore(s.resumed->skipped, s.resumed->skipped_in_a_row);
  }
  double step_ema = 0;
  // Step lines report means over the window of steps since the previous line.
  double window_flops = 0, window_tokens = 0, window_seconds = 0, window_loss = 0;
  int64_t window_steps = 0;
  s.model->train();
  for (int64_t step = first_step; step < s.stage.steps; ++step) {
    const auto step_start = Clock::now();
    const double blocked_at_start = comm::blocked_seconds();
    const double lr = s.schedule.at(step);
    const data::Batch batch = s.loader->next();
    const std::vector<Task> tasks = s.tasks_of(batch);

    // Response tokens of the whole global batch: the loss is their mean.
    int64_t local_tokens = 0;
    for (int64_t b = 0; b < static_cast<int64_t>(batch.items.size()); ++b) {
      local_tokens += eval::response_length(batch, b, tasks[static_cast<size_t>(b)]);
    }
    at::Tensor counts = torch::tensor({local_tokens}, torch::kInt64);
    if (groups.dp.size() > 1) comm::all_reduce(groups.dp, counts, comm::ReduceOp::kSum);
    const double global_tokens = static_cast<double>(counts.item<int64_t>());
    // The synchronizer averages over dp, so each rank's share is scaled up by dp.
    const double scale = static_cast<double>(groups.dp.size()) / global_tokens;

    s.synchronizer->zero_grad();
    double loss_sum = 0, flops = 0, positions = 0;
    for (int64_t begin = 0; begin < local_batch; begin += micro) {
      const int64_t end = std::min(local_batch, begin + micro);
      const data::Batch part = eval::slice_batch(batch, begin, end);
      const std::vector<Task> part_tasks(tasks.begin() + begin, tasks.begin() + end);
      s.synchronizer->set_sync_enabled(end == local_batch);
      at::Tensor scaled;
      model::DecoderBatch inputs;
      {
        // Matrix work in bf16 under autocast (runtime.precision); backward outside the scope.
        const model::AutocastScope autocast(s.precision, torch::Device(s.device));
        inputs = eval::training_inputs(s.model, part, s.input(), part_tasks);
        const at::Tensor logits = s.model->decoder->forward(inputs.embeds, inputs.positions, inputs.mask);
        scaled = model::response_cross_entropy(logits, inputs.targets, groups.tp).sum * scale;
      }
      if (s.inject_nonfinite.count(step + 1) != 0) scaled = scaled * std::numeric_limits<double>::quiet_NaN();
      scaled.backward();
      loss_sum += scaled.item<double>();
      flops += s.step_flops(part, inputs);
      positions += static_cast<double>(std::accumulate(inputs.lengths.begin(), inputs.lengths.end(), int64_t{0}));
    }
    s.synchronizer->finish();
    at::Tensor loss_total = torch::tensor({loss_sum / groups.dp.size()}, torch::kDouble);
    if (groups.dp.size() > 1) comm::all_reduce(groups.dp, loss_total, comm::ReduceOp::kSum);
    const double loss = loss_total.item<double>();
    const double grad_norm = global_grad_norm(s.trainable, groups.tp);

    summary.steps = step + 1;
    if (nonfinite.finite(loss, grad_norm, step + 1, groups.world, s.metrics.get())) {
      if (tc.grad_clip > 0) clip_grad_norm(s.trainable, grad_norm, tc.grad_clip);
      s.optimizer->step(lr);
      summary.last_loss = loss;

      // Throughput over all ranks: positions and FLOPs summed over dp (tp ranks share the work).
      const double step_seconds = seconds_since(step_start);
      const double comm_seconds = comm::blocked_seconds() - blocked_at_start;  // rank 0's
      step_ema = step == first_step ? step_seconds : 0.9 * step_ema + 0.1 * step_seconds;
      at::Tensor work = torch::tensor({positions, flops}, torch::kDouble);
      if (groups.dp.size() > 1) comm::all_reduce(groups.dp, work, comm::ReduceOp::kSum);
      window_tokens += work[0].item<double>();
      window_flops += work[1].item<double>();
      window_seconds += step_seconds;
      window_loss += loss;
      ++window_steps;
      if ((step + 1) % tc.log_every == 0 || step + 1 == s.stage.steps) {
        const double tokens_per_s = window_tokens / window_seconds;
        const double mean_loss = window_loss / static_cast<double>(window_steps);
        const double mfu = 100.0 * window_flops / window_seconds / s.peak_flops;
        const double eta = step_ema * static_cast<double>(s.stage.steps - step - 1);
        char line[256];
        std::snprintf(line, sizeof line,
                      "step %lld/%lld | %s | loss %.4f | grad %.3f | lr %.2e | %.0f ms/step | %.0f tok/s | MFU %.1f%% | ETA %s",
                      static_cast<long long>(step + 1), static_cast<long long>(s.stage.steps), tc.stage.c_str(), mean_loss,
                      grad_norm, lr, 1000.0 * window_seconds / static_cast<double>(window_steps), tokens_per_s, mfu,
                      format_duration(eta).c_str());
        summary.skipped = nonfinite.skipped();
        report_step(line,
                    {{"type", "step"},
                     {"step", step + 1},
                     {"loss", mean_loss},
                     {"step_loss", loss},
                     {"grad_norm", grad_norm},
                     {"lr", lr},
                     {"ms_per_step", 1000.0 * step_seconds},
                     {"comm_ms", 1000.0 * comm_seconds},
                     {"tokens_per_s", tokens_per_s},
                     {"mfu", mfu},
                     {"elapsed_s", seconds_since(stage_start)}},
                    summary.skipped, s.metrics.get());
        window_tokens = window_flops = window_seconds = window_loss = 0;
        window_steps = 0;
      }
    }  // finite step
    if (tc.val_every > 0 && (step + 1) % tc.val_every == 0 && step + 1 < s.stage.steps) validate(step + 1);

    const ckpt::Progress progress = stage_progress(tc.stage, step + 1, nonfinite, summary.last_loss, *s.loader);
    if (s.checkpointer->after_step(progress, s.model, *s.optimizer, seconds_since(step_start), s.stage.steps,
                                   s.metrics.get()) == StageCheckpointer::Decision::kStop) {
      summary.skipped = nonfinite.skipped();
      summary.stopped = true;
      summary.seconds = seconds_since(stage_start);
      return summary;
    }
  }
  validate(s.stage.steps);

  summary.skipped = nonfinite.skipped();
  finish_stage(summary, s.run_dir, tc.stage, s.model, groups, s.config, s.corpus->tokenizer().vocab(), stage_start,
               s.metrics.get(), json::object());
  return summary;
}

}  // namespace cord::train
