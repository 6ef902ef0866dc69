#pragma once
// JSON text written directly, for hot paths that would otherwise build a
// nlohmann::json tree only to dump it (a cache hit's key and store rows).

#include <cassert>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "engine/spec.h"

namespace sluice {

// The name of `v`'s JSON type as error messages give it: "null", "bool",
// "string", "list", "object" or "number".
inline const char* JsonTypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "bool";
    case Json::value_t::string: return "string";
    case Json::value_t::array: return "list";
    case Json::value_t::object: return "object";
    default: return "number";
  }
}

// Appends `s` as a JSON string: exactly the bytes nlohmann::json's dump()
// writes for it (ensure_ascii off; invalid UTF-8 replaced by U+FFFD, as with
// error_handler_t::replace), so text written here hashes and compares like
// a dumped Json.
inline void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  const size_t start = out->size();
  out->reserve(start + s.size() + 2);
  out->push_back('"');
  size_t plain = 0;  // start of the run of bytes copied as they are
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) continue;
    if (c >= 0x80) {  // UTF-8: let nlohmann check it
      out->resize(start);
      *out += Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
      return;
    }
    out->append(s.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 15]);
    }
  }
  out->append(s.data() + plain, s.size() - plain);
  out->push_back('"');
}

// Appends `values` as a JSON list of strings, as dump() writes it.
inline void AppendJsonStrings(std::string* out, const std::vector<std::string>& values) {
  out->push_back('[');
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out->push_back(',');
    AppendJsonString(out, values[i]);
  }
  out->push_back(']');
}

// Appends `values` as a JSON object of strings, as dump() writes it (a
// std::map's order is the dumped order).
inline void AppendJsonStringMap(std::string* out, const std::map<std::string, std::string>& values) {
  out->push_back('{');
  bool first = true;
  for (const auto& [k, v] : values) {
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(out, k);
    out->push_back(':');
    AppendJsonString(out, v);
  }
  out->push_back('}');
}

// `j` as compact JSON text, as j.dump() writes it but with invalid UTF-8
// replaced (error_handler_t::replace) instead of thrown; null, {} and []
// (most optional columns and key parts) without the serializer.
inline std::string JsonText(const Json& j) {
  if (j.is_null()) return "null";
  if (j.is_object() && j.empty()) return "{}";
  if (j.is_array() && j.empty()) return "[]";
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Writes a JSON object's text member by member, with no tree. Members must
// come in the order a dumped Json object has them (keys sorted bytewise,
// each once; checked in debug builds), so the text is byte for byte the
// dump() of the same object.
//
//   JsonObjectText t;
//   t.Int("attempt", 1).String("step", "train");
//   std::string text = t.Finish();  // {"attempt":1,"step":"train"}
class JsonObjectText {
 public:
  JsonObjectText() { text_.push_back('{'); }

  JsonObjectText& String(std::string_view key, std::string_view value) {
    Key(key);
    AppendJsonString(&text_, value);
    return *this;
  }
  JsonObjectText& Int(std::string_view key, int64_t value) {
    Key(key);
    text_ += std::to_string(value);
    return *this;
  }
  JsonObjectText& Bool(std::string_view key, bool value) {
    Key(key);
    text_ += value ? "true" : "false";
    return *this;
  }
  // `json` is already JSON text (a nested object, a list, null).
  JsonObjectText& Raw(std::string_view key, std::string_view json) {
    Key(key);
    text_ += json;
    return *this;
  }
  JsonObjectText& Value(std::string_view key, const Json& value) { return Raw(key, JsonText(value)); }
  // A list of strings.
  JsonObjectText& Strings(std::string_view key, const std::vector<std::string>& values) {
    Key(key);
    AppendJsonStrings(&text_, values);
    return *this;
  }
  // An object of strings; a std::map's order is the dumped order.
  JsonObjectText& StringMap(std::string_view key, const std::map<std::string, std::string>& values) {
    Key(key);
    AppendJsonStringMap(&text_, values);
    return *this;
  }

  // The text; the writer is spent.
  std::string Finish() {
    text_.push_back('}');
    return std::move(text_);
  }

 private:
  void Key(std::string_view key) {
    assert(text_.size() == 1 || key > last_key_);
    last_key_ = key;
    if (text_.size() > 1) text_.push_back(',');
    AppendJsonString(&text_, key);
    text_.push_back(':');
  }

  std::string text_;
  std::string_view last_key_;  // keys are literals or outlive the writer
};

}  // namespace sluice
