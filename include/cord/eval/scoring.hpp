#pragma once
// Scoring of decoded responses: the final answer of a solution (its canonical answer
// line, "The answer is X."), accuracy per family for text and audio input, the gap, and
// the word error rate of transcripts (over tokenizer pieces: words, and digits one by one).
// Pure bookkeeping, no tensors: the counts are summed over ranks by the caller.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cord/data/problems.hpp"
#include "cord/data/tokenizer.hpp"

namespace cord::eval {

// Levenshtein distance (substitutions, insertions, deletions all cost 1).
int64_t edit_distance(const std::vector<int64_t>& hypothesis, const std::vector<int64_t>& reference);

// `response` up to (not including) its first `eos`.
std::vector<int64_t> strip_eos(const std::vector<int64_t>& response, int64_t eos);

// The final answer of a decoded solution, or nullopt when it has none: no canonical
// answer line, or a token id outside the vocabulary.
std::optional<std::string> extract_answer(const data::Tokenizer& tokenizer, const std::vector<int64_t>& response);

// Counts of one family; every field is a sum over items (and ranks).
struct FamilyScore {
  int64_t items = 0;
  int64_t text_correct = 0, text_unparsed = 0;
  int64_t audio_correct = 0, audio_unparsed = 0;
  int64_t word_edits = 0, reference_words = 0;  // transcripts against the question text
};

struct Scores {
  std::array<FamilyScore, data::kFamilyCount> families{};
  bool text = false, audio = false, transcripts = false;  // what was evaluated

  // For summing over ranks: kFamilyCount x 7 counts in field order, and back.
  std::vector<int64_t> flatten() const;
  void assign_flat(const std::vector<int64_t>& flat);

  // Macro averages over the families that have items (the paper averages over tasks).
  double text_accuracy() const;
  double audio_accuracy() const;
  double word_error_rate() const;  // pooled over all transcript words
};

// {"split", "families": {name: {items, text_accuracy, audio_accuracy, gap, ...}}, "average": {...}}
// Accuracies in percent; gap = text - audio in points.
nlohmann::json scores_json(const Scores& scores);

// The same as a Markdown table: one row per family and an average row.
std::string scores_markdown(const Scores& scores);

}  // namespace cord::eval
