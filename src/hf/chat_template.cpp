#include "cord/hf/chat_template.hpp"

#include <nlohmann/json.hpp>

#include "cord/core/error.hpp"
#include "cord/core/files.hpp"

namespace cord::hf {
namespace {

constexpr const char* kStart = "<|im_start|>";
constexpr const char* kEnd = "<|im_end|>";

// A Jinja string literal's escapes that ChatML templates use: \n and \' .
std::string unescape(const std::string& literal) {
  std::string out;
  for (size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] == '\\' && i + 1 < literal.size() && (literal[i + 1] == 'n' || literal[i + 1] == '\'')) {
      out += literal[i + 1] == 'n' ? '\n' : '\'';
      ++i;
    } else {
      out += literal[i];
    }
  }
  return out;
}

// The literal default system turn: "<|im_start|>system" + newline + TEXT + "<|im_end|>"
// inside one string literal of the template (TEXT without Jinja expressions).
bool find_default_system(const std::string& text, std::string& content) {
  const std::string opening = std::string(kStart) + "system";
  for (size_t at = text.find(opening); at != std::string::npos; at = text.find(opening, at + 1)) {
    size_t begin = at + opening.size();
    if (text.compare(begin, 2, "\\n") == 0) {
      begin += 2;
    } else if (begin < text.size() && text[begin] == '\n') {
      begin += 1;
    } else {
      continue;
    }
    const size_t end = text.find(kEnd, begin);
    if (end == std::string::npos) continue;
    const std::string literal = text.substr(begin, end - begin);
    if (literal.find_first_of("{}+") != std::string::npos || literal.find("' ") != std::string::npos) continue;
    content = unescape(literal);
    return true;
  }
  return false;
}

}  // namespace

ChatTemplate ChatTemplate::recognise(const std::string& template_text, const std::string& source_name) {
  const bool chatml = template_text.find(kStart) != std::string::npos && template_text.find(kEnd) != std::string::npos &&
                      template_text.find("add_generation_prompt") != std::string::npos &&
                      template_text.find("role") != std::string::npos;
  if (!chatml) {
    throw UsageError(source_name + ": chat_template is not a ChatML template (<|im_start|>ROLE ... <|im_end|>), "
                                   "the only chat format cord renders");
  }
  ChatTemplate result;
  result.source_name_ = source_name;
  result.template_text_ = template_text;
  result.has_default_system_ = find_default_system(template_text, result.default_system_);
  return result;
}

ChatTemplate ChatTemplate::from_model_directory(const std::string& directory) {
  const std::string jinja = directory + "/chat_template.jinja";
  if (regular_file_exists(jinja)) return recognise(read_whole_file(jinja), jinja);
  const std::string config_path = directory + "/tokenizer_config.json";
  if (!regular_file_exists(config_path)) {
    throw UsageError(directory + " has neither chat_template.jinja nor tokenizer_config.json (no chat template)");
  }
  const std::string text = read_whole_file(config_path);
  const nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) throw UsageError(config_path + " is not a JSON object");
  if (!config.contains("chat_template") || !config["chat_template"].is_string()) {
    throw UsageError(config_path + ": chat_template is missing or not a string (cord renders one template)");
  }
  return recognise(config["chat_template"].get<std::string>(), config_path);
}

AudioPlaceholder ChatTemplate::audio_placeholder() const {
  const size_t at = template_text_.find(kAudioPlaceholder);
  if (at == std::string::npos) {
    throw UsageError(source_name_ + ": chat_template has no audio placeholder " + kAudioPlaceholder +
                     ", which an audio prompt of a Qwen2-Audio model needs");
  }
  // BEFORE: back to the end of the previous Jinja statement; AFTER: up to the next one.
  const size_t statement_end = template_text_.rfind("%}", at);
  const size_t begin = statement_end == std::string::npos ? 0 : statement_end + 2;
  std::string before = template_text_.substr(begin, at - begin);
  const size_t counter = before.find("{{");
  if (counter != std::string::npos) {
    const size_t close = before.find("}}", counter);
    if (close == std::string::npos || before.substr(counter, close - counter).find("audio_count") == std::string::npos) {
      throw UsageError(source_name_ + ": chat_template writes an expression before " + kAudioPlaceholder +
                       " that cord cannot render (only the clip counter {{ audio_count.value }})");
    }
    before = before.substr(0, counter) + "1" + before.substr(close + 2);
  }
  const size_t after_begin = at + std::string(kAudioPlaceholder).size();
  const size_t after_end = std::min(template_text_.find("{%", after_begin), template_text_.find("{{", after_begin));
  const std::string after = template_text_.substr(after_begin, after_end == std::string::npos ? std::string::npos
                                                                                              : after_end - after_begin);
  for (const std::string* piece : {static_cast<const std::string*>(&before), &after}) {
    if (piece->find_first_of("{}'\"") != std::string::npos) {
      throw UsageError(source_name_ + ": chat_template writes '" + *piece + "' around " + kAudioPlaceholder +
                       ", which is not literal text cord can render");
    }
  }
  return {before, after};
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out;
  auto turn = [&](const std::string& role, const std::string& content) {
    out += std::string(kStart) + role + "\n" + content + kEnd + "\n";
  };
  if (has_default_system_ && !messages.empty() && messages.front().role != "system") turn("system", default_system_);
  for (const ChatMessage& message : messages) {
    if (message.role != "system" && message.role != "user" && message.role != "assistant") {
      throw UsageError("chat message role '" + message.role + "' is not system, user or assistant");
    }
    turn(message.role, message.content);
  }
  if (add_generation_prompt) out += std::string(kStart) + "assistant\n";
  return out;
}

}  // namespace cord::hf
