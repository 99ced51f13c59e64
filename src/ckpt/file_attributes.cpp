#include "file_attributes.hpp"

#include <sstream>
#include <type_traits>

#include "cord/core/build_info.hpp"
#include "cord/core/error.hpp"

namespace cord::ckpt::detail {
namespace {

// Fields that do not change the architecture (a model initialised differently loads fine).
// model.max_seq_len is a capacity, not a weight shape (RoPE tables and KV caches; Whisper's
// positions follow max_source_positions): weights trained at 512 positions may decode a
// longer prompt, e.g. a slower voice's audio.
bool architecture_field(std::string_view key) {
  return key.substr(0, 6) == "model." && key != "model.init_seed" && key != "model.init_std" &&
         key != "model.source" && key != "model.max_seq_len";
}

std::string field_text(const Field& field) {
  return std::visit(
      [](auto p) -> std::string {
        if constexpr (std::is_same_v<decltype(p), ChoiceRef>) {
          return std::string(p.names[p.get(p.field)]);
        } else {
          std::ostringstream os;
          os << *p;
          return os.str();
        }
      },
      field.ref);
}

// The default value's text of field `key`, or `otherwise` when there is no such field.
std::string default_field_text(const std::string& key, const std::string& otherwise) {
  Config defaults;
  for (const Field& field : config_fields(defaults)) {
    if (field.key == key) return field_text(field);
  }
  return otherwise;
}

}  // namespace

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) out += (i == 0 ? "" : "\n") + lines[i];
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

void write_model_attributes(h5::File& file, const ModelConfig& model, const std::vector<std::string>& vocab,
                            const std::string& config_toml) {
  file.set_attribute("/", "commit", build_info().commit);
  file.set_attribute("/", "config", config_toml);
  file.set_attribute("/", "vocab", join_lines(vocab));
  Config config;
  config.model = model;
  for (const Field& field : config_fields(config)) {
    if (architecture_field(field.key)) file.set_attribute("/", std::string(field.key), field_text(field));
  }
}

void check_file_kind(const h5::File& file, const std::string& path, const std::string& noun, const std::string& format,
                     int64_t version, const ModelConfig& model) {
  if (!file.has_attribute("/", "format") || file.attribute_string("/", "format") != format) {
    throw UsageError(path + " is not a cord " + noun + " (no format = \"" + format + "\" attribute)");
  }
  if (file.attribute_int("/", "version") != version) {
    throw UsageError(path + ": " + noun + " format version " + std::to_string(file.attribute_int("/", "version")) +
                     " is not supported (this build reads version " + std::to_string(version) + ")");
  }
  Config config;
  config.model = model;
  std::string differences;
  for (const Field& field : config_fields(config)) {
    if (!architecture_field(field.key)) continue;
    const std::string key(field.key);
    const std::string wanted = field_text(field);
    // A field added after the file was written: absent means its default then.
    const std::string stored = file.has_attribute("/", key) ? file.attribute_string("/", key)
                                                             : default_field_text(key, "(absent)");
    if (stored != wanted) differences += "\n  " + key + ": file " + stored + ", config " + wanted;
  }
  if (!differences.empty()) {
    throw UsageError(noun + " " + path + " was written for another model architecture:" + differences);
  }
}

}  // namespace cord::ckpt::detail
