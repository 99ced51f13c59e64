// A tokenizer.json reader and the byte-level BPE tokenizer it describes. The order of the
// file follows the data: UTF-8 helpers, the JSON field reader, the regular expressions,
// then each stage of `tokenizers`' encode pipeline in the order it runs
//   added tokens -> normalizer -> pre-tokenizer -> BPE model -> post-processor
// and the decoder, and last the public class that ties them together.
#include "cord/hf/bpe_tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "cord/core/error.hpp"

namespace cord::hf {
namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------

// One step of reading UTF-8 at some position: `length` bytes, forming a character or not.
// An ill-formed sequence is its maximal subpart (Unicode §3.9, D93b): the lead byte and the
// continuation bytes that could still have begun a valid sequence. Overlong forms,
// surrogates and values above U+10FFFF are ill-formed.
struct Utf8Step {
  size_t length;
  bool valid;
};

Utf8Step utf8_step(std::string_view text, size_t pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  if (lead < 0x80) return {1, true};
  size_t continuations = 0;
  unsigned char low = 0x80;  // the allowed range of the second byte; later ones are 80..BF
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    continuations = 1;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    continuations = 2;
    if (lead == 0xE0) low = 0xA0;   // no overlong 3-byte forms
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    continuations = 3;
    if (lead == 0xF0) low = 0x90;   // no overlong 4-byte forms
    if (lead == 0xF4) high = 0x8F;  // nothing above U+10FFFF
  } else {
    return {1, false};
  }
  size_t length = 1;
  for (size_t k = 0; k < continuations; ++k) {
    if (pos + length >= text.size()) return {length, false};
    const auto byte = static_cast<unsigned char>(text[pos + length]);
    if (byte < low || byte > high) return {length, false};
    low = 0x80;
    high = 0xBF;
    ++length;
  }
  return {length, true};
}

// The offset of the first byte that does not belong to well-formed UTF-8, if any.
std::optional<size_t> first_invalid_utf8(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const Utf8Step step = utf8_step(text, pos);
    if (!step.valid) return pos;
    pos += step.length;
  }
  return std::nullopt;
}

// Each ill-formed subsequence replaced by U+FFFD, as Rust's String::from_utf8_lossy does.
std::string replace_invalid_utf8(std::string_view bytes) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string text;
  text.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    const Utf8Step step = utf8_step(bytes, pos);
    if (step.valid) {
      text.append(bytes.substr(pos, step.length));
    } else {
      text.append(kReplacement);
    }
    pos += step.length;
  }
  return text;
}

// The code point of the (well-formed) character of `length` bytes at text[pos].
char32_t code_point_at(std::string_view text, size_t pos, size_t length) {
  const auto byte = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(text[pos + k])); };
  switch (length) {
    case 1: return byte(0);
    case 2: return ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F);
    case 3: return ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
    default: return ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F);
  }
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// The byte length of the character that starts at text[pos] (text is well-formed UTF-8).
size_t char_length_at(std::string_view text, size_t pos) { return utf8_step(text, pos).length; }

// The start of the character that ends at text[end] (exclusive; text is well-formed).
size_t previous_char_start(std::string_view text, size_t end) {
  size_t pos = end - 1;
  while (pos > 0 && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) --pos;
  return pos;
}

// At most about `max` bytes of the UTF-8 `text`, cut between characters, with "..." if cut.
std::string shortened(std::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  std::string kept(text.substr(0, max));
  while (!kept.empty() && first_invalid_utf8(kept)) kept.pop_back();
  return kept + "...";
}

// `value` as a JSON string literal for messages, shortened to about 60 bytes.
std::string as_literal(std::string_view value) {
  return json(shortened(value, 60)).dump(-1, ' ', false, json::error_handler_t::replace);
}

// ---------------------------------------------------------------------------------------
// Reading the JSON: every value travels with its path, so that each error names its field
// ---------------------------------------------------------------------------------------

class Field {
 public:
  Field(const json& value, std::string path, const std::string& source)
      : value_(&value), path_(std::move(path)), source_(&source) {}

  const json& value() const { return *value_; }
  const std::string& path() const { return path_; }
  const std::string& source() const { return *source_; }
  bool is_null() const { return value_->is_null(); }
  // "FILE: FIELD", the start of every message about this value.
  std::string location() const { return path_.empty() ? *source_ : *source_ + ": " + path_; }

  [[noreturn]] void fail(const std::string& what) const { throw UsageError(location() + ": " + what); }

  // The member `key`, which must exist (null is a value like any other).
  Field member(const char* key) const {
    std::optional<Field> found = optional_member(key);
    if (!found) fail(std::string("missing member \"") + key + "\"");
    return *found;
  }
  // The member `key`, or nothing when absent.
  std::optional<Field> optional_member(const char* key) const {
    expect_type(value_->is_object(), "an object");
    const auto it = value_->find(key);
    if (it == value_->end()) return std::nullopt;
    return Field(*it, path_.empty() ? key : path_ + "." + key, *source_);
  }
  // This is an object whose members are all in `known`: what cord does not read, it refuses
  // rather than ignores.
  void expect_members(std::initializer_list<std::string_view> known) const {
    expect_type(value_->is_object(), "an object");
    for (const auto& [key, unused] : value_->items()) {
      (void)unused;
      if (std::find(known.begin(), known.end(), key) == known.end())
        fail("unknown member " + as_literal(key) + " (not supported)");
    }
  }
  // The elements of this array, with paths "FIELD[i]".
  std::vector<Field> elements() const {
    expect_type(value_->is_array(), "an array");
    std::vector<Field> fields;
    fields.reserve(value_->size());
    for (size_t i = 0; i < value_->size(); ++i)
      fields.emplace_back((*value_)[i], path_ + "[" + std::to_string(i) + "]", *source_);
    return fields;
  }
  // The members of this object (in key order: nlohmann::json sorts them), with paths FIELD["key"].
  std::vector<std::pair<std::string, Field>> entries() const {
    expect_type(value_->is_object(), "an object");
    std::vector<std::pair<std::string, Field>> fields;
    fields.reserve(value_->size());
    for (const auto& [key, value] : value_->items())
      fields.emplace_back(key, Field(value, path_ + "[" + as_literal(key) + "]", *source_));
    return fields;
  }

  const std::string& string() const {
    expect_type(value_->is_string(), "a string");
    return value_->get_ref<const std::string&>();
  }
  bool boolean() const {
    expect_type(value_->is_boolean(), "true or false");
    return value_->get<bool>();
  }
  // A token id: an integer from 0 to 2^31 - 1.
  int32_t id() const {
    constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
    if (value_->is_number_unsigned() && value_->get<uint64_t>() <= static_cast<uint64_t>(kMax))
      return static_cast<int32_t>(value_->get<uint64_t>());
    if (value_->is_number_integer() && value_->get<int64_t>() >= 0 && value_->get<int64_t>() <= kMax)
      return static_cast<int32_t>(value_->get<int64_t>());
    fail("expected an integer from 0 to 2147483647, got " + shown());
  }
  // The "type" member of a component object.
  std::string type() const { return member("type").string(); }

  [[noreturn]] void fail_unsupported_type(std::initializer_list<const char*> supported) const {
    std::string list;
    for (const char* name : supported) list += std::string(list.empty() ? "" : ", ") + name;
    member("type").fail(as_literal(type()) + " is not supported (supported: " + list + ")");
  }

 private:
  void expect_type(bool ok, const char* expected) const {
    if (!ok) fail(std::string("expected ") + expected + ", got " + shown());
  }
  // A scalar as it reads in the file (shortened); a container by its size only, so that a
  // hostile document nested a million deep is never walked recursively.
  std::string shown() const {
    if (value_->is_array()) return "an array of " + std::to_string(value_->size()) + " elements";
    if (value_->is_object()) return "an object of " + std::to_string(value_->size()) + " members";
    return shortened(value_->dump(-1, ' ', false, json::error_handler_t::replace), 60);
  }

  const json* value_;
  std::string path_;
  const std::string* source_;
};

// Nested Sequence components are read recursively; a bound keeps hostile files from
// exhausting the stack.
constexpr int kMaxSequenceDepth = 8;

void check_depth(const Field& field, int depth) {
  if (depth > kMaxSequenceDepth)
    field.fail("Sequence nested more than " + std::to_string(kMaxSequenceDepth) + " deep (not supported)");
}

// ---------------------------------------------------------------------------------------
// Regular expressions: Oniguruma patterns, run with PCRE2
// ---------------------------------------------------------------------------------------

// `tokenizers` compiles Split and ByteLevel patterns with Oniguruma. PCRE2 (UTF + UCP) reads
// that syntax the same way except for the escapes below, which are rewritten into what
// Oniguruma means by them. Each rewrite was checked against `tokenizers` on every code
// point that PCRE2's Unicode tables assign (tests/hf/tokenizer_oracle.py keeps checking):
//   \s \S  Oniguruma: the White_Space property; PCRE2 also counts U+180E.
//   \w \W  Oniguruma: Alphabetic, marks, decimal digits, connector punctuation, and the
//          Latin-1 numbers ¹²³¼½¾; PCRE2 10.42: letters, numbers and '_'.
//   \b \B  boundaries between Oniguruma's \w and the rest, as lookarounds.
//   \h \H  Oniguruma: a hexadecimal digit; PCRE2: horizontal white space.
// Refused, as the dialects differ and there is no rewrite here: \Q (no quoting in
// Oniguruma), [[:alpha:]] (Unicode-wide classes in Oniguruma), a class inside a class and &&
// (Oniguruma's set operations), the inline options m and s (Oniguruma's m is PCRE2's s).
// ^ and $ are line anchors in Oniguruma: the pattern is compiled with PCRE2_MULTILINE.
class OnigurumaTranslator {
 public:
  OnigurumaTranslator(std::string_view pattern, const Field& where) : pattern_(pattern), where_(where) {}

  std::string translate() {
    for (pos_ = 0; pos_ < pattern_.size(); ++pos_) {
      const char c = pattern_[pos_];
      if (c == '\\') {
        translate_escape();
      } else if (in_class_) {
        class_character(c);
      } else {
        if (c == '[') open_class();
        if (c == '(') check_inline_options();
        out_ += c;
      }
    }
    return out_;
  }

 private:
  // The members of Oniguruma's \w, written to go inside a PCRE2 class.
  static constexpr std::string_view kWordClassBody = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{B2}\x{B3}\x{B9}\x{BC}-\x{BE})";

  char next() const { return pos_ + 1 < pattern_.size() ? pattern_[pos_ + 1] : '\0'; }

  [[noreturn]] void refuse(const std::string& construct) const {
    where_.fail("the pattern uses " + construct + " at byte " + std::to_string(pos_) +
                ", which Oniguruma (tokenizers) and PCRE2 (cord) read differently (not supported)");
  }

  // Copies or rewrites the escape at pos_ and leaves pos_ on its last character.
  void translate_escape() {
    const char e = next();
    const std::string word = "[" + std::string(kWordClassBody) + "]";
    switch (e) {
      case 's': out_ += "\\p{White_Space}"; break;
      case 'S': out_ += "\\P{White_Space}"; break;
      case 'h': out_ += "\\p{ASCII_Hex_Digit}"; break;
      case 'H': out_ += "\\P{ASCII_Hex_Digit}"; break;
      case 'w': out_ += in_class_ ? std::string(kWordClassBody) : word; break;
      case 'W':
        if (in_class_) refuse("\\W inside a character class");
        out_ += "[^" + std::string(kWordClassBody) + "]";
        break;
      case 'b':  // inside a class, \b is a backspace in both dialects
        out_ += in_class_ ? "\\b" : "(?:(?<=" + word + ")(?!" + word + ")|(?<!" + word + ")(?=" + word + "))";
        break;
      case 'B':
        if (in_class_) refuse("\\B inside a character class");
        out_ += "(?:(?<=" + word + ")(?=" + word + ")|(?<!" + word + ")(?!" + word + "))";
        break;
      case 'Q': refuse("\\Q");
      case 'c':  // \cX, a control character: X belongs to the escape, even '[' or '\'
        out_ += pattern_.substr(pos_, 3);
        ++pos_;
        break;
      default:  // the same in both dialects; a trailing '\' is left for PCRE2 to report
        out_ += '\\';
        if (e != '\0') out_ += e;
    }
    ++pos_;
  }

  void open_class() {
    in_class_ = true;
    class_body_start_ = pos_ + 1;
    if (next() == '^') ++class_body_start_;
  }

  void class_character(char c) {
    if (c == '[') refuse(next() == ':' ? "a POSIX class such as [:alpha:]" : "a character class inside a class");
    if (c == '&' && next() == '&') refuse("&& inside a character class");
    // A ']' right after '[' or '[^' is a literal in both dialects; any later one closes.
    if (c == ']' && pos_ > class_body_start_) in_class_ = false;
    out_ += c;
  }

  // "(?imx-imx)" or "(?imx-imx:...)": refuse m and s, whose meanings differ.
  void check_inline_options() const {
    if (next() != '?') return;
    for (size_t k = pos_ + 2; k < pattern_.size(); ++k) {
      const char option = pattern_[k];
      if (option == ':' || option == ')') return;
      if (option == 'm' || option == 's') refuse(std::string("the inline option ") + option);
      if (!std::isalpha(static_cast<unsigned char>(option)) && option != '-') return;  // (?= (?<name> ...
    }
  }

  std::string_view pattern_;
  const Field& where_;
  std::string out_;
  size_t pos_ = 0;
  bool in_class_ = false;
  size_t class_body_start_ = 0;
};

// A compiled pattern. Matching allocates its own match data: one Regex may serve many
// threads at once (PCRE2 code, JIT-compiled or not, is read-only when matching).
class Regex {
 public:
  // Compiles `pattern` (a literal string when `literal`); a pattern that PCRE2 rejects is a
  // UsageError naming `where` with PCRE2's message and offset.
  Regex(std::string_view pattern, bool literal, const Field& where) : location_(where.location()) {
    const std::string translated = literal ? std::string(pattern) : OnigurumaTranslator(pattern, where).translate();
    const uint32_t options = literal ? (PCRE2_UTF | PCRE2_LITERAL)
                                     : (PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_ALT_CIRCUMFLEX |
                                        PCRE2_NEVER_BACKSLASH_C);
    std::unique_ptr<pcre2_compile_context, void (*)(pcre2_compile_context*)> context(
        pcre2_compile_context_create(nullptr), pcre2_compile_context_free);
    if (!context) throw std::bad_alloc();
    pcre2_set_newline(context.get(), PCRE2_NEWLINE_LF);  // Oniguruma's only newline
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), options,
                                     &error_code, &error_offset, context.get());
    if (code == nullptr) {
      where.fail("PCRE2 rejects the pattern " + as_literal(pattern) + ": " + error_message(error_code) +
                 " (at offset " + std::to_string(error_offset) +
                 (literal || translated == pattern ? "" : " of the translation " + as_literal(translated)) + ")");
    }
    code_.reset(code);
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // where JIT is missing, the interpreter runs
  }

  // The [begin, end) byte ranges of the matches in `text` (well-formed UTF-8), in the order
  // of the onig crate's find_iter, which `tokenizers` uses: each search starts where the
  // previous match ended, and an empty match right at that end is skipped by moving on
  // one character (so empty matches elsewhere do count, and split the text there).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const {
    std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> data(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), pcre2_match_data_free);
    if (!data) throw std::bad_alloc();
    std::vector<std::pair<size_t, size_t>> matches;
    std::optional<size_t> last_match_end;
    for (size_t start = 0; start <= text.size();) {
      const std::optional<std::pair<size_t, size_t>> match = search(text, start, data.get());
      if (!match) break;
      const auto [begin, end] = *match;
      if (begin == end && last_match_end == end) {
        if (start >= text.size()) break;
        start += char_length_at(text, start);
        continue;
      }
      matches.emplace_back(begin, end);
      start = end;
      last_match_end = end;
    }
    return matches;
  }

 private:
  static std::string error_message(int code) {
    std::array<PCRE2_UCHAR, 256> buffer{};
    if (pcre2_get_error_message(code, buffer.data(), buffer.size()) < 0) return "error " + std::to_string(code);
    return reinterpret_cast<const char*>(buffer.data());
  }

  std::optional<std::pair<size_t, size_t>> search(std::string_view text, size_t start, pcre2_match_data* data) const {
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    // The text was checked as UTF-8 once, and `start` is always at a character boundary.
    int rc = pcre2_match(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK, data, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // JIT's small stack; the interpreter uses the heap
      rc = pcre2_match(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
    if (rc < 0) throw Error(location_ + ": PCRE2 could not match the pattern: " + error_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    if (ovector[0] < start || ovector[1] < ovector[0] || ovector[1] > text.size())  // \K tricks
      throw Error(location_ + ": the pattern gave a match outside the text searched (not supported)");
    return std::make_pair(static_cast<size_t>(ovector[0]), static_cast<size_t>(ovector[1]));
  }

  struct CodeFree {
    void operator()(pcre2_code* code) const { pcre2_code_free(code); }
  };
  std::unique_ptr<pcre2_code, CodeFree> code_;
  std::string location_;
};

// A Unicode character class for the single characters that added tokens look at, with the
// meaning that `tokenizers` gives it through Rust's regex crate.
class CharClass {
 public:
  explicit CharClass(const char* pcre2_class) {
    const std::string source = "built-in character class";
    const json pattern = std::string(pcre2_class);
    regex_ = std::make_unique<Regex>(std::string("\\A") + pcre2_class, false, Field(pattern, "", source));
  }
  // Whether the character that starts at text[pos] is in the class.
  bool contains_at(std::string_view text, size_t pos) const {
    const std::string_view one = text.substr(pos, char_length_at(text, pos));
    return !regex_->find_all(one).empty();
  }

  // Rust regex \w: Alphabetic, marks, decimal numbers, connector punctuation, Join_Control.
  static const CharClass& word() {
    static const CharClass instance("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]");
    return instance;
  }
  // Rust regex \s and char::is_whitespace: the White_Space property.
  static const CharClass& white_space() {
    static const CharClass instance("\\p{White_Space}");
    return instance;
  }

 private:
  std::unique_ptr<Regex> regex_;
};

// ---------------------------------------------------------------------------------------
// Byte-level alphabet (GPT-2): every byte is one printable character
// ---------------------------------------------------------------------------------------

// Bytes 33..126, 161..172 and 174..255 stand for the character of the same code; the other
// 68 bytes, in increasing order, for U+0100 onwards. So no token contains a space or a
// control character, and every byte string has a spelling.
class ByteAlphabet {
 public:
  static const ByteAlphabet& get() {
    static const ByteAlphabet instance;
    return instance;
  }
  // The byte that character `c` stands for, or -1 when it stands for none.
  int byte_of(char32_t c) const { return c < byte_of_.size() ? byte_of_[c] : -1; }

  // `text` spelled one character per byte.
  std::string spell(std::string_view text) const {
    std::string out;
    out.reserve(text.size() * 2);
    for (const char byte : text) out += spellings_[static_cast<unsigned char>(byte)];
    return out;
  }

 private:
  static constexpr size_t kCharacters = 256 + 68;

  ByteAlphabet() {
    byte_of_.fill(-1);
    char32_t next_substitute = 256;
    for (int byte = 0; byte < 256; ++byte) {
      const bool printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
      const char32_t c = printable ? static_cast<char32_t>(byte) : next_substitute++;
      append_utf8(spellings_[byte], c);
      byte_of_[c] = static_cast<int16_t>(byte);
    }
  }

  std::array<std::string, 256> spellings_;
  std::array<int16_t, kCharacters> byte_of_{};
};

// ---------------------------------------------------------------------------------------
// Normalizer
// ---------------------------------------------------------------------------------------

// NFC or nothing: a Sequence of NFCs is one NFC (NFC is idempotent).
struct Normalizer {
  bool nfc = false;

  std::string apply(std::string text) const {
    if (!nfc || text.empty()) return text;
    utf8proc_uint8_t* composed = nullptr;
    const utf8proc_ssize_t length =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                     &composed, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    const std::unique_ptr<utf8proc_uint8_t, void (*)(void*)> owner(composed, std::free);
    if (length < 0) throw Error(std::string("utf8proc could not normalize text to NFC: ") + utf8proc_errmsg(length));
    return std::string(reinterpret_cast<const char*>(composed), static_cast<size_t>(length));
  }
};

void read_normalizer(const Field& field, Normalizer& normalizer, int depth = 0) {
  if (field.is_null()) return;
  check_depth(field, depth);
  const std::string type = field.type();
  if (type == "NFC") {
    field.expect_members({"type"});
    normalizer.nfc = true;
  } else if (type == "Sequence") {
    field.expect_members({"type", "normalizers"});
    for (const Field& inner : field.member("normalizers").elements()) {
      if (inner.is_null()) inner.fail("expected a normalizer, got null");
      read_normalizer(inner, normalizer, depth + 1);
    }
  } else {
    field.fail_unsupported_type({"NFC", "Sequence"});
  }
}

// ---------------------------------------------------------------------------------------
// Pre-tokenizer: cuts text into pieces that BPE sees one at a time
// ---------------------------------------------------------------------------------------

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A byte range of a piece and whether the pattern matched it.
struct Span {
  size_t begin;
  size_t end;
  bool flag;  // from find_matches: "is a match"; after a behavior: "is removed"
};

// The whole piece as alternating unmatched and matched spans (tokenizers' find_matches;
// `invert` swaps the two).
std::vector<Span> classify(std::string_view piece, const Regex& regex, bool invert) {
  if (piece.empty()) return {{0, 0, invert}};
  std::vector<Span> spans;
  size_t previous_end = 0;
  for (const auto& [begin, end] : regex.find_all(piece)) {
    if (previous_end != begin) spans.push_back({previous_end, begin, invert});
    spans.push_back({begin, end, !invert});
    previous_end = end;
  }
  if (previous_end != piece.size()) spans.push_back({previous_end, piece.size(), invert});
  return spans;
}

// tokenizers' SplitDelimiterBehavior: which spans become pieces, and which are dropped.
std::vector<Span> apply_behavior(std::vector<Span> spans, SplitBehavior behavior) {
  std::vector<Span> kept;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:  // matches are dropped
      return spans;
    case SplitBehavior::kIsolated:  // every span is its own piece
      for (Span& span : spans) span.flag = false;
      return spans;
    case SplitBehavior::kContiguous:  // runs of matches become one piece
    case SplitBehavior::kMergedWithPrevious:  // a match joins the span before it
      for (const Span& span : spans) {
        const bool joins = behavior == SplitBehavior::kContiguous ? span.flag == previous_match
                                                                   : span.flag && !previous_match;
        if (joins && !kept.empty()) {
          kept.back().end = span.end;
        } else {
          kept.push_back({span.begin, span.end, false});
        }
        previous_match = span.flag;
      }
      return kept;
    case SplitBehavior::kMergedWithNext:  // a match joins the span after it
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->flag && !previous_match && !kept.empty()) {
          kept.back().begin = it->begin;
        } else {
          kept.push_back({it->begin, it->end, false});
        }
        previous_match = it->flag;
      }
      std::reverse(kept.begin(), kept.end());
      return kept;
  }
  return spans;
}

// One pre-tokenizer of the chain. Each is, in order: an optional leading space, an
// optional split, an optional byte-level spelling. (ByteLevel uses all three, Split and
// Digits only the split.)
struct PreTokenizerStep {
  bool add_prefix_space = false;
  std::shared_ptr<const Regex> split;  // none: the piece stays whole
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool spell_bytes = false;

  // Appends to `out` what `piece` becomes; empty pieces vanish, as in tokenizers.
  void apply(std::string piece, std::vector<std::string>& out) const {
    if (add_prefix_space && piece.compare(0, 1, " ") != 0) piece.insert(0, 1, ' ');
    if (!split) {
      emit(std::move(piece), out);
      return;
    }
    for (const Span& span : apply_behavior(classify(piece, *split, invert), behavior)) {
      if (!span.flag) emit(piece.substr(span.begin, span.end - span.begin), out);
    }
  }

 private:
  void emit(std::string piece, std::vector<std::string>& out) const {
    if (piece.empty()) return;
    out.push_back(spell_bytes ? ByteAlphabet::get().spell(piece) : std::move(piece));
  }
};

// The pattern that ByteLevel splits with when use_regex is true (GPT-2's).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior read_behavior(const Field& field) {
  const std::string& name = field.string();
  static const std::array<std::pair<const char*, SplitBehavior>, 5> kNames = {{
      {"Removed", SplitBehavior::kRemoved},
      {"Isolated", SplitBehavior::kIsolated},
      {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
      {"MergedWithNext", SplitBehavior::kMergedWithNext},
      {"Contiguous", SplitBehavior::kContiguous},
  }};
  for (const auto& [known, behavior] : kNames) {
    if (name == known) return behavior;
  }
  field.fail(as_literal(name) + " is not a split behavior (Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                            "Contiguous)");
}

PreTokenizerStep read_split(const Field& field) {
  field.expect_members({"type", "pattern", "behavior", "invert"});
  const Field pattern = field.member("pattern");
  pattern.expect_members({"Regex", "String"});
  if (pattern.value().size() != 1) pattern.fail("expected exactly one of \"Regex\" and \"String\"");
  PreTokenizerStep step;
  if (const std::optional<Field> regex = pattern.optional_member("Regex")) {
    step.split = std::make_shared<Regex>(regex->string(), false, *regex);
  } else {
    const Field literal = pattern.member("String");
    step.split = std::make_shared<Regex>(literal.string(), true, literal);
  }
  step.behavior = read_behavior(field.member("behavior"));
  step.invert = field.member("invert").boolean();
  return step;
}

PreTokenizerStep read_byte_level(const Field& field) {
  field.expect_members({"type", "add_prefix_space", "trim_offsets", "use_regex"});
  PreTokenizerStep step;
  step.add_prefix_space = field.member("add_prefix_space").boolean();
  (void)field.member("trim_offsets").boolean();  // offsets only; cord gives ids
  const std::optional<Field> use_regex = field.optional_member("use_regex");
  if (!use_regex || use_regex->boolean()) {  // tokenizers' default: true
    const Field& where = use_regex ? *use_regex : field;
    step.split = std::make_shared<Regex>(kGpt2Pattern, false, where);
  }
  step.spell_bytes = true;
  return step;
}

// Digits: each numeric character (Rust's char::is_numeric, i.e. \p{N}) its own piece, or
// runs of them one piece.
PreTokenizerStep read_digits(const Field& field) {
  field.expect_members({"type", "individual_digits"});
  PreTokenizerStep step;
  step.split = std::make_shared<Regex>("\\p{N}", false, field);
  step.behavior = field.member("individual_digits").boolean() ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
  return step;
}

void read_pre_tokenizer(const Field& field, std::vector<PreTokenizerStep>& steps, int depth = 0) {
  if (field.is_null()) return;
  check_depth(field, depth);
  const std::string type = field.type();
  if (type == "ByteLevel") {
    steps.push_back(read_byte_level(field));
  } else if (type == "Split") {
    steps.push_back(read_split(field));
  } else if (type == "Digits") {
    steps.push_back(read_digits(field));
  } else if (type == "Sequence") {
    field.expect_members({"type", "pretokenizers"});
    for (const Field& inner : field.member("pretokenizers").elements()) {
      if (inner.is_null()) inner.fail("expected a pre-tokenizer, got null");
      read_pre_tokenizer(inner, steps, depth + 1);
    }
  } else {
    field.fail_unsupported_type({"ByteLevel", "Split", "Digits", "Sequence"});
  }
}

// ---------------------------------------------------------------------------------------
// BPE model
// ---------------------------------------------------------------------------------------

struct MergeRule {
  uint32_t rank;  // position in the merges list: lower merges first
  int32_t merged_id;
};

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

class BpeModel {
 public:
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<int32_t, std::string> token_of_id;
  std::unordered_map<uint64_t, MergeRule> merges;
  std::optional<std::string> unk_token;
  std::string unk_location;  // "FILE: model.unk_token", for the error when it is needed but absent
  bool fuse_unk = false;
  bool ignore_merges = false;

  // Appends the ids of one pre-tokenized piece.
  void tokenize(const std::string& piece, std::vector<int32_t>& out) const {
    if (piece.empty()) return;
    if (ignore_merges) {  // Llama-3: a piece that is a token is that token, whatever the merges say
      const auto it = vocab.find(piece);
      if (it != vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    std::vector<int32_t> symbols = characters_of(piece);
    merge(symbols);
    out.insert(out.end(), symbols.begin(), symbols.end());
  }

 private:
  const MergeRule* find_merge(int32_t left, int32_t right) const {
    const auto it = merges.find(pair_key(left, right));
    return it == merges.end() ? nullptr : &it->second;
  }

  // One id per character. A character outside the vocabulary becomes the unknown token, or
  // (without one) disappears, as in tokenizers; fuse_unk makes a run of them one token.
  std::vector<int32_t> characters_of(const std::string& piece) const {
    std::vector<int32_t> ids;
    ids.reserve(piece.size());
    bool previous_unknown = false;
    for (size_t pos = 0; pos < piece.size();) {
      const size_t length = char_length_at(piece, pos);
      const auto it = vocab.find(piece.substr(pos, length));
      pos += length;
      if (it != vocab.end()) {
        ids.push_back(it->second);
        previous_unknown = false;
        continue;
      }
      if (!unk_token) continue;
      if (!(fuse_unk && previous_unknown)) ids.push_back(unk_id());
      previous_unknown = true;
    }
    return ids;
  }

  int32_t unk_id() const {
    const auto it = vocab.find(*unk_token);
    if (it == vocab.end())
      throw UsageError(unk_location + ": the unknown token " + as_literal(*unk_token) + " is needed but not in model.vocab");
    return it->second;
  }

  // A candidate merge of the symbol at `position` with the one after it.
  struct Candidate {
    uint32_t rank;
    int32_t position;
    int32_t merged_id;
  };
  // Orders the queue so that its top is the lowest rank, then the leftmost position.
  struct RanksLater {
    bool operator()(const Candidate& a, const Candidate& b) const {
      return a.rank != b.rank ? a.rank > b.rank : a.position > b.position;
    }
  };
  struct Symbol {
    int32_t id;
    int32_t prev;  // index of the live neighbours, -1 at the ends
    int32_t next;
    bool alive;
  };

  // Applies the merges as tokenizers' Word::merge_all does (without dropout): take the
  // candidate of lowest rank (leftmost among equals); skip it when the pair at its position
  // has changed since it was queued; merge the pair into the left symbol; queue the new
  // pairs it forms with both neighbours. O(n log n) in the piece's length.
  void merge(std::vector<int32_t>& ids) const {
    if (ids.size() < 2) return;
    const auto count = static_cast<int32_t>(ids.size());
    std::vector<Symbol> symbols(ids.size());
    for (int32_t i = 0; i < count; ++i) symbols[i] = {ids[i], i - 1, i + 1 < count ? i + 1 : -1, true};
    std::priority_queue<Candidate, std::vector<Candidate>, RanksLater> queue;
    const auto queue_pair = [&](int32_t left) {
      const Symbol& symbol = symbols[left];
      if (symbol.next < 0) return;
      if (const MergeRule* rule = find_merge(symbol.id, symbols[symbol.next].id))
        queue.push({rule->rank, left, rule->merged_id});
    };
    for (int32_t i = 0; i + 1 < count; ++i) queue_pair(i);
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& left = symbols[top.position];
      if (!left.alive || left.next < 0) continue;
      Symbol& right = symbols[left.next];
      const MergeRule* rule = find_merge(left.id, right.id);
      if (rule == nullptr || rule->merged_id != top.merged_id) continue;  // stale
      left.id = top.merged_id;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = top.position;
      if (left.prev >= 0) queue_pair(left.prev);
      queue_pair(top.position);
    }
    ids.clear();
    for (const Symbol& symbol : symbols) {
      if (symbol.alive) ids.push_back(symbol.id);
    }
  }
};

void read_vocab(const Field& field, BpeModel& model) {
  model.vocab.reserve(field.value().size());
  for (const auto& [token, id_field] : field.entries()) {
    const int32_t id = id_field.id();
    const auto [existing, inserted] = model.token_of_id.emplace(id, token);
    if (!inserted) id_field.fail("id " + std::to_string(id) + " is also the id of " + as_literal(existing->second));
    model.vocab.emplace(token, id);
  }
}

// One merge: "a b" (tokenizers' older layout; exactly one space) or ["a", "b"].
std::pair<std::string, std::string> read_merge_pair(const Field& field) {
  if (field.value().is_string()) {
    const std::string& line = field.string();
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
      field.fail("expected two tokens separated by one space, got " + as_literal(line));
    return {line.substr(0, space), line.substr(space + 1)};
  }
  const std::vector<Field> parts = field.elements();
  if (parts.size() != 2) field.fail("expected a pair of tokens, got " + std::to_string(parts.size()) + " elements");
  return {parts[0].string(), parts[1].string()};
}

void read_merges(const Field& field, BpeModel& model) {
  uint32_t rank = 0;
  for (const Field& entry : field.elements()) {
    // tokenizers skips "#version" header lines of merges.txt when they came along.
    if (entry.value().is_string() && entry.string().rfind("#version", 0) == 0) continue;
    const auto [left, right] = read_merge_pair(entry);
    const auto id_of = [&](const std::string& token) {
      const auto it = model.vocab.find(token);
      if (it == model.vocab.end()) entry.fail("the token " + as_literal(token) + " is not in model.vocab");
      return it->second;
    };
    const uint64_t pair = pair_key(id_of(left), id_of(right));
    // A pair listed twice keeps its later rank, as in tokenizers (its map is built in order).
    model.merges[pair] = MergeRule{rank++, id_of(left + right)};
  }
}

// Fields that must be absent, null or the neutral value: features cord does not implement.
void check_unsupported_bpe_options(const Field& model) {
  if (const std::optional<Field> dropout = model.optional_member("dropout"); dropout && !dropout->is_null()) {
    if (!dropout->value().is_number() || dropout->value().get<double>() != 0.0)
      dropout->fail("only null (no dropout) is supported");
  }
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const std::optional<Field> field = model.optional_member(affix);
    if (field && !field->is_null() && !field->string().empty()) field->fail("only null or \"\" is supported");
  }
  if (const std::optional<Field> fallback = model.optional_member("byte_fallback"); fallback && fallback->boolean())
    fallback->fail("byte_fallback true is not supported");
}

BpeModel read_model(const Field& field) {
  if (field.is_null()) field.fail("expected the model, got null");
  if (field.type() != "BPE") field.fail_unsupported_type({"BPE"});
  field.expect_members({"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                        "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"});
  check_unsupported_bpe_options(field);
  BpeModel model;
  if (const std::optional<Field> unk = field.optional_member("unk_token"); unk && !unk->is_null()) {
    model.unk_token = unk->string();
    model.unk_location = unk->location();
  }
  if (const std::optional<Field> fuse = field.optional_member("fuse_unk")) model.fuse_unk = fuse->boolean();
  if (const std::optional<Field> ignore = field.optional_member("ignore_merges")) model.ignore_merges = ignore->boolean();
  read_vocab(field.member("vocab"), model);
  read_merges(field.member("merges"), model);
  return model;
}

// ---------------------------------------------------------------------------------------
// Added tokens: found in the text before anything else touches it
// ---------------------------------------------------------------------------------------

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// A stretch of text, or an added token that was found there.
struct Segment {
  std::string text;
  int32_t token_id = -1;  // >= 0: an added token, `text` unused
};

// Finds literal strings as the aho-corasick crate does with MatchKind::LeftmostLongest:
// the match that starts first, the longest of those; searching on after its end.
class LiteralMatcher {
 public:
  struct Match {
    size_t begin;
    size_t end;
    size_t value;
  };

  // For equal patterns the first one added is found.
  void add(std::string_view pattern, size_t value) {
    int32_t node = 0;
    for (const char c : pattern) {
      const auto byte = static_cast<unsigned char>(c);
      auto& children = nodes_[node].children;
      auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{0}),
                                 [](const auto& a, const auto& b) { return a.first < b.first; });
      if (it != children.end() && it->first == byte) {
        node = it->second;
        continue;
      }
      const auto created = static_cast<int32_t>(nodes_.size());
      children.insert(it, {byte, created});
      nodes_.emplace_back();  // may move the nodes: `children` is not used after this
      node = created;
    }
    if (nodes_[node].value < 0) nodes_[node].value = static_cast<int64_t>(value);
  }

  bool empty() const { return nodes_.size() == 1; }

  std::optional<Match> find(std::string_view text, size_t from) const {
    for (size_t begin = from; begin < text.size(); ++begin) {
      std::optional<Match> longest;
      int32_t node = 0;
      for (size_t pos = begin; pos < text.size(); ++pos) {
        node = child(node, static_cast<unsigned char>(text[pos]));
        if (node < 0) break;
        if (nodes_[node].value >= 0) longest = Match{begin, pos + 1, static_cast<size_t>(nodes_[node].value)};
      }
      if (longest) return longest;
    }
    return std::nullopt;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    int64_t value = -1;
  };

  int32_t child(int32_t node, unsigned char byte) const {
    const auto& children = nodes_[node].children;
    const auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{0}),
                                     [](const auto& a, const auto& b) { return a.first < b.first; });
    return it != children.end() && it->first == byte ? it->second : -1;
  }

  std::vector<Node> nodes_{1};
};

// tokenizers' regex helpers for added tokens: Rust regex \w and \s.
bool word_character_before(std::string_view text, size_t end) {
  return end > 0 && CharClass::word().contains_at(text, previous_char_start(text, end));
}
bool word_character_at(std::string_view text, size_t pos) {
  return pos < text.size() && CharClass::word().contains_at(text, pos);
}
// Where the white space that ends text[0, end) begins.
size_t start_of_trailing_space(std::string_view text, size_t end) {
  while (end > 0) {
    const size_t start = previous_char_start(text, end);
    if (!CharClass::white_space().contains_at(text, start)) break;
    end = start;
  }
  return end;
}
// Where the white space that starts at text[pos] ends.
size_t end_of_leading_space(std::string_view text, size_t pos) {
  while (pos < text.size() && CharClass::white_space().contains_at(text, pos)) pos += char_length_at(text, pos);
  return pos;
}

class AddedVocabulary {
 public:
  std::vector<AddedToken> tokens;
  std::unordered_map<std::string, int32_t> id_of_content;
  std::unordered_map<int32_t, size_t> index_of_id;
  LiteralMatcher raw_matcher;         // tokens with normalized = false: found in the raw text
  LiteralMatcher normalized_matcher;  // normalized = true: their NFC form, in the NFC text

  // Cuts `text` around the tokens `matcher` finds, with tokenizers' rules
  // (AddedVocabulary::find_matches): a single_word token needs no word character on either
  // side; lstrip / rstrip take in the white space before / after it (lstrip not beyond the
  // previous token). The search goes on after the match itself, even when it was discarded
  // or rstrip took in more.
  void split(std::string_view text, const LiteralMatcher& matcher, std::vector<Segment>& out) const {
    size_t taken = 0;  // end of the last token taken
    size_t search = 0;
    while (const std::optional<LiteralMatcher::Match> match = matcher.find(text, search)) {
      search = match->end;
      const AddedToken& token = tokens[match->value];
      size_t begin = match->begin;
      size_t end = match->end;
      if (token.single_word && (word_character_before(text, begin) || word_character_at(text, end))) continue;
      if (token.lstrip) begin = std::max(start_of_trailing_space(text, begin), taken);
      if (token.rstrip) end = end_of_leading_space(text, end);
      if (taken < begin) out.push_back({std::string(text.substr(taken, begin - taken))});
      out.push_back({std::string(), token.id});
      taken = end;
    }
    if (taken < text.size()) out.push_back({std::string(text.substr(taken))});
  }
};

// The id that tokenizers gives an added token when it loads the file (AddedVocabulary::
// add_tokens): the model's id for a token in the model vocabulary, else the next one after
// the model's (counted as vocab entries, not max id) and after the added tokens so far.
int32_t id_tokenizers_assigns(const AddedToken& token, const BpeModel& model, const AddedVocabulary& added) {
  if (const auto it = model.vocab.find(token.content); it != model.vocab.end()) return it->second;
  const auto model_size = static_cast<int64_t>(model.vocab.size());
  if (added.tokens.empty()) return static_cast<int32_t>(std::min<int64_t>(model_size, INT32_MAX));
  int64_t largest = 0;
  for (const AddedToken& previous : added.tokens) largest = std::max<int64_t>(largest, previous.id);
  const int64_t next = (largest >= model_size || model_size == 0) ? largest + 1 : model_size;
  return static_cast<int32_t>(std::min<int64_t>(next, INT32_MAX));
}

AddedToken read_added_token(const Field& field) {
  field.expect_members({"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"});
  AddedToken token;
  token.id = field.member("id").id();
  token.content = field.member("content").string();
  if (token.content.empty()) field.member("content").fail("an added token may not be empty");
  token.single_word = field.member("single_word").boolean();
  token.lstrip = field.member("lstrip").boolean();
  token.rstrip = field.member("rstrip").boolean();
  token.normalized = field.member("normalized").boolean();
  token.special = field.member("special").boolean();
  return token;
}

// Reads the added tokens and checks that each has the id tokenizers would give it (a file
// whose ids disagree is tokenized differently by tokenizers than it says; refused).
AddedVocabulary read_added_tokens(const std::optional<Field>& field, const BpeModel& model, const Normalizer& normalizer) {
  AddedVocabulary added;
  if (!field || field->is_null()) return added;
  for (const Field& entry : field->elements()) {
    AddedToken token = read_added_token(entry);
    if (added.id_of_content.count(token.content) != 0)
      entry.member("content").fail(as_literal(token.content) + " is listed twice");
    const int32_t expected = id_tokenizers_assigns(token, model, added);
    if (token.id != expected)
      entry.member("id").fail("is " + std::to_string(token.id) + ", but tokenizers gives " + as_literal(token.content) +
                              " the id " + std::to_string(expected));
    const auto model_token = model.token_of_id.find(token.id);
    if (model_token != model.token_of_id.end() && model_token->second != token.content)
      entry.member("id").fail(std::to_string(token.id) + " is also the id of model token " + as_literal(model_token->second));
    added.id_of_content.emplace(token.content, token.id);
    added.index_of_id.emplace(token.id, added.tokens.size());
    added.tokens.push_back(std::move(token));
  }
  // tokenizers searches the special tokens first, then the others, each in file order.
  for (const bool special : {true, false}) {
    for (size_t i = 0; i < added.tokens.size(); ++i) {
      const AddedToken& token = added.tokens[i];
      if (token.special != special) continue;
      if (token.normalized) {
        added.normalized_matcher.add(normalizer.apply(token.content), i);
      } else {
        added.raw_matcher.add(token.content, i);
      }
    }
  }
  return added;
}

// ---------------------------------------------------------------------------------------
// Post-processor: the template that add_special_tokens applies
// ---------------------------------------------------------------------------------------

// One element of a template: the encoded sequence, or fixed ids.
struct TemplateItem {
  bool is_sequence = false;
  std::vector<int32_t> ids;
};
using Template = std::vector<TemplateItem>;

std::unordered_map<std::string, std::vector<int32_t>> read_template_special_tokens(const Field& field) {
  std::unordered_map<std::string, std::vector<int32_t>> tokens;
  for (const auto& [name, entry] : field.entries()) {
    entry.expect_members({"id", "ids", "tokens"});
    if (entry.member("id").string() != name) entry.member("id").fail("expected " + as_literal(name) + ", its key");
    std::vector<int32_t> ids;
    for (const Field& id : entry.member("ids").elements()) ids.push_back(id.id());
    const std::vector<Field> texts = entry.member("tokens").elements();
    for (const Field& text : texts) (void)text.string();
    if (texts.size() != ids.size()) entry.fail("\"ids\" and \"tokens\" differ in length");
    tokens.emplace(name, std::move(ids));
  }
  return tokens;
}

// A template ("single" or "pair"): [{"SpecialToken": {"id", "type_id"}} | {"Sequence": {"id", "type_id"}}].
Template read_template(const Field& field, const std::unordered_map<std::string, std::vector<int32_t>>& special_tokens,
                       bool single) {
  Template items;
  for (const Field& element : field.elements()) {
    element.expect_members({"SpecialToken", "Sequence"});
    if (element.value().size() != 1) element.fail("expected exactly one of \"SpecialToken\" and \"Sequence\"");
    const bool is_sequence = element.value().contains("Sequence");
    const Field piece = element.member(is_sequence ? "Sequence" : "SpecialToken");
    piece.expect_members({"id", "type_id"});
    (void)piece.member("type_id").id();  // type ids are not part of what cord returns
    const Field id = piece.member("id");
    TemplateItem item;
    item.is_sequence = is_sequence;
    if (is_sequence) {
      const bool known = id.string() == "A" || (!single && id.string() == "B");
      if (!known) id.fail("expected " + std::string(single ? "\"A\"" : "\"A\" or \"B\"") + ", got " + as_literal(id.string()));
    } else {
      const auto it = special_tokens.find(id.string());
      if (it == special_tokens.end()) id.fail(as_literal(id.string()) + " is not in special_tokens");
      item.ids = it->second;
    }
    items.push_back(std::move(item));
  }
  return items;
}

void read_post_processor(const Field& field, std::vector<Template>& templates, int depth = 0) {
  if (field.is_null()) return;
  check_depth(field, depth);
  const std::string type = field.type();
  if (type == "ByteLevel") {  // trims offsets; the ids stay as they are
    field.expect_members({"type", "add_prefix_space", "trim_offsets", "use_regex"});
  } else if (type == "TemplateProcessing") {
    field.expect_members({"type", "single", "pair", "special_tokens"});
    const auto special_tokens = read_template_special_tokens(field.member("special_tokens"));
    templates.push_back(read_template(field.member("single"), special_tokens, true));
    (void)read_template(field.member("pair"), special_tokens, false);  // checked; cord encodes single sequences
  } else if (type == "Sequence") {
    field.expect_members({"type", "processors"});
    for (const Field& inner : field.member("processors").elements()) {
      if (inner.is_null()) inner.fail("expected a post-processor, got null");
      read_post_processor(inner, templates, depth + 1);
    }
  } else {
    field.fail_unsupported_type({"ByteLevel", "TemplateProcessing", "Sequence"});
  }
}

std::vector<int32_t> apply_templates(std::vector<int32_t> ids, const std::vector<Template>& templates) {
  for (const Template& items : templates) {
    std::vector<int32_t> out;
    for (const TemplateItem& item : items) {
      const std::vector<int32_t>& part = item.is_sequence ? ids : item.ids;
      out.insert(out.end(), part.begin(), part.end());
    }
    ids = std::move(out);
  }
  return ids;
}

// ---------------------------------------------------------------------------------------
// Decoder, and the top of the file
// ---------------------------------------------------------------------------------------

void read_decoder(const std::optional<Field>& field, const Field& root) {
  if (!field || field->is_null())
    (field ? *field : root).fail(std::string(field ? "" : "decoder: ") +
                                 "null is not supported (a byte-level BPE needs the ByteLevel decoder)");
  if (field->type() != "ByteLevel") field->fail_unsupported_type({"ByteLevel"});
  field->expect_members({"type", "add_prefix_space", "trim_offsets", "use_regex"});
}

// version must be "1.0" (as tokenizers checks); truncation and padding must be null.
void check_top_level(const Field& root) {
  root.expect_members({"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                       "post_processor", "decoder", "model"});
  if (const std::optional<Field> version = root.optional_member("version"); version && version->string() != "1.0")
    version->fail(as_literal(version->string()) + " is not a known tokenizer.json version (\"1.0\")");
  for (const char* option : {"truncation", "padding"}) {
    const std::optional<Field> field = root.optional_member(option);
    if (field && !field->is_null()) field->fail("only null is supported (cord truncates and pads itself)");
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// BpeTokenizer
// ---------------------------------------------------------------------------------------

struct BpeTokenizer::Impl {
  std::string source;
  BpeModel model;
  Normalizer normalizer;
  AddedVocabulary added;
  std::vector<PreTokenizerStep> pre_tokenizer;
  std::vector<Template> templates;
  std::unordered_set<int32_t> special_ids;
  int64_t vocab_size = 0;

  // Pre-tokenizes a stretch of normalized text and appends the BPE ids of its pieces.
  void tokenize(std::string text, std::vector<int32_t>& ids) const {
    std::vector<std::string> pieces;
    pieces.push_back(std::move(text));
    for (const PreTokenizerStep& step : pre_tokenizer) {
      std::vector<std::string> next;
      for (std::string& piece : pieces) step.apply(std::move(piece), next);
      pieces = std::move(next);
    }
    for (const std::string& piece : pieces) model.tokenize(piece, ids);
  }

  // tokenizers' order: tokens that match the raw text come out first; each stretch between
  // them is normalized, then searched for the normalized tokens; what remains is
  // pre-tokenized and run through BPE.
  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<Segment> raw;
    added.split(text, added.raw_matcher, raw);
    std::vector<int32_t> ids;
    for (Segment& segment : raw) {
      if (segment.token_id >= 0) {
        ids.push_back(segment.token_id);
        continue;
      }
      std::vector<Segment> normalized;
      added.split(normalizer.apply(std::move(segment.text)), added.normalized_matcher, normalized);
      for (Segment& part : normalized) {
        if (part.token_id >= 0) {
          ids.push_back(part.token_id);
        } else {
          tokenize(std::move(part.text), ids);
        }
      }
    }
    return ids;
  }

  const std::string* token_text(int32_t id) const {
    if (const auto it = added.index_of_id.find(id); it != added.index_of_id.end()) return &added.tokens[it->second].content;
    if (const auto it = model.token_of_id.find(id); it != model.token_of_id.end()) return &it->second;
    return nullptr;
  }
};

BpeTokenizer::BpeTokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

BpeTokenizer BpeTokenizer::from_json(std::string_view json_text, const std::string& source_name) {
  json document;
  try {
    document = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    throw UsageError(source_name + ": not a valid tokenizer.json: " + e.what());
  }
  auto impl = std::make_shared<Impl>();
  impl->source = source_name;
  const Field root(document, "", impl->source);
  check_top_level(root);
  impl->model = read_model(root.member("model"));
  if (const std::optional<Field> normalizer = root.optional_member("normalizer")) read_normalizer(*normalizer, impl->normalizer);
  impl->added = read_added_tokens(root.optional_member("added_tokens"), impl->model, impl->normalizer);
  if (const std::optional<Field> pre = root.optional_member("pre_tokenizer")) read_pre_tokenizer(*pre, impl->pre_tokenizer);
  if (const std::optional<Field> post = root.optional_member("post_processor")) read_post_processor(*post, impl->templates);
  read_decoder(root.optional_member("decoder"), root);

  for (const AddedToken& token : impl->added.tokens) {
    if (token.special) impl->special_ids.insert(token.id);
    impl->vocab_size = std::max<int64_t>(impl->vocab_size, int64_t{token.id} + 1);
  }
  for (const auto& [id, unused] : impl->model.token_of_id) {
    (void)unused;
    impl->vocab_size = std::max<int64_t>(impl->vocab_size, int64_t{id} + 1);
  }
  return BpeTokenizer(std::move(impl));
}

BpeTokenizer BpeTokenizer::from_file(const std::string& path) {
  const auto cannot_read = [&](const std::string& why) {
    return UsageError(path + ": cannot read the tokenizer file: " + why);
  };
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) throw cannot_read(std::strerror(errno));
  if (S_ISDIR(info.st_mode)) throw cannot_read("it is a folder");
  std::ifstream file(path, std::ios::binary);
  if (!file) throw cannot_read(std::strerror(errno));
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) throw cannot_read(std::strerror(errno));
  return from_json(text, path);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (const std::optional<size_t> bad = first_invalid_utf8(text))
    throw UsageError("cannot tokenize text that is not UTF-8 (byte " + std::to_string(*bad) + " of " +
                     std::to_string(text.size()) + ")");
  std::vector<int32_t> ids = impl_->encode(text);
  return add_special_tokens ? apply_templates(std::move(ids), impl_->templates) : ids;
}

// The ByteLevel decoder: a token whose every character stands for a byte becomes those
// bytes; any other token (an added token with a space, say) is taken as its own UTF-8.
std::string BpeTokenizer::decode_bytes(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const ByteAlphabet& alphabet = ByteAlphabet::get();
  std::string bytes;
  std::string token_bytes;
  for (const int32_t id : ids) {
    const std::string* token = impl_->token_text(id);
    if (token == nullptr || (skip_special_tokens && is_special_token(id))) continue;
    token_bytes.clear();
    bool all_bytes = true;
    for (size_t pos = 0; pos < token->size() && all_bytes;) {
      const size_t length = char_length_at(*token, pos);
      const int byte = alphabet.byte_of(code_point_at(*token, pos, length));
      all_bytes = byte >= 0;
      if (all_bytes) token_bytes += static_cast<char>(byte);
      pos += length;
    }
    bytes += all_bytes ? token_bytes : *token;
  }
  return bytes;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return replace_invalid_utf8(decode_bytes(ids, skip_special_tokens));
}

std::optional<int32_t> BpeTokenizer::token_to_id(std::string_view token) const {
  const std::string key(token);
  if (const auto it = impl_->added.id_of_content.find(key); it != impl_->added.id_of_content.end()) return it->second;
  if (const auto it = impl_->model.vocab.find(key); it != impl_->model.vocab.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string> BpeTokenizer::id_to_token(int32_t id) const {
  const std::string* token = impl_->token_text(id);
  if (token == nullptr) return std::nullopt;
  return *token;
}

bool BpeTokenizer::is_special_token(int32_t id) const { return impl_->special_ids.count(id) != 0; }

int64_t BpeTokenizer::vocab_size() const { return impl_->vocab_size; }

}  // namespace cord::hf
