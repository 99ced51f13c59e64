#include "cord/config/load.hpp"

#include "cord/hf/hf_config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>
#include <type_traits>

#include <toml++/toml.h>

#include "cord/core/error.hpp"

namespace cord {
namespace {

// Edit distance counting an adjacent transposition as one edit (optimal string
// alignment), for "did you mean ...?" on unknown keys: "pt" is one edit from "tp".
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

std::string unknown_key_message(std::vector<Field>& fields, std::string_view key,
                                const std::string& origin) {
  std::string message = "unknown key '" + std::string(key) + "' in " + origin;
  const Field* nearest = nullptr;
  std::size_t best = std::numeric_limits<std::size_t>::max();
  for (const Field& field : fields) {
    // The length difference bounds the distance from below: only keys within 3 of the
    // length can be suggested, so a long bad key costs no quadratic work.
    const std::size_t longer = std::max(key.size(), field.key.size());
    if (longer - std::min(key.size(), field.key.size()) > 3) continue;
    const std::size_t d = edit_distance(key, field.key);
    if (d < best) best = d, nearest = &field;
  }
  if (nearest != nullptr && best <= 3) message += " (did you mean '" + std::string(nearest->key) + "'?)";
  return message;
}

Field* find_field(std::vector<Field>& fields, std::string_view key) {
  const auto it = std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.key == key; });
  return it == fields.end() ? nullptr : &*it;
}

// "a, b, c": the names of a choice.
std::string choice_names(const ChoiceRef& choice) {
  std::string out;
  for (size_t i = 0; i < choice.count; ++i) out += (i == 0 ? "" : ", ") + std::string(choice.names[i]);
  return out;
}

// Sets a choice field from its name; false for a name that is not one of its choices.
bool assign_choice(const ChoiceRef& choice, std::string_view name) {
  for (size_t i = 0; i < choice.count; ++i) {
    if (choice.names[i] == name) return choice.set(choice.field, static_cast<int>(i)), true;
  }
  return false;
}

// The error for a choice field given another name: "KEY='VALUE' [in WHERE] is not one of a, b".
UsageError bad_choice(std::string_view key, std::string_view value, const std::string& where, const ChoiceRef& choice) {
  return UsageError(std::string(key) + "='" + std::string(value) + "'" + (where.empty() ? "" : " in " + where) +
                    " is not one of " + choice_names(choice));
}

const char* type_name(const FieldRef& ref) {
  return std::visit(
      [](auto p) -> const char* {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, ChoiceRef>) return "a string";
        else if constexpr (std::is_same_v<T, bool>) return "a boolean";
        else if constexpr (std::is_same_v<T, double>) return "a number";
        else if constexpr (std::is_same_v<T, std::string>) return "a string";
        else return "an integer";
      },
      ref);
}

template <typename Int>
bool assign_integer(Int* target, std::int64_t value) {
  if (value < std::numeric_limits<Int>::min() || value > std::numeric_limits<Int>::max()) return false;
  *target = static_cast<Int>(value);
  return true;
}

// Stores a TOML value into the field; false when the TOML type does not fit. A choice
// field takes a string (its name is checked by the caller).
bool assign_from_toml(const FieldRef& ref, const toml::node& node) {
  return std::visit(
      [&](auto target) -> bool {
        using T = std::remove_pointer_t<decltype(target)>;
        if constexpr (std::is_same_v<T, ChoiceRef>) {
          return node.value_exact<std::string>().has_value();
        } else if constexpr (std::is_same_v<T, bool>) {
          if (auto v = node.value_exact<bool>()) return *target = *v, true;
        } else if constexpr (std::is_same_v<T, double>) {
          if (auto v = node.value<double>(); v && (node.is_floating_point() || node.is_integer())) {
            return *target = *v, true;
          }
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (auto v = node.value_exact<std::string>()) return *target = *v, true;
        } else {
          if (auto v = node.value_exact<std::int64_t>()) return assign_integer(target, *v);
        }
        return false;
      },
      ref);
}

// Surrounding quotes are optional in overrides: --set runtime.device=cpu or ="cpu".
std::string_view unquoted(std::string_view text) {
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"') return text.substr(1, text.size() - 2);
  return text;
}

// Parses override text as the field's type; false when it does not parse completely (a
// choice field's name is checked by the caller).
bool assign_from_text(const FieldRef& ref, std::string_view text) {
  return std::visit(
      [&](auto target) -> bool {
        using T = std::remove_pointer_t<decltype(target)>;
        if constexpr (std::is_same_v<T, ChoiceRef>) {
          return true;
        } else if constexpr (std::is_same_v<T, bool>) {
          if (text == "true") return *target = true, true;
          if (text == "false") return *target = false, true;
          return false;
        } else if constexpr (std::is_same_v<T, double>) {
          const std::string copy(text);
          char* end = nullptr;
          const double v = std::strtod(copy.c_str(), &end);
          if (copy.empty() || end != copy.c_str() + copy.size() || !std::isfinite(v)) return false;
          return *target = v, true;
        } else if constexpr (std::is_same_v<T, std::string>) {
          return *target = std::string(unquoted(text)), true;
        } else {
          std::int64_t v = 0;
          const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
          if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return false;
          return assign_integer(target, v);
        }
      },
      ref);
}

std::string where(const toml::node& node, const std::string& path) {
  return path + ":" + std::to_string(node.source().begin.line);
}

// Walks nested tables, applying each leaf under its dotted key.
void apply_table(std::vector<Field>& fields, const toml::table& table, const std::string& prefix,
                 const std::string& path) {
  for (const auto& [name, node] : table) {
    const std::string key = prefix.empty() ? std::string(name.str()) : prefix + "." + std::string(name.str());
    if (const toml::table* sub = node.as_table()) {
      apply_table(fields, *sub, key, path);
      continue;
    }
    Field* field = find_field(fields, key);
    if (field == nullptr) throw UsageError(unknown_key_message(fields, key, where(node, path)));
    if (!assign_from_toml(field->ref, node)) {
      throw UsageError(key + " in " + where(node, path) + " must be " + type_name(field->ref) +
                       " (in range)");
    }
    if (const auto* choice = std::get_if<ChoiceRef>(&field->ref)) {
      const std::string name = *node.value_exact<std::string>();
      if (!assign_choice(*choice, name)) throw bad_choice(key, name, where(node, path), *choice);
    }
  }
}

std::string toml_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

std::string value_text(const FieldRef& ref) {
  return std::visit(
      [](auto p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, ChoiceRef>) return toml_string(std::string(p.names[p.get(p.field)]));
        else if constexpr (std::is_same_v<T, bool>) return *p ? "true" : "false";
        else if constexpr (std::is_same_v<T, double>) {
          std::ostringstream os;
          os << std::setprecision(17) << *p;
          std::string s = os.str();
          // TOML needs a float to look like one.
          if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
          return s;
        } else if constexpr (std::is_same_v<T, std::string>) return toml_string(*p);
        else return std::to_string(*p);
      },
      ref);
}

}  // namespace

void apply_toml_file(Config& config, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("cannot read config " + path);
  std::ostringstream text;
  text << in.rdbuf();
  apply_toml_text(config, text.str(), path);
}

void apply_toml_text(Config& config, std::string_view text, const std::string& source_name) {
  toml::table document;
  try {
    document = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    throw UsageError("cannot parse config " + source_name + ":" + std::to_string(begin.line) + ":" +
                     std::to_string(begin.column) + ": " + std::string(e.description()));
  }
  std::vector<Field> fields = config_fields(config);
  apply_table(fields, document, "", source_name);
}

void apply_override(Config& config, std::string_view assignment) {
  const std::string origin = "--set " + std::string(assignment);
  const std::size_t eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    throw UsageError(origin + ": expected section.key=value");
  }
  const std::string_view key = assignment.substr(0, eq);
  std::vector<Field> fields = config_fields(config);
  Field* field = find_field(fields, key);
  if (field == nullptr) throw UsageError(unknown_key_message(fields, key, origin));
  const std::string_view value = assignment.substr(eq + 1);
  if (!assign_from_text(field->ref, value)) {
    throw UsageError(origin + ": " + std::string(key) + " must be " + type_name(field->ref) +
                     " (in range)");
  }
  if (const auto* choice = std::get_if<ChoiceRef>(&field->ref)) {
    if (!assign_choice(*choice, unquoted(value))) throw bad_choice(key, unquoted(value), "", *choice);
  }
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  Config config;
  if (!path.empty()) apply_toml_file(config, path);
  for (const std::string& assignment : overrides) apply_override(config, assignment);
  hf::resolve_model_source(config.model);  // model.source = hf:DIR sets the decoder fields
  validate(config);
  return config;
}

std::string to_toml(const Config& config) {
  Config copy = config;  // config_fields() hands out mutable references
  std::string out;
  std::string_view section;
  for (const Field& field : config_fields(copy)) {
    const std::size_t dot = field.key.rfind('.');
    const std::string_view field_section = field.key.substr(0, dot);
    if (field_section != section) {
      if (!out.empty()) out += "\n";
      out += "[" + std::string(field_section) + "]\n";
      section = field_section;
    }
    out += "# " + std::string(field.doc) + "\n";
    out += std::string(field.key.substr(dot + 1)) + " = " + value_text(field.ref) + "\n";
  }
  return out;
}

}  // namespace cord
