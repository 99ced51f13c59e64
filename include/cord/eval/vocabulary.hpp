#pragma once
// The vocabulary a model reads and writes, and how a corpus question becomes its prompt.
//
//   built-in model (model.source ""): the corpus's word-level tokenizer; the prompt pieces
//     are its special tokens (corpus_special_tokens(): [bos][<text>] ... [<sep>]).
//   hf:DIR: DIR's tokenizer.json and ChatML chat template. A question is the user turn of
//     a one-turn conversation rendered by the template (its default system turn included):
//       text_open        "<|im_start|>system\n...<|im_end|>\n<|im_start|>user\n"
//       question         the corpus question's text, encoded on its own
//       solve_close      "<|im_end|>\n<|im_start|>assistant\n"
//       transcribe_close "\n\n" kRepeatInstruction, then solve_close's text
//       response         the solution's (or question's) text, then eos = <|im_end|>
//     An audio prompt has the projected frames where the question text would be
//     (audio_open == text_open). A Qwen2-Audio model (model.audio.architecture = whisper)
//     has its template's audio placeholder around them instead (hf/chat_template.hpp):
//       audio_open       text_open + "Audio 1: <|audio_bos|>"
//       frames           one per encoder output, where its processor puts <|AUDIO|> tokens
//       audio_close      "<|audio_eos|>\n", then solve_close or transcribe_close Encoding the pieces one by one gives the ids of the whole
//     rendered conversation (tests/hf checks it on the corpus): the template's markers are
//     special tokens, matched before BPE, and the question starts after a newline.
//
// Corpus files keep word-level ids whatever the model; open_corpus_for re-encodes the
// questions and solutions of a corpus into the model's vocabulary when they differ.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cord/config/config.hpp"
#include "cord/data/corpus.hpp"
#include "cord/model/batch.hpp"

namespace cord::eval {

// The instruction after the question that asks a chat model for the question back.
inline constexpr const char* kRepeatInstruction = "Repeat the question above, word for word.";

class ModelVocabulary {
 public:
  // The vocabulary of `model` (its source): `corpus` is the word-level tokenizer, used as
  // the built-in model's vocabulary and to decode corpus ids into text for an hf: model.
  // An hf: directory's tokenizer is parsed once per process. Throws UsageError naming the
  // file when DIR has no tokenizer.json, no ChatML template, or no <|im_end|> token.
  ModelVocabulary(const ModelConfig& model, const data::Tokenizer& corpus);

  // The prompt pieces of `model` without a corpus at hand (the same as tokens()).
  static model::SpecialTokens tokens_of(const ModelConfig& model);

  bool built_in() const { return chat_ == nullptr; }
  // Token ids the model can emit: the corpus vocabulary's size or tokenizer.json's.
  int64_t size() const;
  const model::SpecialTokens& tokens() const { return tokens_; }

  // Word-level corpus ids -> the model's ids of the same text (unchanged when built-in).
  std::vector<int32_t> from_corpus_ids(const std::vector<int32_t>& corpus_ids, const std::string& where) const;
  // The text of a response up to its first eos; nullopt when an id is outside the
  // vocabulary (the built-in tokenizer refuses those).
  std::optional<std::string> response_text(const std::vector<int64_t>& response) const;
  // A response as words for the word error rate: the built-in ids as they are (one per
  // word, digit or mark); for an hf: model its text split the same way (letters runs,
  // single digits, single other characters), each piece given a stable id.
  std::vector<int64_t> words(const std::vector<int64_t>& response) const;
  // What weights files record to tell vocabularies apart: the built-in tokens, or for an
  // hf: model {"tokenizer.json", "tokens N", "fnv1a-64 HEX"} over every token's text.
  std::vector<std::string> fingerprint() const;

  struct Chat;  // an hf: directory's tokenizer and prompt pieces (vocabulary.cpp)

 private:
  static std::shared_ptr<const Chat> chat_of(const ModelConfig& model);
  const data::Tokenizer* corpus_;
  std::shared_ptr<const Chat> chat_;
  model::SpecialTokens tokens_;
};

// The final answer of a response in `vocabulary` (its answer line, as scoring.hpp's
// extract_answer), or nullopt when it has none.
std::optional<std::string> extract_answer(const ModelVocabulary& vocabulary, const std::vector<int64_t>& response);

// The built-in vocabulary's prompt pieces (data::Tokenizer ids).
model::SpecialTokens corpus_special_tokens();

// Opens the corpus at `path` with its questions and solutions in `model`'s vocabulary.
// Throws UsageError naming the corpus and the model's fields when its features are not the
// ones the model's encoder reads (kind: cord or whisper; mel bins).
std::unique_ptr<data::CorpusReader> open_corpus_for(const std::string& path, const ModelConfig& model);

// The check open_corpus_for makes on the features.
void check_features_match(const data::CorpusReader& corpus, const ModelConfig& model);

}  // namespace cord::eval
