#pragma once
// The configuration tree: one struct per TOML section. A field's type and default (the
// embedded configuration `cord` runs with when no --config is given) are declared here;
// its key, documentation and valid range once, in config_fields() (src/config/config.cpp),
// which loading, --set overrides, unknown-key detection, validation and the resolved dump
// (`cord info --dry-run`, every stage's config.toml) walk. A choice is an enum whose names
// are declared once, by its Choices<> below.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cord {

// --- choices: a field whose value is one of fixed names, held as an enum -----------------
// Each enum's names are listed once, in enum order, by its Choices<> specialisation.
// Loading parses the name (a misspelt one is an error naming the field and every valid
// name); the resolved dump writes it; code compares the enum.
template <typename E>
struct Choices;

#define CORD_CHOICES(Enum, ...)                                                      \
  template <>                                                                        \
  struct Choices<Enum> {                                                             \
    static constexpr std::array names{__VA_ARGS__};                                  \
  }

using namespace std::string_view_literals;

enum class DeviceOption { kCpu, kCuda, kAuto };
CORD_CHOICES(DeviceOption, "cpu"sv, "cuda"sv, "auto"sv);
enum class PrecisionOption { kAuto, kFp32, kBf16 };
CORD_CHOICES(PrecisionOption, "auto"sv, "fp32"sv, "bf16"sv);
enum class StageName { kText, kAlign, kDistill };
CORD_CHOICES(StageName, "text"sv, "align"sv, "distill"sv);
enum class Method { kCord, kCordUnweighted, kOpd, kGrpo, kSft, kFkl };
CORD_CHOICES(Method, "cord"sv, "cord-unweighted"sv, "opd"sv, "grpo"sv, "sft"sv, "fkl"sv);
enum class Aggregation { kSum, kTokenMean, kSequenceMean };
CORD_CHOICES(Aggregation, "sum"sv, "token_mean"sv, "sequence_mean"sv);
enum class JudgeKind { kAgreement, kGroundTruth };
CORD_CHOICES(JudgeKind, "agreement"sv, "ground_truth"sv);
enum class TokenRollouts { kSingle, kGroup };
CORD_CHOICES(TokenRollouts, "single"sv, "group"sv);
enum class TeacherWeights { kInitial, kCurrent };
CORD_CHOICES(TeacherWeights, "initial"sv, "current"sv);
enum class SplitName { kTrain, kValidation, kTest };
CORD_CHOICES(SplitName, "train"sv, "validation"sv, "test"sv);
enum class AsyncBusy { kWait, kSkip };
CORD_CHOICES(AsyncBusy, "wait"sv, "skip"sv);
enum class AudioArchitecture { kCord, kWhisper };
CORD_CHOICES(AudioArchitecture, "cord"sv, "whisper"sv);
enum class FeatureKind { kCord, kWhisper };
CORD_CHOICES(FeatureKind, "cord"sv, "whisper"sv);

#undef CORD_CHOICES

// The name of a choice ("distill" for StageName::kDistill).
template <typename E>
std::string name_of(E value) {
  return std::string(Choices<E>::names[static_cast<size_t>(value)]);
}

// [parallel] how the world's ranks are arranged. world = dp * tp; tp is innermost,
// so tensor-parallel peers are consecutive ranks (on the same node when possible).
struct ParallelConfig {
  int dp = 0;
  int tp = 1;
};

// [model.audio] the audio encoder and the projector that feeds the decoder, in one of two
// architectures (model/lalm.hpp, model/whisper_encoder.hpp):
//   cord     two stride-2 convolutions, pre-RMSNorm blocks with RoPE, then projector_stack
//            frames concatenated through Linear-GELU-Linear (the built-in model)
//   whisper  Qwen2-Audio's: Whisper's encoder (convolutions of stride 1 and 2, fixed
//            sinusoidal positions, pre-LayerNorm blocks) with average pooling by 2 and one
//            Linear into the decoder width; a Hugging Face directory's audio_config sets it
struct AudioEncoderConfig {
  AudioArchitecture architecture = AudioArchitecture::kCord;
  int n_mels = 80;
  int d_model = 128;
  int n_layers = 2;
  int n_heads = 4;
  int projector_stack = 6;
  int d_ff = 0;                      // whisper: the MLP width (encoder_ffn_dim); cord: unused
  int max_source_positions = 1500;   // whisper: positions after the stride-2 convolution
};

// [model] the decoder-only language model (Qwen2-like: RMSNorm, RoPE, SwiGLU, GQA).
struct ModelConfig {
  // "" = the built-in model, initialised from init_seed; "hf:DIR" = a Hugging Face model
  // directory (hf/hf_model.hpp): the decoder fields below are then read from DIR/config.json.
  std::string source;
  int vocab_size = 256;
  int d_model = 128;
  int n_layers = 4;
  int n_heads = 4;
  int n_kv_heads = 0;
  int d_ff = 0;
  int max_seq_len = 512;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool tie_embeddings = false;
  bool attention_bias = false;  // biases on the q, k and v projections (Qwen2)
  double init_std = 0.02;
  std::int64_t init_seed = 1234;
  AudioEncoderConfig audio;
};

// [runtime] where and how each rank computes.
struct RuntimeConfig {
  DeviceOption device = DeviceOption::kAuto;
  int threads = 0;
  PrecisionOption precision = PrecisionOption::kAuto;
  double hang_timeout_s = 600;  // 0 = no hang watchdog (comm/watchdog.hpp)
};

// [corpus] the synthetic spoken-reasoning corpus that `cord corpus synth` writes
// (data/README.md documents the file). Item i depends on (seed, i) only.
struct CorpusConfig {
  std::int64_t seed = 20260101;
  std::int64_t items = 12000;
  std::string families = "arithmetic,multiple_choice,ordering";
  double validation_fraction = 0.04;
  double test_fraction = 0.06;
  int min_steps = 1;
  int max_steps = 2;
  int max_number = 20;
  int entities = 40;
  bool spoken_digits = true;
  std::string voices = "en-us,en,en-gb-x-rp,en-gb-scotland,en-029";
  std::string variants = "none,m1,m2,m3,f1,f2,f3,klatt";
  int rate_min = 160;
  int rate_max = 220;
  int pitch_min = 25;
  int pitch_max = 75;
  double noise_snr_db = 0;
  // The audio features stored (data/README.md): cord's log-mel (80 bins, the built-in
  // encoder's), or Whisper's (WhisperFeatureExtractor's, n_mels bins: a Qwen2-Audio model's).
  FeatureKind features = FeatureKind::kCord;
  int n_mels = 80;
};

// [train.text] and [train.align]: the length, batch and learning-rate schedule of one
// stage (linear warmup, then cosine decay from lr to min_lr at `steps`).
struct StageConfig {
  std::int64_t steps = 1000;
  std::int64_t global_batch = 32;
  double lr = 1e-3;
  double min_lr = 1e-4;
  std::int64_t warmup_steps = 100;
};

// [train.augment] training-time augmentation of the audio features that the align and
// distill stages train on (cord's features only; never validation or eval), all off by
// default. What each does, and why it is done on features: data/augment.hpp.
struct AugmentConfig {
  double speed = 0;              // speed factor ~ U[1 - speed, 1 + speed]; 0 = off
  double noise_fraction = 0;     // share of items given white noise; 0 = off
  double noise_snr_min_db = 10;  // the noise's SNR ~ U[min, max] dB
  double noise_snr_max_db = 30;
  int time_masks = 0;            // SpecAugment time masks per item; 0 = off
  int time_mask_frames = 20;     // the widest time mask, frames
  int freq_masks = 0;            // SpecAugment frequency masks per item; 0 = off
  int freq_mask_bins = 10;       // the widest frequency mask, mel bins

  bool any() const { return speed > 0 || noise_fraction > 0 || time_masks > 0 || freq_masks > 0; }
};

// [train] one training stage of the base LALM (`cord train`). Each stage writes its own
// run directory RUN_DIR/STAGE (README "Run directory").
//   text   the decoder learns from text questions -> solutions (loss on response
//          tokens only) and, on a share of the items, text question -> the question back
//          (the "repeat" task, which the align stage's transcription reuses)
//   align  the parts in align_trainable learn (default: the audio encoder and projector;
//          the decoder is frozen) from speech: audio -> transcript of the question, and on
//          a share of the items audio -> solution
//   distill  CORD and its baselines ([cord]) from a base model (docs/method.md)
struct TrainConfig {
  StageName stage = StageName::kText;
  std::string corpus = "runs/main/corpus.h5";
  std::string run_dir = "runs/main";
  std::string init = "";
  std::int64_t seed = 1;
  // The training split's families (comma list; "" = every family of the corpus): the
  // transfer protocol distils on arithmetic alone and evaluates on every family.
  std::string families = "";
  std::int64_t micro_batch = 0;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double grad_clip = 1.0;
  int max_nonfinite_steps = 3;
  std::int64_t log_every = 50;
  std::int64_t val_every = 600;
  std::int64_t val_items = 128;
  double bucket_mb = 4.0;
  bool zero1 = false;
  double text_repeat_fraction = 0.2;
  double align_solution_fraction = 0.25;
  // Comma list of encoder, projector, decoder. A pretrained speech encoder (Whisper) can
  // stay frozen while a new projector learns: align_trainable = "projector".
  std::string align_trainable = "encoder,projector";
  std::string inject_nonfinite = "";
  // The main job (README): about 23 minutes on 2 cores from the corpus to CORD's eval.
  StageConfig text{2000, 64, 2e-3, 1e-4, 100};
  StageConfig align{1800, 32, 2e-3, 1e-4, 100};
  StageConfig distill{500, 16, 2e-4, 2e-5, 10};
  AugmentConfig augment;
};

// [cord] the distill stage (train.stage = distill): CORD and the paper's baselines,
// docs/method.md. Paper defaults; (ours) marks a choice the paper leaves open.
//   method           rollouts per prompt                        loss
//   cord             1 audio (T=token_temperature), N audio     weighted reverse KL + GRPO
//                    (T=group_temperature), 1 text reference
//   cord-unweighted  as cord                                    reverse KL (alpha = beta = 1) + GRPO
//   opd              1 audio                                    weighted reverse KL
//   grpo             N audio, 1 text reference                  GRPO
//   sft              1 text (T=token_temperature)               -log p(y | audio)
//   fkl              1 text (T=token_temperature)               forward KL(teacher || student)
struct CordConfig {
  Method method = Method::kCord;
  double alpha = 2.0;
  double beta = 2.0;
  std::int64_t top_k = 20;
  Aggregation aggregation = Aggregation::kSum;
  double token_loss_weight = 1.0;
  double sequence_loss_weight = 1.0;
  std::int64_t group_size = 4;
  double token_temperature = 1.0;
  double group_temperature = 1.5;
  double reference_temperature = 0.0;
  std::int64_t max_new_tokens = 200;
  JudgeKind judge = JudgeKind::kAgreement;
  double judge_tolerance = 1e-6;
  bool normalize_advantages = false;
  TeacherWeights teacher = TeacherWeights::kInitial;
  std::string trainable = "encoder,projector,decoder";
  // (ours) The paper trains the decoder at the full rate (1.0). The text branch reads the
  // same decoder, and at 1.0 the main job lost more than 2 points of text accuracy; 0.3 is
  // the re-tuned main job's (bench/results/main_job.md). Job files that must stay
  // comparable with results measured before (protocol, Table 1) set 1.0 explicitly.
  double decoder_lr_scale = 0.3;
  std::int64_t ppo_inner_steps = 1;
  double ppo_clip = 0.2;
  // Variants (ours), off by default (docs/method.md, "Variants"):
  double top_k_fraction = 0;  // > 0: K = ceil(fraction * length) per rollout instead of top_k
  // group: the token loss reads the N GRPO rollouts (no separate token rollout is decoded)
  TokenRollouts token_rollouts = TokenRollouts::kSingle;
  // lambda in [0, 1): token loss = (1 - lambda) reverse KL on the audio rollouts + lambda
  // forward KL on the teacher's text references (GKD's mixture of on- and off-policy data)
  double fkl_mixture = 0;
  // > 0: the token losses (and GRPO's log-probabilities) are computed from the final hidden
  // states this many rollouts at a time (distill/chunked_loss.hpp), never materialising the
  // [rollouts, T, V] logits; 0 = the logits path. Same losses and gradients either way.
  std::int64_t loss_chunk_rows = 0;
};

// [eval] `cord eval`: greedy decoding of one split with audio and with text input.
// [ckpt] training checkpoints (ckpt/checkpoint.hpp, train/checkpointing.hpp): when a stage
// saves, how many it keeps, and what it resumes from.
struct CheckpointConfig {
  std::string dir = "";
  std::string resume = "none";
  std::int64_t every_steps = 0;
  double every_minutes = 0;
  double max_wall_minutes = 0;
  std::int64_t keep_last = 2;
  std::int64_t keep_every = 0;
  bool at_end = true;
  // Asynchronous saves: the step's tensors are copied to host memory and a writer thread
  // writes, fsyncs and commits while training goes on; at most one save in flight.
  bool async = false;
  // A trigger while the previous save is still being written: wait for it, or skip this
  // one (a stop or the end of the stage always waits).
  AsyncBusy async_busy = AsyncBusy::kWait;
};

struct EvalConfig {
  SplitName split = SplitName::kTest;
  std::int64_t max_items = 0;
  std::int64_t batch = 64;
  std::int64_t max_new_tokens = 96;
  bool transcripts = true;
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

// The StageConfig of train.stage.
const StageConfig& stage_config(const TrainConfig& train);

// A reference to a choice field: its storage, read and written as the enum's index, and
// its names.
struct ChoiceRef {
  void* field;
  int (*get)(const void* field);
  void (*set)(void* field, int index);
  const std::string_view* names;
  size_t count;
};
template <typename E>
ChoiceRef choice_ref(E* field) {
  return {field, [](const void* f) { return static_cast<int>(*static_cast<const E*>(f)); },
          [](void* f, int index) { *static_cast<E*>(f) = static_cast<E>(index); }, Choices<E>::names.data(),
          Choices<E>::names.size()};
}

// A typed reference to one field of a Config, with its dotted key and documentation.
using FieldRef = std::variant<int*, std::int64_t*, double*, bool*, std::string*, ChoiceRef>;
// The values a number field accepts, checked by validate(); the message names the key and
// the value ("train.log_every=0 must be > 0", "cord.alpha=-1 is outside [0, 1e+06]").
struct Range {
  enum class Kind { kAny, kPositive, kAtLeast, kBetween };
  Kind kind = Kind::kAny;
  double min = 0, max = 0;
};
constexpr Range positive() { return {Range::Kind::kPositive, 0, 0}; }
constexpr Range at_least(double min) { return {Range::Kind::kAtLeast, min, 0}; }
constexpr Range between(double min, double max) { return {Range::Kind::kBetween, min, max}; }

// One field: its dotted key, documentation and range. Every field is declared here once
// (config_fields) and in its struct above (type and default).
struct Field {
  std::string_view key;  // "section.name"
  std::string_view doc;
  FieldRef ref;
  Range range{};
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
