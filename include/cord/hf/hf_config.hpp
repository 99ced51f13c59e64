#pragma once
// A Hugging Face decoder's config.json, mapped onto cord's ModelConfig.
//
// Supported (one implementation, driven by the fields): model_type llama (Llama 2/3,
// SmolLM2), mistral (without a sliding window) and qwen2 (q/k/v biases), with
// architectures [LlamaForCausalLM | MistralForCausalLM | Qwen2ForCausalLM]; and
// qwen2_audio (Qwen2AudioForConditionalGeneration), whose text_config is one of those
// decoders and whose audio_config sets model.audio to the whisper architecture
// (model/whisper_encoder.hpp: d_model, encoder_layers, encoder_attention_heads,
// encoder_ffn_dim, num_mel_bins, max_source_positions; activation gelu). The decoder
// is RMSNorm (rms_norm_eps), RoPE (rope_theta; rope type "default" only), grouped-query
// attention (num_key_value_heads), a SwiGLU MLP (hidden_act silu) and tied or untied
// embeddings. Anything else that changes the computation (another model_type or rope
// type, a sliding window, attention or MLP biases on Llama, a head_dim other than
// hidden_size / num_attention_heads, pretraining_tp > 1) is a UsageError naming the file
// and the field: cord never runs an approximation of a model it was given.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cord/config/config.hpp"

namespace cord::hf {

struct HfModelInfo {
  std::string model_type;    // "llama", "mistral", "qwen2", "qwen2_audio"
  std::string architecture;  // e.g. "LlamaForCausalLM"
  std::string decoder_model_type;  // qwen2_audio: text_config's model_type; else ""
  int64_t audio_token_id = -1;     // qwen2_audio: the <|AUDIO|> placeholder's id; else -1
  std::string weights_dtype; // config.json's dtype / torch_dtype ("float32", "bfloat16", ...); "" if absent
  int64_t max_position_embeddings = 0;
  std::vector<int64_t> eos_token_ids;  // config.json's eos_token_id (a number or a list)
  int64_t bos_token_id = -1;           // -1 when null or absent
};

// Parses config.json text (`file_name` names it in errors) and sets the decoder fields of
// `model`: vocab_size, d_model, n_layers, n_heads, n_kv_heads, d_ff, rope_theta, norm_eps,
// tie_embeddings, attention_bias; max_seq_len becomes min(model.max_seq_len,
// max_position_embeddings). The audio fields are left alone, except for qwen2_audio.
HfModelInfo apply_hf_config(std::string_view json_text, const std::string& file_name, ModelConfig& model);

// "hf:DIR" -> "DIR"; "" for a source that is not hf: (the built-in model). Throws
// UsageError naming model.source for an unknown scheme.
std::string hf_directory(const std::string& source);

// Reads DIR/config.json for model.source = "hf:DIR" and applies it (a no-op for "").
// Returns the info; throws UsageError naming the file when it is missing or refused.
HfModelInfo resolve_model_source(ModelConfig& model);

}  // namespace cord::hf
