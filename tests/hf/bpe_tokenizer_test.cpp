// cord::hf::BpeTokenizer on small hand-written tokenizer.json documents: the byte-level
// alphabet, merges and their ranks, added tokens and their flags, the normalizer,
// pre-tokenizers and template, decoding, and one error per kind of bad input (each
// message must name the field). The ids that `tokenizers` gives for whole trained
// tokenizers are checked by tokenizer_oracle.py; the expected ids of the merge-order cases
// here were taken from `tokenizers` 0.23.3 on the same documents.
#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cord/core/error.hpp"
#include "cord/hf/bpe_tokenizer.hpp"

namespace cord::hf {
namespace {

using json = nlohmann::json;
using Ids = std::vector<int32_t>;

// --- documents -----------------------------------------------------------------------------

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else {  // the byte-level alphabet stops at U+0143
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// GPT-2's spelling of a byte: printable bytes as themselves, the others from U+0100 on.
std::string spell_byte(unsigned char byte) {
  const auto printable = [](int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; };
  char32_t c = byte;
  if (!printable(byte)) {
    c = 256;
    for (int b = 0; b < byte; ++b) c += printable(b) ? 0 : 1;
  }
  std::string out;
  append_utf8(out, c);
  return out;
}

std::string spell(const std::string& bytes) {
  std::string out;
  for (const char b : bytes) out += spell_byte(static_cast<unsigned char>(b));
  return out;
}

// The 256 byte characters, token id = byte value.
json byte_vocab() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[spell_byte(static_cast<unsigned char>(b))] = b;
  return vocab;
}

json bpe_model(json vocab, json merges) {
  return {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
          {"vocab", std::move(vocab)}, {"merges", std::move(merges)}};
}

json byte_level(bool add_prefix_space = false, bool use_regex = true) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

json document(json model, json pre_tokenizer = byte_level()) {
  return {{"version", "1.0"},          {"truncation", nullptr},      {"padding", nullptr},
          {"added_tokens", json::array()}, {"normalizer", nullptr},   {"pre_tokenizer", std::move(pre_tokenizer)},
          {"post_processor", nullptr},  {"decoder", byte_level()},    {"model", std::move(model)}};
}

// Byte vocabulary; merges of spelled byte strings ("ab" = "a" + "b") with their results
// appended to the vocabulary in order.
json byte_document(const std::vector<std::pair<std::string, std::string>>& merges = {}, json pre = byte_level()) {
  json vocab = byte_vocab();
  json merge_list = json::array();
  for (const auto& [left, right] : merges) {
    const std::string merged = spell(left) + spell(right);
    if (!vocab.contains(merged)) vocab[merged] = vocab.size();
    merge_list.push_back(json::array({spell(left), spell(right)}));
  }
  return document(bpe_model(std::move(vocab), std::move(merge_list)), std::move(pre));
}

// [[a, b], ...] (a braced list of string pairs would make nlohmann build an object).
json merge_pairs(const std::vector<std::pair<std::string, std::string>>& pairs) {
  json merges = json::array();
  for (const auto& [left, right] : pairs) merges.push_back(json::array({left, right}));
  return merges;
}

json added_token(const std::string& content, int32_t id, bool special, bool normalized = false) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", normalized}, {"special", special}};
}

BpeTokenizer load(const json& doc) { return BpeTokenizer::from_json(doc.dump(), "test.json"); }

// The message of the UsageError that loading `text` must throw.
std::string error_of_text(const std::string& text) {
  try {
    (void)BpeTokenizer::from_json(text, "bad.json");
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no UsageError for " << text.substr(0, 300);
  return "";
}
std::string error_of(const json& doc) { return error_of_text(doc.dump()); }

#define EXPECT_MESSAGE_HAS(message, part) EXPECT_NE((message).find(part), std::string::npos) << (message)

// Ids of the spelled byte tokens of `text`, one per byte (no merges applied).
Ids byte_ids(const std::string& text) {
  Ids ids;
  for (const char b : text) ids.push_back(static_cast<unsigned char>(b));
  return ids;
}

// --- the byte-level alphabet ------------------------------------------------------------------

TEST(BpeTokenizer, SpellsEveryByteAsGpt2Does) {
  const BpeTokenizer tokenizer = load(byte_document());
  EXPECT_EQ(tokenizer.token_to_id("\xC4\xA0"), 32);    // U+0120 'Ġ' is the space
  EXPECT_EQ(tokenizer.token_to_id("\xC4\x80"), 0);     // U+0100 is byte 0
  EXPECT_EQ(tokenizer.token_to_id("\xC4\xA1"), 127);   // U+0121 is DEL
  EXPECT_EQ(tokenizer.token_to_id("\xC5\x82"), 160);   // U+0142 is the no-break space byte
  EXPECT_EQ(tokenizer.token_to_id("\xC5\x83"), 173);   // U+0143 is the soft hyphen byte, the last
  EXPECT_EQ(tokenizer.token_to_id("a"), 97);
  EXPECT_EQ(tokenizer.id_to_token(32), "\xC4\xA0");
  EXPECT_EQ(tokenizer.vocab_size(), 256);
  const std::string text = std::string("a b\t\n\0\x7f", 7) + "\xC2\xA0\xC2\xAD" + "é€😀";
  EXPECT_EQ(tokenizer.encode(text), byte_ids(text));
}

TEST(BpeTokenizer, DecodesEveryByteBack) {
  const BpeTokenizer tokenizer = load(byte_document());
  Ids all;
  std::string bytes;
  for (int b = 0; b < 256; ++b) {
    all.push_back(b);
    bytes += static_cast<char>(b);
  }
  EXPECT_EQ(tokenizer.decode_bytes(all), bytes);
  const std::string text = "Tom has 3 apples.\n\tÉtude: 日本語 👨‍👩‍👧";
  EXPECT_EQ(tokenizer.decode(tokenizer.encode(text)), text);
}

TEST(BpeTokenizer, ReplacesIllFormedUtf8AsRustDoes) {
  const BpeTokenizer tokenizer = load(byte_document());
  const std::string replacement = "\xEF\xBF\xBD";
  EXPECT_EQ(tokenizer.decode({0xC3, 0xA9}), "é");
  EXPECT_EQ(tokenizer.decode({0xC3}), replacement);               // a character cut short
  EXPECT_EQ(tokenizer.decode({0xE2, 0x82}), replacement);         // one U+FFFD per maximal subpart
  EXPECT_EQ(tokenizer.decode({0xF0, 0x9F, 0x98, 'x'}), replacement + "x");
  EXPECT_EQ(tokenizer.decode({0xED, 0xA0, 0x80}), replacement + replacement + replacement);  // a surrogate
  EXPECT_EQ(tokenizer.decode({0xC0, 0xAF}), replacement + replacement);                      // overlong
  EXPECT_EQ(tokenizer.decode({0xF4, 0x90, 0x80, 0x80}), replacement + replacement + replacement + replacement);
  EXPECT_EQ(tokenizer.decode_bytes({0xC3}), "\xC3");
}

TEST(BpeTokenizer, DecodeLeavesOutIdsThatNameNoToken) {
  const BpeTokenizer tokenizer = load(byte_document());
  EXPECT_EQ(tokenizer.decode({'a', 256, -1, 'b', 1 << 30}), "ab");
  EXPECT_EQ(tokenizer.id_to_token(256), std::nullopt);
  EXPECT_EQ(tokenizer.id_to_token(-5), std::nullopt);
  EXPECT_EQ(tokenizer.token_to_id("no such token"), std::nullopt);
}

TEST(BpeTokenizer, RefusesTextThatIsNotUtf8) {
  const BpeTokenizer tokenizer = load(byte_document());
  try {
    (void)tokenizer.encode("ok\xFF");
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_MESSAGE_HAS(std::string(e.what()), "byte 2");
  }
  EXPECT_THROW((void)tokenizer.encode("\xED\xA0\x80"), UsageError);  // an encoded surrogate
}

// --- merges -----------------------------------------------------------------------------------

TEST(BpeTokenizer, MergesByRank) {
  const BpeTokenizer tokenizer = load(byte_document({{"a", "b"}, {"ab", "c"}, {" ", "ab"}}));
  const int32_t ab = 256;
  const int32_t abc = 257;
  const int32_t space_ab = 258;
  EXPECT_EQ(tokenizer.encode("abc"), (Ids{abc}));
  EXPECT_EQ(tokenizer.encode("abab"), (Ids{ab, ab}));
  EXPECT_EQ(tokenizer.encode("x abc"), (Ids{'x', ' ', abc}));       // "ab"+"c" (rank 1) goes before " "+"ab" (rank 2)
  EXPECT_EQ(tokenizer.encode("x abd"), (Ids{'x', space_ab, 'd'}));
  EXPECT_EQ(tokenizer.encode("ab c"), (Ids{ab, ' ', 'c'}));          // the pieces "ab" and " c" never merge across
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("x abc")), "x abc");
}

// Documents without a byte-level pre-tokenizer: the model sees the raw characters.
json plain_document(json vocab, const std::vector<std::pair<std::string, std::string>>& merges) {
  return document(bpe_model(std::move(vocab), merge_pairs(merges)), nullptr);
}

TEST(BpeTokenizer, MergeOrderMatchesTokenizers) {
  const json vocab = {{"a", 0}, {"aa", 1}, {"aaa", 2}, {"aaaa", 3}};
  const BpeTokenizer usual = load(plain_document(vocab, {{"a", "a"}, {"aa", "a"}, {"aa", "aa"}}));
  EXPECT_EQ(usual.encode("aaaaa"), (Ids{1, 2}));
  const BpeTokenizer reordered = load(plain_document(vocab, {{"aa", "aa"}, {"a", "a"}, {"aa", "a"}}));
  EXPECT_EQ(reordered.encode("aaaaa"), (Ids{3, 0}));
  EXPECT_EQ(reordered.encode("aaaaaaa"), (Ids{3, 2}));
}

TEST(BpeTokenizer, PairListedTwiceKeepsItsLaterRank) {
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}};
  EXPECT_EQ(load(plain_document(vocab, {{"a", "b"}, {"b", "c"}})).encode("abc"), (Ids{3, 2}));
  EXPECT_EQ(load(plain_document(vocab, {{"a", "b"}, {"b", "c"}, {"a", "b"}})).encode("abc"), (Ids{0, 4}));
}

TEST(BpeTokenizer, CharacterOutsideTheVocabularyDisappearsWithoutUnkToken) {
  const json vocab = {{"a", 0}, {"aa", 1}};
  EXPECT_EQ(load(plain_document(vocab, {{"a", "a"}})).encode("axa"), (Ids{1}));  // as tokenizers: "a" "a" then merge
}

TEST(BpeTokenizer, UnknownTokenFusedOrNot) {
  json doc = plain_document({{"<unk>", 0}, {"a", 1}}, {});
  doc["model"]["unk_token"] = "<unk>";
  EXPECT_EQ(load(doc).encode("axya"), (Ids{1, 0, 0, 1}));
  doc["model"]["fuse_unk"] = true;
  EXPECT_EQ(load(doc).encode("axya"), (Ids{1, 0, 1}));
}

TEST(BpeTokenizer, MissingUnknownTokenIsAnErrorWhenNeeded) {
  json doc = plain_document({{"a", 0}}, {});
  doc["model"]["unk_token"] = "<unk>";
  const BpeTokenizer tokenizer = load(doc);  // tokenizers too loads it, and fails when it needs it
  EXPECT_EQ(tokenizer.encode("aa"), (Ids{0, 0}));
  try {
    (void)tokenizer.encode("ab");
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_MESSAGE_HAS(std::string(e.what()), "model.unk_token");
  }
}

TEST(BpeTokenizer, ReadsMergesAsStringsToo) {
  json doc = byte_document({{"a", "b"}, {"ab", "c"}});
  const Ids expected = load(doc).encode("abcab");
  doc["model"]["merges"] = json::array({"#version: 0.2", spell("a") + " " + spell("b"), spell("ab") + " " + spell("c")});
  EXPECT_EQ(load(doc).encode("abcab"), expected);
  EXPECT_EQ(expected, (Ids{257, 256}));
}

TEST(BpeTokenizer, IgnoreMergesTakesWholeTokens) {
  json doc = byte_document({{"a", "b"}});
  doc["model"]["vocab"][spell("abc")] = 300;  // no merge builds it
  EXPECT_EQ(load(doc).encode("abc"), (Ids{256, 'c'}));
  doc["model"]["ignore_merges"] = true;
  EXPECT_EQ(load(doc).encode("abc"), (Ids{300}));
  EXPECT_EQ(load(doc).encode("abcd"), (Ids{256, 'c', 'd'}));
}

// --- normalizer and pre-tokenizers ------------------------------------------------------------------

TEST(BpeTokenizer, NfcNormalizer) {
  json doc = byte_document();
  EXPECT_EQ(load(doc).encode("e\xCC\x81"), byte_ids("e\xCC\x81"));
  doc["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}};
  EXPECT_EQ(load(doc).encode("e\xCC\x81"), byte_ids("é"));
}

TEST(BpeTokenizer, Gpt2PatternSplitsBeforeMerging) {
  // Without the pattern, " a" and "a " could merge across the space; with it, words keep their leading space.
  const json no_regex = byte_document({{"a", " "}, {" ", "a"}}, byte_level(false, false));
  EXPECT_EQ(load(no_regex).encode("a a"), (Ids{256, 'a'}));
  const json with_regex = byte_document({{"a", " "}, {" ", "a"}}, byte_level(false, true));
  EXPECT_EQ(load(with_regex).encode("a a"), (Ids{'a', 257}));
  EXPECT_EQ(load(with_regex).encode("DON'T"), byte_ids("DON'T"));
}

TEST(BpeTokenizer, AddPrefixSpace) {
  const json doc = byte_document({}, byte_level(true, true));
  EXPECT_EQ(load(doc).encode("hi"), byte_ids(" hi"));
  EXPECT_EQ(load(doc).encode(" hi"), byte_ids(" hi"));
}

json split(const std::string& pattern, const std::string& behavior, bool invert = false) {
  return {{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", behavior}, {"invert", invert}};
}
json then_bytes(json first) {
  return {{"type", "Sequence"}, {"pretokenizers", {std::move(first), byte_level(false, false)}}};
}

TEST(BpeTokenizer, SplitBehaviors) {
  // "a" + "b" merges unless a split falls between them.
  const auto ids = [](const json& pre, const std::string& text) { return load(byte_document({{"a", "b"}}, pre)).encode(text); };
  EXPECT_EQ(ids(then_bytes(split("b", "Isolated")), "ab"), byte_ids("ab"));
  EXPECT_EQ(ids(then_bytes(split("b", "Removed")), "abab"), byte_ids("aa"));
  EXPECT_EQ(ids(then_bytes(split("b", "MergedWithPrevious")), "abab"), (Ids{256, 256}));
  EXPECT_EQ(ids(then_bytes(split("a", "MergedWithNext")), "abab"), (Ids{256, 256}));
  EXPECT_EQ(ids(then_bytes(split("b", "Removed", true)), "ab"), byte_ids("b"));
  EXPECT_EQ(ids(then_bytes(split("[ab]", "Contiguous")), "abab"), (Ids{256, 256}));
  json literal = split("", "Isolated");
  literal["pattern"] = {{"String", "."}};
  EXPECT_EQ(ids(then_bytes(literal), "ab.ab"), (Ids{256, '.', 256}));  // "." is no wildcard here
}

TEST(BpeTokenizer, OnigurumaEscapesMeanWhatTheySayInTokenizers) {
  const auto pieces_of = [](const std::string& pattern, const std::string& text) {
    return load(byte_document({{"a", "b"}}, then_bytes(split(pattern, "Removed")))).encode(text);
  };
  EXPECT_EQ(pieces_of("\\s", "a\xE1\xA0\x8E" "b"), byte_ids("a\xE1\xA0\x8E" "b"));  // U+180E is no space there
  EXPECT_EQ(pieces_of("\\s", "a\xC2\x85" "b"), byte_ids("ab"));                       // U+0085 is
  EXPECT_EQ(pieces_of("\\h", "xaFz"), byte_ids("xz"));                               // a hexadecimal digit
  EXPECT_EQ(pieces_of("\\w", "a\xCC\x81-\xC2\xB2"), byte_ids("-"));                   // marks and ² are word characters
  EXPECT_EQ(pieces_of("^a", "ab\nab"), byte_ids("b\nb"));                             // ^ starts every line
}

TEST(BpeTokenizer, DigitsPreTokenizer) {
  const json individual = {{"type", "Digits"}, {"individual_digits", true}};
  const json runs = {{"type", "Digits"}, {"individual_digits", false}};
  EXPECT_EQ(load(byte_document({{"1", "2"}}, then_bytes(individual))).encode("x12"), byte_ids("x12"));
  EXPECT_EQ(load(byte_document({{"1", "2"}}, then_bytes(runs))).encode("x12"), (Ids{'x', 256}));
  EXPECT_EQ(load(byte_document({{"x", "1"}}, then_bytes(runs))).encode("x12"), byte_ids("x12"));
}

// --- added tokens -----------------------------------------------------------------------------

TEST(BpeTokenizer, SpecialTokensAreFoundInTheRawText) {
  json doc = byte_document({{"a", "b"}});
  doc["added_tokens"] = {added_token("<|endoftext|>", 257, true), added_token("<|end|>", 258, true)};
  const BpeTokenizer tokenizer = load(doc);
  EXPECT_EQ(tokenizer.encode("ab<|endoftext|>ab<|end|><|end"), (Ids{256, 257, 256, 258, '<', '|', 'e', 'n', 'd'}));
  EXPECT_EQ(tokenizer.vocab_size(), 259);
  EXPECT_TRUE(tokenizer.is_special_token(257));
  EXPECT_FALSE(tokenizer.is_special_token(256));
  EXPECT_EQ(tokenizer.token_to_id("<|end|>"), 258);
  EXPECT_EQ(tokenizer.decode({256, 257, 256}), "ab<|endoftext|>ab");
  EXPECT_EQ(tokenizer.decode({256, 257, 256}, true), "abab");
}

TEST(BpeTokenizer, LongestAddedTokenWinsAtTheLeftmostPosition) {
  json doc = byte_document();
  doc["added_tokens"] = {added_token("ab", 256, false), added_token("abc", 257, false), added_token("bcd", 258, false)};
  const BpeTokenizer tokenizer = load(doc);
  EXPECT_EQ(tokenizer.encode("xabcx"), (Ids{'x', 257, 'x'}));
  EXPECT_EQ(tokenizer.encode("abcd"), (Ids{257, 'd'}));   // "abc" starts first; "bcd" is never tried
  EXPECT_EQ(tokenizer.encode("xbcd"), (Ids{'x', 258}));
}

json flagged_token(const std::string& content, int32_t id, const char* flag) {
  json token = added_token(content, id, false);
  token[flag] = true;
  return token;
}

TEST(BpeTokenizer, AddedTokenStripsAndSingleWord) {
  json doc = byte_document({}, byte_level(false, false));
  json strip = added_token("<m>", 256, false);
  strip["lstrip"] = true;
  strip["rstrip"] = true;
  doc["added_tokens"] = {strip, flagged_token("[W]", 257, "single_word")};
  const BpeTokenizer tokenizer = load(doc);
  EXPECT_EQ(tokenizer.encode("a \t<m>\n b"), (Ids{'a', 256, 'b'}));
  EXPECT_EQ(tokenizer.encode("x[W] [W]"), (Ids{'x', '[', 'W', ']', ' ', 257}));
  EXPECT_EQ(tokenizer.encode("[W]-[W]\xCC\x81"), (Ids{257, '-', '[', 'W', ']', 0xCC, 0x81}));  // a mark is part of a word
}

TEST(BpeTokenizer, NormalizedAddedTokensMatchTheNormalizedText) {
  json doc = byte_document();
  doc["normalizer"] = {{"type", "NFC"}};
  doc["added_tokens"] = {added_token("é!", 256, false, true), added_token("ü?", 257, false, false)};
  const BpeTokenizer tokenizer = load(doc);
  EXPECT_EQ(tokenizer.encode("e\xCC\x81!"), (Ids{256}));           // matched after NFC
  EXPECT_EQ(tokenizer.encode("ü?"), (Ids{257}));
  EXPECT_EQ(tokenizer.encode("u\xCC\x88?"), byte_ids("ü?"));       // raw match only, then normalized as text
}

TEST(BpeTokenizer, AddedTokenWithASpaceDecodesAsItsText) {
  json doc = byte_document();
  doc["added_tokens"] = {added_token("hello world", 256, false)};
  const BpeTokenizer tokenizer = load(doc);
  EXPECT_EQ(tokenizer.encode("hello world!"), (Ids{256, '!'}));
  EXPECT_EQ(tokenizer.decode({256, '!'}), "hello world!");
}

// --- post-processor -----------------------------------------------------------------------

json template_processing(const std::string& single_suffix_token) {
  json single = {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}};
  if (!single_suffix_token.empty()) single.push_back({{"SpecialToken", {{"id", single_suffix_token}, {"type_id", 0}}}});
  json pair = single;
  pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair},
          {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {256}}, {"tokens", {"<s>"}}}},
                              {"</s>", {{"id", "</s>"}, {"ids", {257}}, {"tokens", {"</s>"}}}}}}};
}

TEST(BpeTokenizer, TemplateAddsSpecialTokensOnRequest) {
  json doc = byte_document();
  doc["added_tokens"] = {added_token("<s>", 256, true), added_token("</s>", 257, true)};
  doc["post_processor"] = {{"type", "Sequence"},
                           {"processors", {byte_level(), template_processing("</s>")}}};
  const BpeTokenizer tokenizer = load(doc);
  EXPECT_EQ(tokenizer.encode("hi"), byte_ids("hi"));
  EXPECT_EQ(tokenizer.encode("hi", true), (Ids{256, 'h', 'i', 257}));
  EXPECT_EQ(tokenizer.encode("", true), (Ids{256, 257}));
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("hi", true), true), "hi");
}

// --- errors: each names the file and the field -------------------------------------------------

TEST(BpeTokenizerErrors, NotJson) {
  const std::string message = error_of_text("{\"model\": ");
  EXPECT_MESSAGE_HAS(message, "bad.json");
  EXPECT_MESSAGE_HAS(message, "not a valid tokenizer.json");
  EXPECT_MESSAGE_HAS(error_of_text("[]"), "expected an object");
  EXPECT_MESSAGE_HAS(error_of_text(""), "bad.json");
  EXPECT_MESSAGE_HAS(error_of_text("{}"), "missing member \"model\"");
}

TEST(BpeTokenizerErrors, OtherModelTypes) {
  for (const char* type : {"Unigram", "WordPiece", "WordLevel"}) {
    json doc = byte_document();
    doc["model"]["type"] = type;
    const std::string message = error_of(doc);
    EXPECT_MESSAGE_HAS(message, "bad.json: model.type");
    EXPECT_MESSAGE_HAS(message, type);
  }
}

TEST(BpeTokenizerErrors, UnsupportedModelOptions) {
  const std::vector<std::pair<const char*, json>> cases = {{"dropout", 0.1},
                                                           {"continuing_subword_prefix", "##"},
                                                           {"end_of_word_suffix", "</w>"},
                                                           {"byte_fallback", true},
                                                           {"fuse_unk", "yes"},
                                                           {"ignore_merges", 1},
                                                           {"unk_token", 3}};
  for (const auto& [field, value] : cases) {
    json doc = byte_document();
    doc["model"][field] = value;
    EXPECT_MESSAGE_HAS(error_of(doc), std::string("model.") + field);
  }
  json doc = byte_document();
  doc["model"]["dropout"] = 0.0;  // no dropout at all, as tokenizers reads it
  EXPECT_NO_THROW(load(doc));
}

TEST(BpeTokenizerErrors, BadVocab) {
  json doc = byte_document();
  doc["model"]["vocab"]["zz"] = "seven";
  std::string message = error_of(doc);
  EXPECT_MESSAGE_HAS(message, "model.vocab[\"zz\"]");
  EXPECT_MESSAGE_HAS(message, "expected an integer");
  doc["model"]["vocab"]["zz"] = -1;
  EXPECT_MESSAGE_HAS(error_of(doc), "model.vocab[\"zz\"]");
  doc["model"]["vocab"]["zz"] = 4294967296.0;
  EXPECT_MESSAGE_HAS(error_of(doc), "model.vocab[\"zz\"]");
  doc["model"]["vocab"]["zz"] = 5;  // also byte 5's id
  message = error_of(doc);
  EXPECT_MESSAGE_HAS(message, "model.vocab");
  EXPECT_MESSAGE_HAS(message, "is also the id of");
  doc["model"]["vocab"] = json::array();
  EXPECT_MESSAGE_HAS(error_of(doc), "model.vocab: expected an object");
  doc["model"].erase("vocab");
  EXPECT_MESSAGE_HAS(error_of(doc), "model: missing member \"vocab\"");
}

TEST(BpeTokenizerErrors, BadMerges) {
  json doc = byte_document();
  doc["model"]["merges"] = merge_pairs({{"a", "zz"}});
  std::string message = error_of(doc);
  EXPECT_MESSAGE_HAS(message, "model.merges[0]");
  EXPECT_MESSAGE_HAS(message, "\"zz\" is not in model.vocab");
  doc["model"]["merges"] = merge_pairs({{"a", "b"}});  // "ab" is not a token
  EXPECT_MESSAGE_HAS(error_of(doc), "model.merges[0]: the token \"ab\" is not in model.vocab");
  doc["model"]["merges"] = json::array({"a b c"});
  EXPECT_MESSAGE_HAS(error_of(doc), "model.merges[0]: expected two tokens separated by one space");
  doc["model"]["merges"] = json::array({json::array({"a", "b", "c"})});
  EXPECT_MESSAGE_HAS(error_of(doc), "model.merges[0]: expected a pair");
  doc["model"]["merges"] = json::array({json::array({1, 2})});
  EXPECT_MESSAGE_HAS(error_of(doc), "model.merges[0][0]: expected a string");
  doc["model"]["merges"] = "a b";
  EXPECT_MESSAGE_HAS(error_of(doc), "model.merges: expected an array");
}

TEST(BpeTokenizerErrors, UnsupportedComponents) {
  const std::vector<std::pair<const char*, json>> cases = {
      {"normalizer", {{"type", "NFKC"}}},
      {"pre_tokenizer", {{"type", "Whitespace"}}},
      {"post_processor", {{"type", "RobertaProcessing"}}},
      {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}}},
  };
  for (const auto& [field, value] : cases) {
    json doc = byte_document();
    doc[field] = value;
    const std::string message = error_of(doc);
    EXPECT_MESSAGE_HAS(message, std::string(field) + ".type");
    EXPECT_MESSAGE_HAS(message, value["type"].get<std::string>());
  }
  json doc = byte_document();
  doc["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}};
  EXPECT_MESSAGE_HAS(error_of(doc), "normalizer.normalizers[1].type: \"Lowercase\" is not supported");
  doc = byte_document();
  doc["decoder"] = nullptr;
  EXPECT_MESSAGE_HAS(error_of(doc), "decoder: null is not supported");
  doc.erase("decoder");
  EXPECT_MESSAGE_HAS(error_of(doc), "decoder: null is not supported");
  doc = byte_document();
  doc["pre_tokenizer"]["type"] = 5;
  EXPECT_MESSAGE_HAS(error_of(doc), "pre_tokenizer.type: expected a string");
}

TEST(BpeTokenizerErrors, UnknownMembersAreRefused) {
  json doc = byte_document();
  doc["pre_tokenizer"]["prepend_scheme"] = "first";
  EXPECT_MESSAGE_HAS(error_of(doc), "pre_tokenizer: unknown member \"prepend_scheme\"");
  doc = byte_document();
  doc["model"]["extra"] = 1;
  EXPECT_MESSAGE_HAS(error_of(doc), "model: unknown member \"extra\"");
  doc = byte_document();
  doc["extra"] = 1;
  EXPECT_MESSAGE_HAS(error_of(doc), "bad.json: unknown member \"extra\"");
}

TEST(BpeTokenizerErrors, BadPreTokenizers) {
  json doc = byte_document({}, then_bytes(split("(ab", "Isolated")));
  std::string message = error_of(doc);
  EXPECT_MESSAGE_HAS(message, "pre_tokenizer.pretokenizers[0].pattern.Regex");
  EXPECT_MESSAGE_HAS(message, "PCRE2 rejects the pattern \"(ab\"");
  EXPECT_MESSAGE_HAS(message, "missing closing parenthesis");
  EXPECT_MESSAGE_HAS(message, "offset 3");
  doc = byte_document({}, then_bytes(split("[[:alpha:]]", "Isolated")));
  EXPECT_MESSAGE_HAS(error_of(doc), "pre_tokenizer.pretokenizers[0].pattern.Regex: the pattern uses a POSIX class");
  doc = byte_document({}, then_bytes(split("(?m)a.b", "Isolated")));
  EXPECT_MESSAGE_HAS(error_of(doc), "the inline option m");
  doc = byte_document({}, then_bytes(split("a", "Sideways")));
  EXPECT_MESSAGE_HAS(error_of(doc), "pre_tokenizer.pretokenizers[0].behavior: \"Sideways\" is not a split behavior");
  doc = byte_document({}, then_bytes(split("a", "Isolated")));
  doc["pre_tokenizer"]["pretokenizers"][0].erase("invert");
  EXPECT_MESSAGE_HAS(error_of(doc), "pre_tokenizer.pretokenizers[0]: missing member \"invert\"");
  doc["pre_tokenizer"]["pretokenizers"][0]["invert"] = false;
  doc["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "a"}, {"String", "a"}};
  EXPECT_MESSAGE_HAS(error_of(doc), "pre_tokenizer.pretokenizers[0].pattern: expected exactly one");
  doc = byte_document();
  doc["pre_tokenizer"].erase("add_prefix_space");
  EXPECT_MESSAGE_HAS(error_of(doc), "pre_tokenizer: missing member \"add_prefix_space\"");
}

TEST(BpeTokenizerErrors, DeeplyNestedSequences) {
  json pre = byte_level();
  for (int i = 0; i < 20; ++i) pre = {{"type", "Sequence"}, {"pretokenizers", {pre}}};
  const std::string message = error_of(byte_document({}, pre));
  EXPECT_MESSAGE_HAS(message, "nested more than");
}

TEST(BpeTokenizerErrors, BadAddedTokens) {
  json doc = byte_document();
  doc["added_tokens"] = {added_token("<s>", 300, true)};  // tokenizers gives it 256
  std::string message = error_of(doc);
  EXPECT_MESSAGE_HAS(message, "added_tokens[0].id: is 300, but tokenizers gives \"<s>\" the id 256");
  doc["added_tokens"] = {added_token("a", 5, false)};  // "a" is model token 97
  EXPECT_MESSAGE_HAS(error_of(doc), "added_tokens[0].id: is 5, but tokenizers gives \"a\" the id 97");
  doc["added_tokens"] = {added_token("<s>", 256, true), added_token("<s>", 257, true)};
  EXPECT_MESSAGE_HAS(error_of(doc), "added_tokens[1].content: \"<s>\" is listed twice");
  doc["added_tokens"] = {added_token("", 256, true)};
  EXPECT_MESSAGE_HAS(error_of(doc), "added_tokens[0].content");
  doc["added_tokens"] = {added_token("<s>", 256, true)};
  doc["added_tokens"][0].erase("special");
  EXPECT_MESSAGE_HAS(error_of(doc), "added_tokens[0]: missing member \"special\"");
  doc["added_tokens"] = {{{"id", 256}, {"content", "<s>"}, {"special", "yes"}, {"single_word", false},
                          {"lstrip", false}, {"rstrip", false}, {"normalized", false}}};
  EXPECT_MESSAGE_HAS(error_of(doc), "added_tokens[0].special: expected true or false");
}

TEST(BpeTokenizerErrors, AddedTokenIdOfAnotherModelToken) {
  // A model whose ids have a hole: tokenizers numbers added tokens from the vocabulary's
  // size (2 here), which is the id of "c". It would give both the same id; cord refuses.
  json doc = plain_document({{"a", 0}, {"c", 2}}, {});
  doc["added_tokens"] = {added_token("<s>", 2, true)};
  EXPECT_MESSAGE_HAS(error_of(doc), "added_tokens[0].id: 2 is also the id of model token \"c\"");
}

TEST(BpeTokenizerErrors, BadTemplate) {
  json doc = byte_document();
  doc["added_tokens"] = {added_token("<s>", 256, true), added_token("</s>", 257, true)};
  doc["post_processor"] = template_processing("<eos>");
  EXPECT_MESSAGE_HAS(error_of(doc), "post_processor.single[2].SpecialToken.id: \"<eos>\" is not in special_tokens");
  doc["post_processor"] = template_processing("");
  doc["post_processor"]["single"][1]["Sequence"]["id"] = "B";
  EXPECT_MESSAGE_HAS(error_of(doc), "post_processor.single[1].Sequence.id: expected \"A\"");
  doc["post_processor"] = template_processing("");
  doc["post_processor"]["special_tokens"]["<s>"]["ids"] = {256, 257};
  EXPECT_MESSAGE_HAS(error_of(doc), "post_processor.special_tokens[\"<s>\"]: \"ids\" and \"tokens\" differ in length");
}

TEST(BpeTokenizerErrors, TopLevelOptions) {
  json doc = byte_document();
  doc["truncation"] = {{"max_length", 512}};
  EXPECT_MESSAGE_HAS(error_of(doc), "truncation: only null is supported");
  doc = byte_document();
  doc["padding"] = {{"strategy", "BatchLongest"}};
  EXPECT_MESSAGE_HAS(error_of(doc), "padding: only null is supported");
  doc = byte_document();
  doc["version"] = "2.0";
  EXPECT_MESSAGE_HAS(error_of(doc), "version: \"2.0\" is not a known tokenizer.json version");
}

TEST(BpeTokenizerErrors, FileThatCannotBeRead) {
  try {
    (void)BpeTokenizer::from_file("/nonexistent/tokenizer.json");
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_MESSAGE_HAS(std::string(e.what()), "/nonexistent/tokenizer.json");
  }
  EXPECT_THROW((void)BpeTokenizer::from_file("/"), UsageError);  // a folder
}

// --- robustness ----------------------------------------------------------------------------------

// Every prefix of a valid document, and random byte changes to it, give a UsageError or a
// tokenizer that works; nothing else (the fuzz harness will push much further).
TEST(BpeTokenizerRobustness, DamagedDocuments) {
  json doc = byte_document({{"a", "b"}, {"ab", "c"}}, then_bytes(split("\\s+|[0-9]", "Isolated")));
  doc["added_tokens"] = {added_token("<s>", 258, true)};
  doc["normalizer"] = {{"type", "NFC"}};
  doc["post_processor"] = template_processing("");
  const std::string text = doc.dump();
  for (size_t length = 0; length < text.size(); length += 7) EXPECT_THROW((void)BpeTokenizer::from_json(text.substr(0, length), "x"), UsageError);
  std::mt19937 random(12345);
  const std::string mild = "0123456789abcz \"\\{}[],:<>|";  // often still JSON, sometimes still a tokenizer
  int loaded = 0;
  for (int round = 0; round < 4000; ++round) {
    std::string damaged = text;
    const bool any_byte = round % 2 == 0;
    for (int k = 0; k < (any_byte ? 3 : 1); ++k) {
      damaged[random() % damaged.size()] =
          any_byte ? static_cast<char>(random() % 256) : mild[random() % mild.size()];
    }
    try {
      const BpeTokenizer tokenizer = BpeTokenizer::from_json(damaged, "x");
      const Ids ids = tokenizer.encode("abc <s> 12 é", true);
      (void)tokenizer.decode(ids, round % 2 == 0);
      ++loaded;
    } catch (const UsageError&) {
    }
  }
  EXPECT_GT(loaded, 0);
}

TEST(BpeTokenizerRobustness, DeeplyNestedJson) {
  const size_t depth = 200000;  // far more than any stack would take recursively
  const std::string nested = std::string(depth, '[') + std::string(depth, ']');
  json doc = byte_document();
  std::string text = doc.dump();
  text.replace(text.find("\"normalizer\":null"), 17, "\"normalizer\":" + nested);
  EXPECT_MESSAGE_HAS(error_of_text(text), "normalizer: expected an object, got an array of 1 elements");
  EXPECT_MESSAGE_HAS(error_of_text(nested), "expected an object");
  EXPECT_MESSAGE_HAS(error_of_text(std::string(depth, '[')), "not a valid tokenizer.json");
}

TEST(BpeTokenizerRobustness, OneTokenizerManyThreads) {
  const BpeTokenizer tokenizer = load(byte_document({{"a", "b"}, {" ", "ab"}}));
  const std::string text = "ab ab abc, 12 ab\n";
  const Ids expected = tokenizer.encode(text);
  std::vector<std::thread> threads;
  std::vector<int> wrong(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) wrong[t] += tokenizer.encode(text) != expected ? 1 : 0;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace cord::hf
