#pragma once
// An eval against a baseline's eval of the same corpus split: how much of the baseline's
// audio-text gap a trained model closes (the paper's Table 1 measure). Pure bookkeeping on
// the scores_json objects of both (eval/scoring.hpp), no tensors.
//   gap            = baseline text accuracy - this model's audio accuracy (points)
//   gap_reduction  = 1 - gap / baseline gap (null where the baseline has no gap)
//   text_change    = this model's text accuracy - the baseline's (points)
#include <string>

#include <nlohmann/json.hpp>

namespace cord::eval {

// Per family and on average: {"baseline": NAME, "families": {family: row}, "average": row},
// row = {items, baseline_text_accuracy, baseline_audio_accuracy, text_accuracy,
//        audio_accuracy, baseline_gap, gap, gap_reduction, text_change}.
// Throws UsageError naming `baseline_name` when the baseline lacks a field or scored other
// families or item counts than `scores` (both must score the same items).
nlohmann::json compare_to_baseline(const nlohmann::json& scores, const nlohmann::json& baseline,
                                   const std::string& baseline_name);

// The comparison as a Markdown table: one row per family and the average row.
std::string comparison_markdown(const nlohmann::json& comparison);

}  // namespace cord::eval
