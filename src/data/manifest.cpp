#include "cord/data/manifest.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "cord/core/error.hpp"

namespace cord::data {
namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t start = 0;
  for (std::size_t tab = line.find('\t'); tab != std::string::npos; tab = line.find('\t', start)) {
    fields.push_back(line.substr(start, tab - start));
    start = tab + 1;
  }
  fields.push_back(line.substr(start));
  return fields;
}

const std::vector<std::string> kRequired = {"wav", "question", "answer", "family", "split"};

ManifestRow json_row(const std::string& line, const std::string& where) {
  nlohmann::json object;
  try {
    object = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(where + ": not a JSON object (" + e.what() + ")");
  }
  if (!object.is_object()) throw UsageError(where + ": not a JSON object");
  auto field = [&](const std::string& key, bool required) -> std::string {
    const auto it = object.find(key);
    if (it == object.end()) {
      if (required) throw UsageError(where + ": missing key '" + key + "'");
      return "";
    }
    if (!it->is_string()) throw UsageError(where + ": key '" + key + "' must be a string");
    return it->get<std::string>();
  };
  ManifestRow row;
  row.where = where;
  row.wav = field("wav", true);
  row.question = field("question", true);
  row.answer = field("answer", true);
  row.family = field("family", true);
  row.split = field("split", true);
  row.solution = field("solution", false);
  return row;
}

void check_header(const std::vector<std::string>& header, const std::string& where) {
  for (const std::string& column : kRequired) {
    if (std::find(header.begin(), header.end(), column) == header.end()) {
      throw UsageError(where + ": missing column '" + column +
                       "' in the header (needs wav, question, answer, family, split; optional solution)");
    }
  }
}

ManifestRow tsv_row(const std::vector<std::string>& header, const std::string& line, const std::string& where) {
  const std::vector<std::string> fields = split_tabs(line);
  if (fields.size() != header.size()) {
    throw UsageError(where + ": " + std::to_string(fields.size()) + " columns, the header has " +
                     std::to_string(header.size()));
  }
  auto column = [&](const std::string& name) -> std::string {
    const auto it = std::find(header.begin(), header.end(), name);
    return it == header.end() ? "" : fields[static_cast<std::size_t>(it - header.begin())];
  };
  ManifestRow row;
  row.where = where;
  row.wav = column("wav");
  row.question = column("question");
  row.answer = column("answer");
  row.family = column("family");
  row.split = column("split");
  row.solution = column("solution");
  return row;
}

}  // namespace

std::vector<ManifestRow> parse_manifest(std::string_view text, ManifestFormat format, const std::string& path) {
  std::istringstream in{std::string(text)};
  std::vector<ManifestRow> rows;
  std::string line;
  int line_number = 0;
  std::vector<std::string> header;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_number);
    if (format == ManifestFormat::kTsv && header.empty()) {
      header = split_tabs(line);
      check_header(header, where);
      continue;
    }
    ManifestRow row = format == ManifestFormat::kJsonLines ? json_row(line, where) : tsv_row(header, line, where);
    for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"wav", &row.wav},
                                      {"question", &row.question},
                                      {"answer", &row.answer}}) {
      if (value->empty()) throw UsageError(where + ": empty " + name);
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty()) throw UsageError("manifest " + path + " has no items");
  return rows;
}

std::vector<ManifestRow> read_manifest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("cannot read manifest " + path);
  std::ostringstream text;
  text << in.rdbuf();
  const bool json_lines = ends_with(path, ".jsonl") || ends_with(path, ".json");
  return parse_manifest(text.str(), json_lines ? ManifestFormat::kJsonLines : ManifestFormat::kTsv, path);
}

}  // namespace cord::data
