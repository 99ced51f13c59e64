#include "cord/hf/hf_model.hpp"

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>

#include "cord/core/error.hpp"
#include "cord/core/files.hpp"
#include "cord/core/log.hpp"
#include "cord/hf/hf_config.hpp"
#include "cord/hf/safetensors.hpp"
#include "cord/model/model_stats.hpp"

namespace cord::hf {
namespace {

using nlohmann::json;

// cord's name inside a decoder block -> the Hugging Face name inside model.layers.i.
constexpr std::pair<const char*, const char*> kBlockNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"mlp_norm.weight", "post_attention_layernorm.weight"},
    {"attn.wq.weight", "self_attn.q_proj.weight"},
    {"attn.wq.bias", "self_attn.q_proj.bias"},
    {"attn.wk.weight", "self_attn.k_proj.weight"},
    {"attn.wk.bias", "self_attn.k_proj.bias"},
    {"attn.wv.weight", "self_attn.v_proj.weight"},
    {"attn.wv.bias", "self_attn.v_proj.bias"},
    {"attn.wo.weight", "self_attn.o_proj.weight"},
    {"mlp.w1.weight", "mlp.gate_proj.weight"},
    {"mlp.w3.weight", "mlp.up_proj.weight"},
    {"mlp.w2.weight", "mlp.down_proj.weight"},
};

// Files of a model directory that describe the tokenizer, generation and (Qwen2-Audio) the
// feature extractor, copied on export.
constexpr const char* kTokenizerFiles[] = {"tokenizer.json",         "tokenizer_config.json",    "special_tokens_map.json",
                                           "generation_config.json", "chat_template.jinja",      "chat_template.json",
                                           "vocab.json",             "merges.txt",               "preprocessor_config.json",
                                           "processor_config.json"};

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }
bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_text(const std::vector<int64_t>& shape) { return c10::str(c10::IntArrayRef(shape)); }

// Tensors a Hugging Face file may hold that carry no weights cord needs.
bool ignorable(const std::string& name, bool tied, const std::string& head) {
  return ends_with(name, "rotary_emb.inv_freq") || (tied && name == head);
}

const char* torch_dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: return "float32";
  }
}

at::ScalarType export_type(ExportDtype dtype, const std::string& source_dtype) {
  switch (dtype) {
    case ExportDtype::kFloat32: return at::kFloat;
    case ExportDtype::kBFloat16: return at::kBFloat16;
    case ExportDtype::kFloat16: return at::kHalf;
    case ExportDtype::kSource: break;
  }
  if (source_dtype == "bfloat16") return at::kBFloat16;
  if (source_dtype == "float16") return at::kHalf;
  return at::kFloat;
}

// config.json for the built-in model: the Llama (or, with q/k/v biases, Qwen2) layout of
// the same decoder, with cord's bos/eos ids.
json builtin_config(const ModelConfig& m) {
  const bool qwen2 = m.attention_bias;
  return json{{"architectures", {qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
              {"model_type", qwen2 ? "qwen2" : "llama"},
              {"vocab_size", m.vocab_size},
              {"hidden_size", m.d_model},
              {"num_hidden_layers", m.n_layers},
              {"num_attention_heads", m.n_heads},
              {"num_key_value_heads", m.n_kv_heads == 0 ? m.n_heads : m.n_kv_heads},
              {"intermediate_size", model::resolved_d_ff(m)},
              {"hidden_act", "silu"},
              {"max_position_embeddings", m.max_seq_len},
              {"rms_norm_eps", m.norm_eps},
              {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", m.rope_theta}}},
              {"tie_word_embeddings", m.tie_embeddings},
              {"attention_bias", false},
              {"bos_token_id", 0},
              {"eos_token_id", 1},
              {"pad_token_id", 2}};
}

}  // namespace

HfLayout hf_layout(const ModelConfig& model) {
  return model.audio.architecture == AudioArchitecture::kWhisper ? HfLayout::kQwen2Audio : HfLayout::kCausalLm;
}

model::Initialization hf_initialization(const ModelConfig& model) {
  return hf_layout(model) == HfLayout::kQwen2Audio ? model::Initialization::kNone
                                                   : model::Initialization::kAllButDecoder;
}

std::string hf_tensor_name(const std::string& cord_name, HfLayout layout) {
  if (layout == HfLayout::kQwen2Audio) {
    // The audio tower's and projector's names are Hugging Face's (whisper_encoder.hpp).
    if (starts_with(cord_name, "encoder.")) return "audio_tower." + cord_name.substr(8);
    if (starts_with(cord_name, "projector.")) return "multi_modal_projector." + cord_name.substr(10);
    const std::string decoder = hf_tensor_name(cord_name, HfLayout::kCausalLm);
    return decoder.empty() ? "" : "language_model." + decoder;
  }
  if (cord_name == "decoder.embedding.weight") return "model.embed_tokens.weight";
  if (cord_name == "decoder.norm.weight") return "model.norm.weight";
  if (cord_name == "decoder.lm_head.weight") return "lm_head.weight";
  const std::string prefix = "decoder.blocks.";
  if (!starts_with(cord_name, prefix)) return "";
  const size_t dot = cord_name.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  const std::string layer = cord_name.substr(prefix.size(), dot - prefix.size());
  const std::string rest = cord_name.substr(dot + 1);
  for (const auto& [ours, theirs] : kBlockNames) {
    if (rest == ours) return "model.layers." + layer + "." + theirs;
  }
  return "";
}

void load_hf_model(const std::string& directory, model::Lalm& model) {
  const auto start = std::chrono::steady_clock::now();
  const SafetensorsDirectory files(directory);
  const HfLayout layout = hf_layout(model->config());
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (const model::ParamShard& shard : model::sharded_parameters(*model, model->tp_group())) {
    const std::string name = hf_tensor_name(shard.name, layout);
    if (name.empty()) continue;
    const TensorEntry& entry = files.entry(name);
    if (entry.shape != shard.global_shape) {
      throw UsageError(files.file_of(name) + ": tensor " + name + " has shape " + shape_text(entry.shape) + ", but " +
                       directory + "/config.json implies " + shape_text(shard.global_shape));
    }
    Slice slice;
    if (shard.split_dim >= 0) slice = {shard.split_dim, shard.offset, shard.length};
    shard.param.zero_();  // a padded vocabulary's tail rows stay zero
    shard.in_global().copy_(files.read(name, slice, shard.param.scalar_type()));
    used.insert(name);
  }
  const bool tied = model->config().tie_embeddings;
  const std::string head = layout == HfLayout::kQwen2Audio ? "language_model.lm_head.weight" : "lm_head.weight";
  for (const std::string& name : files.names()) {
    if (used.count(name) == 0 && !ignorable(name, tied, head)) {
      throw UsageError(files.file_of(name) + ": tensor " + name + " is not part of the model that " + directory +
                       "/config.json describes to cord (an architecture or option cord does not implement?)");
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CORD_LOG(kInfo) << "model: " << (layout == HfLayout::kQwen2Audio ? "audio tower, projector and decoder" : "decoder")
                  << " loaded from " << directory << " in " << seconds << " s (" << used.size()
                  << " tensors, this rank's slices of tp " << model->tp_group().size() << ")";
}

ExportDtype parse_export_dtype(const std::string& name, const std::string& field) {
  if (name == "source") return ExportDtype::kSource;
  if (name == "float32") return ExportDtype::kFloat32;
  if (name == "bfloat16") return ExportDtype::kBFloat16;
  if (name == "float16") return ExportDtype::kFloat16;
  throw UsageError(field + " = '" + name + "' is not one of source, float32, bfloat16, float16");
}

void export_hf_directory(const ExportRequest& request, const std::vector<std::pair<std::string, at::Tensor>>& params) {
  json config;
  if (!request.source_directory.empty()) {
    const std::string path = request.source_directory + "/config.json";
    config = json::parse(read_whole_file(path), nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) throw UsageError(path + " is not a JSON object");
  } else if (hf_layout(request.model) == HfLayout::kQwen2Audio) {
    throw UsageError("cord export: the built-in model with model.audio.architecture = whisper has no Hugging Face "
                     "counterpart (Qwen2-Audio's processor needs a tokenizer with its audio placeholders); export a "
                     "model whose model.source is a Qwen2-Audio directory");
  } else {
    config = builtin_config(request.model);
  }
  std::string source_dtype = "float32";  // the weights' dtype as config.json states it ("dtype" or, older, "torch_dtype")
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (config.contains(key) && config[key].is_string()) source_dtype = config[key].get<std::string>();
  }
  const at::ScalarType type = export_type(request.dtype, source_dtype);
  config[config.contains("torch_dtype") ? "torch_dtype" : "dtype"] = torch_dtype_name(type);

  std::vector<std::pair<std::string, at::Tensor>> tensors;
  const HfLayout layout = hf_layout(request.model);
  for (const auto& [name, value] : params) {
    const std::string hf_name = hf_tensor_name(name, layout);
    if (!hf_name.empty()) tensors.emplace_back(hf_name, value.to(type).contiguous());
    // Qwen2AudioForConditionalGeneration reads its own head even when text_config ties it:
    // write the table there too, or transformers would draw a new one.
    if (layout == HfLayout::kQwen2Audio && request.model.tie_embeddings && name == "decoder.embedding.weight") {
      tensors.emplace_back("language_model.lm_head.weight", value.to(type).contiguous());
    }
  }
  make_directories(request.out_directory);
  write_safetensors(request.out_directory + "/model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomically(request.out_directory + "/config.json", config.dump(2) + "\n");
  if (!request.source_directory.empty()) {
    for (const char* file : kTokenizerFiles) {
      const std::string from = request.source_directory + "/" + file;
      if (regular_file_exists(from)) write_file_atomically(request.out_directory + "/" + file, read_whole_file(from));
    }
  }
}

}  // namespace cord::hf
