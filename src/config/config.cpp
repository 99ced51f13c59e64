#include "cord/config/config.hpp"

#include <sstream>
#include <utility>

#include "cord/core/error.hpp"

namespace cord {

std::vector<Field> config_fields(Config& config) {
  return {
      {"parallel.dp", "data-parallel degree; 0 = world size / tp", &config.parallel.dp},
      {"parallel.tp", "tensor-parallel degree; must divide the world size", &config.parallel.tp},
      {"parallel.grad_bucket_mb", "data-parallel gradient bucket size in MiB: one all-reduce per bucket",
       &config.parallel.grad_bucket_mb},
      {"parallel.zero1", "shard AdamW state over the dp group (ZeRO stage 1)", &config.parallel.zero1},
      {"runtime.device", "cpu | cuda | auto (cuda when a GPU is usable); GPU index = local rank",
       &config.runtime.device},
      {"runtime.threads", "torch intra-op threads per rank; 0 = node cores / ranks on the node",
       &config.runtime.threads},
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
  };
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

}  // namespace

void validate(const Config& config) {
  // The parallel layout depends on the world size: comm::ParallelDims::resolve checks it.
  const auto& rt = config.runtime;
  if (rt.device != "cpu" && rt.device != "cuda" && rt.device != "auto") {
    throw UsageError("runtime.device='" + rt.device + "' is not one of cpu, cuda, auto");
  }
  if (rt.threads < 0) {
    throw UsageError("runtime.threads=" + std::to_string(rt.threads) + " must be >= 0");
  }
  require_positive("parallel.grad_bucket_mb", config.parallel.grad_bucket_mb);
  validate_model(config.model);
}

void validate_tensor_parallel(const Config& config, int tp) {
  const ModelConfig& m = config.model;
  const int kv_heads = m.n_kv_heads == 0 ? m.n_heads : m.n_kv_heads;
  require_divisible("model.n_heads", m.n_heads, "parallel.tp", tp);
  require_divisible("model.n_kv_heads (resolved)", kv_heads, "parallel.tp", tp);
  require_divisible("model.audio.n_heads", m.audio.n_heads, "parallel.tp", tp);
  require_divisible("model.vocab_size", m.vocab_size, "parallel.tp", tp);
}

}  // namespace cord
