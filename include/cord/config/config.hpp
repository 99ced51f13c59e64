#pragma once
// The configuration tree: one struct per TOML section, a comment on every field.
// Defaults are the embedded configuration `cord` runs with when no --config is given.
// Every field is also listed once in config_fields() (src/config/config.cpp), which is
// what loading, --set overrides, unknown-key detection and the resolved dump walk.
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cord {

// [parallel] how the world's ranks are arranged. world = dp * tp; tp is innermost,
// so tensor-parallel peers are consecutive ranks (on the same node when possible).
struct ParallelConfig {
  int dp = 0;  // data-parallel degree; 0 = world size / tp
  int tp = 1;  // tensor-parallel degree; must divide the world size
};

// [model.audio] the audio encoder (conv subsampling + pre-norm transformer) and the
// projector (frame stacking + MLP) that feeds the decoder.
struct AudioEncoderConfig {
  int n_mels = 80;          // log-mel bins per input frame
  int d_model = 128;        // encoder width
  int n_layers = 2;         // transformer layers after two stride-2 convolutions (4x fewer frames)
  int n_heads = 4;          // attention heads; divisible by parallel.tp
  int projector_stack = 6;  // encoder frames concatenated per decoder position (6: 240 ms, about one spoken word)
};

// [model] the decoder-only language model (Qwen2-like: RMSNorm, RoPE, SwiGLU, GQA).
struct ModelConfig {
  int vocab_size = 256;          // tokens, including specials; corpus runs take it from the tokenizer
  int d_model = 128;             // residual width
  int n_layers = 4;              // decoder layers
  int n_heads = 4;               // query heads; divisible by parallel.tp
  int n_kv_heads = 0;            // key/value heads (grouped-query attention); 0 = n_heads
  int d_ff = 0;                  // SwiGLU hidden width; 0 = 8/3 * d_model rounded up to a multiple of 32
  int max_seq_len = 512;         // longest sequence (prompt + response) and KV cache capacity
  double rope_theta = 10000.0;   // rotary embedding base
  double norm_eps = 1e-5;        // RMSNorm epsilon
  bool tie_embeddings = false;   // LM head shares the token embedding matrix
  double init_std = 0.02;        // normal init std (residual projections scaled by 1/sqrt(2 * n_layers))
  std::int64_t init_seed = 1234; // initial weights depend on this seed only, never on the layout
  AudioEncoderConfig audio;
};

// [runtime] where and how each rank computes.
struct RuntimeConfig {
  std::string device = "auto";  // "cpu", "cuda" (GPU = local rank), or "auto" (cuda if usable)
  int threads = 0;              // torch intra-op threads per rank; 0 = cores on the node / local ranks
  std::string precision = "auto";  // "fp32", "bf16" (autocast matrix work, fp32 master weights), "auto" (bf16 on cuda)
};

// [corpus] the synthetic spoken-reasoning corpus that `cord corpus synth` writes
// (data/README.md documents the file). Item i depends on (seed, i) only.
struct CorpusConfig {
  std::int64_t seed = 20260101;  // corpus seed: text, voice, noise and split of every item derive from it
  std::int64_t items = 12000;    // number of items to generate
  std::string families = "arithmetic,multiple_choice,ordering";  // comma list; item i has family i mod count
  double validation_fraction = 0.04;  // share of distinct questions (by content, not wording) held out for validation
  double test_fraction = 0.06;        // share of distinct questions held out for test
  int min_steps = 1;                  // arithmetic: fewest operations per problem
  int max_steps = 2;                  // arithmetic: most operations per problem
  int max_number = 20;                // arithmetic: every given or intermediate number is below this
  int entities = 40;                  // multiple choice: people in the generated fact base (2..64)
  bool spoken_digits = true;          // speak numbers digit by digit ("two three") instead of "twenty three"
  std::string voices = "en-us,en,en-gb-x-rp,en-gb-scotland,en-029";  // espeak-ng base voices drawn per item
  std::string variants = "none,m1,m2,m3,f1,f2,f3,klatt";  // espeak-ng voice variants drawn per item; none = base voice
  int rate_min = 160;                 // slowest speaking rate drawn, words per minute (espeak 80..450)
  int rate_max = 220;                 // fastest speaking rate drawn, words per minute
  int pitch_min = 25;                 // lowest pitch drawn (espeak 0..100)
  int pitch_max = 75;                 // highest pitch drawn
  double noise_snr_db = 0;            // additive white noise at this signal-to-noise ratio in dB; 0 = none
};

// [train.text] and [train.align]: the length, batch and learning-rate schedule of one
// stage (linear warmup, then cosine decay from lr to min_lr at `steps`).
struct StageConfig {
  std::int64_t steps = 1000;        // optimizer steps
  std::int64_t global_batch = 32;   // items per optimizer step over all dp ranks
  double lr = 1e-3;                 // peak learning rate
  double min_lr = 1e-4;             // learning rate at the last step
  std::int64_t warmup_steps = 100;  // linear warmup from 0
};

// [train] one training stage of the base LALM (`cord train`). Each stage writes its own
// run directory RUN_DIR/STAGE (README "Run directory").
//   text   the decoder learns from text questions -> solutions (loss on response
//          tokens only) and, on a share of the items, text question -> the question back
//          (the "repeat" task, which the align stage's transcription reuses)
//   align  the decoder is frozen; the audio encoder and projector learn from speech:
//          audio -> transcript of the question, and on a share of the items audio -> solution
//   distill  CORD and its baselines ([cord]) from a base model (DESIGN.md section 1)
struct TrainConfig {
  std::string stage = "text";      // text | align | distill
  std::string corpus = "runs/main/corpus.h5";  // corpus file (`cord corpus synth --out`)
  std::string run_dir = "runs/main";           // the stage writes RUN_DIR/STAGE/
  std::string init = "";           // weights to start from; "" = fresh for text, RUN_DIR/text/model.h5 for align,
                                   // RUN_DIR/align/model.h5 for distill
  std::int64_t seed = 1;           // data order and task draws
  std::int64_t micro_batch = 0;    // items (distill: prompts) per forward/backward per dp rank; 0 = the whole local batch
  double weight_decay = 0.1;       // decoupled AdamW decay on matrices (not on norms/biases)
  double beta1 = 0.9;              // AdamW first-moment decay
  double beta2 = 0.95;             // AdamW second-moment decay
  double grad_clip = 1.0;          // global gradient-norm clip; 0 = off
  int max_nonfinite_steps = 3;     // stop after this many consecutive skipped (non-finite) steps
  std::int64_t log_every = 50;     // steps between step lines (and JSONL records)
  std::int64_t val_every = 600;    // steps between validation passes; 0 = only at the end
  std::int64_t val_items = 128;    // validation items scored for loss and greedy accuracy
  double bucket_mb = 4.0;          // data-parallel gradient bucket size (MB)
  bool zero1 = false;              // shard AdamW state over the dp ranks (ZeRO-1)
  double text_repeat_fraction = 0.2;      // text stage: share of items trained on "repeat the question"
  double align_solution_fraction = 0.25;  // align stage: share of items trained audio -> solution (rest: transcript)
  std::string inject_nonfinite = "";      // fault injection for tests: steps (1-based, as logged) whose loss is made NaN
  // The main job (README): about 23 minutes on 2 cores from the corpus to CORD's eval.
  StageConfig text{2000, 64, 2e-3, 1e-4, 100};
  StageConfig align{1800, 32, 2e-3, 1e-4, 100};
  StageConfig distill{500, 16, 2e-4, 2e-5, 10};  // global_batch counts prompts
};

// [cord] the distill stage (train.stage = distill): CORD and the paper's baselines,
// DESIGN.md section 1. Paper defaults; (ours) marks a choice the paper leaves open.
//   method           rollouts per prompt                        loss
//   cord             1 audio (T=token_temperature), N audio     weighted reverse KL + GRPO
//                    (T=group_temperature), 1 text reference
//   cord-unweighted  as cord                                    reverse KL (alpha = beta = 1) + GRPO
//   opd              1 audio                                    weighted reverse KL
//   grpo             N audio, 1 text reference                  GRPO
//   sft              1 text (T=token_temperature)               -log p(y | audio)
//   fkl              1 text (T=token_temperature)               forward KL(teacher || student)
struct CordConfig {
  std::string method = "cord";        // cord | cord-unweighted | opd | grpo | sft | fkl
  double alpha = 2.0;                 // weight of the top_k highest-divergence positions
  double beta = 2.0;                  // position weight of the first token (linear decay to 1 at the last)
  std::int64_t top_k = 20;            // positions per rollout weighted alpha
  std::string aggregation = "sum";    // sum (paper) | token_mean | sequence_mean (ours) of the token loss
  double token_loss_weight = 1.0;     // coefficient of L_tok
  double sequence_loss_weight = 1.0;  // coefficient of L_seq
  std::int64_t group_size = 4;        // N: audio rollouts per prompt for GRPO
  double token_temperature = 1.0;     // the token-level rollout (audio; text for sft/fkl)
  double group_temperature = 1.5;     // the N GRPO rollouts
  double reference_temperature = 0.0; // the text reference y^ (ours; 0 = greedy)
  std::int64_t max_new_tokens = 200;  // longest rollout
  std::string judge = "agreement";    // agreement (audio answer vs text reference) | ground_truth (ours)
  double judge_tolerance = 1e-6;      // numeric answers agree within this relative tolerance
  bool normalize_advantages = false;  // divide GRPO advantages by the group's std (paper: no)
  std::string teacher = "initial";    // initial (frozen snapshot of train.init) | current weights under no-grad (ours;
                                      // current was the default until its text branch was measured to collapse, README)
  std::string trainable = "encoder,projector,decoder";  // parameter groups that learn
  double decoder_lr_scale = 1.0;      // the decoder learns at this times the stage's lr (ours; the text branch reads it too)
  std::int64_t ppo_inner_steps = 1;   // optimizer steps per batch of rollouts; > 1 clips the sequence ratio (ours)
  double ppo_clip = 0.2;              // PPO ratio clip epsilon when ppo_inner_steps > 1
};

// [eval] `cord eval`: greedy decoding of one split with audio and with text input.
// [ckpt] training checkpoints (ckpt/checkpoint.hpp, train/checkpointing.hpp): when a stage
// saves, how many it keeps, and what it resumes from.
struct CheckpointConfig {
  std::string dir = "";               // checkpoint folder; "" = RUN_DIR/STAGE/checkpoints
  std::string resume = "none";        // none | auto (newest committed checkpoint that verifies) | PATH (--resume)
  std::int64_t every_steps = 0;       // save every N steps; 0 = off
  double every_minutes = 0;           // save every T minutes (rank 0's clock); 0 = off
  double max_wall_minutes = 0;        // save and exit 75 (requeue) before the job has run this long; 0 = no limit
  std::int64_t keep_last = 2;         // committed checkpoints kept (the newest K)
  std::int64_t keep_every = 0;        // also keep those whose step is a multiple of this; 0 = none
  bool at_end = true;                 // save at the end of the stage too
};

struct EvalConfig {
  std::string split = "test";      // train | validation | test
  std::int64_t max_items = 0;      // evaluate the first N items of the split (corpus order); 0 = all
  std::int64_t batch = 64;         // prompts decoded together per dp rank
  std::int64_t max_new_tokens = 96;  // longest response decoded
  bool transcripts = true;         // also decode transcripts of the audio and report word error rate
};

struct Config {
  ParallelConfig parallel;
  RuntimeConfig runtime;
  ModelConfig model;
  CorpusConfig corpus;
  TrainConfig train;
  CordConfig cord;
  CheckpointConfig ckpt;
  EvalConfig eval;
};

// The StageConfig of train.stage (text, align or distill); throws UsageError for another name.
const StageConfig& stage_config(const TrainConfig& train);

// A typed reference to one field of a Config, with its dotted key and documentation.
using FieldRef = std::variant<int*, std::int64_t*, double*, bool*, std::string*>;
struct Field {
  std::string_view key;  // "section.name"
  std::string_view doc;
  FieldRef ref;
};

// Every field of `config`, in dump order. The references point into `config`.
std::vector<Field> config_fields(Config& config);

// "a, b,c" -> {"a", "b", "c"}: the comma lists of config strings, items trimmed, empty
// items dropped.
std::vector<std::string> split_comma_list(const std::string& text);

// Checks values that do not depend on the world size (choices, ranges); the parallel
// layout is checked by comm::ParallelDims::resolve once the world size is known.
// Throws UsageError with the exact field and value.
void validate(const Config& config);

// The [model] part of validate(), for code that builds a model from a ModelConfig alone.
void validate_model(const ModelConfig& model);

// Checks what tensor parallelism of degree `tp` splits (heads, vocabulary), once the
// layout is resolved. Throws UsageError, e.g. "model.n_heads=4 is not divisible by parallel.tp=3".
void validate_tensor_parallel(const ModelConfig& model, int tp);

}  // namespace cord
