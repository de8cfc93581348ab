// Typed access to tokenizer.json objects with errors that name the JSON path.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace dsv2::json_fields {

inline const nlohmann::json& field(const nlohmann::json& j, const char* name, const std::string& where) {
  if (!j.is_object() || !j.contains(name)) throw Error(where + ": missing field '" + name + "'");
  return j[name];
}

inline std::string string_field(const nlohmann::json& j, const char* name, const std::string& where) {
  const auto& v = field(j, name, where);
  if (!v.is_string()) throw Error(where + "." + name + ": expected a string");
  return v.get<std::string>();
}

inline bool bool_field(const nlohmann::json& j, const char* name, const std::string& where, bool fallback) {
  if (!j.is_object() || !j.contains(name) || j[name].is_null()) return fallback;
  if (!j[name].is_boolean()) throw Error(where + "." + name + ": expected true or false");
  return j[name].get<bool>();
}

inline std::string type_of(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where + ": expected an object");
  return string_field(j, "type", where);
}

// {"String": "..."} or {"Regex": "..."} -> (is_regex, text)
inline std::pair<bool, std::string> pattern_field(const nlohmann::json& j, const std::string& where) {
  const auto& p = field(j, "pattern", where);
  if (p.is_object() && p.contains("Regex") && p["Regex"].is_string()) return {true, p["Regex"].get<std::string>()};
  if (p.is_object() && p.contains("String") && p["String"].is_string()) return {false, p["String"].get<std::string>()};
  throw Error(where + ".pattern: expected {\"Regex\": ...} or {\"String\": ...}");
}

}  // namespace dsv2::json_fields
