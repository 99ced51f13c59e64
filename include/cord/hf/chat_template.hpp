#pragma once
// The chat format of a Hugging Face model, for the part of it cord's prompts need: system,
// user and assistant turns and the generation prompt.
//
// A model's chat template is a Jinja program (tokenizer_config.json's "chat_template", or
// chat_template.jinja). cord does not run Jinja; it recognises the ChatML family that
// SmolLM2, Qwen2 and Qwen2-Audio use,
//   <|im_start|>ROLE\nCONTENT<|im_end|>\n ... then <|im_start|>assistant\n
// including the default system turn that such a template inserts when the conversation
// does not start with one (read from the template's text). Any other template is a
// UsageError naming the file and chat_template. tests/hf checks the rendering against
// transformers' apply_chat_template.
#include <string>
#include <vector>

namespace cord::hf {

// Qwen2-Audio's audio placeholder in a user turn: the template writes BEFORE, then
// <|audio_bos|><|AUDIO|><|audio_eos|> (the processor expands <|AUDIO|> to one token per
// encoder frame), then AFTER. Its default template: "Audio 1: " and "\n" for the first clip.
inline constexpr const char* kAudioPlaceholder = "<|audio_bos|><|AUDIO|><|audio_eos|>";
struct AudioPlaceholder {
  std::string before;
  std::string after;
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

class ChatTemplate {
 public:
  // The template of model directory DIR: chat_template.jinja, else tokenizer_config.json's
  // chat_template. Throws UsageError naming the file when there is none or it is not ChatML.
  static ChatTemplate from_model_directory(const std::string& directory);
  // From the template's text; `source_name` names it in errors.
  static ChatTemplate recognise(const std::string& template_text, const std::string& source_name);

  // The conversation as text, ending with the assistant's opening when
  // `add_generation_prompt`. Throws UsageError for a role other than system/user/assistant.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // The default system turn's content ("" when the template inserts none).
  const std::string& default_system() const { return default_system_; }
  // The audio placeholder of the first clip of a conversation, from the template's text:
  // the literal text around kAudioPlaceholder, with a Jinja expression that counts clips
  // ({{ audio_count.value }}) rendered as 1. Throws UsageError naming the template's file
  // when the template has no placeholder or writes something else around it.
  AudioPlaceholder audio_placeholder() const;

 private:
  std::string source_name_;
  std::string template_text_;
  std::string default_system_;
  bool has_default_system_ = false;
};

}  // namespace cord::hf
