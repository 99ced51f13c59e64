// Scoring of decoded responses: edit distance, answer extraction, the per-family counts,
// their sums over ranks (flatten / assign_flat) and the report's averages.
#include <gtest/gtest.h>

#include "cord/data/tokenizer.hpp"
#include "cord/core/error.hpp"
#include "cord/eval/scoring.hpp"

namespace cord::eval {
namespace {

using data::Tokenizer;

std::vector<int64_t> ids(const Tokenizer& tokenizer, const std::string& text, bool eos = true) {
  std::vector<int64_t> out;
  for (const int32_t id : tokenizer.encode(text)) out.push_back(id);
  if (eos) out.push_back(Tokenizer::kEos);
  return out;
}

TEST(EditDistance, CountsSubstitutionsInsertionsAndDeletions) {
  EXPECT_EQ(edit_distance({}, {}), 0);
  EXPECT_EQ(edit_distance({1, 2, 3}, {1, 2, 3}), 0);
  EXPECT_EQ(edit_distance({1, 9, 3}, {1, 2, 3}), 1);     // substitution
  EXPECT_EQ(edit_distance({1, 3}, {1, 2, 3}), 1);        // deletion
  EXPECT_EQ(edit_distance({1, 2, 2, 3}, {1, 2, 3}), 1);  // insertion
  EXPECT_EQ(edit_distance({}, {1, 2, 3}), 3);
  EXPECT_EQ(edit_distance({4, 5}, {1, 2, 3}), 3);
  EXPECT_EQ(edit_distance({3, 2, 1}, {1, 2, 3}), 2);
}

TEST(ExtractAnswer, ReadsTheCanonicalAnswerLineUpToEos) {
  const Tokenizer tokenizer = Tokenizer::from_generators();
  EXPECT_EQ(extract_answer(tokenizer, ids(tokenizer, "Gus starts with 32 coins. 32 + 39 = 71. The answer is 71.")),
            std::optional<std::string>("71"));
  EXPECT_EQ(extract_answer(tokenizer, ids(tokenizer, "Nils keeps a cat as a pet. The answer is cat.")),
            std::optional<std::string>("cat"));
  // Tokens after eos are padding and do not count.
  std::vector<int64_t> padded = ids(tokenizer, "The answer is Dora.");
  padded.push_back(Tokenizer::kPad);
  padded.push_back(tokenizer.id("Una"));
  EXPECT_EQ(extract_answer(tokenizer, padded), std::optional<std::string>("Dora"));
}

TEST(ExtractAnswer, UnparseableResponsesGiveNothing) {
  const Tokenizer tokenizer = Tokenizer::from_generators();
  EXPECT_FALSE(extract_answer(tokenizer, ids(tokenizer, "Gus starts with 32 coins.")));
  EXPECT_FALSE(extract_answer(tokenizer, {}));
  EXPECT_FALSE(extract_answer(tokenizer, {Tokenizer::kEos}));
  // An id beyond the vocabulary (the model's padded vocabulary is larger) is unparseable.
  std::vector<int64_t> outside = ids(tokenizer, "The answer is 4.", false);
  outside.insert(outside.begin(), tokenizer.size() + 1);
  EXPECT_FALSE(extract_answer(tokenizer, outside));
}

TEST(Scores, FlattenRoundTripsAndSumsElementwise) {
  Scores a;
  a.families[0] = FamilyScore{10, 9, 1, 4, 2, 30, 100};
  a.families[2] = FamilyScore{5, 5, 0, 1, 0, 3, 50};
  Scores b;
  b.assign_flat(a.flatten());
  EXPECT_EQ(b.flatten(), a.flatten());
  EXPECT_THROW(b.assign_flat({1, 2, 3}), Error);
}

TEST(Scores, AveragesOverFamiliesWithItemsAndReportsTheGap) {
  Scores s;
  s.text = s.audio = s.transcripts = true;
  s.families[0] = FamilyScore{10, 9, 0, 3, 2, 20, 100};  // 90% / 30%
  s.families[1] = FamilyScore{20, 20, 0, 14, 0, 0, 100};  // 100% / 70%
  // family 2 has no items: it does not enter the averages
  EXPECT_DOUBLE_EQ(s.text_accuracy(), 95.0);
  EXPECT_DOUBLE_EQ(s.audio_accuracy(), 50.0);
  EXPECT_DOUBLE_EQ(s.word_error_rate(), 10.0);
  const nlohmann::json report = scores_json(s);
  EXPECT_DOUBLE_EQ(report["average"]["gap"].get<double>(), 45.0);
  EXPECT_EQ(report["average"]["audio_unparsed"].get<int64_t>(), 2);
  EXPECT_DOUBLE_EQ(report["families"]["arithmetic"]["gap"].get<double>(), 60.0);
  EXPECT_FALSE(report["families"].contains("ordering"));
  const std::string table = scores_markdown(s);
  EXPECT_NE(table.find("| arithmetic | 10 | 90.0 | 30.0 | 60.0 | 20.0 | 0 / 2 |"), std::string::npos) << table;
  EXPECT_NE(table.find("| **average** | 30 | **95.0** | **50.0** | **45.0** | 10.0 | 0 / 2 |"), std::string::npos)
      << table;
}

TEST(Scores, ReportsOnlyWhatWasEvaluated) {
  Scores s;
  s.text = true;
  s.families[1] = FamilyScore{4, 3, 1, 0, 0, 0, 0};
  const nlohmann::json report = scores_json(s);
  EXPECT_TRUE(report["average"].contains("text_accuracy"));
  EXPECT_FALSE(report["average"].contains("audio_accuracy"));
  EXPECT_FALSE(report["average"].contains("gap"));
  EXPECT_EQ(scores_markdown(s).find("audio acc"), std::string::npos);
}

}  // namespace
}  // namespace cord::eval
