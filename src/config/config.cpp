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
       choice_ref(&config.runtime.device)},
      {"runtime.threads", "torch intra-op threads per rank; 0 = node cores / ranks on the node",
       &config.runtime.threads, at_least(0)},
      {"runtime.precision", "fp32 | bf16 (autocast matrix work, fp32 master weights and losses) | auto (bf16 on cuda)",
       choice_ref(&config.runtime.precision)},
      {"runtime.hang_timeout_s",
       "end the job (exit 3, naming the stopped ranks) when no rank makes progress for this long; 0 = no watchdog",
       &config.runtime.hang_timeout_s, at_least(0)},
      {"model.source",
       "'' = the built-in model from init_seed; hf:DIR = a Hugging Face model directory, whose config.json sets "
       "every decoder field (vocab_size .. attention_bias) and whose safetensors are the weights of a stage without "
       "train.init",
       &config.model.source},
      {"model.vocab_size", "tokens including specials; corpus runs take it from the tokenizer",
       &config.model.vocab_size, positive()},
      {"model.d_model", "decoder residual width", &config.model.d_model, positive()},
      {"model.n_layers", "decoder layers", &config.model.n_layers, positive()},
      {"model.n_heads", "decoder query heads; divisible by parallel.tp", &config.model.n_heads, positive()},
      {"model.n_kv_heads", "key/value heads (grouped-query attention); 0 = n_heads", &config.model.n_kv_heads, at_least(0)},
      {"model.d_ff", "SwiGLU hidden width; 0 = 8/3 * d_model rounded up to a multiple of 32", &config.model.d_ff, at_least(0)},
      {"model.max_seq_len", "longest sequence (prompt + response); KV cache capacity", &config.model.max_seq_len, positive()},
      {"model.rope_theta", "rotary position embedding base", &config.model.rope_theta, positive()},
      {"model.norm_eps", "RMSNorm epsilon", &config.model.norm_eps, positive()},
      {"model.tie_embeddings", "LM head shares the token embedding matrix", &config.model.tie_embeddings},
      {"model.attention_bias", "biases on the q, k and v projections (Qwen2)", &config.model.attention_bias},
      {"model.init_std", "normal init std; residual output projections use std / sqrt(2 * n_layers)",
       &config.model.init_std, positive()},
      {"model.init_seed", "seed of the initial weights (independent of the rank layout)", &config.model.init_seed},
      {"model.audio.architecture", "cord (the built-in encoder and projector) or whisper (Qwen2-Audio's)",
       choice_ref(&config.model.audio.architecture)},
      {"model.audio.n_mels", "log-mel bins per input frame", &config.model.audio.n_mels, positive()},
      {"model.audio.d_model", "audio encoder width", &config.model.audio.d_model, positive()},
      {"model.audio.n_layers", "encoder transformer layers after two stride-2 convolutions",
       &config.model.audio.n_layers, positive()},
      {"model.audio.n_heads", "encoder attention heads; divisible by parallel.tp", &config.model.audio.n_heads, positive()},
      {"model.audio.projector_stack", "cord: encoder frames concatenated per decoder position",
       &config.model.audio.projector_stack, positive()},
      {"model.audio.d_ff", "whisper: encoder MLP width; cord: unused (8/3 * d_model)", &config.model.audio.d_ff,
       at_least(0)},
      {"model.audio.max_source_positions", "whisper: encoder positions (mel frames / 2); its window is twice this",
       &config.model.audio.max_source_positions, positive()},
      {"corpus.seed", "corpus seed: item i depends on (seed, i) only", &config.corpus.seed},
      {"corpus.items", "number of items to generate", &config.corpus.items, positive()},
      {"corpus.families", "comma list of arithmetic, multiple_choice, ordering; item i has family i mod count",
       &config.corpus.families},
      {"corpus.validation_fraction", "share of distinct questions held out for validation",
       &config.corpus.validation_fraction, between(0, 0.5)},
      {"corpus.test_fraction", "share of distinct questions held out for test", &config.corpus.test_fraction, between(0, 0.5)},
      {"corpus.min_steps", "arithmetic: fewest operations per problem", &config.corpus.min_steps, between(1, 6)},
      {"corpus.max_steps", "arithmetic: most operations per problem", &config.corpus.max_steps, between(1, 6)},
      {"corpus.max_number", "arithmetic: every given or intermediate number is below this",
       &config.corpus.max_number, between(10, 1000000)},
      {"corpus.entities", "multiple choice: people in the fact base (2..64)", &config.corpus.entities, between(2, 64)},
      {"corpus.spoken_digits", "speak numbers digit by digit instead of as number words",
       &config.corpus.spoken_digits},
      {"corpus.voices", "comma list of espeak-ng base voices drawn per item", &config.corpus.voices},
      {"corpus.variants", "comma list of espeak-ng variants drawn per item; none = base voice",
       &config.corpus.variants},
      {"corpus.rate_min", "slowest speaking rate, words per minute (80..450)", &config.corpus.rate_min, between(80, 450)},
      {"corpus.rate_max", "fastest speaking rate, words per minute (80..450)", &config.corpus.rate_max, between(80, 450)},
      {"corpus.pitch_min", "lowest pitch (0..100)", &config.corpus.pitch_min, between(0, 100)},
      {"corpus.pitch_max", "highest pitch (0..100)", &config.corpus.pitch_max, between(0, 100)},
      {"corpus.noise_snr_db", "additive white noise at this SNR in dB; 0 = no noise", &config.corpus.noise_snr_db, between(-20, 100)},
      {"corpus.features", "cord (cord's log-mel, 80 bins) or whisper (WhisperFeatureExtractor's, for a Qwen2-Audio model)",
       choice_ref(&config.corpus.features)},
      {"corpus.n_mels", "mel bins of whisper features (80, or 128 for Qwen2-Audio); cord features have 80",
       &config.corpus.n_mels, between(1, 512)},
      {"train.stage",
       "text (decoder learns from text) | align (frozen decoder; encoder + projector learn from speech) | "
       "distill (CORD and its baselines, [cord])",
       choice_ref(&config.train.stage)},
      {"train.corpus", "corpus file (cord corpus synth --out)", &config.train.corpus},
      {"train.run_dir", "the stage writes RUN_DIR/STAGE/ (config, metrics.jsonl, model.h5)", &config.train.run_dir},
      {"train.init",
       "weights to start from; empty = fresh (text), RUN_DIR/text/model.h5 (align), RUN_DIR/align/model.h5 (distill)",
       &config.train.init},
      {"train.seed", "seed of the data order and the task draws", &config.train.seed},
      {"train.families",
       "comma list of the families the training split is drawn from (arithmetic, multiple_choice, ordering); "
       "empty = every family; validation and eval keep every family",
       &config.train.families},
      {"train.micro_batch",
       "items (distill: prompts) per forward/backward per dp rank; 0 = whole local batch (no accumulation)",
       &config.train.micro_batch, between(0, 1e9)},
      {"train.weight_decay", "decoupled AdamW weight decay (matrices only)", &config.train.weight_decay, between(0, 10)},
      {"train.beta1", "AdamW first-moment decay", &config.train.beta1, between(0, 0.999999)},
      {"train.beta2", "AdamW second-moment decay", &config.train.beta2, between(0, 0.999999)},
      {"train.grad_clip", "global gradient-norm clip; 0 = off", &config.train.grad_clip, between(0, 1e12)},
      {"train.max_nonfinite_steps", "stop after this many consecutive skipped non-finite steps",
       &config.train.max_nonfinite_steps, between(1, 1000000)},
      {"train.log_every", "steps between step lines and metrics records", &config.train.log_every, positive()},
      {"train.val_every", "steps between validation passes; 0 = only at the end", &config.train.val_every, between(0, 1e12)},
      {"train.val_items", "validation items scored for loss and greedy accuracy", &config.train.val_items, between(0, 1e12)},
      {"train.bucket_mb", "data-parallel gradient bucket size in MB", &config.train.bucket_mb, positive()},
      {"train.zero1", "shard the AdamW state over the dp ranks (ZeRO-1)", &config.train.zero1},
      {"train.text_repeat_fraction", "text stage: share of items trained on repeating the question",
       &config.train.text_repeat_fraction, between(0, 1)},
      {"train.align_solution_fraction", "align stage: share of items trained audio -> solution (rest: transcript)",
       &config.train.align_solution_fraction, between(0, 1)},
      {"train.align_trainable", "align stage: comma list of the parameter groups that learn: encoder, projector, decoder",
       &config.train.align_trainable},
      {"train.inject_nonfinite", "tests only: comma list of steps (1-based, as logged) whose loss is made NaN",
       &config.train.inject_nonfinite},
      {"train.text.steps", "text stage: optimizer steps", &config.train.text.steps, positive()},
      {"train.text.global_batch", "text stage: items per step over all dp ranks", &config.train.text.global_batch, positive()},
      {"train.text.lr", "text stage: peak learning rate", &config.train.text.lr, positive()},
      {"train.text.min_lr", "text stage: learning rate at the last step (cosine floor)", &config.train.text.min_lr, at_least(0)},
      {"train.text.warmup_steps", "text stage: linear warmup steps", &config.train.text.warmup_steps, between(0, 1e12)},
      {"train.align.steps", "align stage: optimizer steps", &config.train.align.steps, positive()},
      {"train.align.global_batch", "align stage: items per step over all dp ranks", &config.train.align.global_batch, positive()},
      {"train.align.lr", "align stage: peak learning rate", &config.train.align.lr, positive()},
      {"train.align.min_lr", "align stage: learning rate at the last step (cosine floor)", &config.train.align.min_lr, at_least(0)},
      {"train.align.warmup_steps", "align stage: linear warmup steps", &config.train.align.warmup_steps, between(0, 1e12)},
      {"train.distill.steps", "distill stage: optimizer steps (batches of rollouts)", &config.train.distill.steps, positive()},
      {"train.distill.global_batch", "distill stage: prompts per step over all dp ranks",
       &config.train.distill.global_batch, positive()},
      {"train.distill.lr", "distill stage: peak learning rate", &config.train.distill.lr, positive()},
      {"train.distill.min_lr", "distill stage: learning rate at the last step (cosine floor)",
       &config.train.distill.min_lr, at_least(0)},
      {"train.distill.warmup_steps", "distill stage: linear warmup steps", &config.train.distill.warmup_steps, between(0, 1e12)},
      {"train.augment.speed", "align/distill training: speed perturbation, factor ~ U[1 - speed, 1 + speed]; 0 = off",
       &config.train.augment.speed, between(0, 0.5)},
      {"train.augment.noise_fraction", "align/distill training: share of items given white noise; 0 = off",
       &config.train.augment.noise_fraction, between(0, 1)},
      {"train.augment.noise_snr_min_db", "the added noise's SNR ~ U[min, max] dB", &config.train.augment.noise_snr_min_db,
       between(-20, 100)},
      {"train.augment.noise_snr_max_db", "the added noise's highest SNR, dB", &config.train.augment.noise_snr_max_db,
       between(-20, 100)},
      {"train.augment.time_masks", "align/distill training: SpecAugment time masks per item; 0 = off",
       &config.train.augment.time_masks, between(0, 100)},
      {"train.augment.time_mask_frames", "the widest time mask, frames", &config.train.augment.time_mask_frames,
       between(1, 10000)},
      {"train.augment.freq_masks", "align/distill training: SpecAugment frequency masks per item; 0 = off",
       &config.train.augment.freq_masks, between(0, 100)},
      {"train.augment.freq_mask_bins", "the widest frequency mask, mel bins", &config.train.augment.freq_mask_bins,
       between(1, 1000)},
      {"cord.method", "cord | cord-unweighted | opd | grpo | sft | fkl (docs/method.md)", choice_ref(&config.cord.method)},
      {"cord.alpha", "weight of the top_k highest-divergence positions of a rollout", &config.cord.alpha, between(0, 1e6)},
      {"cord.beta", "position weight of the first token, decaying linearly to 1 at the last", &config.cord.beta, between(0, 1e6)},
      {"cord.top_k", "positions per rollout weighted alpha", &config.cord.top_k, between(0, 1e9)},
      {"cord.aggregation", "token loss over positions: sum (paper) | token_mean | sequence_mean",
       choice_ref(&config.cord.aggregation)},
      {"cord.token_loss_weight", "coefficient of the token-level loss", &config.cord.token_loss_weight, between(0, 1e6)},
      {"cord.sequence_loss_weight", "coefficient of the GRPO loss", &config.cord.sequence_loss_weight, between(0, 1e6)},
      {"cord.group_size", "N: audio rollouts per prompt for GRPO", &config.cord.group_size, between(2, 1024)},
      {"cord.token_temperature", "temperature of the token-level rollout (audio; text for sft and fkl)",
       &config.cord.token_temperature, between(0, 100)},
      {"cord.group_temperature", "temperature of the N GRPO rollouts", &config.cord.group_temperature, between(0, 100)},
      {"cord.reference_temperature", "temperature of the text reference rollout; 0 = greedy",
       &config.cord.reference_temperature, between(0, 100)},
      {"cord.max_new_tokens", "longest rollout", &config.cord.max_new_tokens, positive()},
      {"cord.judge", "agreement (audio answer vs the text reference's) | ground_truth (vs the corpus answer)",
       choice_ref(&config.cord.judge)},
      {"cord.judge_tolerance", "numeric answers agree within this relative tolerance", &config.cord.judge_tolerance, between(0, 1)},
      {"cord.normalize_advantages", "divide GRPO advantages by the group's standard deviation",
       &config.cord.normalize_advantages},
      {"cord.teacher", "current (this step's weights, no grad) | initial (frozen copy of train.init)",
       choice_ref(&config.cord.teacher)},
      {"cord.trainable", "comma list of the parameter groups that learn: encoder, projector, decoder",
       &config.cord.trainable},
      {"cord.decoder_lr_scale",
       "the decoder's learning rate as a multiple of train.distill.lr (the encoder and projector learn at 1x)",
       &config.cord.decoder_lr_scale},
      {"cord.ppo_inner_steps", "optimizer steps per batch of rollouts; > 1 clips the sequence ratio (PPO)",
       &config.cord.ppo_inner_steps, between(1, 64)},
      {"cord.top_k_fraction",
       "> 0: weight alpha on the ceil(fraction x length) highest-divergence positions of each rollout instead of "
       "cord.top_k (the paper's 20 of ~200 tokens is 0.1); 0 = cord.top_k",
       &config.cord.top_k_fraction, between(0, 1)},
      {"cord.token_rollouts",
       "single (the paper: one audio rollout per prompt for the token loss) | group (the token loss reads the N GRPO "
       "rollouts; cord and cord-unweighted only)",
       choice_ref(&config.cord.token_rollouts)},
      {"cord.fkl_mixture",
       "lambda in [0, 1): (1 - lambda) x the reverse-KL token loss + lambda x forward KL on the teacher's text "
       "references (GKD-style); cord, cord-unweighted and opd only; 0 = off",
       &config.cord.fkl_mixture, between(0, 0.999999)},
      {"cord.ppo_clip", "PPO ratio clip epsilon (ppo_inner_steps > 1)", &config.cord.ppo_clip, between(0, 10)},
      {"cord.loss_chunk_rows",
       "> 0: compute the token losses and GRPO's log-probabilities from the hidden states this many rollouts at a "
       "time, never holding every rollout's [T, vocabulary] logits (large vocabularies); 0 = from the logits",
       &config.cord.loss_chunk_rows, between(0, 1e9)},
      {"ckpt.dir", "checkpoint folder; empty = RUN_DIR/STAGE/checkpoints", &config.ckpt.dir},
      {"ckpt.resume", "none | auto (newest committed checkpoint that verifies) | PATH (also --resume)",
       &config.ckpt.resume},
      {"ckpt.every_steps", "save a checkpoint every N steps; 0 = off", &config.ckpt.every_steps, between(0, 1e12)},
      {"ckpt.every_minutes", "save a checkpoint every T minutes; 0 = off", &config.ckpt.every_minutes, between(0, 1e9)},
      {"ckpt.max_wall_minutes",
       "save and exit 75 (requeue) before the job has run this long; 0 = no limit (also --max-wall-minutes)",
       &config.ckpt.max_wall_minutes, between(0, 1e9)},
      {"ckpt.keep_last", "committed checkpoints kept (the newest K, >= 1)", &config.ckpt.keep_last, between(1, 1e9)},
      {"ckpt.keep_every", "also keep checkpoints whose step is a multiple of this; 0 = none", &config.ckpt.keep_every, between(0, 1e12)},
      {"ckpt.at_end", "also save a checkpoint at the end of the stage", &config.ckpt.at_end},
      {"ckpt.async", "copy the checkpoint to host memory and write it on a background thread while training goes on",
       &config.ckpt.async},
      {"ckpt.async_busy", "wait | skip: a save due while the previous async one is still being written (a stop or the "
                          "stage's end always waits)", choice_ref(&config.ckpt.async_busy)},
      {"eval.split", "train | validation | test", choice_ref(&config.eval.split)},
      {"eval.max_items", "evaluate the first N items of the split; 0 = all", &config.eval.max_items, between(0, 1e12)},
      {"eval.batch", "prompts decoded together per dp rank", &config.eval.batch, positive()},
      {"eval.max_new_tokens", "longest response decoded", &config.eval.max_new_tokens, positive()},
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

void require_range(const char* key, double value, double lo, double hi) {
  if (!(value >= lo && value <= hi)) {
    std::ostringstream os;
    os << key << "=" << value << " is outside [" << lo << ", " << hi << "]";
    throw UsageError(os.str());
  }
}

double number_of(const FieldRef& ref) {
  if (const auto* p = std::get_if<int*>(&ref)) return **p;
  if (const auto* p = std::get_if<std::int64_t*>(&ref)) return static_cast<double>(**p);
  if (const auto* p = std::get_if<double*>(&ref)) return **p;
  return 0;
}

// Every field's Range, from the table.
void check_ranges(Config config, std::string_view prefix = "") {
  for (const Field& field : config_fields(config)) {
    if (field.range.kind == Range::Kind::kAny || field.key.substr(0, prefix.size()) != prefix) continue;
    const std::string key(field.key);
    const double value = number_of(field.ref);
    switch (field.range.kind) {
      case Range::Kind::kPositive: require_positive(key.c_str(), value); break;
      case Range::Kind::kAtLeast:
        if (!(value >= field.range.min)) {
          std::ostringstream os;
          os << key << "=" << value << " must be >= " << field.range.min;
          throw UsageError(os.str());
        }
        break;
      case Range::Kind::kBetween: require_range(key.c_str(), value, field.range.min, field.range.max); break;
      case Range::Kind::kAny: break;
    }
  }
}

void require_divisible(const char* key, int value, const char* by_key, int by) {
  if (by <= 0 || value % by != 0) {
    throw UsageError(std::string(key) + "=" + std::to_string(value) + " is not divisible by " + by_key + "=" +
                     std::to_string(by));
  }
}


// What the fields' Ranges cannot say: bounds set by another field, lists, empty strings.
// Family, voice and variant names are checked by the corpus module, which knows them.
void validate_corpus(const CorpusConfig& c) {
  require_range("corpus.max_steps", c.max_steps, c.min_steps, 6);
  require_range("corpus.rate_max", c.rate_max, c.rate_min, 450);
  require_range("corpus.pitch_max", c.pitch_max, c.pitch_min, 100);
  if (c.families.empty()) throw UsageError("corpus.families is empty");
  if (c.voices.empty()) throw UsageError("corpus.voices is empty");
  if (c.variants.empty()) throw UsageError("corpus.variants is empty");
  if (c.features == FeatureKind::kCord && c.n_mels != 80) {
    throw UsageError("corpus.n_mels = " + std::to_string(c.n_mels) +
                     ": cord features have 80 mel bins (another count needs corpus.features = whisper)");
  }
}

// `key` names a non-empty comma list of the model's parameter groups.
void validate_parameter_groups(const char* key, const std::string& list) {
  const std::vector<std::string> groups = split_comma_list(list);
  if (groups.empty()) throw UsageError(std::string(key) + " is empty: name at least one of encoder, projector, decoder");
  for (const std::string& group : groups) {
    if (group != "encoder" && group != "projector" && group != "decoder") {
      throw UsageError(std::string(key) + ": '" + group + "' is not one of encoder, projector, decoder");
    }
  }
}

void validate_train(const TrainConfig& t) {
  validate_parameter_groups("train.align_trainable", t.align_trainable);
  if (t.corpus.empty()) throw UsageError("train.corpus is empty");
  if (t.run_dir.empty()) throw UsageError("train.run_dir is empty");
  for (const auto& [name, stage] : {std::pair<const char*, const StageConfig&>{"text", t.text},
                                    {"align", t.align}, {"distill", t.distill}}) {
    require_range(("train." + std::string(name) + ".min_lr").c_str(), stage.min_lr, 0, stage.lr);
  }
  require_range("train.augment.noise_snr_max_db", t.augment.noise_snr_max_db, t.augment.noise_snr_min_db, 100);
}

void validate_cord(const CordConfig& c) {
  validate_parameter_groups("cord.trainable", c.trainable);
  const bool grpo_and_kl = c.method == Method::kCord || c.method == Method::kCordUnweighted;
  if (c.token_rollouts == TokenRollouts::kGroup && !grpo_and_kl) {
    throw UsageError("cord.token_rollouts=group needs a method with both GRPO rollouts and a reverse-KL token loss "
                     "(cord, cord-unweighted), not cord.method=" + name_of(c.method));
  }
  if (c.fkl_mixture > 0 && !grpo_and_kl && c.method != Method::kOpd) {
    throw UsageError("cord.fkl_mixture mixes into a reverse-KL token loss (cord, cord-unweighted, opd), not cord.method=" +
                     name_of(c.method));
  }
  if (c.loss_chunk_rows > 0 && c.ppo_inner_steps > 1) {
    throw UsageError("cord.loss_chunk_rows=" + std::to_string(c.loss_chunk_rows) +
                     " needs a loss linear in the log-probabilities; PPO's clipped ratio (cord.ppo_inner_steps=" +
                     std::to_string(c.ppo_inner_steps) + ") is not: set one of them back (0, 1)");
  }
  if (!(c.decoder_lr_scale > 0 && c.decoder_lr_scale <= 100)) {
    throw UsageError("cord.decoder_lr_scale=" + std::to_string(c.decoder_lr_scale) +
                     " is outside (0, 100] (to freeze the decoder, leave it out of cord.trainable)");
  }
}

}  // namespace

const StageConfig& stage_config(const TrainConfig& train) {
  switch (train.stage) {
    case StageName::kText: return train.text;
    case StageName::kAlign: return train.align;
    case StageName::kDistill: return train.distill;
  }
  throw Error("train.stage: no such stage");  // unreachable: the enum has no other value
}

void validate_model(const ModelConfig& m) {
  Config config;
  config.model = m;
  check_ranges(config, "model.");
  require_divisible("model.d_model", m.d_model, "model.n_heads", m.n_heads);
  if ((m.d_model / m.n_heads) % 2 != 0) {
    throw UsageError("model.d_model / model.n_heads = " + std::to_string(m.d_model / m.n_heads) +
                     " must be even (rotary embeddings rotate pairs)");
  }
  const int kv_heads = m.n_kv_heads == 0 ? m.n_heads : m.n_kv_heads;
  require_divisible("model.n_heads", m.n_heads, "model.n_kv_heads", kv_heads);
  require_divisible("model.audio.d_model", m.audio.d_model, "model.audio.n_heads", m.audio.n_heads);
  if (m.audio.architecture == AudioArchitecture::kWhisper && m.audio.d_ff <= 0) {
    throw UsageError("model.audio.d_ff = " + std::to_string(m.audio.d_ff) +
                     " must be > 0 with model.audio.architecture = whisper (the encoder's MLP width)");
  }
}

void validate(const Config& config) {
  // The parallel layout depends on the world size: comm::ParallelDims::resolve checks it.
  check_ranges(config);
  validate_model(config.model);
  validate_corpus(config.corpus);
  validate_train(config.train);
  validate_cord(config.cord);
  if (config.ckpt.resume.empty()) throw UsageError("ckpt.resume is empty (none, auto or a checkpoint path)");
}

void validate_tensor_parallel(const ModelConfig& m, int tp) {
  const int kv_heads = m.n_kv_heads == 0 ? m.n_heads : m.n_kv_heads;
  require_divisible("model.n_heads", m.n_heads, "parallel.tp", tp);
  // Key/value heads split when tp divides them, and replicated (each on tp / n_kv_heads
  // consecutive ranks) when n_kv_heads divides tp.
  if (tp <= kv_heads) {
    require_divisible("model.n_kv_heads (resolved)", kv_heads, "parallel.tp", tp);
  } else {
    require_divisible("parallel.tp", tp, "model.n_kv_heads (resolved)", kv_heads);
  }
  require_divisible("model.audio.n_heads", m.audio.n_heads, "parallel.tp", tp);
  if (m.audio.architecture == AudioArchitecture::kWhisper) {
    require_divisible("model.audio.d_ff", m.audio.d_ff, "parallel.tp", tp);
  }
  // A vocabulary that tp does not divide is padded to tp * ceil(V / tp) rows (padding rows
  // are zero and their logits masked, tensor_parallel.hpp); every rank must still hold
  // at least one real row.
  const int64_t rows_per_rank = (static_cast<int64_t>(m.vocab_size) + tp - 1) / tp;
  if (rows_per_rank * (tp - 1) >= m.vocab_size) {
    throw UsageError("model.vocab_size = " + std::to_string(m.vocab_size) + " over parallel.tp = " + std::to_string(tp) +
                     ": " + std::to_string(rows_per_rank) + " rows a rank would leave the last rank only padding");
  }
}

}  // namespace cord
