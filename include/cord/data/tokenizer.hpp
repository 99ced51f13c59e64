#pragma once
// The corpus tokenizer: a closed word-level vocabulary derived from the problem
// generators, with every digit its own token (so that arithmetic is learnable digit by
// digit) and punctuation marks as tokens. It is stored inside each corpus file.
//
//   ids 0..6   special tokens <pad> <bos> <eos> <audio> </audio> <text> <sep>
//   ids 7..16  the digits 0..9
//   then       punctuation . , ? : ; ! + - = ( )
//   then       the words, sorted (case-sensitive: "The" and "the" are different tokens)
//
// Canonical text — single spaces between pieces, no space before . , ? : ; ! ) or after (,
// digits of one number adjacent — round-trips exactly: decode(encode(t)) == t. encode()
// rejects text that is not canonical, and any word outside the vocabulary, naming it.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace cord::data {

class Tokenizer {
 public:
  static constexpr std::int32_t kPad = 0, kBos = 1, kEos = 2, kAudioStart = 3, kAudioEnd = 4, kText = 5, kSep = 6;
  static const std::vector<std::string>& special_tokens();

  // The vocabulary of the generators (ProblemGenerator::lexicon_texts()).
  static Tokenizer from_generators();
  // A stored vocabulary (e.g. read from a corpus file). Throws Error naming `source` when
  // the special tokens are not first, in order, or a token repeats or is empty.
  static Tokenizer from_vocab(std::vector<std::string> tokens, const std::string& source);

  const std::vector<std::string>& vocab() const { return tokens_; }
  int size() const { return static_cast<int>(tokens_.size()); }
  // Throws UsageError "word 'x' is not in the vocabulary (<where>)".
  std::int32_t id(const std::string& token, const std::string& where = "") const;
  bool contains(const std::string& token) const { return ids_.count(token) != 0; }

  // `where` (e.g. "manifest.tsv:12 question") is added to error messages.
  std::vector<std::int32_t> encode(const std::string& text, const std::string& where = "") const;
  // Special tokens are written by name ("<bos>"); an id outside the vocabulary throws.
  std::string decode(const std::vector<std::int32_t>& ids) const;

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int32_t> ids_;
};

// The pieces of `text`: words ([A-Za-z']+), single digits, single punctuation marks.
// Throws UsageError for any other character, naming it and `where`.
std::vector<std::string> split_pieces(const std::string& text, const std::string& where = "");

// Canonical spacing for text typed by people (imported manifests): whitespace runs
// collapsed, trimmed, no space before . , ? : ; ! ) or after (.
std::string normalize_spacing(const std::string& text);

}  // namespace cord::data
