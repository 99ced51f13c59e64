#include "cord/hf/hf_config.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "cord/core/error.hpp"
#include "cord/core/files.hpp"

namespace cord::hf {
namespace {

using nlohmann::json;

// The architectures cord implements, by model_type.
struct Family {
  const char* model_type;
  const char* architecture;
  bool qkv_bias;  // Qwen2 always has q/k/v biases and no field for them
};
constexpr Family kFamilies[] = {{"llama", "LlamaForCausalLM", false},
                                {"mistral", "MistralForCausalLM", false},
                                {"qwen2", "Qwen2ForCausalLM", true}};

class ConfigReader {
 public:
  // `prefix` names the object inside the file in errors ("text_config.").
  ConfigReader(const json& root, const std::string& file_name, std::string prefix = "")
      : root_(root), file_(file_name), prefix_(std::move(prefix)) {}

  [[noreturn]] void refuse(const std::string& field, const std::string& why) const {
    throw UsageError(file_ + ": " + prefix_ + field + " " + why);
  }
  // The object under `key`, read with the prefix "key."; refused when missing.
  ConfigReader object(const char* key, const std::string& why_needed) const {
    if (!has(key)) refuse(key, "is missing: " + why_needed);
    if (!root_[key].is_object()) refuse(key, "is not an object");
    return ConfigReader(root_[key], file_, prefix_ + key + ".");
  }
  bool has(const char* key) const { return root_.contains(key) && !root_[key].is_null(); }
  const json& at(const char* key) const { return root_[key]; }

  int64_t integer(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    if (!has(key)) {
      if (fallback) return *fallback;
      refuse(key, "is missing");
    }
    if (!root_[key].is_number_integer()) refuse(key, "is not an integer");
    return root_[key].get<int64_t>();
  }
  int positive_int(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    const int64_t value = integer(key, fallback);
    if (value <= 0 || value > std::numeric_limits<int>::max()) {
      refuse(key, "= " + std::to_string(value) + " is not a positive int");
    }
    return static_cast<int>(value);
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    if (!root_[key].is_number()) refuse(key, "is not a number");
    const double value = root_[key].get<double>();
    if (!std::isfinite(value) || value <= 0) refuse(key, "= " + root_[key].dump() + " is not a positive number");
    return value;
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!root_[key].is_boolean()) refuse(key, "is not true or false");
    return root_[key].get<bool>();
  }
  std::string text(const char* key) const {
    if (!has(key)) return "";
    if (!root_[key].is_string()) refuse(key, "is not a string");
    return root_[key].get<std::string>();
  }
  // A field that must be absent, null or equal to `allowed` (what cord implements).
  void require(const char* key, const json& allowed, const std::string& why) const {
    if (has(key) && root_[key] != allowed) refuse(key, "= " + root_[key].dump() + " is not supported: " + why);
  }

 private:
  const json& root_;
  std::string file_;
  std::string prefix_;
};

// `default_type`: the model_type when the field is absent ("" = required).
const Family& read_family(const ConfigReader& config, HfModelInfo& info, const std::string& default_type = "") {
  info.model_type = config.has("model_type") ? config.text("model_type") : default_type;
  const Family* family = nullptr;
  std::string known;
  for (const Family& candidate : kFamilies) {
    if (info.model_type == candidate.model_type) family = &candidate;
    known += std::string(known.empty() ? "" : ", ") + candidate.model_type;
  }
  if (family == nullptr) {
    config.refuse("model_type", "= \"" + info.model_type + "\" is not supported (cord implements " + known + ")");
  }
  if (config.has("architectures")) {
    const json& list = config.at("architectures");
    if (!list.is_array() || list.size() != 1 || !list[0].is_string() || list[0] != family->architecture) {
      config.refuse("architectures", "= " + list.dump() + " is not [\"" + family->architecture +
                                         "\"] (what model_type " + info.model_type + " means to cord)");
    }
  }
  info.architecture = family->architecture;
  return *family;
}

// rope_theta from transformers 5's rope_parameters or the older rope_theta + rope_scaling.
// Both objects are checked when both are present: either may ask for a scaling.
double read_rope_theta(const ConfigReader& config) {
  double theta = config.number("rope_theta", 10000.0);
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!config.has(key)) continue;
    const json& parameters = config.at(key);
    if (!parameters.is_object()) config.refuse(key, "is not an object");
    const std::string type_key = parameters.contains("rope_type") ? "rope_type" : "type";
    const json type = parameters.value(type_key, json("default"));
    if (type != "default") {
      config.refuse(std::string(key) + "." + type_key,
                    "= " + type.dump() + " is not supported (cord implements rope type \"default\")");
    }
    if (parameters.contains("rope_theta")) {
      const json& value = parameters["rope_theta"];
      if (!value.is_number() || !(value.get<double>() > 0)) {
        config.refuse(std::string(key) + ".rope_theta", "is not a positive number");
      }
      theta = value.get<double>();
    }
  }
  return theta;
}

void refuse_unimplemented(const ConfigReader& config, const Family& family) {
  config.require("hidden_act", "silu", "cord's MLP is SwiGLU with SiLU");
  if (config.has("quantization_config")) {
    config.refuse("quantization_config", "is present: quantised weights are not supported (dequantise them first)");
  }
  config.require("pretraining_tp", 1, "the sliced-matmul emulation of pretraining_tp > 1 is not implemented");
  config.require("mlp_bias", false, "cord's MLP has no biases");
  if (!family.qkv_bias) config.require("attention_bias", false, "cord's Llama attention has no biases");
  config.require("use_sliding_window", false, "sliding-window attention is not implemented");
  if (family.model_type == std::string("mistral")) {
    config.require("sliding_window", nullptr, "sliding-window attention is not implemented");
  }
  if (config.has("layer_types")) {
    const json& types = config.at("layer_types");
    if (!types.is_array()) config.refuse("layer_types", "is not a list");
    for (const json& type : types) {
      if (type != "full_attention") {
        config.refuse("layer_types", "contains " + type.dump() + "; cord implements full_attention layers only");
      }
    }
  }
}

std::vector<int64_t> read_token_ids(const ConfigReader& config, const char* key) {
  std::vector<int64_t> ids;
  if (!config.has(key)) return ids;
  const json& value = config.at(key);
  for (const json& id : value.is_array() ? value : json::array({value})) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0) config.refuse(key, "is not a token id or a list of them");
    ids.push_back(id.get<int64_t>());
  }
  return ids;
}

// The decoder fields of `model` from a causal LM's config (the file's top level, or a
// Qwen2-Audio file's text_config, whose model_type defaults to qwen2).
HfModelInfo apply_decoder_config(const ConfigReader& config, ModelConfig& model, const std::string& default_type = "") {
  HfModelInfo info;
  const Family& family = read_family(config, info, default_type);
  refuse_unimplemented(config, family);
  model.vocab_size = config.positive_int("vocab_size");
  model.d_model = config.positive_int("hidden_size");
  model.n_layers = config.positive_int("num_hidden_layers");
  model.n_heads = config.positive_int("num_attention_heads");
  model.n_kv_heads = config.positive_int("num_key_value_heads", model.n_heads);
  model.d_ff = config.positive_int("intermediate_size");
  if (model.d_model % model.n_heads != 0) {
    config.refuse("hidden_size", "= " + std::to_string(model.d_model) + " is not divisible by num_attention_heads");
  }
  config.require("head_dim", model.d_model / model.n_heads, "cord's head width is hidden_size / num_attention_heads");
  model.rope_theta = read_rope_theta(config);
  model.norm_eps = config.number("rms_norm_eps", 1e-6);
  model.tie_embeddings = config.boolean("tie_word_embeddings", false);
  model.attention_bias = family.qkv_bias;
  info.max_position_embeddings = config.positive_int("max_position_embeddings");
  model.max_seq_len = static_cast<int>(std::min<int64_t>(model.max_seq_len, info.max_position_embeddings));
  info.weights_dtype = config.has("dtype") ? config.text("dtype") : config.text("torch_dtype");
  info.eos_token_ids = read_token_ids(config, "eos_token_id");
  const std::vector<int64_t> bos = read_token_ids(config, "bos_token_id");
  info.bos_token_id = bos.empty() ? -1 : bos.front();
  return info;
}

// Qwen2-Audio's audio_config (a Whisper encoder, model/whisper_encoder.hpp) -> model.audio.
void apply_audio_config(const ConfigReader& config, AudioEncoderConfig& audio) {
  config.require("model_type", "qwen2_audio_encoder", "cord implements Qwen2-Audio's Whisper encoder");
  config.require("activation_function", "gelu", "the encoder's MLP is GELU (erf)");
  audio.architecture = AudioArchitecture::kWhisper;
  audio.d_model = config.positive_int("d_model");
  audio.n_layers = config.positive_int("encoder_layers");
  audio.n_heads = config.positive_int("encoder_attention_heads");
  audio.d_ff = config.positive_int("encoder_ffn_dim");
  audio.n_mels = config.positive_int("num_mel_bins");
  audio.max_source_positions = config.positive_int("max_source_positions");
  if (audio.d_model % audio.n_heads != 0) {
    config.refuse("d_model", "= " + std::to_string(audio.d_model) + " is not divisible by encoder_attention_heads");
  }
  // scale_embedding is read by Qwen2AudioEncoder but never applied in its forward: ignored
  // here likewise, so that both compute the same.
}

// A Qwen2AudioForConditionalGeneration config.json: text_config (the decoder), audio_config
// (the encoder) and the audio placeholder's id.
HfModelInfo apply_qwen2_audio_config(const ConfigReader& config, ModelConfig& model) {
  config.require("architectures", json::array({"Qwen2AudioForConditionalGeneration"}),
                 "model_type qwen2_audio means Qwen2AudioForConditionalGeneration to cord");
  const ConfigReader audio = config.object("audio_config", "a Qwen2-Audio model needs its encoder's configuration");
  const ConfigReader text = config.object("text_config", "a Qwen2-Audio model needs its decoder's configuration");
  HfModelInfo info = apply_decoder_config(text, model, "qwen2");
  apply_audio_config(audio, model.audio);
  info.decoder_model_type = info.model_type;
  info.model_type = "qwen2_audio";
  info.architecture = "Qwen2AudioForConditionalGeneration";
  if (info.weights_dtype.empty()) info.weights_dtype = config.has("dtype") ? config.text("dtype") : config.text("torch_dtype");
  if (info.eos_token_ids.empty()) info.eos_token_ids = read_token_ids(config, "eos_token_id");
  if (info.bos_token_id < 0) {
    const std::vector<int64_t> bos = read_token_ids(config, "bos_token_id");
    info.bos_token_id = bos.empty() ? -1 : bos.front();
  }
  const char* key = config.has("audio_token_index") ? "audio_token_index" : "audio_token_id";
  info.audio_token_id = config.integer(key);
  if (info.audio_token_id < 0 || info.audio_token_id >= model.vocab_size) {
    config.refuse(key, "= " + std::to_string(info.audio_token_id) + " is not a token id of text_config.vocab_size " +
                           std::to_string(model.vocab_size));
  }
  return info;
}

}  // namespace

HfModelInfo apply_hf_config(std::string_view json_text, const std::string& file_name, ModelConfig& model) {
  const json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) throw UsageError(file_name + " is not a JSON object");
  const ConfigReader config(root, file_name);
  if (config.has("model_type") && config.at("model_type") == "qwen2_audio") return apply_qwen2_audio_config(config, model);
  return apply_decoder_config(config, model);
}

std::string hf_directory(const std::string& source) {
  if (source.empty()) return "";
  if (source.rfind("hf:", 0) != 0 || source.size() == 3) {
    throw UsageError("model.source = '" + source + "' is neither empty (the built-in model) nor hf:DIR");
  }
  return source.substr(3);
}

HfModelInfo resolve_model_source(ModelConfig& model) {
  const std::string directory = hf_directory(model.source);
  if (directory.empty()) return {};
  const std::string path = directory + "/config.json";
  if (!regular_file_exists(path)) {
    throw UsageError("model.source = '" + model.source + "': " + path + " does not exist (not a Hugging Face model directory)");
  }
  return apply_hf_config(read_whole_file(path), path, model);
}

}  // namespace cord::hf
