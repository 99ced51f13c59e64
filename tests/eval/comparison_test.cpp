// An eval against a baseline's: the gap, its reduction and the text change per family and
// on average, and a clear error for a baseline that does not score the same items.
#include <gtest/gtest.h>

#include "cord/core/error.hpp"
#include "cord/eval/comparison.hpp"

namespace cord::eval {
namespace {

using nlohmann::json;

json row(int64_t items, double text, double audio) {
  return {{"items", items}, {"text_accuracy", text}, {"audio_accuracy", audio}, {"gap", text - audio}};
}

json scores(const json& arithmetic, const json& ordering, const json& average) {
  return {{"split", "test"}, {"families", {{"arithmetic", arithmetic}, {"ordering", ordering}}}, {"average", average}};
}

TEST(CompareToBaseline, GapReductionAndTextChangePerFamilyAndAverage) {
  const json base = scores(row(10, 90, 50), row(20, 80, 80), row(30, 85, 65));
  const json trained = scores(row(10, 88, 70), row(20, 81, 70), row(30, 84.5, 70));
  const json c = compare_to_baseline(trained, base, "base/eval.json");
  EXPECT_EQ(c["baseline"], "base/eval.json");
  const json& a = c["families"]["arithmetic"];
  EXPECT_DOUBLE_EQ(a["baseline_gap"].get<double>(), 40.0);
  EXPECT_DOUBLE_EQ(a["gap"].get<double>(), 20.0);  // base text 90 - audio 70, as the paper measures it
  EXPECT_DOUBLE_EQ(a["gap_reduction"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(a["text_change"].get<double>(), -2.0);
  // No baseline gap: no reduction to report (not a division by zero).
  EXPECT_TRUE(c["families"]["ordering"]["gap_reduction"].is_null());
  EXPECT_DOUBLE_EQ(c["families"]["ordering"]["gap"].get<double>(), 10.0);
  const json& avg = c["average"];
  EXPECT_DOUBLE_EQ(avg["gap_reduction"].get<double>(), 1.0 - 15.0 / 20.0);
  EXPECT_DOUBLE_EQ(avg["text_change"].get<double>(), -0.5);
  EXPECT_EQ(avg["items"].get<int64_t>(), 30);

  const std::string table = comparison_markdown(c);
  EXPECT_NE(table.find("| arithmetic | 10 | 90.0 | 88.0 (-2.0) | 50.0 | 70.0 | 40.0 | 20.0 | +50.0% |"), std::string::npos)
      << table;
  EXPECT_NE(table.find("| ordering | 20 | 80.0 | 81.0 (+1.0) | 80.0 | 70.0 | 0.0 | 10.0 | - |"), std::string::npos)
      << table;
  EXPECT_NE(table.find("| **average** | 30 |"), std::string::npos) << table;
}

TEST(CompareToBaseline, ABaselineOfOtherItemsIsAnErrorNamingIt) {
  const json base = scores(row(10, 90, 50), row(20, 80, 80), row(30, 85, 65));
  auto message = [&](const json& baseline) {
    try {
      compare_to_baseline(base, baseline, "runs/x/eval.json");
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(scores(row(11, 90, 50), row(20, 80, 80), row(31, 85, 65))).find("runs/x/eval.json family arithmetic scored 11 items"),
            std::string::npos);
  json missing_family = base;
  missing_family["families"].erase("ordering");
  EXPECT_NE(message(missing_family).find("has no family \"ordering\""), std::string::npos);
  json extra_family = base;
  extra_family["families"]["multiple_choice"] = row(5, 90, 90);
  EXPECT_NE(message(extra_family).find("scores family \"multiple_choice\""), std::string::npos);
  json text_only = base;
  text_only["average"].erase("audio_accuracy");
  EXPECT_NE(message(text_only).find("average has no number field \"audio_accuracy\""), std::string::npos);
  EXPECT_NE(message(json{{"weights", "x"}}).find("has no \"families\" object"), std::string::npos);
}

}  // namespace
}  // namespace cord::eval
