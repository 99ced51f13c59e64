#include "cord/train/distiller.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <nlohmann/json.hpp>

#include "cord/ckpt/model_weights.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"
#include "cord/core/log.hpp"
#include "cord/data/corpus.hpp"
#include "cord/data/loader.hpp"
#include "cord/data/rng.hpp"
#include "cord/distill/judge.hpp"
#include "cord/distill/losses.hpp"
#include "cord/distill/rollouts.hpp"
#include "cord/eval/evaluate.hpp"
#include "cord/eval/prompts.hpp"
#include "cord/eval/scoring.hpp"
#include "cord/model/data_parallel.hpp"
#include "cord/model/precision.hpp"
#include "cord/model/tensor_parallel.hpp"
#include "cord/train/checkpointing.hpp"
#include "cord/train/optimizer.hpp"
#include "cord/train/stage_support.hpp"

namespace cord::train {
namespace {

using nlohmann::json;
using distill::TokenLoss;

// One step's diagnostics on this rank, summed over its micro-batches; the loss terms are
// the scaled contributions, so their dp average is the global loss.
struct StepStats {
  double loss = 0, token_loss = 0, sequence_loss = 0;
  double divergence_sum = 0, divergence_tokens = 0;  // unweighted per-token KL (KL methods)
  double reward_sum = 0, rewards = 0;                // judge rewards of the GRPO rollouts
  double rollout_tokens = 0, rollouts = 0;           // every decoded rollout
};

constexpr int kStatCount = 9;

// Where one rank's step time goes (rank 0's is logged). The parts partition the step:
// (on CUDA each part ends with a device synchronisation, so that GPU work counts where it is queued)
//   rollout  batched KV-cached generation of every rollout (and the text reference)
//   teacher  the teacher's no-grad forward over the token rollouts
//   student  the student's forward, the losses and backward, minus time blocked in collectives
//   comm     time blocked in collectives (gradient buckets, the stats all-reduce), wherever it falls
//   other    the rest: judge and advantages, batch slicing, clipping, the AdamW update
struct StepTimes {
  double step = 0, rollout = 0, teacher = 0, student = 0, comm = 0;
  double other() const { return std::max(0.0, step - rollout - teacher - student - comm); }
  StepTimes& operator+=(const StepTimes& t) {
    step += t.step, rollout += t.rollout, teacher += t.teacher, student += t.student, comm += t.comm;
    return *this;
  }
};

at::Tensor stats_tensor(const StepStats& s) {
  return torch::tensor({s.loss, s.token_loss, s.sequence_loss, s.divergence_sum, s.divergence_tokens, s.reward_sum,
                        s.rewards, s.rollout_tokens, s.rollouts},
                       torch::kDouble);
}

at::Tensor float32(const at::Tensor& t) { return at::isReducedFloatingType(t.scalar_type()) ? t.to(torch::kFloat) : t; }

double ratio_or_zero(double num, double den) { return den > 0 ? num / den : 0.0; }

}  // namespace

struct Distiller::State {
  Config config;
  const comm::ProcessGroups& groups;
  std::string device, command_line, run_dir, init;
  distill::MethodPlan plan;
  distill::Aggregation aggregation = distill::Aggregation::kSum;
  std::unique_ptr<distill::Judge> judge;
  std::unique_ptr<data::CorpusReader> corpus;
  model::Lalm model{nullptr};
  model::Lalm frozen_teacher{nullptr};  // cord.teacher = initial; empty: the current weights teach
  TrainableParameters params;
  std::unique_ptr<model::GradientSynchronizer> synchronizer;
  std::unique_ptr<AdamW> optimizer;
  LrSchedule schedule;
  std::unique_ptr<data::CorpusLoader> loader;
  std::unique_ptr<MetricsFile> metrics;  // world rank 0
  std::unique_ptr<StageCheckpointer> checkpointer;
  std::optional<ckpt::Progress> resumed;
  std::set<int64_t> inject_nonfinite;
  model::Precision precision = model::Precision::kFp32;

  State(const Config& c, const comm::ProcessGroups& g, std::string d, std::string cmd)
      : config(c), groups(g), device(std::move(d)), command_line(std::move(cmd)) {}

  model::Lalm& teacher() { return frozen_teacher.is_empty() ? model : frozen_teacher; }
  at::Device torch_device() const { return torch::Device(device); }

  // rewards [P, N] of the group rollouts: the judge on each rollout's final answer against
  // the text reference's (or the corpus answer).
  at::Tensor rewards(const data::Batch& batch, const distill::Rollouts& rollouts) const {
    const data::Tokenizer& tokenizer = corpus->tokenizer();
    const int64_t prompts = static_cast<int64_t>(batch.items.size());
    const int64_t n = plan.group_size;
    at::Tensor out = torch::zeros({prompts, n}, torch::kFloat);
    auto out_a = out.accessor<float, 2>();
    for (int64_t p = 0; p < prompts; ++p) {
      const std::optional<std::string> reference = eval::extract_answer(tokenizer, rollouts.reference[static_cast<size_t>(p)]);
      for (int64_t i = 0; i < n; ++i) {
        const std::optional<std::string> answer =
            eval::extract_answer(tokenizer, rollouts.group[static_cast<size_t>(p * n + i)]);
        out_a[p][i] = static_cast<float>(judge->reward(answer, reference, batch.answers[static_cast<size_t>(p)]));
      }
    }
    return out;
  }

  // The loss of prompts [begin, end) of the local batch `part` (already sliced to them),
  // scaled as the header describes, for backward. `advantages` [P_local, N]; with PPO,
  // `old_log_probs` [P_local, N] (undefined on the first inner step, when the ratio is 1)
  // and the sequence log-probabilities of this pass are written to `log_probs` rows.
  // `teacher_seconds` accumulates the teacher forward's time (net of collectives).
  at::Tensor chunk_loss(const data::Batch& part, const distill::Rollouts& rollouts, int64_t begin, int64_t end,
                        int64_t local_prompts, double token_scale_per_token, const at::Tensor& advantages,
                        const at::Tensor& old_log_probs, at::Tensor& log_probs, StepStats& stats,
                        double& teacher_seconds) {
    const CordConfig& cc = config.cord;
    const comm::ProcessGroup& tp = groups.tp;
    const model::SpecialTokens tokens = eval::corpus_special_tokens();
    const int64_t chunk = end - begin;
    const int64_t n = plan.group_size;
    const bool has_token = plan.token_loss != TokenLoss::kNone;
    const double prompt_share = static_cast<double>(chunk) / static_cast<double>(local_prompts);

    // Student rows: [token rollouts of the chunk][group rollouts of the chunk], audio prompts.
    model::TokenRows responses;
    std::vector<model::SequenceSpec> specs;
    auto add_student = [&](int64_t prompt, const std::vector<int64_t>& response) {
      model::SequenceSpec spec;
      spec.audio_row = prompt - begin;
      spec.response = response;
      specs.push_back(std::move(spec));
      responses.push_back(response);
    };
    for (int64_t p = begin; p < end && has_token; ++p) add_student(p, rollouts.token[static_cast<size_t>(p)]);
    for (int64_t p = begin; p < end; ++p) {
      for (int64_t i = 0; i < n; ++i) add_student(p, rollouts.group[static_cast<size_t>(p * n + i)]);
    }
    const int64_t token_rows = has_token ? chunk : 0;

    at::Tensor loss = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(torch_device()));
    const auto [frames, frame_lengths] =
        model->encode_audio(part.features.to(torch_device()), part.feature_lengths.to(torch_device()));
    const model::DecoderBatch student_inputs =
        model::assemble_sequences(model, frames, frame_lengths, specs, tokens, model::Padding::kRight);
    const at::Tensor logits = model->decoder->forward(student_inputs.embeds, student_inputs.positions, student_inputs.mask);
    const distill::ResponseLogits student = distill::response_logits(logits, student_inputs, responses);

    if (has_token) {
      const at::Tensor s_logits = student.logits.narrow(0, 0, token_rows);
      const at::Tensor mask = student.mask.narrow(0, 0, token_rows);
      const model::TokenRows token_responses(responses.begin(), responses.begin() + token_rows);
      at::Tensor t_logits;
      if (plan.token_loss != TokenLoss::kCrossEntropy) {
        // The teacher reads the text question and the same rollout; it never gets a gradient.
        wait_for_device(torch_device());  // the student's forward is not the teacher's time
        const auto teacher_start = Clock::now();
        const double blocked_before = comm::blocked_seconds();  // tp collectives count as comm
        const model::TokenRows questions = eval::token_rows(part.question, part.question_mask);
        t_logits = distill::teacher_response_logits(teacher(), questions, token_responses, s_logits.size(1));
        wait_for_device(torch_device());
        teacher_seconds += seconds_since(teacher_start) - (comm::blocked_seconds() - blocked_before);
      }
      const distill::TokenTerms terms =
          distill::token_terms(plan.token_loss, s_logits, t_logits, student.targets.narrow(0, 0, token_rows), mask,
                               plan.alpha, plan.beta, cc.top_k, tp);
      if (terms.divergence.defined()) {
        stats.divergence_sum += (terms.divergence.detach() * mask.to(terms.divergence.scalar_type())).sum().item<double>();
        stats.divergence_tokens += mask.sum().item<double>();
      }
      // token_mean: a mean over the global batch's tokens; sum / sequence_mean: over its rollouts.
      const double scale = aggregation == distill::Aggregation::kTokenMean
                               ? mask.sum().item<double>() * token_scale_per_token
                               : prompt_share;
      const at::Tensor token_term = distill::aggregate(terms.per_position, mask, aggregation) * scale;
      stats.token_loss += token_term.item<double>();
      loss = loss + cc.token_loss_weight * token_term;
    }

    if (plan.grpo) {
      const int64_t rows = chunk * n;
      const at::Tensor g_logits = student.logits.narrow(0, token_rows, rows);
      const at::Tensor targets = student.targets.narrow(0, token_rows, rows);
      const at::Tensor mask = student.mask.narrow(0, token_rows, rows);
      const at::Tensor nll = model::vocab_parallel_cross_entropy(float32(g_logits), targets, tp);
      const at::Tensor sequence_log_probs = -(nll * mask.to(nll.scalar_type())).sum(1).view({chunk, n});  // [P_c, N]
      const at::Tensor a = advantages.narrow(0, begin, chunk).to(sequence_log_probs.device());
      at::Tensor sequence_term;
      if (cc.ppo_inner_steps > 1 && old_log_probs.defined()) {
        // PPO: the sequence ratio against the rollout-time policy, clipped.
        const at::Tensor ratio = (sequence_log_probs - old_log_probs.narrow(0, begin, chunk)).exp();
        const at::Tensor surrogate =
            torch::min(ratio * a, ratio.clamp(1.0 - cc.ppo_clip, 1.0 + cc.ppo_clip) * a);
        sequence_term = -surrogate.mean();
      } else {
        sequence_term = distill::grpo_loss(sequence_log_probs, a);
      }
      if (log_probs.defined()) log_probs.narrow(0, begin, chunk).copy_(sequence_log_probs.detach());
      sequence_term = sequence_term * prompt_share;
      stats.sequence_loss += sequence_term.item<double>();
      loss = loss + cc.sequence_loss_weight * sequence_term;
    }
    stats.loss += loss.item<double>();
    return loss;
  }
};

Distiller::Distiller(const Config& config, const comm::ProcessGroups& groups, const std::string& device,
                     const std::string& command_line)
    : state_(std::make_unique<State>(config, groups, device, command_line)) {
  State& s = *state_;
  const TrainConfig& tc = s.config.train;
  const CordConfig& cc = s.config.cord;
  CORD_CHECK(tc.stage == "distill", "Distiller runs train.stage = distill");
  s.plan = distill::plan_for(cc);
  s.aggregation = distill::parse_aggregation(cc.aggregation);
  s.judge = distill::make_judge(cc.judge, cc.judge_tolerance);
  s.inject_nonfinite = parse_step_list(tc.inject_nonfinite, "train.inject_nonfinite");
  s.precision = model::resolve_precision(s.config.runtime.precision, device);
  s.run_dir = tc.run_dir + "/distill";
  const StageConfig& stage = tc.distill;

  if (access(tc.corpus.c_str(), R_OK) != 0) {
    throw UsageError("train.corpus " + tc.corpus + " does not exist (make it with: cord corpus synth --out " +
                     tc.corpus + ")");
  }
  s.corpus = std::make_unique<data::CorpusReader>(tc.corpus);
  s.init = !tc.init.empty() ? tc.init : tc.run_dir + "/align/model.h5";
  if (access(s.init.c_str(), R_OK) != 0) {
    throw UsageError("train.init " + s.init +
                     " does not exist: the distill stage starts from a base model (run the text and align stages, "
                     "or set train.init)");
  }
  auto load = [&](model::Lalm& m) {
    m = model::Lalm(s.config.model, groups.tp);
    m->to(s.torch_device());
    const ckpt::WeightsHeader header = ckpt::load_weights(s.init, m);
    ckpt::check_same_vocab(header, s.corpus->tokenizer().vocab(), tc.corpus);
    return header;
  };
  const ckpt::WeightsHeader header = load(s.model);
  CORD_LOG(kInfo) << "train distill: method " << cc.method << ", starting from " << s.init << " (stage "
                  << header.stage << ", " << header.step << " steps, commit " << header.commit << ")";
  if (cc.teacher == "initial") {
    load(s.frozen_teacher);
    for (at::Tensor& p : s.frozen_teacher->parameters()) p.requires_grad_(false);
  }

  const std::vector<std::string> trainable = split_comma_list(cc.trainable);
  auto learns = [&](const char* group) { return std::find(trainable.begin(), trainable.end(), group) != trainable.end(); };
  for (at::Tensor& p : s.model->encoder->parameters()) p.requires_grad_(learns("encoder"));
  for (at::Tensor& p : s.model->projector->parameters()) p.requires_grad_(learns("projector"));
  for (at::Tensor& p : s.model->decoder->parameters()) p.requires_grad_(learns("decoder"));
  s.params = trainable_parameters(s.model, groups.tp);
  s.synchronizer = std::make_unique<model::GradientSynchronizer>(s.params.tensors, groups.dp, tc.bucket_mb);
  AdamWOptions adamw;
  adamw.beta1 = tc.beta1;
  adamw.beta2 = tc.beta2;
  adamw.weight_decay = tc.weight_decay;
  s.optimizer = std::make_unique<AdamW>(s.params.shards, adamw, tc.zero1 ? &groups.dp : nullptr);
  if (cc.decoder_lr_scale != 1.0 && learns("decoder")) {
    const int64_t scaled = s.optimizer->scale_lr("decoder.", cc.decoder_lr_scale);
    CORD_CHECK(scaled > 0, "cord.decoder_lr_scale: no trainable parameter is named decoder.*");
    CORD_LOG(kInfo) << "train distill: the decoder's " << scaled << " parameters learn at " << cc.decoder_lr_scale
                    << "x the learning rate";
  }
  s.schedule = LrSchedule{stage.lr, stage.min_lr, stage.warmup_steps, stage.steps * cc.ppo_inner_steps};

  data::LoaderOptions loader_options;
  loader_options.split = data::Split::kTrain;
  loader_options.global_batch = stage.global_batch;
  loader_options.seed = static_cast<uint64_t>(tc.seed);
  loader_options.bucket_window = 8;  // audio lengths vary: bucket to pad less
  s.loader = std::make_unique<data::CorpusLoader>(*s.corpus, data::shard_options(loader_options, groups.dims,
                                                                                   groups.world.rank()));
  s.checkpointer = std::make_unique<StageCheckpointer>(s.config, groups, s.run_dir, device, s.corpus->tokenizer().vocab());
  s.resumed = s.checkpointer->resume(s.model, *s.optimizer, *s.loader);
  json stage_header{{"corpus", tc.corpus},
                    {"init", s.init},
                    {"method", cc.method},
                    {"params", s.params.total},
                    {"trainable_params", s.params.trainable}};
  stage_header.update(s.checkpointer->resume_record());
  s.metrics = open_stage_directory(s.run_dir, s.config, groups, tc.stage, s.command_line, device, s.precision,
                                   stage_header, s.resumed.has_value());
  comm::barrier(groups.world);
}

Distiller::~Distiller() = default;

StageSummary Distiller::run() {
  State& s = *state_;
  const TrainConfig& tc = s.config.train;
  const CordConfig& cc = s.config.cord;
  const StageConfig& stage = tc.distill;
  const comm::ProcessGroups& groups = s.groups;
  const bool rank0 = groups.world.rank() == 0;
  const int64_t local_prompts = stage.global_batch / groups.dims.dp();
  const int64_t micro = tc.micro_batch > 0 ? std::min(tc.micro_batch, local_prompts) : local_prompts;
  CORD_LOG(kInfo) << "train distill: " << stage.steps << " steps of " << stage.global_batch << " prompts ("
                  << local_prompts << " per dp rank, micro-batches of " << micro << "), method " << cc.method
                  << (s.plan.grpo ? ", N = " + std::to_string(s.plan.group_size) + " GRPO rollouts" : "")
                  << ", teacher " << cc.teacher << ", " << s.params.trainable << " of " << s.params.total
                  << " parameters trained -> " << s.run_dir;

  // Validation: greedy accuracy from audio and from text on the validation split.
  auto validate = [&](int64_t step) {
    if (tc.val_items == 0) return;
    const auto start = Clock::now();
    eval::EvalOptions options;
    options.split = data::Split::kValidation;
    options.max_items = tc.val_items;
    options.max_new_tokens = s.config.eval.max_new_tokens;
    options.batch = s.config.eval.batch;
    options.precision = s.precision;
    const eval::EvalOutcome outcome = eval::evaluate(s.model, *s.corpus, options, groups);
    CORD_LOG(kInfo) << "validation @ step " << step << " | audio accuracy " << std::fixed << std::setprecision(1)
                    << outcome.scores.audio_accuracy() << "% | text accuracy " << outcome.scores.text_accuracy()
                    << "% over " << tc.val_items << " items (" << seconds_since(start) << " s)";
    if (rank0) {
      s.metrics->write({{"type", "validation"},
                        {"step", step},
                        {"audio_accuracy", outcome.scores.audio_accuracy()},
                        {"text_accuracy", outcome.scores.text_accuracy()},
                        {"seconds", seconds_since(start)},
                        {"scores", eval::scores_json(outcome.scores)}});
    }
    s.model->train();
  };

  const auto stage_start = Clock::now();
  StageSummary summary;
  NonfiniteGuard nonfinite(tc.stage, tc.max_nonfinite_steps);
  double step_ema = 0;
  at::Tensor window = torch::zeros({kStatCount}, torch::kDouble);
  StepTimes window_times;
  int64_t window_steps = 0, optimizer_steps = 0;
  double grad_norm = 0;  // of the last update, for the step line
  int64_t first_step = 0;
  if (s.resumed) {
    first_step = summary.steps = s.resumed->step;
    summary.last_loss = s.resumed->last_loss;
    optimizer_steps = s.resumed->optimizer_steps;
    nonfinite.restore(s.resumed->skipped, s.resumed->skipped_in_a_row);
  } else {
    validate(0);
  }
  s.model->train();
  for (int64_t step = first_step; step < stage.steps; ++step) {
    const auto step_start = Clock::now();
    const double blocked_at_start = comm::blocked_seconds();
    const data::Batch batch = s.loader->next();

    // 1. Rollouts: the same on every tp rank of a dp group, different across dp groups.
    at::Generator generator = at::detail::createCPUGenerator(data::mix64(
        data::mix64(static_cast<uint64_t>(tc.seed) ^ 0x726f6c6cULL) + static_cast<uint64_t>(step) * 1024 +
        static_cast<uint64_t>(groups.dp.rank())));
    const distill::Rollouts rollouts = distill::generate_rollouts(s.model, s.teacher(), batch, s.plan, cc, generator, s.precision);
    wait_for_device(s.torch_device());  // every phase's clock covers its GPU work (no-op on the CPU)
    StepTimes times;  // (the tp collectives of generation count as comm)
    times.rollout = seconds_since(step_start) - (comm::blocked_seconds() - blocked_at_start);

    // 2. Rewards and advantages of the GRPO rollouts.
    StepStats rollout_stats;
    at::Tensor advantages;
    if (s.plan.grpo) {
      const at::Tensor rewards = s.rewards(batch, rollouts);
      rollout_stats.reward_sum = rewards.sum().item<double>();
      rollout_stats.rewards = static_cast<double>(rewards.numel());
      advantages = distill::grpo_advantages(rewards, cc.normalize_advantages);
    }
    rollout_stats.rollout_tokens = static_cast<double>(rollouts.generated_tokens);
    rollout_stats.rollouts =
        static_cast<double>(rollouts.token.size() + rollouts.group.size() + rollouts.reference.size());
    // token_mean: the global batch's token-rollout tokens, the denominator of every micro-batch.
    double token_scale_per_token = 0;
    if (s.aggregation == distill::Aggregation::kTokenMean && !rollouts.token.empty()) {
      double local_tokens = 0;
      for (const auto& r : rollouts.token) local_tokens += static_cast<double>(r.size());
      at::Tensor count = torch::tensor({local_tokens}, torch::kDouble);
      if (groups.dp.size() > 1) comm::all_reduce(groups.dp, count, comm::ReduceOp::kSum);
      // A micro-batch's token_mean aggregate is a mean over its own tokens: scaled by its
      // token count times this, the dp average is the mean over the global batch's tokens.
      token_scale_per_token = static_cast<double>(groups.dp.size()) / count.item<double>();
    }
    at::Tensor old_log_probs;

    // 3-4. Loss, backward, update (ppo_inner_steps times on the same rollouts).
    for (int64_t inner = 0; inner < cc.ppo_inner_steps; ++inner) {
      const int64_t update = step * cc.ppo_inner_steps + inner;
      at::Tensor log_probs;
      if (cc.ppo_inner_steps > 1 && s.plan.grpo && inner == 0) {
        log_probs = torch::zeros({local_prompts, s.plan.group_size}, torch::TensorOptions().device(s.torch_device()));
      }
      StepStats stats = inner == 0 ? rollout_stats : StepStats{};
      s.synchronizer->zero_grad();
      const auto passes_start = Clock::now();
      const double blocked_before_passes = comm::blocked_seconds(), teacher_before_passes = times.teacher;
      for (int64_t begin = 0; begin < local_prompts; begin += micro) {
        const int64_t end = std::min(local_prompts, begin + micro);
        const data::Batch part = eval::slice_batch(batch, begin, end);
        s.synchronizer->set_sync_enabled(end == local_prompts);
        at::Tensor loss;
        {
          const model::AutocastScope autocast(s.precision, s.torch_device());
          loss = s.chunk_loss(part, rollouts, begin, end, local_prompts, token_scale_per_token, advantages,
                              old_log_probs, log_probs, stats, times.teacher);
        }
        if (s.inject_nonfinite.count(step + 1) != 0) loss = loss * std::numeric_limits<double>::quiet_NaN();
        loss.backward();
      }
      s.synchronizer->finish();
      wait_for_device(s.torch_device());
      times.student += seconds_since(passes_start) - (comm::blocked_seconds() - blocked_before_passes) -
                       (times.teacher - teacher_before_passes);
      if (log_probs.defined()) old_log_probs = log_probs;

      at::Tensor totals = stats_tensor(stats);
      if (groups.dp.size() > 1) comm::all_reduce(groups.dp, totals, comm::ReduceOp::kSum);
      const double loss = totals[0].item<double>() / groups.dp.size();
      grad_norm = global_grad_norm(s.params.shards, groups.tp);
      if (!nonfinite.finite(loss, grad_norm, step + 1, groups.world, s.metrics.get())) continue;
      if (tc.grad_clip > 0) clip_grad_norm(s.params.shards, grad_norm, tc.grad_clip);
      const double lr = s.schedule.at(update);
      s.optimizer->step(lr);
      ++optimizer_steps;
      summary.last_loss = loss;
      if (inner == 0) {
        window += totals;
      } else {
        window.slice(0, 0, 3) += totals.slice(0, 0, 3);  // loss terms of the inner steps
      }
    }
    summary.steps = step + 1;

    wait_for_device(s.torch_device());
    const double step_seconds = seconds_since(step_start);
    times.step = step_seconds;
    times.comm = comm::blocked_seconds() - blocked_at_start;
    step_ema = step == first_step ? step_seconds : 0.9 * step_ema + 0.1 * step_seconds;
    window_times += times;
    ++window_steps;
    if ((step + 1) % tc.log_every == 0 || step + 1 == stage.steps) {
      const auto w = [&](int i) { return window[i].item<double>(); };
      const double updates = static_cast<double>(window_steps * cc.ppo_inner_steps) * groups.dp.size();
      const double mean_loss = w(0) / updates, token_loss = w(1) / updates, sequence_loss = w(2) / updates;
      const double divergence = ratio_or_zero(w(3), w(4));
      const double reward = ratio_or_zero(w(5), w(6));
      const double mean_length = ratio_or_zero(w(7), w(8));
      const StepTimes& t = window_times;
      const double tokens_per_s = w(7) / t.step;
      const double lr = s.schedule.at((step + 1) * cc.ppo_inner_steps - 1);
      summary.skipped = nonfinite.skipped();
      const auto share = [&](double part) { return 100.0 * part / t.step; };
      char line[400];
      std::snprintf(line, sizeof line,
                    "step %lld/%lld | distill %s | loss %.4f | tok %.4f | seq %.4f | kl %.4f | reward %.3f | "
                    "len %.1f | grad %.3f | lr %.2e | %.0f ms/step (rollout %.0f%%, teacher %.0f%%, student %.0f%%, "
                    "comm %.0f%%) | %.0f rollout tok/s | ETA %s",
                    static_cast<long long>(step + 1), static_cast<long long>(stage.steps), cc.method.c_str(),
                    mean_loss, token_loss, sequence_loss, divergence, reward, mean_length, grad_norm, lr,
                    1000.0 * t.step / static_cast<double>(window_steps), share(t.rollout), share(t.teacher),
                    share(t.student), share(t.comm), tokens_per_s,
                    format_duration(step_ema * static_cast<double>(stage.steps - step - 1)).c_str());
      const auto mean_ms = [&](double seconds) { return 1000.0 * seconds / static_cast<double>(window_steps); };
      report_step(line,
                  {{"type", "step"},
                   {"step", step + 1},
                   {"loss", mean_loss},
                   {"token_loss", token_loss},
                   {"sequence_loss", sequence_loss},
                   {"divergence", divergence},
                   {"reward", reward},
                   {"rollout_length", mean_length},
                   {"grad_norm", grad_norm},
                   {"lr", lr},
                   {"ms_per_step", 1000.0 * step_seconds},
                   {"comm_ms", 1000.0 * times.comm},
                   // rank 0's time split, means over the steps since the last record
                   {"window_ms_per_step", mean_ms(t.step)},
                   {"rollout_ms", mean_ms(t.rollout)},
                   {"teacher_ms", mean_ms(t.teacher)},
                   {"student_ms", mean_ms(t.student)},
                   {"window_comm_ms", mean_ms(t.comm)},
                   {"other_ms", mean_ms(t.other())},
                   {"rollout_share", t.rollout / t.step},
                   {"rollout_tokens_per_s", tokens_per_s},
                   {"elapsed_s", seconds_since(stage_start)}},
                  summary.skipped, s.metrics.get());
      window.zero_();
      window_times = StepTimes{};
      window_steps = 0;
    }
    if (tc.val_every > 0 && (step + 1) % tc.val_every == 0 && step + 1 < stage.steps) validate(step + 1);

    const ckpt::Progress progress = stage_progress(tc.stage, step + 1, nonfinite, summary.last_loss, *s.loader);
    if (s.checkpointer->after_step(progress, s.model, *s.optimizer, step_seconds, stage.steps, s.metrics.get()) ==
        StageCheckpointer::Decision::kStop) {
      summary.skipped = nonfinite.skipped();
      summary.stopped = true;
      summary.seconds = seconds_since(stage_start);
      return summary;
    }
  }
  validate(stage.steps);

  summary.skipped = nonfinite.skipped();
  finish_stage(summary, s.run_dir, tc.stage, s.model, groups, s.config, s.corpus->tokenizer().vocab(), stage_start,
               s.metrics.get(), {{"optimizer_steps", optimizer_steps}});
  return summary;
}

}  // namespace cord::train
