#include "cord/config/config.hpp"

#include <algorithm>
#include <sstream>
#include <utility>

#include "cord/core/error.hpp"

namespace cord {

std::vector<Field> config_fields(Config& config) {
  return {
      {"parallel.dp", "data-parallel degree; 0 = world size / tp", &config.parallel.dp},
      {"parallel.tp", "tensor-parallel degree; must divide the world size", &config.parallel.tp},
      {"runtime.device", "cpu | cuda | auto (cuda when a GPU is usable); GPU index = local rank",
       &config.runtime.device},
      {"runtime.threads", "torch intra-op threads per rank; 0 = node cores / ranks on the node",
       &config.runtime.threads},
      {"runtime.precision", "fp32 | bf16 (autocast matrix work, fp32 master weights and losses) | auto (bf16 on cuda)",
       &config.runtime.precision},
      {"model.vocab_size", "tokens including specials; corpus runs take it from the tokenizer",
       &config.model.vocab_size},
      {"model.d_model", "decoder residual width", &config.model.d_model},
      {"model.n_layers", "decoder layers", &config.model.n_layers},
      {"model.n_heads", "decoder query heads; divisible by parallel.tp", &config.model.n_heads},
      {"model.n_kv_heads", "key/value heads (grouped-query attention); 0 = n_heads", &config.model.n_kv_heads},
      {"model.d_ff", "SwiGLU hidden width; 0 = 8/3 * d_model rounded up to a multiple of 32", &config.model.d_ff},
      {"model.max_seq_len", "longest sequence (prompt + response); KV cache capacity", &config.model.max_seq_len},
      {"model.rope_theta", "rotary position embedding base", &config.model.rope_theta},
      {"model.norm_eps", "RMSNorm epsilon", &config.model.norm_eps},
      {"model.tie_embeddings", "LM head shares the token embedding matrix", &config.model.tie_embeddings},
      {"model.init_std", "normal init std; residual output projections use std / sqrt(2 * n_layers)",
       &config.model.init_std},
      {"model.init_seed", "seed of the initial weights (independent of the rank layout)", &config.model.init_seed},
      {"model.audio.n_mels", "log-mel bins per input frame", &config.model.audio.n_mels},
      {"model.audio.d_model", "audio encoder width", &config.model.audio.d_model},
      {"model.audio.n_layers", "encoder transformer layers after two stride-2 convolutions",
       &config.model.audio.n_layers},
      {"model.audio.n_heads", "encoder attention heads; divisible by parallel.tp", &config.model.audio.n_heads},
      {"model.audio.projector_stack", "encoder frames concatenated per decoder position",
       &config.model.audio.projector_stack},
      {"corpus.seed", "corpus seed: item i depends on (seed, i) only", &config.corpus.seed},
      {"corpus.items", "number of items to generate", &config.corpus.items},
      {"corpus.families", "comma list of arithmetic, multiple_choice, ordering; item i has family i mod count",
       &config.corpus.families},
      {"corpus.validation_fraction", "share of distinct questions held out for validation",
       &config.corpus.validation_fraction},
      {"corpus.test_fraction", "share of distinct questions held out for test", &config.corpus.test_fraction},
      {"corpus.min_steps", "arithmetic: fewest operations per problem", &config.corpus.min_steps},
      {"corpus.max_steps", "arithmetic: most operations per problem", &config.corpus.max_steps},
      {"corpus.max_number", "arithmetic: every given or intermediate number is below this",
       &config.corpus.max_number},
      {"corpus.entities", "multiple choice: people in the fact base (2..64)", &config.corpus.entities},
      {"corpus.spoken_digits", "speak numbers digit by digit instead of as number words",
       &config.corpus.spoken_digits},
      {"corpus.voices", "comma list of espeak-ng base voices drawn per item", &config.corpus.voices},
      {"corpus.variants", "comma list of espeak-ng variants drawn per item; none = base voice",
       &config.corpus.variants},
      {"corpus.rate_min", "slowest speaking rate, words per minute (80..450)", &config.corpus.rate_min},
      {"corpus.rate_max", "fastest speaking rate, words per minute (80..450)", &config.corpus.rate_max},
      {"corpus.pitch_min", "lowest pitch (0..100)", &config.corpus.pitch_min},
      {"corpus.pitch_max", "highest pitch (0..100)", &config.corpus.pitch_max},
      {"corpus.noise_snr_db", "additive white noise at this SNR in dB; 0 = no noise", &config.corpus.noise_snr_db},
      {"train.stage",
       "text (decoder learns from text) | align (frozen decoder; encoder + projector learn from speech) | "
       "distill (CORD and its baselines, [cord])",
       &config.train.stage},
      {"train.corpus", "corpus file (cord corpus synth --out)", &config.train.corpus},
      {"train.run_dir", "the stage writes RUN_DIR/STAGE/ (config, metrics.jsonl, model.h5)", &config.train.run_dir},
      {"train.init",
       "weights to start from; empty = fresh (text), RUN_DIR/text/model.h5 (align), RUN_DIR/align/model.h5 (distill)",
       &config.train.init},
      {"train.seed", "seed of the data order and the task draws", &config.train.seed},
      {"train.micro_batch",
       "items (distill: prompts) per forward/backward per dp rank; 0 = whole local batch (no accumulation)",
       &config.train.micro_batch},
      {"train.weight_decay", "decoupled AdamW weight decay (matrices only)", &config.train.weight_decay},
      {"train.beta1", "AdamW first-moment decay", &config.train.beta1},
      {"train.beta2", "AdamW second-moment decay", &config.train.beta2},
      {"train.grad_clip", "global gradient-norm clip; 0 = off", &config.train.grad_clip},
      {"train.max_nonfinite_steps", "stop after this many consecutive skipped non-finite steps",
       &config.train.max_nonfinite_steps},
      {"train.log_every", "steps between step lines and metrics records", &config.train.log_every},
      {"train.val_every", "steps between validation passes; 0 = only at the end", &config.train.val_every},
      {"train.val_items", "validation items scored for loss and greedy accuracy", &config.train.val_items},
      {"train.bucket_mb", "data-parallel gradient bucket size in MB", &config.train.bucket_mb},
      {"train.zero1", "shard the AdamW state over the dp ranks (ZeRO-1)", &config.train.zero1},
      {"train.text_repeat_fraction", "text stage: share of items trained on repeating the question",
       &config.train.text_repeat_fraction},
      {"train.align_solution_fraction", "align stage: share of items trained audio -> solution (rest: transcript)",
       &config.train.align_solution_fraction},
      {"train.inject_nonfinite", "tests only: comma list of steps (1-based, as logged) whose loss is made NaN",
       &config.train.inject_nonfinite},
      {"train.text.steps", "text stage: optimizer steps", &config.train.text.steps},
      {"train.text.global_batch", "text stage: items per step over all dp ranks", &config.train.text.global_batch},
      {"train.text.lr", "text stage: peak learning rate", &config.train.text.lr},
      {"train.text.min_lr", "text stage: learning rate at the last step (cosine floor)", &config.train.text.min_lr},
      {"train.text.warmup_steps", "text stage: linear warmup steps", &config.train.text.warmup_steps},
      {"train.align.steps", "align stage: optimizer steps", &config.train.align.steps},
      {"train.align.global_batch", "align stage: items per step over all dp ranks", &config.train.align.global_batch},
      {"train.align.lr", "align stage: peak learning rate", &config.train.align.lr},
      {"train.align.min_lr", "align stage: learning rate at the last step (cosine floor)", &config.train.align.min_lr},
      {"train.align.warmup_steps", "align stage: linear warmup steps", &config.train.align.warmup_steps},
      {"train.distill.steps", "distill stage: optimizer steps (batches of rollouts)", &config.train.distill.steps},
      {"train.distill.global_batch", "distill stage: prompts per step over all dp ranks",
       &config.train.distill.global_batch},
      {"train.distill.lr", "distill stage: peak learning rate", &config.train.distill.lr},
      {"train.distill.min_lr", "distill stage: learning rate at the last step (cosine floor)",
       &config.train.distill.min_lr},
      {"train.distill.warmup_steps", "distill stage: linear warmup steps", &config.train.distill.warmup_steps},
      {"cord.method", "cord | cord-unweighted | opd | grpo | sft | fkl (README: distillation)", &config.cord.method},
      {"cord.alpha", "weight of the top_k highest-divergence positions of a rollout", &config.cord.alpha},
      {"cord.beta", "position weight of the first token, decaying linearly to 1 at the last", &config.cord.beta},
      {"cord.top_k", "positions per rollout weighted alpha", &config.cord.top_k},
      {"cord.aggregation", "token loss over positions: sum (paper) | token_mean | sequence_mean",
       &config.cord.aggregation},
      {"cord.token_loss_weight", "coefficient of the token-level loss", &config.cord.token_loss_weight},
      {"cord.sequence_loss_weight", "coefficient of the GRPO loss", &config.cord.sequence_loss_weight},
      {"cord.group_size", "N: audio rollouts per prompt for GRPO", &config.cord.group_size},
      {"cord.token_temperature", "temperature of the token-level rollout (audio; text for sft and fkl)",
       &config.cord.token_temperature},
      {"cord.group_temperature", "temperature of the N GRPO rollouts", &config.cord.group_temperature},
      {"cord.reference_temperature", "temperature of the text reference rollout; 0 = greedy",
       &config.cord.reference_temperature},
      {"cord.max_new_tokens", "longest rollout", &config.cord.max_new_tokens},
      {"cord.judge", "agreement (audio answer vs the text reference's) | ground_truth (vs the corpus answer)",
       &config.cord.judge},
      {"cord.judge_tolerance", "numeric answers agree within this relative tolerance", &config.cord.judge_tolerance},
      {"cord.normalize_advantages", "divide GRPO advantages by the group's standard deviation",
       &config.cord.normalize_advantages},
      {"cord.teacher", "current (this step's weights, no grad) | initial (frozen copy of train.init)",
       &config.cord.teacher},
      {"cord.trainable", "comma list of the parameter groups that learn: encoder, projector, decoder",
       &config.cord.trainable},
      {"cord.decoder_lr_scale",
       "the decoder's learning rate as a multiple of train.distill.lr (the encoder and projector learn at 1x)",
       &config.cord.decoder_lr_scale},
      {"cord.ppo_inner_steps", "optimizer steps per batch of rollouts; > 1 clips the sequence ratio (PPO)",
       &config.cord.ppo_inner_steps},
      {"cord.ppo_clip", "PPO ratio clip epsilon (ppo_inner_steps > 1)", &config.cord.ppo_clip},
      {"ckpt.dir", "checkpoint folder; empty = RUN_DIR/STAGE/checkpoints", &config.ckpt.dir},
      {"ckpt.resume", "none | auto (newest committed checkpoint that verifies) | PATH (also --resume)",
       &config.ckpt.resume},
      {"ckpt.every_steps", "save a checkpoint every N steps; 0 = off", &config.ckpt.every_steps},
      {"ckpt.every_minutes", "save a checkpoint every T minutes; 0 = off", &config.ckpt.every_minutes},
      {"ckpt.max_wall_minutes",
       "save and exit 75 (requeue) before the job has run this long; 0 = no limit (also --max-wall-minutes)",
       &config.ckpt.max_wall_minutes},
      {"ckpt.keep_last", "committed checkpoints kept (the newest K, >= 1)", &config.ckpt.keep_last},
      {"ckpt.keep_every", "also keep checkpoints whose step is a multiple of this; 0 = none", &config.ckpt.keep_every},
      {"ckpt.at_end", "also save a checkpoint at the end of the stage", &config.ckpt.at_end},
      {"eval.split", "train | validation | test", &config.eval.split},
      {"eval.max_items", "evaluate the first N items of the split; 0 = all", &config.eval.max_items},
      {"eval.batch", "prompts decoded together per dp rank", &config.eval.batch},
      {"eval.max_new_tokens", "longest response decoded", &config.eval.max_new_tokens},
      {"eval.transcripts", "also decode transcripts of the audio and report word error rate",
       &config.eval.transcripts},
  };
}

std::vector<std::string> split_comma_list(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    part.erase(0, part.find_first_not_of(" \t"));
    part.erase(part.find_last_not_of(" \t") + 1);
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

namespace {

void require_positive(const char* key, double value) {
  if (!(value > 0)) {
    std::ostringstream os;
    os << key << "=" << value << " must be > 0";
    throw UsageError(os.str());
  }
}

void require_divisible(const char* key, int value, const char* by_key, int by) {
  if (by <= 0 || value % by != 0) {
    throw UsageError(std::string(key) + "=" + std::to_string(value) + " is not divisible by " + by_key + "=" +
                     std::to_string(by));
  }
}

void require_range(const char* key, double value, double lo, double hi) {
  if (!(value >= lo && value <= hi)) {
    std::ostringstream os;
    os << key << "=" << value << " is outside [" << lo << ", " << hi << "]";
    throw UsageError(os.str());
  }
}

// Ranges only; family, voice and variant names are checked by the corpus module, which knows them.
void validate_corpus(const CorpusConfig& c) {
  require_positive("corpus.items", static_cast<double>(c.items));
  require_range("corpus.validation_fraction", c.validation_fraction, 0, 0.5);
  require_range("corpus.test_fraction", c.test_fraction, 0, 0.5);
  require_range("corpus.min_steps", c.min_steps, 1, 6);
  require_range("corpus.max_steps", c.max_steps, c.min_steps, 6);
  require_range("corpus.max_number", c.max_number, 10, 1000000);
  require_range("corpus.entities", c.entities, 2, 64);
  require_range("corpus.rate_min", c.rate_min, 80, 450);
  require_range("corpus.rate_max", c.rate_max, c.rate_min, 450);
  require_range("corpus.pitch_min", c.pitch_min, 0, 100);
  require_range("corpus.pitch_max", c.pitch_max, c.pitch_min, 100);
  require_range("corpus.noise_snr_db", c.noise_snr_db, -20, 100);
  if (c.families.empty()) throw UsageError("corpus.families is empty");
  if (c.voices.empty()) throw UsageError("corpus.voices is empty");
  if (c.variants.empty()) throw UsageError("corpus.variants is empty");
}

void validate_stage(const char* section, const StageConfig& s) {
  const std::string prefix = std::string("train.") + section + ".";
  require_positive((prefix + "steps").c_str(), static_cast<double>(s.steps));
  require_positive((prefix + "global_batch").c_str(), static_cast<double>(s.global_batch));
  require_positive((prefix + "lr").c_str(), s.lr);
  require_range((prefix + "min_lr").c_str(), s.min_lr, 0, s.lr);
  require_range((prefix + "warmup_steps").c_str(), static_cast<double>(s.warmup_steps), 0, 1e12);
}

void validate_train(const TrainConfig& t) {
  stage_config(t);  // the stage name
  if (t.corpus.empty()) throw UsageError("train.corpus is empty");
  if (t.run_dir.empty()) throw UsageError("train.run_dir is empty");
  require_range("train.micro_batch", static_cast<double>(t.micro_batch), 0, 1e9);
  require_range("train.weight_decay", t.weight_decay, 0, 10);
  require_range("train.beta1", t.beta1, 0, 0.999999);
  require_range("train.beta2", t.beta2, 0, 0.999999);
  require_range("train.grad_clip", t.grad_clip, 0, 1e12);
  require_range("train.max_nonfinite_steps", t.max_nonfinite_steps, 1, 1000000);
  require_positive("train.log_every", static_cast<double>(t.log_every));
  require_range("train.val_every", static_cast<double>(t.val_every), 0, 1e12);
  require_range("train.val_items", static_cast<double>(t.val_items), 0, 1e12);
  require_positive("train.bucket_mb", t.bucket_mb);
  require_range("train.text_repeat_fraction", t.text_repeat_fraction, 0, 1);
  require_range("train.align_solution_fraction", t.align_solution_fraction, 0, 1);
  validate_stage("text", t.text);
  validate_stage("align", t.align);
  validate_stage("distill", t.distill);
}

void validate_cord(const CordConfig& c) {
  const std::vector<std::string> methods{"cord", "cord-unweighted", "opd", "grpo", "sft", "fkl"};
  if (std::find(methods.begin(), methods.end(), c.method) == methods.end()) {
    throw UsageError("cord.method='" + c.method + "' is not one of cord, cord-unweighted, opd, grpo, sft, fkl");
  }
  require_range("cord.alpha", c.alpha, 0, 1e6);
  require_range("cord.beta", c.beta, 0, 1e6);
  require_range("cord.top_k", static_cast<double>(c.top_k), 0, 1e9);
  if (c.aggregation != "sum" && c.aggregation != "token_mean" && c.aggregation != "sequence_mean") {
    throw UsageError("cord.aggregation='" + c.aggregation + "' is not one of sum, token_mean, sequence_mean");
  }
  require_range("cord.token_loss_weight", c.token_loss_weight, 0, 1e6);
  require_range("cord.sequence_loss_weight", c.sequence_loss_weight, 0, 1e6);
  require_range("cord.group_size", static_cast<double>(c.group_size), 2, 1024);
  require_range("cord.token_temperature", c.token_temperature, 0, 100);
  require_range("cord.group_temperature", c.group_temperature, 0, 100);
  require_range("cord.reference_temperature", c.reference_temperature, 0, 100);
  require_positive("cord.max_new_tokens", static_cast<double>(c.max_new_tokens));
  if (c.judge != "agreement" && c.judge != "ground_truth") {
    throw UsageError("cord.judge='" + c.judge + "' is not one of agreement, ground_truth");
  }
  require_range("cord.judge_tolerance", c.judge_tolerance, 0, 1);
  if (c.teacher != "current" && c.teacher != "initial") {
    throw UsageError("cord.teacher='" + c.teacher + "' is not one of current, initial");
  }
  const std::vector<std::string> groups = split_comma_list(c.trainable);
  if (groups.empty()) throw UsageError("cord.trainable is empty: name at least one of encoder, projector, decoder");
  for (const std::string& group : groups) {
    if (group != "encoder" && group != "projector" && group != "decoder") {
      throw UsageError("cord.trainable: '" + group + "' is not one of encoder, projector, decoder");
    }
  }
  if (!(c.decoder_lr_scale > 0 && c.decoder_lr_scale <= 100)) {
    throw UsageError("cord.decoder_lr_scale=" + std::to_string(c.decoder_lr_scale) +
                     " is outside (0, 100] (to freeze the decoder, leave it out of cord.trainable)");
  }
  require_range("cord.ppo_inner_steps", static_cast<double>(c.ppo_inner_steps), 1, 64);
  require_range("cord.ppo_clip", c.ppo_clip, 0, 10);
}

void validate_ckpt(const CheckpointConfig& c) {
  if (c.resume.empty()) throw UsageError("ckpt.resume is empty (none, auto or a checkpoint path)");
  require_range("ckpt.every_steps", static_cast<double>(c.every_steps), 0, 1e12);
  require_range("ckpt.every_minutes", c.every_minutes, 0, 1e9);
  require_range("ckpt.max_wall_minutes", c.max_wall_minutes, 0, 1e9);
  require_range("ckpt.keep_last", static_cast<double>(c.keep_last), 1, 1e9);
  require_range("ckpt.keep_every", static_cast<double>(c.keep_every), 0, 1e12);
}

void validate_eval(const EvalConfig& e) {
  if (e.split != "train" && e.split != "validation" && e.split != "test") {
    throw UsageError("eval.split='" + e.split + "' is not one of train, validation, test");
  }
  require_range("eval.max_items", static_cast<double>(e.max_items), 0, 1e12);
  require_positive("eval.batch", static_cast<double>(e.batch));
  require_positive("eval.max_new_tokens", static_cast<double>(e.max_new_tokens));
}

}  // namespace

const StageConfig& stage_config(const TrainConfig& train) {
  if (train.stage == "text") return train.text;
  if (train.stage == "align") return train.align;
  if (train.stage == "distill") return train.distill;
  throw UsageError("train.stage='" + train.stage + "' is not one of text, align, distill");
}

void validate_model(const ModelConfig& m) {
  for (const auto& [key, value] :
       std::initializer_list<std::pair<const char*, double>>{{"model.vocab_size", m.vocab_size},
                                                             {"model.d_model", m.d_model},
                                                             {"model.n_layers", m.n_layers},
                                                             {"model.n_heads", m.n_heads},
                                                             {"model.max_seq_len", m.max_seq_len},
                                                             {"model.rope_theta", m.rope_theta},
                                                             {"model.norm_eps", m.norm_eps},
                                                             {"model.init_std", m.init_std},
                                                             {"model.audio.n_mels", m.audio.n_mels},
                                                             {"model.audio.d_model", m.audio.d_model},
                                                             {"model.audio.n_layers", m.audio.n_layers},
                                                             {"model.audio.n_heads", m.audio.n_heads},
                                                             {"model.audio.projector_stack", m.audio.projector_stack}}) {
    require_positive(key, value);
  }
  if (m.n_kv_heads < 0) throw UsageError("model.n_kv_heads=" + std::to_string(m.n_kv_heads) + " must be >= 0");
  if (m.d_ff < 0) throw UsageError("model.d_ff=" + std::to_string(m.d_ff) + " must be >= 0");
  require_divisible("model.d_model", m.d_model, "model.n_heads", m.n_heads);
  if ((m.d_model / m.n_heads) % 2 != 0) {
    throw UsageError("model.d_model / model.n_heads = " + std::to_string(m.d_model / m.n_heads) +
                     " must be even (rotary embeddings rotate pairs)");
  }
  const int kv_heads = m.n_kv_heads == 0 ? m.n_heads : m.n_kv_heads;
  require_divisible("model.n_heads", m.n_heads, "model.n_kv_heads", kv_heads);
  require_divisible("model.audio.d_model", m.audio.d_model, "model.audio.n_heads", m.audio.n_heads);
}

void validate(const Config& config) {
  // The parallel layout depends on the world size: comm::ParallelDims::resolve checks it.
  const auto& rt = config.runtime;
  if (rt.device != "cpu" && rt.device != "cuda" && rt.device != "auto") {
    throw UsageError("runtime.device='" + rt.device + "' is not one of cpu, cuda, auto");
  }
  if (rt.precision != "auto" && rt.precision != "fp32" && rt.precision != "bf16") {
    throw UsageError("runtime.precision='" + rt.precision + "' is not one of auto, fp32, bf16");
  }
  if (rt.threads < 0) {
    throw UsageError("runtime.threads=" + std::to_string(rt.threads) + " must be >= 0");
  }
  validate_model(config.model);
  validate_corpus(config.corpus);
  validate_train(config.train);
  validate_cord(config.cord);
  validate_ckpt(config.ckpt);
  validate_eval(config.eval);
}

void validate_tensor_parallel(const ModelConfig& m, int tp) {
  const int kv_heads = m.n_kv_heads == 0 ? m.n_heads : m.n_kv_heads;
  require_divisible("model.n_heads", m.n_heads, "parallel.tp", tp);
  require_divisible("model.n_kv_heads (resolved)", kv_heads, "parallel.tp", tp);
  require_divisible("model.audio.n_heads", m.audio.n_heads, "parallel.tp", tp);
  require_divisible("model.vocab_size", m.vocab_size, "parallel.tp", tp);
}

}  // namespace cord
