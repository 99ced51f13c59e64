#include "cord/data/tokenizer.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "cord/core/error.hpp"
#include "cord/data/problems.hpp"

namespace cord::data {
namespace {

const std::string kPunctuation = ".,?:;!+-=()";
const std::string kNoSpaceBefore = ".,?:;!)";

bool is_word_char(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '\''; }
bool is_digit(const std::string& piece) { return piece.size() == 1 && std::isdigit(static_cast<unsigned char>(piece[0])); }
std::string suffix(const std::string& where) { return where.empty() ? "" : " (" + where + ")"; }

}  // namespace

const std::vector<std::string>& Tokenizer::special_tokens() {
  static const std::vector<std::string> specials = {"<pad>", "<bos>", "<eos>", "<audio>", "</audio>", "<text>", "<sep>"};
  return specials;
}

std::vector<std::string> split_pieces(const std::string& text, const std::string& where) {
  std::vector<std::string> pieces;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) pieces.push_back(word);
    word.clear();
  };
  for (const char c : text) {
    if (is_word_char(c)) {
      word += c;
    } else if (c == ' ') {
      flush();
    } else if (std::isdigit(static_cast<unsigned char>(c)) != 0 || kPunctuation.find(c) != std::string::npos) {
      flush();
      pieces.emplace_back(1, c);
    } else {
      const bool printable = std::isprint(static_cast<unsigned char>(c)) != 0;
      throw UsageError("character " + (printable ? "'" + std::string(1, c) + "'" : "with code " +
                                                  std::to_string(static_cast<unsigned char>(c))) +
                       " is not allowed in corpus text" + suffix(where));
    }
  }
  flush();
  return pieces;
}

std::string normalize_spacing(const std::string& text) {
  std::string out;
  for (const char raw : text) {
    const char c = std::isspace(static_cast<unsigned char>(raw)) != 0 ? ' ' : raw;
    if (c == ' ' && (out.empty() || out.back() == ' ' || out.back() == '(')) continue;
    if (kNoSpaceBefore.find(c) != std::string::npos && !out.empty() && out.back() == ' ') out.pop_back();
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

Tokenizer Tokenizer::from_generators() {
  std::set<std::string> words;
  for (const std::string& text : ProblemGenerator::lexicon_texts()) {
    for (const std::string& piece : split_pieces(text, "generator lexicon")) {
      if (is_word_char(piece[0])) words.insert(piece);
    }
  }
  std::vector<std::string> tokens = special_tokens();
  for (char d = '0'; d <= '9'; ++d) tokens.emplace_back(1, d);
  for (const char p : kPunctuation) tokens.emplace_back(1, p);
  tokens.insert(tokens.end(), words.begin(), words.end());
  return from_vocab(std::move(tokens), "generators");
}

Tokenizer Tokenizer::from_vocab(std::vector<std::string> tokens, const std::string& source) {
  const auto& specials = special_tokens();
  if (tokens.size() < specials.size() || !std::equal(specials.begin(), specials.end(), tokens.begin())) {
    throw Error(source + ": the vocabulary must start with the special tokens <pad> <bos> <eos> <audio> </audio> "
                         "<text> <sep>");
  }
  Tokenizer t;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].empty()) throw Error(source + ": vocabulary entry " + std::to_string(i) + " is empty");
    if (!t.ids_.emplace(tokens[i], static_cast<std::int32_t>(i)).second) {
      throw Error(source + ": vocabulary token '" + tokens[i] + "' appears twice");
    }
  }
  t.tokens_ = std::move(tokens);
  return t;
}

std::int32_t Tokenizer::id(const std::string& token, const std::string& where) const {
  const auto it = ids_.find(token);
  if (it == ids_.end()) throw UsageError("word '" + token + "' is not in the vocabulary" + suffix(where));
  return it->second;
}

std::vector<std::int32_t> Tokenizer::encode(const std::string& text, const std::string& where) const {
  std::vector<std::int32_t> ids;
  for (const std::string& piece : split_pieces(text, where)) ids.push_back(id(piece, where));
  const std::string canonical = decode(ids);
  if (canonical != text) {
    throw UsageError("text is not in canonical form (spacing around punctuation or between numbers)" + suffix(where) +
                     ": '" + text + "' would read back as '" + canonical + "'");
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::string text;
  const std::string* previous = nullptr;
  for (const std::int32_t id : ids) {
    if (id < 0 || id >= size()) throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
    const std::string& token = tokens_[static_cast<std::size_t>(id)];
    const bool glue = previous == nullptr || (token.size() == 1 && kNoSpaceBefore.find(token[0]) != std::string::npos) ||
                      (is_digit(token) && is_digit(*previous)) || *previous == "(";
    if (!glue) text += ' ';
    text += token;
    previous = &token;
  }
  return text;
}

}  // namespace cord::data
