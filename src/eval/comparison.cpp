#include "cord/eval/comparison.hpp"

#include <cstdio>

#include "cord/core/error.hpp"

namespace cord::eval {
namespace {

using nlohmann::json;

double field(const json& row, const char* name, const std::string& where) {
  const auto it = row.find(name);
  if (it == row.end() || !it->is_number()) throw UsageError(where + " has no number field \"" + name + "\"");
  return it->get<double>();
}

json compare_row(const json& current, const json& base, const std::string& where, const std::string& base_where) {
  const double base_text = field(base, "text_accuracy", base_where);
  const double base_audio = field(base, "audio_accuracy", base_where);
  const double text = field(current, "text_accuracy", where);
  const double audio = field(current, "audio_accuracy", where);
  const auto items = static_cast<int64_t>(field(current, "items", where));
  const auto base_items = static_cast<int64_t>(field(base, "items", base_where));
  if (items != base_items) {
    throw UsageError(base_where + " scored " + std::to_string(base_items) + " items, this eval " +
                     std::to_string(items) + ": evaluate both on the same corpus, split and eval.max_items");
  }
  const double base_gap = base_text - base_audio, gap = base_text - audio;
  return {{"items", items},
          {"baseline_text_accuracy", base_text},
          {"baseline_audio_accuracy", base_audio},
          {"text_accuracy", text},
          {"audio_accuracy", audio},
          {"baseline_gap", base_gap},
          {"gap", gap},
          {"gap_reduction", base_gap > 0 ? json(1.0 - gap / base_gap) : json(nullptr)},
          {"text_change", text - base_text}};
}

std::string fixed(double value, const char* format = "%.1f") {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

std::string markdown_row(const std::string& name, const json& row) {
  const json& reduction = row.at("gap_reduction");
  return "| " + name + " | " + std::to_string(row.at("items").get<int64_t>()) + " | " +
         fixed(row.at("baseline_text_accuracy").get<double>()) + " | " + fixed(row.at("text_accuracy").get<double>()) +
         " (" + fixed(row.at("text_change").get<double>(), "%+.1f") + ") | " +
         fixed(row.at("baseline_audio_accuracy").get<double>()) + " | " + fixed(row.at("audio_accuracy").get<double>()) +
         " | " + fixed(row.at("baseline_gap").get<double>()) + " | " + fixed(row.at("gap").get<double>()) + " | " +
         (reduction.is_null() ? std::string("-") : fixed(100.0 * reduction.get<double>(), "%+.1f%%")) + " |\n";
}

}  // namespace

json compare_to_baseline(const json& scores, const json& baseline, const std::string& baseline_name) {
  for (const char* part : {"families", "average"}) {
    if (!baseline.contains(part) || !baseline.at(part).is_object()) {
      throw UsageError("baseline " + baseline_name + " has no \"" + part + "\" object (is it a cord eval.json?)");
    }
  }
  const json& families = scores.at("families");
  const json& base_families = baseline.at("families");
  json out{{"baseline", baseline_name}, {"families", json::object()}};
  for (const auto& [name, row] : families.items()) {
    if (!base_families.contains(name)) {
      throw UsageError("baseline " + baseline_name + " has no family \"" + name + "\": evaluate both on the same corpus");
    }
    out["families"][name] = compare_row(row, base_families.at(name), "this eval's family " + name,
                                        "baseline " + baseline_name + " family " + name);
  }
  for (const auto& [name, row] : base_families.items()) {
    if (!families.contains(name)) {
      throw UsageError("baseline " + baseline_name + " scores family \"" + name +
                       "\", which this eval has no items of: evaluate both on the same corpus");
    }
  }
  out["average"] = compare_row(scores.at("average"), baseline.at("average"), "this eval's average",
                               "baseline " + baseline_name + " average");
  return out;
}

std::string comparison_markdown(const json& comparison) {
  std::string table =
      "| family | items | text acc % (base) | text acc % (change) | audio acc % (base) | audio acc % | gap (base, pts) "
      "| gap (pts) | gap reduction |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& [name, row] : comparison.at("families").items()) table += markdown_row(name, row);
  return table + markdown_row("**average**", comparison.at("average"));
}

}  // namespace cord::eval
