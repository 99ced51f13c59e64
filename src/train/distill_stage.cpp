#include "cord/train/distill_stage.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <numeric>
#include <sstream>
#include <tuple>

#include "cord/ckpt/model_weights.hpp"
#include "cord/comm/collectives.hpp"
#include "cord/core/error.hpp"
#include "cord/core/log.hpp"
#include "cord/data/corpus.hpp"
#include "cord/data/rng.hpp"
#include "cord/distill/chunked_loss.hpp"
#include "cord/distill/judge.hpp"
#include "cord/distill/losses.hpp"
#include "cord/distill/rollouts.hpp"
#include "cord/eval/evaluate.hpp"
#include "cord/eval/prompts.hpp"
#include "cord/eval/scoring.hpp"
#include "cord/hf/hf_config.hpp"
#include "cord/hf/hf_model.hpp"
#include "cord/model/model_stats.hpp"
#include "cord/model/tensor_parallel.hpp"
#include "cord/train/optimizer.hpp"

namespace cord::train {
namespace {

using distill::TokenLoss;

at::Tensor float32(const at::Tensor& t) { return at::isReducedFloatingType(t.scalar_type()) ? t.to(torch::kFloat) : t; }

int64_t sum_of(const std::vector<int64_t>& values) { return std::accumulate(values.begin(), values.end(), int64_t{0}); }

// Rows [begin, begin + count) of a student pass.
struct RowRange {
  int64_t begin = 0, count = 0;
};

// The student's pass over one micro-batch: rows [token rollouts][group rollouts][text
// references] of its prompts (each part present when the plan needs it), each behind its
// audio prompt.
struct StudentPass {
  model::TokenRows responses;  // [rows] the rollouts, in row order
  // At each response position: the logits [rows, T, V/P], or with cord.loss_chunk_rows > 0
  // the final hidden states [rows, T, d] (chunked_loss.hpp applies the head a chunk at a time).
  distill::ResponseLogits logits;
  bool chunked = false;
  RowRange token;      // what the token loss reads: the token rollouts, or the group's rows
  RowRange group;      // the N GRPO rollouts of each prompt, prompt-major
  RowRange reference;  // the teacher's text references (cord.fkl_mixture > 0), one per prompt
  int64_t rollouts_per_prompt = 1;  // token rows per prompt: N when the token loss reads the group
  double positions = 0, context = 0;
};

class DistillStage final : public Stage {
 public:
  explicit DistillStage(StageContext& context);

  std::string label() const override { return "distill " + name_of(c_.config.cord.method); }
  std::string describe() const override;
  nlohmann::json header_fields() const override { return {{"init", init_}, {"method", name_of(c_.config.cord.method)}}; }
  int64_t bucket_window() const override { return 8; }  // audio lengths vary: bucket to pad less
  int64_t passes() const override { return c_.config.cord.ppo_inner_steps; }
  void configure_optimizer(AdamW& optimizer) override;
  bool validates_at_start() const override { return true; }
  StepStats prepare_step(int64_t step, const data::Batch& batch, StepTimer& timer) override;
  void begin_pass(int64_t pass) override;
  void end_pass(int64_t pass) override;
  MicroBatchLoss forward(const MicroBatch& micro, StepTimer& timer) override;
  void describe_window(const LogWindow& window, int dp, double seconds, std::string& line,
                       nlohmann::json& record) const override;
  Validation validate() override;

 private:
  model::Lalm& teacher() { return frozen_teacher_.is_empty() ? c_.model : frozen_teacher_; }
  bool learns(const std::string& group) const;
  ckpt::WeightsHeader load_init(model::Lalm& model);
  at::Tensor rewards(const data::Batch& batch) const;
  double token_mean_scale(const model::TokenRows& rows) const;
  StudentPass student_pass(const MicroBatch& micro);
  at::Tensor token_term(const MicroBatch& micro, const StudentPass& student, StepTimer& timer, StepStats& stats);
  at::Tensor divergence_term(TokenLoss kind, const MicroBatch& micro, const StudentPass& student, RowRange rows,
                             int64_t per_prompt, double scale_per_token, StepTimer& timer, StepStats& stats);
  at::Tensor sequence_term(const MicroBatch& micro, const StudentPass& student);
  at::Tensor sequence_log_probs(const StudentPass& student, int64_t prompts) const;
  std::pair<at::Tensor, at::Tensor> chunked_grpo(const StudentPass& student, const at::Tensor& advantages,
                                                 int64_t prompts);
  double forward_flops(double positions, double context) const;

  StageContext& c_;
  std::string init_;
  bool from_source_ = false;  // the base is model.source's Qwen2-Audio model as loaded
  distill::MethodPlan plan_;
    std::unique_ptr<distill::Judge> judge_;
  std::vector<std::string> trainable_;
  model::Lalm frozen_teacher_{nullptr};  // cord.teacher = initial; empty: the current weights teach
  // The current step's rollouts, advantages [P_local, N] and the token_mean scales of the
  // token loss's rows and of the references' (cord.fkl_mixture).
  distill::Rollouts rollouts_;
  at::Tensor advantages_;
  double token_scale_per_token_ = 0, reference_scale_per_token_ = 0;
  // PPO: the rollout-time sequence log-probabilities [P_local, N] (undefined on the first
  // pass, whose ratio is 1), and the current pass's, written on the first pass.
  at::Tensor old_log_probs_, log_probs_;
};

DistillStage::DistillStage(StageContext& context) : c_(context) {
  const TrainConfig& tc = c_.config.train;
  const CordConfig& cc = c_.config.cord;
  plan_ = distill::plan_for(cc);
  judge_ = distill::make_judge(cc.judge, cc.judge_tolerance);
  init_ = !tc.init.empty() ? tc.init : tc.run_dir + "/align/model.h5";
  // A Qwen2-Audio directory is a base model already: with no train.init and no align stage
  // in the run directory, distillation starts from it as loaded (the stage context did).
  from_source_ = tc.init.empty() && access(init_.c_str(), R_OK) != 0 && !hf::hf_directory(c_.config.model.source).empty() &&
                 hf::hf_layout(c_.config.model) == hf::HfLayout::kQwen2Audio;
  if (from_source_) init_ = c_.config.model.source;
  if (!from_source_ && access(init_.c_str(), R_OK) != 0) {
    throw UsageError("train.init " + init_ +
                     " does not exist: the distill stage starts from a base model (run the text and align stages, "
                     "or set train.init)");
  }
  const ckpt::WeightsHeader header = load_init(c_.model);
  CORD_LOG(kInfo) << "train distill: method " << name_of(cc.method) << ", starting from " << init_ << " (stage "
                  << header.stage << ", " << header.step << " steps, commit " << header.commit << ")";
  if (cc.teacher == TeacherWeights::kInitial) {
    frozen_teacher_ = model::Lalm(c_.config.model, c_.groups.tp,
                                  from_source_ ? hf::hf_initialization(c_.config.model) : model::Initialization::kAll);
    frozen_teacher_->to(c_.torch_device());
    load_init(frozen_teacher_);
    for (at::Tensor& p : frozen_teacher_->parameters()) p.requires_grad_(false);
  }
  trainable_ = split_comma_list(cc.trainable);
  model::set_trainable_groups(*c_.model, trainable_);
}

bool DistillStage::learns(const std::string& group) const {
  return std::find(trainable_.begin(), trainable_.end(), group) != trainable_.end();
}

ckpt::WeightsHeader DistillStage::load_init(model::Lalm& model) {
  if (from_source_) {
    // The student came loaded from the directory; the frozen teacher is loaded the same way.
    if (model.get() != c_.model.get()) hf::load_hf_model(hf::hf_directory(c_.config.model.source), model);
    ckpt::WeightsHeader source;
    source.path = init_;
    source.stage = "pretrained";
    return source;
  }
  const ckpt::WeightsHeader header = ckpt::load_weights(init_, model);
  ckpt::check_same_vocab(header, c_.vocabulary_fingerprint(), c_.config.train.corpus);
  return header;
}

std::string DistillStage::describe() const {
  const CordConfig& cc = c_.config.cord;
  std::ostringstream text;
  text << "method " << name_of(cc.method);
  if (plan_.grpo) text << ", N = " << plan_.group_size << " GRPO rollouts";
  text << ", teacher " << name_of(cc.teacher);
  if (cc.top_k_fraction > 0 && plan_.alpha != 1.0) text << ", alpha on " << cc.top_k_fraction << " of each rollout's positions";
  if (plan_.token_on_group) text << ", the token loss on the N group rollouts";
  if (plan_.fkl_mixture > 0) text << ", forward-KL mixture lambda = " << plan_.fkl_mixture << " on the text references";
  if (cc.loss_chunk_rows > 0) text << ", losses from hidden states " << cc.loss_chunk_rows << " rollout(s) at a time";
  return text.str();
}

void DistillStage::configure_optimizer(AdamW& optimizer) {
  const double scale = c_.config.cord.decoder_lr_scale;
  if (scale == 1.0 || !learns("decoder")) return;
  const int64_t scaled = optimizer.scale_lr("decoder.", scale);
  CORD_CHECK(scaled > 0, "cord.decoder_lr_scale: no trainable parameter is named decoder.*");
  CORD_LOG(kInfo) << "train distill: the decoder's " << scaled << " parameters learn at " << scale
                  << "x the learning rate";
}

// rewards [P, N] of the group rollouts: the judge on each rollout's final answer against
// the text reference's (or the corpus answer).
at::Tensor DistillStage::rewards(const data::Batch& batch) const {
  const eval::ModelVocabulary vocabulary(c_.model->config(), c_.corpus->tokenizer());
  const int64_t prompts = static_cast<int64_t>(batch.items.size());
  const int64_t n = plan_.group_size;
  at::Tensor out = torch::zeros({prompts, n}, torch::kFloat);
  auto out_a = out.accessor<float, 2>();
  for (int64_t p = 0; p < prompts; ++p) {
    const auto reference = eval::extract_answer(vocabulary, rollouts_.reference[static_cast<size_t>(p)]);
    for (int64_t i = 0; i < n; ++i) {
      const auto answer = eval::extract_answer(vocabulary, rollouts_.group[static_cast<size_t>(p * n + i)]);
      out_a[p][i] = static_cast<float>(judge_->reward(answer, reference, batch.answers[static_cast<size_t>(p)]));
    }
  }
  return out;
}

// token_mean: the global batch's tokens of `rows`, the denominator of every micro-batch. A
// micro-batch's token_mean aggregate is a mean over its own tokens: scaled by its token
// count times the returned factor, the dp average is the mean over the global batch's
// tokens. 0 for the other aggregations or no rows.
double DistillStage::token_mean_scale(const model::TokenRows& rows) const {
  if (c_.config.cord.aggregation != distill::Aggregation::kTokenMean || rows.empty()) return 0;
  const comm::ProcessGroup& dp = c_.groups.dp;
  double local_tokens = 0;
  for (const auto& r : rows) local_tokens += static_cast<double>(r.size());
  at::Tensor count = torch::tensor({local_tokens}, torch::kDouble);
  if (dp.size() > 1) comm::all_reduce(dp, count, comm::ReduceOp::kSum);
  return static_cast<double>(dp.size()) / count.item<double>();
}

StepStats DistillStage::prepare_step(int64_t step, const data::Batch& batch, StepTimer& timer) {
  const CordConfig& cc = c_.config.cord;
  const comm::ProcessGroup& dp = c_.groups.dp;
  StepStats stats;
  {
    // The same rollouts on every tp rank of a dp group, different across dp groups.
    const StepTimer::Scope timed = timer.time(Phase::kRollout);
    at::Generator generator = at::detail::createCPUGenerator(data::mix64(
        data::mix64(static_cast<uint64_t>(c_.config.train.seed) ^ 0x726f6c6cULL) + static_cast<uint64_t>(step) * 1024 +
        static_cast<uint64_t>(dp.rank())));
    rollouts_ = distill::generate_rollouts(c_.model, teacher(), batch, plan_, cc, generator, c_.precision);
  }
  advantages_ = at::Tensor();
  if (plan_.grpo) {
    const at::Tensor r = rewards(batch);
    stats.reward_sum = r.sum().item<double>();
    stats.rewards = static_cast<double>(r.numel());
    advantages_ = distill::grpo_advantages(r, cc.normalize_advantages);
  }
  stats.rollout_tokens = static_cast<double>(rollouts_.generated_tokens);
  stats.rollouts = static_cast<double>(rollouts_.token.size() + rollouts_.group.size() + rollouts_.reference.size());
  // Decoding costs about one forward per generated token (the prompts' prefill left out).
  stats.flops = forward_flops(stats.rollout_tokens, static_cast<double>(rollouts_.max_new_tokens));
  token_scale_per_token_ = token_mean_scale(plan_.token_on_group ? rollouts_.group : rollouts_.token);
  reference_scale_per_token_ = plan_.fkl_mixture > 0 ? token_mean_scale(rollouts_.reference) : 0;
  old_log_probs_ = at::Tensor();
  return stats;
}

void DistillStage::begin_pass(int64_t pass) {
  log_probs_ = at::Tensor();
  if (passes() > 1 && plan_.grpo && pass == 0) {
    const auto local_prompts = static_cast<int64_t>(rollouts_.reference.size());
    log_probs_ = torch::zeros({local_prompts, plan_.group_size}, torch::TensorOptions().device(c_.torch_device()));
  }
}

void DistillStage::end_pass(int64_t /*pass*/) {
  if (log_probs_.defined()) old_log_probs_ = log_probs_;
}

StudentPass DistillStage::student_pass(const MicroBatch& micro) {
  const int64_t n = plan_.group_size;
  StudentPass pass;
  std::vector<model::SequenceSpec> specs;
  auto add = [&](int64_t prompt, const std::vector<int64_t>& response) {
    model::SequenceSpec spec;
    spec.audio_row = prompt - micro.begin;
    spec.response = response;
    specs.push_back(std::move(spec));
    pass.responses.push_back(response);
  };
  const int64_t chunk = micro.end - micro.begin;
  for (int64_t p = micro.begin; p < micro.end && plan_.token_rollout(); ++p) add(p, rollouts_.token[static_cast<size_t>(p)]);
  pass.token = {0, plan_.token_rollout() ? chunk : 0};
  for (int64_t p = micro.begin; p < micro.end; ++p) {
    for (int64_t i = 0; i < n; ++i) add(p, rollouts_.group[static_cast<size_t>(p * n + i)]);
  }
  pass.group = {pass.token.count, chunk * n};
  if (plan_.token_on_group) {
    pass.token = pass.group;
    pass.rollouts_per_prompt = n;
  }
  for (int64_t p = micro.begin; p < micro.end && plan_.fkl_mixture > 0; ++p) {
    add(p, rollouts_.reference[static_cast<size_t>(p)]);
  }
  pass.reference = {pass.group.begin + pass.group.count, plan_.fkl_mixture > 0 ? chunk : 0};
  const at::Device device = c_.torch_device();
  const auto [frames, frame_lengths] =
      c_.model->encode_audio(micro.part.features.to(device), micro.part.feature_lengths.to(device));
  const model::DecoderBatch inputs =
      model::assemble_sequences(c_.model, frames, frame_lengths, specs,
                                eval::ModelVocabulary::tokens_of(c_.model->config()), model::Padding::kRight);
  const at::Tensor hidden = c_.model->decoder->hidden(inputs.embeds, inputs.positions, inputs.mask);
  pass.chunked = c_.config.cord.loss_chunk_rows > 0;
  pass.logits = distill::response_logits(pass.chunked ? hidden : c_.model->decoder->logits(hidden), inputs, pass.responses);
  pass.positions = static_cast<double>(sum_of(inputs.lengths));
  pass.context = static_cast<double>(inputs.embeds.size(1));
  return pass;
}

// The token-level term of the micro-batch (scaled): the method's loss on the token rows,
// mixed with forward KL on the text references when cord.fkl_mixture > 0.
at::Tensor DistillStage::token_term(const MicroBatch& micro, const StudentPass& student, StepTimer& timer,
                                    StepStats& stats) {
  const at::Tensor term = divergence_term(plan_.token_loss, micro, student, student.token, student.rollouts_per_prompt,
                                          token_scale_per_token_, timer, stats);
  if (plan_.fkl_mixture == 0) return term;
  StepStats unlogged;  // the divergence logged is the token rows' reverse KL
  const at::Tensor mixed = divergence_term(TokenLoss::kForwardKl, micro, student, student.reference, 1,
                                           reference_scale_per_token_, timer, unlogged);
  stats.flops += unlogged.flops;
  return (1.0 - plan_.fkl_mixture) * term + plan_.fkl_mixture * mixed;
}

// One token-level loss of `kind` on rows `rows` of the student pass (per_prompt rows per
// prompt, prompt-major), aggregated and scaled to the micro-batch's share of the step.
at::Tensor DistillStage::divergence_term(TokenLoss kind, const MicroBatch& micro, const StudentPass& student,
                                         RowRange rows, int64_t per_prompt, double scale_per_token, StepTimer& timer,
                                         StepStats& stats) {
  const at::Tensor s_values = student.logits.logits.narrow(0, rows.begin, rows.count);
  const at::Tensor mask = student.logits.mask.narrow(0, rows.begin, rows.count);
  const at::Tensor targets = student.logits.targets.narrow(0, rows.begin, rows.count);
  const model::TokenRows responses(student.responses.begin() + rows.begin,
                                   student.responses.begin() + rows.begin + rows.count);
  at::Tensor t_values;  // the teacher's logits or (chunked) hidden states at the same positions
  if (kind != TokenLoss::kCrossEntropy) {
    // The teacher reads the text question and the same rollout; it never gets a gradient.
    const StepTimer::Scope timed = timer.time(Phase::kTeacher);
    const model::TokenRows prompts = eval::token_rows(micro.part.question, micro.part.question_mask);
    model::TokenRows questions;
    for (const auto& q : prompts) questions.insert(questions.end(), static_cast<size_t>(per_prompt), q);
    t_values = student.chunked ? distill::teacher_response_hidden(teacher(), questions, responses, s_values.size(1))
                               : distill::teacher_response_logits(teacher(), questions, responses, s_values.size(1));
    double teacher_positions = 0;
    for (size_t r = 0; r < questions.size(); ++r) {
      teacher_positions += static_cast<double>(questions[r].size() + responses[r].size());
    }
    stats.flops += forward_flops(teacher_positions, static_cast<double>(s_values.size(1)));
  }
  const CordConfig& cc = c_.config.cord;
  at::Tensor loss, divergence;
  if (student.chunked) {
    // The aggregation is linear: its per-position coefficients join CORD's weights.
    const at::Tensor coefficients = distill::aggregation_weights(mask, cc.aggregation);
    const distill::ChunkWeights weights = [&](const at::Tensor& term, int64_t first) {
      const at::Tensor c = coefficients.narrow(0, first, term.size(0));
      if (kind != TokenLoss::kReverseKl) return c;
      return distill::cord_weights(term, mask.narrow(0, first, term.size(0)), plan_.alpha, plan_.beta, cc.top_k,
                                   cc.top_k_fraction) * c;
    };
    const distill::ChunkedLoss out = distill::chunked_token_loss(
        kind, {s_values, c_.model->decoder->head_weight()}, {t_values, teacher()->decoder->head_weight()}, targets,
        c_.model->decoder->vocab_size(), cc.loss_chunk_rows, weights, c_.groups.tp);
    loss = out.loss;
    if (kind != TokenLoss::kCrossEntropy) divergence = out.term;
  } else {
    const distill::TokenTerms terms = distill::token_terms(kind, s_values, t_values, targets, mask, plan_.alpha,
                                                           plan_.beta, cc.top_k, c_.groups.tp, cc.top_k_fraction);
    loss = distill::aggregate(terms.per_position, mask, cc.aggregation);
    divergence = terms.divergence;
  }
  if (divergence.defined()) {
    stats.divergence_sum += (divergence.detach() * mask.to(divergence.scalar_type())).sum().item<double>();
    stats.divergence_tokens += mask.sum().item<double>();
  }
  // token_mean: a mean over the global batch's tokens; sum / sequence_mean: over its rollouts.
  const double prompt_share = static_cast<double>(micro.end - micro.begin) / static_cast<double>(micro.local_batch);
  const double scale =
      cc.aggregation == distill::Aggregation::kTokenMean ? mask.sum().item<double>() * scale_per_token : prompt_share;
  return loss * scale;
}

// The sequence log-probabilities [P_c, N] of the group rollouts (differentiable), from
// their logits.
at::Tensor DistillStage::sequence_log_probs(const StudentPass& student, int64_t prompts) const {
  const RowRange rows = student.group;
  const at::Tensor targets = student.logits.targets.narrow(0, rows.begin, rows.count);
  const at::Tensor mask = student.logits.mask.narrow(0, rows.begin, rows.count);
  const at::Tensor nll = model::vocab_parallel_cross_entropy(float32(student.logits.logits.narrow(0, rows.begin, rows.count)),
                                                             targets, c_.groups.tp);
  return -(nll * mask.to(nll.scalar_type())).sum(1).view({prompts, plan_.group_size});
}

// GRPO's loss -(1/(N P_c)) sum_i A_i log p(y_i) from the hidden states, chunked: it is
// sum_{i,t} A_i / (N P_c) nll_{i,t}, a weighted cross-entropy whose weights are known before
// the pass. Returns the loss and the (detached) sequence log-probabilities [P_c, N].
std::pair<at::Tensor, at::Tensor> DistillStage::chunked_grpo(const StudentPass& student, const at::Tensor& advantages,
                                                             int64_t prompts) {
  const RowRange rows = student.group;
  const at::Tensor targets = student.logits.targets.narrow(0, rows.begin, rows.count);
  const at::Tensor mask = student.logits.mask.narrow(0, rows.begin, rows.count);
  const at::Tensor per_row =
      advantages.reshape({rows.count, 1}).to(torch::kFloat) / static_cast<double>(prompts * plan_.group_size);
  const distill::ChunkWeights weights = [&](const at::Tensor& term, int64_t first) {
    return mask.narrow(0, first, term.size(0)).to(torch::kFloat) * per_row.narrow(0, first, term.size(0));
  };
  const distill::ChunkedLoss out = distill::chunked_token_loss(
      TokenLoss::kCrossEntropy, {student.logits.logits.narrow(0, rows.begin, rows.count), c_.model->decoder->head_weight()},
      {}, targets, c_.model->decoder->vocab_size(), c_.config.cord.loss_chunk_rows, weights, c_.groups.tp);
  const at::Tensor log_probs = -(out.term * mask.to(out.term.scalar_type())).sum(1).view({prompts, plan_.group_size});
  return {out.loss, log_probs};
}

// The GRPO term of the micro-batch (scaled), from the group rollouts' rows.
at::Tensor DistillStage::sequence_term(const MicroBatch& micro, const StudentPass& student) {
  const CordConfig& cc = c_.config.cord;
  const int64_t chunk = micro.end - micro.begin;
  const at::Tensor a = advantages_.narrow(0, micro.begin, chunk).to(student.logits.mask.device());
  at::Tensor term, sequence_log_probs;
  if (student.chunked) {
    CORD_CHECK(cc.ppo_inner_steps == 1, "cord.loss_chunk_rows with PPO inner steps (config validation let it through)");
    std::tie(term, sequence_log_probs) = chunked_grpo(student, a, chunk);
  } else {
    sequence_log_probs = this->sequence_log_probs(student, chunk);  // [P_c, N]
    if (cc.ppo_inner_steps > 1 && old_log_probs_.defined()) {
      // PPO: the sequence ratio against the rollout-time policy, clipped.
      const at::Tensor ratio = (sequence_log_probs - old_log_probs_.narrow(0, micro.begin, chunk)).exp();
      const at::Tensor surrogate = torch::min(ratio * a, ratio.clamp(1.0 - cc.ppo_clip, 1.0 + cc.ppo_clip) * a);
      term = -surrogate.mean();
    } else {
      term = distill::grpo_loss(sequence_log_probs, a);
    }
  }
  if (log_probs_.defined()) log_probs_.narrow(0, micro.begin, chunk).copy_(sequence_log_probs.detach());
  return term * (static_cast<double>(chunk) / static_cast<double>(micro.local_batch));
}

MicroBatchLoss DistillStage::forward(const MicroBatch& micro, StepTimer& timer) {
  const CordConfig& cc = c_.config.cord;
  MicroBatchLoss out;
  out.loss = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(c_.torch_device()));
  const StudentPass student = student_pass(micro);
  out.stats.positions = student.positions;
  out.stats.flops = forward_flops(3.0 * student.positions, student.context);
  if (plan_.token_loss != TokenLoss::kNone) {
    const at::Tensor term = token_term(micro, student, timer, out.stats);
    out.stats.token_loss += term.item<double>();
    out.loss = out.loss + cc.token_loss_weight * term;
  }
  if (plan_.grpo) {
    const at::Tensor term = sequence_term(micro, student);
    out.stats.sequence_loss += term.item<double>();
    out.loss = out.loss + cc.sequence_loss_weight * term;
  }
  return out;
}

// Decoder FLOPs of forwarding `positions` tokens at context length `context` (the encoder's
// share of the student pass is small at our clip lengths and left out).
double DistillStage::forward_flops(double positions, double context) const {
  const model::ModelStats stats =
      model::compute_model_stats(c_.config.model, std::max<int64_t>(1, static_cast<int64_t>(context)), 1);
  return stats.decoder_forward_flops_per_token * positions;
}

void DistillStage::describe_window(const LogWindow& window, int dp, double seconds, std::string& line,
                                   nlohmann::json& record) const {
  const StepStats& w = window.sums;
  const double token_loss = window.mean(&StepStats::token_loss, dp);
  const double sequence_loss = window.mean(&StepStats::sequence_loss, dp);
  const double divergence = ratio_or_zero(w.divergence_sum, w.divergence_tokens);
  const double reward = ratio_or_zero(w.reward_sum, w.rewards);
  const double length = ratio_or_zero(w.rollout_tokens, w.rollouts);
  const double rollout_tokens_per_s = w.rollout_tokens / seconds;
  char text[192];
  std::snprintf(text, sizeof text, " | tok %.4f | seq %.4f | kl %.4f | reward %.3f | len %.1f | %.0f rollout tok/s",
                token_loss, sequence_loss, divergence, reward, length, rollout_tokens_per_s);
  line = text;
  record["token_loss"] = token_loss;
  record["sequence_loss"] = sequence_loss;
  record["divergence"] = divergence;
  record["reward"] = reward;
  record["rollout_length"] = length;
  record["rollout_tokens_per_s"] = rollout_tokens_per_s;
}

// Greedy accuracy from audio and from text on the validation split.
Validation DistillStage::validate() {
  eval::EvalOptions options;
  options.split = data::Split::kValidation;
  options.max_items = c_.config.train.val_items;
  options.max_new_tokens = c_.config.eval.max_new_tokens;
  options.batch = c_.config.eval.batch;
  options.precision = c_.precision;
  const eval::EvalOutcome outcome = eval::evaluate(c_.model, *c_.corpus, options, c_.groups);
  std::ostringstream summary;
  summary << "audio accuracy " << std::fixed << std::setprecision(1) << outcome.scores.audio_accuracy()
          << "% | text accuracy " << outcome.scores.text_accuracy() << "%";
  return {{{"audio_accuracy", outcome.scores.audio_accuracy()},
           {"text_accuracy", outcome.scores.text_accuracy()},
           {"scores", eval::scores_json(outcome.scores)}},
          summary.str()};
}

}  // namespace

std::unique_ptr<Stage> make_distill_stage(StageContext& context) { return std::make_unique<DistillStage>(context); }

}  // namespace cord::train
