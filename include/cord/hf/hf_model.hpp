#pragma once
// A Hugging Face decoder in and out of cord's Lalm.
//
// Names: cord's decoder parameters map one to one onto the Hugging Face Llama/Qwen2
// names (hf_tensor_name): decoder.embedding.weight = model.embed_tokens.weight,
// decoder.blocks.i.attn.wq = model.layers.i.self_attn.q_proj (wk k_proj, wv v_proj,
// wo o_proj), attn_norm = input_layernorm, mlp_norm = post_attention_layernorm,
// mlp.w1 = gate_proj, mlp.w3 = up_proj, mlp.w2 = down_proj, decoder.norm = model.norm,
// decoder.lm_head = lm_head. Both use W of shape [out, in], so no tensor is transposed.
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

// The Hugging Face name of a cord decoder parameter ("decoder.blocks.3.attn.wq.bias" ->
// "model.layers.3.self_attn.q_proj.bias"); "" for a parameter outside the decoder.
std::string hf_tensor_name(const std::string& cord_name);

// Loads the decoder of `model` (built from the directory's config.json, see
// resolve_model_source) from DIR's safetensors. Throws UsageError naming the file and the
// tensor when one is missing, has another shape than config.json implies, or when the
// files hold a tensor that cord's decoder does not use (a sign of an architecture cord
// does not implement). The audio encoder and projector are left as they are.
void load_hf_decoder(const std::string& directory, model::Lalm& model);

enum class ExportDtype { kSource, kFloat32, kBFloat16, kFloat16 };

// Writes a Hugging Face directory for the decoder whose global tensors are `decoder_params`
// (cord names, float32): model.safetensors, config.json (the source's with its dtype
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
void export_hf_directory(const ExportRequest& request,
                         const std::vector<std::pair<std::string, at::Tensor>>& decoder_params);

// ExportDtype from its name (source, float32, bfloat16, float16); throws UsageError
// naming `field`.
ExportDtype parse_export_dtype(const std::string& name, const std::string& field);

}  // namespace cord::hf
