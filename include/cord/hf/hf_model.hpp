#pragma once
// A Hugging Face model in and out of cord's Lalm: a causal LM (the decoder alone), or a
// Qwen2-Audio model (audio tower, projector and decoder).
//
// Names: cord's decoder parameters map one to one onto the Hugging Face Llama/Qwen2
// names (hf_tensor_name): decoder.embedding.weight = model.embed_tokens.weight,
// decoder.blocks.i.attn.wq = model.layers.i.self_attn.q_proj (wk k_proj, wv v_proj,
// wo o_proj), attn_norm = input_layernorm, mlp_norm = post_attention_layernorm,
// mlp.w1 = gate_proj, mlp.w3 = up_proj, mlp.w2 = down_proj, decoder.norm = model.norm,
// decoder.lm_head = lm_head. Both use W of shape [out, in], so no tensor is transposed.
//
// Qwen2-Audio (model.audio.architecture = whisper): the decoder's names gain the prefix
// "language_model." (language_model.model.layers.i..., language_model.lm_head.weight),
// encoder.X is audio_tower.X and projector.X is multi_modal_projector.X (cord's encoder
// and projector use Hugging Face's names inside them, model/whisper_encoder.hpp).
//
// Loading under tensor parallelism: each rank reads only its slice of every split tensor
// from the mapped safetensors files (rows of q/k/v/gate/up, the embedding and the head;
// columns of o/down), converted to the parameter's dtype.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cord/model/lalm.hpp"

namespace cord::hf {

enum class HfLayout {
  kCausalLm,   // LlamaForCausalLM, Qwen2ForCausalLM, ...: the decoder
  kQwen2Audio  // Qwen2AudioForConditionalGeneration: every part
};
// kQwen2Audio when the model's encoder is the whisper architecture.
HfLayout hf_layout(const ModelConfig& model);
// What a Lalm built for loading from a directory of `model`'s layout must draw itself: the
// encoder and projector for a causal LM, nothing for Qwen2-Audio.
model::Initialization hf_initialization(const ModelConfig& model);

// The Hugging Face name of a cord parameter ("decoder.blocks.3.attn.wq.bias" ->
// "model.layers.3.self_attn.q_proj.bias"); "" for a parameter the layout does not hold
// (the encoder and projector of a causal LM).
std::string hf_tensor_name(const std::string& cord_name, HfLayout layout = HfLayout::kCausalLm);

// Loads every part of `model` that DIR's layout holds (built from the directory's
// config.json, see resolve_model_source) from DIR's safetensors. Throws UsageError naming
// the file and the tensor when one is missing, has another shape than config.json implies
// (a projector whose width is not the decoder's, say), or when the files hold a tensor
// that cord's model does not use (a sign of an architecture cord does not implement).
// A causal LM's directory leaves the audio encoder and projector as they are.
void load_hf_model(const std::string& directory, model::Lalm& model);

enum class ExportDtype { kSource, kFloat32, kBFloat16, kFloat16 };

// Writes a Hugging Face directory of request.model's layout from the global tensors `params`
// (cord names, float32; those the layout does not hold are skipped): model.safetensors, config.json (the source's with its dtype
// updated, or one written for the built-in model) and the source's tokenizer and
// generation files. `source_directory` is the hf: directory the model came from ("" for
// the built-in model, whose word-level vocabulary has no tokenizer.json: the directory
// then holds weights and config only). Files are written atomically; OUT is created.
struct ExportRequest {
  std::string out_directory;
  std::string source_directory;
  ExportDtype dtype = ExportDtype::kSource;
  ModelConfig model;
};
void export_hf_directory(const ExportRequest& request, const std::vector<std::pair<std::string, at::Tensor>>& params);

// ExportDtype from its name (source, float32, bfloat16, float16); throws UsageError
// naming `field`.
ExportDtype parse_export_dtype(const std::string& name, const std::string& field);

}  // namespace cord::hf
