// The Hugging Face readers that parse outside input from bytes, without libtorch or files:
// the safetensors header, config.json's mapping onto ModelConfig, and the ChatML chat
// template. Each bad input must be a UsageError whose message names the field or tensor.
#include <gtest/gtest.h>

#include <functional>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cord/core/error.hpp"
#include "cord/hf/chat_template.hpp"
#include "cord/hf/hf_config.hpp"
#include "cord/hf/safetensors_header.hpp"

namespace cord::hf {
namespace {

// A file image: 8-byte length, `header`, then `data_bytes` zero bytes.
std::vector<std::byte> image(const std::string& header, size_t data_bytes) {
  std::vector<std::byte> bytes(8 + header.size() + data_bytes, std::byte{0});
  uint64_t size = header.size();
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<std::byte>((size >> (8 * i)) & 0xff);
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  return bytes;
}

SafetensorsHeader parse(const std::vector<std::byte>& bytes) {
  return parse_safetensors_header(bytes.data(), bytes.size(), bytes.size(), "x.safetensors");
}

std::string error_of(const std::vector<std::byte>& bytes) {
  try {
    parse(bytes);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(SafetensorsHeader, ParsesEntriesAndMetadataAndRoundTripsItsOwnFormat) {
  const std::vector<TensorEntry> entries{{"a", Dtype::kF32, {2, 3}, 0, 24}, {"b", Dtype::kBF16, {4}, 24, 32}};
  const std::string header = format_safetensors_header(entries, {{"format", "pt"}});
  EXPECT_EQ(header.size() % 8, 0U);
  const SafetensorsHeader parsed = parse(image(header, 32));
  ASSERT_EQ(parsed.tensors.size(), 2U);
  EXPECT_EQ(parsed.find("a")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(parsed.find("b")->dtype, Dtype::kBF16);
  EXPECT_EQ(parsed.find("c"), nullptr);
  EXPECT_EQ(parsed.metadata.at("format"), "pt");
  EXPECT_EQ(parsed.data_offset, 8 + header.size());
}

TEST(SafetensorsHeader, RefusesEachKindOfBadHeaderNamingIt) {
  auto has = [](const std::string& message, const std::string& part) {
    return message.find(part) != std::string::npos ? testing::AssertionSuccess()
                                                   : testing::AssertionFailure() << message;
  };
  EXPECT_TRUE(has(error_of(image("{not json", 0)), "not valid JSON"));
  EXPECT_TRUE(has(error_of(image("[1,2]   ", 0)), "not a JSON object"));
  EXPECT_TRUE(has(error_of(std::vector<std::byte>(4)), "shorter than 8 bytes"));
  std::vector<std::byte> huge = image("{}", 0);
  huge[5] = std::byte{1};  // declares a header of 2^40 bytes
  EXPECT_TRUE(has(error_of(huge), "declares a"));
  EXPECT_TRUE(has(error_of(image(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1)), "F8_E4M3"));
  EXPECT_TRUE(has(error_of(image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8)), "outside"));
  EXPECT_TRUE(has(error_of(image(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)), "needs 12"));
  EXPECT_TRUE(has(error_of(image(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0)), "non-negative"));
  EXPECT_TRUE(has(error_of(image(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}})", 0)),
                  "more bytes"));
  EXPECT_TRUE(has(error_of(image(R"({"w":{"dtype":"F32","shape":[1]}})", 4)), "data_offsets"));
  EXPECT_TRUE(has(error_of(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                 12)),
                  "overlap"));
  EXPECT_TRUE(has(error_of(image(R"({"__metadata__":{"k":1}})", 0)), "__metadata__"));
}

const char* kLlamaConfig = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 320, "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
  "rope_parameters": {"rope_type": "default", "rope_theta": 50000.0}, "eos_token_id": [2, 7], "bos_token_id": 1,
  "hidden_act": "silu", "attention_bias": false, "mlp_bias": false, "head_dim": 16, "dtype": "bfloat16"})";

TEST(HfConfig, MapsALlamaConfigOntoTheDecoderFields) {
  ModelConfig model;
  model.max_seq_len = 512;
  const HfModelInfo info = apply_hf_config(kLlamaConfig, "config.json", model);
  EXPECT_EQ(model.vocab_size, 320);
  EXPECT_EQ(model.d_model, 64);
  EXPECT_EQ(model.n_kv_heads, 2);
  EXPECT_EQ(model.d_ff, 128);
  EXPECT_EQ(model.max_seq_len, 256);  // min(512, max_position_embeddings)
  EXPECT_DOUBLE_EQ(model.rope_theta, 50000.0);
  EXPECT_TRUE(model.tie_embeddings);
  EXPECT_FALSE(model.attention_bias);
  EXPECT_EQ(info.eos_token_ids, (std::vector<int64_t>{2, 7}));
  EXPECT_EQ(info.weights_dtype, "bfloat16");
}

// The config `json_text` with `edit` applied, parsed as DIR/config.json: the error message,
// or "(no error)".
std::string edited_config_error(const char* json_text, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json config = nlohmann::json::parse(json_text);
  edit(config);
  ModelConfig model;
  try {
    apply_hf_config(config.dump(), "DIR/config.json", model);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

// kLlamaConfig with `key` set to the JSON `value`.
std::string config_error(const std::string& key, const std::string& value) {
  return edited_config_error(kLlamaConfig, [&](nlohmann::json& c) { c[key] = nlohmann::json::parse(value); });
}

TEST(HfConfig, RefusesWhatCordDoesNotImplementNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"model_type", "\"gpt2\""},         {"architectures", "[\"LlamaForSequenceClassification\"]"},
      {"hidden_act", "\"gelu\""},         {"attention_bias", "true"},
      {"mlp_bias", "true"},               {"pretraining_tp", "2"},
      {"head_dim", "32"},                 {"use_sliding_window", "true"},
      {"quantization_config", "{}"},      {"vocab_size", "-3"},
      {"layer_types", "[\"sliding_attention\"]"}};
  for (const auto& [key, value] : cases) {
    const std::string message = config_error(key, value);
    EXPECT_NE(message.find("DIR/config.json"), std::string::npos) << key << ": " << message;
    EXPECT_NE(message.find(key), std::string::npos) << key << ": " << message;
  }
  ModelConfig model;
  EXPECT_THROW(apply_hf_config("{", "c.json", model), UsageError);
  EXPECT_THROW(apply_hf_config(R"({"model_type": "llama"})", "c.json", model), UsageError);  // no vocab_size
}

TEST(HfConfig, RefusesAnotherRopeType) {
  const std::string message = config_error("rope_parameters", R"({"rope_type": "yarn", "rope_theta": 1e4})");
  EXPECT_NE(message.find("rope_parameters.rope_type"), std::string::npos) << message;
  // An older rope_scaling beside a default rope_parameters still counts.
  EXPECT_NE(config_error("rope_scaling", R"({"type": "linear", "factor": 2})").find("rope_scaling.type"),
            std::string::npos);
}

// Qwen2-Audio's layout: the decoder in text_config, the encoder in audio_config.
constexpr const char* kQwen2AudioConfig = R"({
  "architectures": ["Qwen2AudioForConditionalGeneration"], "model_type": "qwen2_audio", "audio_token_index": 300,
  "audio_config": {"model_type": "qwen2_audio_encoder", "d_model": 32, "encoder_layers": 2,
                   "encoder_attention_heads": 4, "encoder_ffn_dim": 64, "num_mel_bins": 128,
                   "max_source_positions": 1500, "activation_function": "gelu", "scale_embedding": false},
  "text_config": {"model_type": "qwen2", "vocab_size": 304, "hidden_size": 48, "intermediate_size": 96,
                  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "max_position_embeddings": 1024, "eos_token_id": 2, "tie_word_embeddings": false}})";

TEST(HfConfig, MapsAQwen2AudioConfigOntoTheEncoderAndTheDecoder) {
  ModelConfig model;
  const HfModelInfo info = apply_hf_config(kQwen2AudioConfig, "config.json", model);
  EXPECT_EQ(info.model_type, "qwen2_audio");
  EXPECT_EQ(info.decoder_model_type, "qwen2");
  EXPECT_EQ(info.audio_token_id, 300);
  EXPECT_EQ(info.eos_token_ids, (std::vector<int64_t>{2}));
  EXPECT_EQ(model.audio.architecture, AudioArchitecture::kWhisper);
  EXPECT_EQ(model.audio.d_model, 32);
  EXPECT_EQ(model.audio.n_layers, 2);
  EXPECT_EQ(model.audio.n_heads, 4);
  EXPECT_EQ(model.audio.d_ff, 64);
  EXPECT_EQ(model.audio.n_mels, 128);
  EXPECT_EQ(model.audio.max_source_positions, 1500);
  EXPECT_EQ(model.d_model, 48);
  EXPECT_TRUE(model.attention_bias);  // Qwen2's q/k/v biases
  EXPECT_EQ(model.max_seq_len, 512);  // min(the default 512, max_position_embeddings)
}

TEST(HfConfig, RefusesAQwen2AudioConfigThatCordCannotRunNamingTheField) {
  const std::vector<std::pair<std::string, std::function<void(nlohmann::json&)>>> cases{
      {"audio_config is missing", [](nlohmann::json& c) { c.erase("audio_config"); }},
      {"text_config is missing", [](nlohmann::json& c) { c.erase("text_config"); }},
      {"audio_config.activation_function", [](nlohmann::json& c) { c["audio_config"]["activation_function"] = "relu"; }},
      {"audio_config.d_model", [](nlohmann::json& c) { c["audio_config"]["encoder_attention_heads"] = 5; }},
      {"audio_config.encoder_ffn_dim", [](nlohmann::json& c) { c["audio_config"].erase("encoder_ffn_dim"); }},
      {"text_config.hidden_act", [](nlohmann::json& c) { c["text_config"]["hidden_act"] = "gelu"; }},
      {"audio_token_index", [](nlohmann::json& c) { c["audio_token_index"] = 304; }},
      {"architectures", [](nlohmann::json& c) { c["architectures"] = {"Qwen2AudioEncoder"}; }}};
  for (const auto& [expected, edit] : cases) {
    const std::string message = edited_config_error(kQwen2AudioConfig, edit);
    EXPECT_NE(message.find("DIR/config.json: " + expected), std::string::npos) << expected << ": " << message;
  }
}

TEST(HfConfig, SourceNamesOnlyHfDirectories) {
  EXPECT_EQ(hf_directory(""), "");
  EXPECT_EQ(hf_directory("hf:/models/x"), "/models/x");
  EXPECT_THROW(hf_directory("s3://bucket"), UsageError);
  EXPECT_THROW(hf_directory("hf:"), UsageError);
}

const char* kSmolTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are SmolLM.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

TEST(ChatTemplate, RendersChatMlWithTheTemplatesDefaultSystemTurn) {
  const ChatTemplate chat = ChatTemplate::recognise(kSmolTemplate, "t");
  EXPECT_EQ(chat.default_system(), "You are SmolLM.");
  EXPECT_EQ(chat.render({{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are SmolLM.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(chat.render({{"system", "S"}, {"user", "Hi"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_THROW(chat.render({{"tool", "x"}}, true), UsageError);
  // Qwen2 keeps its template in JSON, where the literal's newline is the escape \n.
  const ChatTemplate escaped =
      ChatTemplate::recognise("{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
                              "{{'<|im_start|>' + message['role'] }}{% if add_generation_prompt %}{% endif %}",
                              "t");
  EXPECT_EQ(escaped.default_system(), "You are a helpful assistant.");
}

// Qwen2-Audio's default template (its processor's), as transformers writes chat_template.jinja.
const char* kQwen2AudioTemplate =
    "{% set audio_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != "
    "'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] "
    "}}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in "
    "message['content'] %}{% if 'audio' in content or 'audio_url' in content %}{% set audio_count.value = "
    "audio_count.value + 1 %}Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n{% elif 'text' in "
    "content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

TEST(ChatTemplate, FindsQwen2AudiosPlaceholderWithTheClipCounterRendered) {
  const ChatTemplate chat = ChatTemplate::recognise(kQwen2AudioTemplate, "DIR/chat_template.jinja");
  EXPECT_EQ(chat.default_system(), "You are a helpful assistant.");
  const AudioPlaceholder placeholder = chat.audio_placeholder();
  EXPECT_EQ(placeholder.before, "Audio 1: ");
  EXPECT_EQ(placeholder.after, "\n");
  try {
    ChatTemplate::recognise(kSmolTemplate, "DIR/chat_template.jinja").audio_placeholder();
    FAIL() << "a template without the placeholder gave one";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("DIR/chat_template.jinja: chat_template has no audio placeholder"),
              std::string::npos)
        << e.what();
  }
  std::string other = kQwen2AudioTemplate;
  other.replace(other.find("Audio {{ audio_count.value }}"), 29, "{{ clip_name }}");
  EXPECT_THROW(ChatTemplate::recognise(other, "t").audio_placeholder(), UsageError);
}

TEST(ChatTemplate, RefusesATemplateThatIsNotChatMl) {
  try {
    ChatTemplate::recognise("{{ bos_token }}<|start_header_id|>{{ message['role'] }}<|end_header_id|>", "DIR/x.json");
    FAIL() << "Llama 3 template accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("DIR/x.json: chat_template"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cord::hf
