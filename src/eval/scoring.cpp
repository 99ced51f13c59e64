#include "cord/eval/scoring.hpp"

#include <algorithm>
#include <cstdio>

#include "cord/core/error.hpp"

namespace cord::eval {
namespace {

constexpr int kFields = 7;

double percent(int64_t part, int64_t whole) { return whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole); }

template <typename Rate>
double family_mean(const Scores& scores, Rate rate) {
  double sum = 0;
  int count = 0;
  for (const FamilyScore& f : scores.families) {
    if (f.items == 0) continue;
    sum += rate(f);
    ++count;
  }
  return count == 0 ? 0.0 : sum / count;
}

// Items and unparsed answers summed over the families.
struct Totals {
  int64_t items = 0, text_unparsed = 0, audio_unparsed = 0;
};
Totals totals_of(const Scores& scores) {
  Totals t;
  for (const FamilyScore& f : scores.families) {
    t.items += f.items;
    t.text_unparsed += f.text_unparsed;
    t.audio_unparsed += f.audio_unparsed;
  }
  return t;
}

std::string fixed(double value, int digits = 1) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

}  // namespace

int64_t edit_distance(const std::vector<int64_t>& hypothesis, const std::vector<int64_t>& reference) {
  std::vector<int64_t> previous(reference.size() + 1), current(reference.size() + 1);
  for (size_t j = 0; j <= reference.size(); ++j) previous[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= hypothesis.size(); ++i) {
    current[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= reference.size(); ++j) {
      const int64_t substitute = previous[j - 1] + (hypothesis[i - 1] == reference[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitute});
    }
    std::swap(previous, current);
  }
  return previous[reference.size()];
}

std::vector<int64_t> strip_eos(const std::vector<int64_t>& response, int64_t eos) {
  const auto end = std::find(response.begin(), response.end(), eos);
  return {response.begin(), end};
}

std::optional<std::string> extract_answer(const data::Tokenizer& tokenizer, const std::vector<int64_t>& response) {
  std::vector<int32_t> ids;
  for (const int64_t id : strip_eos(response, data::Tokenizer::kEos)) {
    if (id < 0 || id >= tokenizer.size()) return std::nullopt;
    ids.push_back(static_cast<int32_t>(id));
  }
  const std::string answer = data::parse_answer_line(tokenizer.decode(ids));
  if (answer.empty()) return std::nullopt;
  return answer;
}

std::vector<int64_t> Scores::flatten() const {
  std::vector<int64_t> flat;
  for (const FamilyScore& f : families) {
    flat.insert(flat.end(), {f.items, f.text_correct, f.text_unparsed, f.audio_correct, f.audio_unparsed, f.word_edits,
                             f.reference_words});
  }
  return flat;
}

void Scores::assign_flat(const std::vector<int64_t>& flat) {
  CORD_CHECK(flat.size() == families.size() * kFields, "score vector has the wrong length");
  for (size_t i = 0; i < families.size(); ++i) {
    const int64_t* v = flat.data() + i * kFields;
    families[i] = FamilyScore{v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
  }
}

double Scores::text_accuracy() const {
  return family_mean(*this, [](const FamilyScore& f) { return percent(f.text_correct, f.items); });
}

double Scores::audio_accuracy() const {
  return family_mean(*this, [](const FamilyScore& f) { return percent(f.audio_correct, f.items); });
}

double Scores::word_error_rate() const {
  int64_t edits = 0, words = 0;
  for (const FamilyScore& f : families) {
    edits += f.word_edits;
    words += f.reference_words;
  }
  return percent(edits, words);
}

nlohmann::json scores_json(const Scores& scores) {
  nlohmann::json out;
  nlohmann::json families = nlohmann::json::object();
  for (int i = 0; i < data::kFamilyCount; ++i) {
    const FamilyScore& f = scores.families[static_cast<size_t>(i)];
    if (f.items == 0) continue;
    nlohmann::json family{{"items", f.items}};
    if (scores.text) {
      family["text_accuracy"] = percent(f.text_correct, f.items);
      family["text_unparsed"] = f.text_unparsed;
    }
    if (scores.audio) {
      family["audio_accuracy"] = percent(f.audio_correct, f.items);
      family["audio_unparsed"] = f.audio_unparsed;
    }
    if (scores.text && scores.audio) family["gap"] = percent(f.text_correct, f.items) - percent(f.audio_correct, f.items);
    if (scores.transcripts) family["word_error_rate"] = percent(f.word_edits, f.reference_words);
    families[data::family_name(static_cast<data::Family>(i))] = family;
  }
  out["families"] = families;
  const Totals totals = totals_of(scores);
  nlohmann::json average{{"items", totals.items}};
  if (scores.text) {
    average["text_accuracy"] = scores.text_accuracy();
    average["text_unparsed"] = totals.text_unparsed;
  }
  if (scores.audio) {
    average["audio_accuracy"] = scores.audio_accuracy();
    average["audio_unparsed"] = totals.audio_unparsed;
  }
  if (scores.text && scores.audio) average["gap"] = scores.text_accuracy() - scores.audio_accuracy();
  if (scores.transcripts) average["word_error_rate"] = scores.word_error_rate();
  out["average"] = average;
  return out;
}

std::string scores_markdown(const Scores& scores) {
  std::string header = "| family | items |";
  std::string rule = "|---|---:|";
  if (scores.text) header += " text acc % |", rule += "---:|";
  if (scores.audio) header += " audio acc % |", rule += "---:|";
  if (scores.text && scores.audio) header += " gap (pts) |", rule += "---:|";
  if (scores.transcripts) header += " transcript WER % |", rule += "---:|";
  header += " unparsed (text / audio) |";
  rule += "---:|";
  std::string table = header + "\n" + rule + "\n";
  for (int i = 0; i < data::kFamilyCount; ++i) {
    const FamilyScore& f = scores.families[static_cast<size_t>(i)];
    if (f.items == 0) continue;
    const double text = percent(f.text_correct, f.items), audio = percent(f.audio_correct, f.items);
    std::string row = std::string("| ") + data::family_name(static_cast<data::Family>(i)) + " | " +
                      std::to_string(f.items) + " |";
    if (scores.text) row += " " + fixed(text) + " |";
    if (scores.audio) row += " " + fixed(audio) + " |";
    if (scores.text && scores.audio) row += " " + fixed(text - audio) + " |";
    if (scores.transcripts) row += " " + fixed(percent(f.word_edits, f.reference_words)) + " |";
    row += " " + std::to_string(f.text_unparsed) + " / " + std::to_string(f.audio_unparsed) + " |";
    table += row + "\n";
  }
  const Totals totals = totals_of(scores);
  std::string row = "| **average** | " + std::to_string(totals.items) + " |";
  if (scores.text) row += " **" + fixed(scores.text_accuracy()) + "** |";
  if (scores.audio) row += " **" + fixed(scores.audio_accuracy()) + "** |";
  if (scores.text && scores.audio) row += " **" + fixed(scores.text_accuracy() - scores.audio_accuracy()) + "** |";
  if (scores.transcripts) row += " " + fixed(scores.word_error_rate()) + " |";
  row += " " + std::to_string(totals.text_unparsed) + " / " + std::to_string(totals.audio_unparsed) + " |";
  return table + row + "\n";
}

}  // namespace cord::eval
