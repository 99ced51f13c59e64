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
  int dp = 0;                 // data-parallel degree; 0 = world size / tp
  int tp = 1;                 // tensor-parallel degree; must divide the world size
  double grad_bucket_mb = 4;  // data-parallel gradient buckets: one all-reduce per bucket
  bool zero1 = false;         // shard AdamW state over the dp group (ZeRO stage 1)
};

// [model.audio] the audio encoder (conv subsampling + pre-norm transformer) and the
// projector (frame stacking + MLP) that feeds the decoder.
struct AudioEncoderConfig {
  int n_mels = 80;          // log-mel bins per input frame
  int d_model = 128;        // encoder width
  int n_layers = 2;         // transformer layers after two stride-2 convolutions (4x fewer frames)
  int n_heads = 4;          // attention heads; divisible by parallel.tp
  int projector_stack = 2;  // encoder frames concatenated per decoder position (a further 2x fewer)
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
};

struct Config {
  ParallelConfig parallel;
  RuntimeConfig runtime;
  ModelConfig model;
};

// A typed reference to one field of a Config, with its dotted key and documentation.
using FieldRef = std::variant<int*, std::int64_t*, double*, bool*, std::string*>;
struct Field {
  std::string_view key;  // "section.name"
  std::string_view doc;
  FieldRef ref;
};

// Every field of `config`, in dump order. The references point into `config`.
std::vector<Field> config_fields(Config& config);

// Checks values that do not depend on the world size (choices, ranges); the parallel
// layout is checked by comm::ParallelDims::resolve once the world size is known.
// Throws UsageError with the exact field and value.
void validate(const Config& config);

// Checks what tensor parallelism of degree `tp` splits (heads, vocabulary), once the
// layout is resolved. Throws UsageError, e.g. "model.n_heads=4 is not divisible by parallel.tp=3".
void validate_tensor_parallel(const Config& config, int tp);

}  // namespace cord
