// The Hugging Face readers that parse outside input from bytes, without libtorch or files:
// the safetensors header, config.json's mapping onto ModelConfig, and the ChatML chat
// template. Each bad input must be a UsageError whose message names the field or tensor.
#include <gtest/gtest.h>

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

// kLlamaConfig with `key` set to the JSON `value`, parsed: the error message, or "(no error)".
std::string config_error(const std::string& key, const std::string& value) {
  nlohmann::json config = nlohmann::json::parse(kLlamaConfig);
  config[key] = nlohmann::json::parse(value);
  ModelConfig model;
  try {
    apply_hf_config(config.dump(), "DIR/config.json", model);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
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
