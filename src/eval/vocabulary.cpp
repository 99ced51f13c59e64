#include "cord/eval/vocabulary.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>

#include "cord/core/error.hpp"
#include "cord/core/log.hpp"
#include "cord/eval/scoring.hpp"
#include "cord/hf/bpe_tokenizer.hpp"
#include "cord/hf/chat_template.hpp"
#include "cord/hf/hf_config.hpp"

namespace cord::eval {

struct ModelVocabulary::Chat {
  hf::BpeTokenizer tokenizer;
  model::SpecialTokens tokens;
  std::vector<std::string> fingerprint;
};

namespace {

using data::Tokenizer;

constexpr uint64_t kFnvOffset = 1469598103934665603ULL, kFnvPrime = 1099511628211ULL;

uint64_t fnv1a(const std::string& bytes, uint64_t hash = kFnvOffset) {
  for (const char c : bytes) hash = (hash ^ static_cast<unsigned char>(c)) * kFnvPrime;
  return hash;
}

std::vector<int64_t> widen(const std::vector<int32_t>& ids) { return {ids.begin(), ids.end()}; }

// Qwen2-Audio: the audio prompt is the user turn with one clip as the template renders it,
//   audio_open  = text_open + BEFORE + "<|audio_bos|>"    (BEFORE: "Audio 1: ")
//   frames        (where the processor puts one <|AUDIO|> per frame)
//   audio_close = "<|audio_eos|>" + AFTER                 (AFTER: "\n")
// then the same closing run as a text prompt.
void set_audio_runs(const std::string& directory, const hf::ChatTemplate& chat_template, const std::string& text_open,
                    ModelVocabulary::Chat& chat) {
  const hf::AudioPlaceholder placeholder = chat_template.audio_placeholder();
  const hf::BpeTokenizer& tokenizer = chat.tokenizer;
  for (const char* token : {"<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"}) {
    if (!tokenizer.token_to_id(token)) {
      throw UsageError(directory + "/tokenizer.json has no " + token + " token, which the chat template's audio "
                                   "placeholder uses");
    }
  }
  ModelConfig described;
  described.source = "hf:" + directory;
  const hf::HfModelInfo info = hf::resolve_model_source(described);
  const int32_t audio_id = *tokenizer.token_to_id("<|AUDIO|>");
  if (audio_id != info.audio_token_id) {
    throw UsageError(directory + "/tokenizer.json has <|AUDIO|> = " + std::to_string(audio_id) + " but " + directory +
                     "/config.json has audio_token_index = " + std::to_string(info.audio_token_id));
  }
  chat.tokens.audio_open = widen(tokenizer.encode(text_open + placeholder.before + "<|audio_bos|>"));
  chat.tokens.audio_close = widen(tokenizer.encode("<|audio_eos|>" + placeholder.after));
}

std::shared_ptr<const ModelVocabulary::Chat> read_chat(const std::string& directory, const ModelConfig& model) {
  const std::string path = directory + "/tokenizer.json";
  if (access(path.c_str(), R_OK) != 0) {
    throw UsageError(path + " does not exist: model.source = hf:" + directory +
                     " needs the model's tokenizer to turn corpus questions into its prompts");
  }
  auto chat = std::make_shared<ModelVocabulary::Chat>(ModelVocabulary::Chat{hf::BpeTokenizer::from_file(path), {}, {}});
  const hf::ChatTemplate chat_template = hf::ChatTemplate::from_model_directory(directory);
  const hf::BpeTokenizer& tokenizer = chat->tokenizer;
  if (tokenizer.vocab_size() > model.vocab_size) {
    throw UsageError(path + " has " + std::to_string(tokenizer.vocab_size()) + " tokens, more than the " +
                     std::to_string(model.vocab_size) + " rows of the model's embedding (config.json vocab_size)");
  }
  const std::optional<int32_t> end_of_turn = tokenizer.token_to_id("<|im_end|>");
  if (!end_of_turn) throw UsageError(path + " has no <|im_end|> token, which ends a ChatML turn");

  // The template around a placeholder question: before it opens, after it closes.
  const std::string placeholder = "\x01";
  const std::string rendered = chat_template.render({{"user", placeholder}}, /*add_generation_prompt=*/true);
  const size_t at = rendered.find(placeholder);
  CORD_CHECK(at != std::string::npos, "the chat template dropped the user turn's content");
  const std::string before = rendered.substr(0, at), after = rendered.substr(at + placeholder.size());
  model::SpecialTokens& tokens = chat->tokens;
  tokens.eos = tokens.pad = *end_of_turn;
  tokens.bos = tokens.audio = tokens.text = tokens.sep = tokens.transcribe = -1;  // the runs replace them
  tokens.text_open = tokens.audio_open = widen(tokenizer.encode(before));
  tokens.solve_close = widen(tokenizer.encode(after));
  tokens.transcribe_close = widen(tokenizer.encode(std::string("\n\n") + kRepeatInstruction + after));
  // A whisper encoder from an hf: directory is a Qwen2-Audio model (hf/hf_model.hpp's layout).
  if (model.audio.architecture == AudioArchitecture::kWhisper) set_audio_runs(directory, chat_template, before, *chat);

  uint64_t hash = kFnvOffset;
  for (int64_t id = 0; id < tokenizer.vocab_size(); ++id) {
    hash = fnv1a(tokenizer.id_to_token(static_cast<int32_t>(id)).value_or("") + "\n", hash);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  chat->fingerprint = {"tokenizer.json", "tokens " + std::to_string(tokenizer.vocab_size()),
                       std::string("fnv1a-64 ") + hex};
  return chat;
}

// Words of `text` as the corpus tokenizer cuts them: runs of letters and apostrophes, single
// digits, and any other character (one UTF-8 sequence) alone; whitespace separates.
std::vector<std::string> word_pieces(const std::string& text) {
  std::vector<std::string> pieces;
  auto letter = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '\''; };
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      ++i;
    } else if (letter(c)) {
      size_t j = i;
      while (j < text.size() && letter(text[j])) ++j;
      pieces.push_back(text.substr(i, j - i));
      i = j;
    } else {
      size_t j = i + 1;  // one UTF-8 sequence: the lead byte and its continuation bytes
      while (j < text.size() && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80) ++j;
      pieces.push_back(text.substr(i, j - i));
      i = j;
    }
  }
  return pieces;
}

}  // namespace

std::shared_ptr<const ModelVocabulary::Chat> ModelVocabulary::chat_of(const ModelConfig& model) {
  const std::string directory = hf::hf_directory(model.source);
  if (directory.empty()) return nullptr;
  // tokenizer.json of a real model is megabytes of JSON: parse it once per process.
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const Chat>> parsed;
  const std::lock_guard<std::mutex> lock(mutex);
  std::shared_ptr<const Chat>& chat = parsed[directory];
  if (chat == nullptr) chat = read_chat(directory, model);
  return chat;
}

model::SpecialTokens ModelVocabulary::tokens_of(const ModelConfig& model) {
  const std::shared_ptr<const Chat> chat = chat_of(model);
  return chat == nullptr ? corpus_special_tokens() : chat->tokens;
}

ModelVocabulary::ModelVocabulary(const ModelConfig& model, const data::Tokenizer& corpus)
    : corpus_(&corpus), chat_(chat_of(model)), tokens_(chat_ == nullptr ? corpus_special_tokens() : chat_->tokens) {}

int64_t ModelVocabulary::size() const { return built_in() ? corpus_->size() : chat_->tokenizer.vocab_size(); }

std::vector<int32_t> ModelVocabulary::from_corpus_ids(const std::vector<int32_t>& corpus_ids,
                                                      const std::string& where) const {
  if (built_in()) return corpus_ids;
  const std::vector<int32_t> ids = chat_->tokenizer.encode(corpus_->decode(corpus_ids));
  if (ids.empty() && !corpus_ids.empty()) throw Error(where + ": the model's tokenizer encodes it to no tokens");
  return ids;
}

std::optional<std::string> ModelVocabulary::response_text(const std::vector<int64_t>& response) const {
  std::vector<int32_t> ids;
  for (const int64_t id : strip_eos(response, tokens_.eos)) {
    if (id < 0 || id >= size()) return std::nullopt;
    ids.push_back(static_cast<int32_t>(id));
  }
  return built_in() ? corpus_->decode(ids) : chat_->tokenizer.decode(ids);
}

std::vector<int64_t> ModelVocabulary::words(const std::vector<int64_t>& response) const {
  if (built_in()) return strip_eos(response, tokens_.eos);
  std::vector<int64_t> out;
  for (const std::string& piece : word_pieces(response_text(response).value_or(""))) {
    out.push_back(static_cast<int64_t>(fnv1a(piece) >> 1));
  }
  return out;
}

std::vector<std::string> ModelVocabulary::fingerprint() const {
  return built_in() ? corpus_->vocab() : chat_->fingerprint;
}

std::optional<std::string> extract_answer(const ModelVocabulary& vocabulary, const std::vector<int64_t>& response) {
  const std::optional<std::string> text = vocabulary.response_text(response);
  if (!text) return std::nullopt;
  std::string answer = data::parse_answer_line(*text);
  if (answer.empty()) return std::nullopt;
  return answer;
}

model::SpecialTokens corpus_special_tokens() {
  model::SpecialTokens tokens;
  tokens.bos = Tokenizer::kBos;
  tokens.eos = Tokenizer::kEos;
  tokens.pad = Tokenizer::kPad;
  tokens.audio = Tokenizer::kAudioStart;
  tokens.text = Tokenizer::kText;
  tokens.sep = Tokenizer::kSep;
  tokens.transcribe = Tokenizer::kAudioEnd;
  return tokens;
}

void check_features_match(const data::CorpusReader& corpus, const ModelConfig& model) {
  const std::string wanted = model.audio.architecture == AudioArchitecture::kWhisper ? "whisper" : "cord";
  if (corpus.feature_kind() == wanted && corpus.n_mels() == model.audio.n_mels) return;
  const std::string source = model.source.empty() ? "the built-in model" : hf::hf_directory(model.source) + "/config.json";
  throw UsageError("corpus " + corpus.path() + " holds " + corpus.feature_kind() + " features with " +
                   std::to_string(corpus.n_mels()) + " mel bins, but the model (" + source +
                   ": model.audio.architecture = " + name_of(model.audio.architecture) + ", model.audio.n_mels = " +
                   std::to_string(model.audio.n_mels) + ") reads " + wanted + " features with " +
                   std::to_string(model.audio.n_mels) + ": make the corpus with --set corpus.features=" + wanted +
                   " --set corpus.n_mels=" + std::to_string(model.audio.n_mels));
}

std::unique_ptr<data::CorpusReader> open_corpus_for(const std::string& path, const ModelConfig& model) {
  auto corpus = std::make_unique<data::CorpusReader>(path);
  check_features_match(*corpus, model);
  const ModelVocabulary vocabulary(model, corpus->tokenizer());
  if (vocabulary.built_in()) return corpus;
  const auto start = std::chrono::steady_clock::now();
  corpus->reencode([&](const std::vector<int32_t>& ids, const std::string& where) {
    return vocabulary.from_corpus_ids(ids, where);
  });
  CORD_LOG(kInfo) << "corpus " << path << ": " << corpus->size() << " questions and solutions re-encoded with "
                  << hf::hf_directory(model.source) << "/tokenizer.json in "
                  << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s";
  return corpus;
}

}  // namespace cord::eval
