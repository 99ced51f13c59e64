#pragma once
// The tokenizer of a Hugging Face tokenizer.json of the byte-level BPE kind (GPT-2, SmolLM2,
// Qwen2, Llama-3), read and run without libtorch and without Python. It gives the ids that
// the `tokenizers` library gives (tests/hf/tokenizer_oracle.py compares the two on
// thousands of strings).
//
// What a tokenizer.json may contain (anything else is refused with a cord::UsageError that
// names the file and the field, never ignored, so that cord never silently tokenizes
// differently from `tokenizers`):
//   model           BPE: vocab, merges ("a b" strings or [a, b] pairs), ignore_merges,
//                   unk_token, fuse_unk. Not: dropout (other than null or 0),
//                   continuing_subword_prefix, end_of_word_suffix, byte_fallback.
//   normalizer      null, NFC, Sequence of those.
//   pre_tokenizer   null, ByteLevel, Split (Regex or String pattern, every behavior, invert),
//                   Digits, Sequence of those.
//   added_tokens    with special, normalized, lstrip, rstrip and single_word.
//   post_processor  null, ByteLevel, TemplateProcessing (single sequences), Sequence.
//   decoder         ByteLevel.
//   truncation, padding: null.
// Unknown members of any of these objects are refused too.
//
// Regular expressions (Split patterns, ByteLevel's GPT-2 pattern) are written for Oniguruma,
// which `tokenizers` uses; cord runs them with PCRE2 in Unicode mode. Where the two dialects
// read the same syntax differently (\s, \w, \h, line anchors) the pattern is translated to
// the exact PCRE2 equivalent; constructs without one (\b, POSIX classes, nested classes) are
// refused. Unicode tables: PCRE2's and utf8proc's (the Unicode versions of those builds).
//
// Every method is const and keeps no mutable state: one tokenizer may serve many threads.
// Copies share the parsed tables.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cord::hf {

class BpeTokenizer {
 public:
  // Parses the text of a tokenizer.json; `source_name` (its path) starts every error message.
  // Throws cord::UsageError for malformed JSON, a missing or mistyped field, or a feature
  // that is not supported. Safe on arbitrary bytes.
  static BpeTokenizer from_json(std::string_view json_text, const std::string& source_name);
  // Reads and parses the file at `path`; a file that cannot be read is a UsageError too.
  static BpeTokenizer from_file(const std::string& path);

  // The ids of `text` (UTF-8; otherwise a UsageError naming the first bad byte), as
  // `tokenizers`' encode(text, add_special_tokens=...).ids. `add_special_tokens` applies the
  // post-processor's template (e.g. a leading <|begin_of_text|>). A pattern that runs into
  // PCRE2's match limits (a hostile file) is a cord::Error naming its field.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;

  // The text of `ids`, as `tokenizers`' decode: ids that name no token are left out, special
  // tokens too when `skip_special_tokens`. Bytes that do not form UTF-8 (a partial
  // character, e.g. when decoding a prefix of a generation) become U+FFFD, one per maximal
  // ill-formed subsequence, as in `tokenizers`.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  // The same bytes before that replacement: a caller that decodes a stream piece by piece
  // joins these and checks the UTF-8 itself.
  std::string decode_bytes(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // An added token or a model token, by content (the byte-level form, e.g. "Ġthe") or id.
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  // Whether `id` is an added token marked special (left out by skip_special_tokens).
  bool is_special_token(int32_t id) const;
  // The largest id of the model or the added tokens, plus one (0 when there is none).
  int64_t vocab_size() const;

 private:
  struct Impl;
  explicit BpeTokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace cord::hf
