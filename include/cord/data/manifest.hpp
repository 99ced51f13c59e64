#pragma once
// The import manifest of `cord corpus import`: one row per recording, TSV with a header
// row, or JSON lines (data/README.md, "Import manifest"). Parsing is separate from reading
// the file, so that it can be fuzzed from a byte buffer (tests/fuzz).
#include <string>
#include <string_view>
#include <vector>

namespace cord::data {

struct ManifestRow {
  std::string where;  // "FILE:LINE" for messages
  std::string wav;    // as written; relative paths are relative to the manifest's folder
  std::string question, solution, answer, family, split;
};

enum class ManifestFormat { kTsv, kJsonLines };

// Columns (TSV header) or keys (JSONL): wav, question, answer, family, split; solution is
// optional (default: "The answer is <answer>."). Throws UsageError naming the file and line
// for a missing column or key, a malformed line, an empty field or an empty manifest.
std::vector<ManifestRow> parse_manifest(std::string_view text, ManifestFormat format, const std::string& path);

// The file at `path`; the format follows the extension: .jsonl or .json = JSON lines,
// anything else = TSV.
std::vector<ManifestRow> read_manifest(const std::string& path);

}  // namespace cord::data
