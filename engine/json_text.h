#pragma once
// JSON text written directly, for hot paths that would otherwise build a
// nlohmann::json tree only to dump it (a cache hit's key and store rows).

#include <string>
#include <string_view>

#include "engine/spec.h"

namespace sluice {

// Appends `s` as a JSON string: exactly the bytes nlohmann::json's dump()
// writes for it (ensure_ascii off; invalid UTF-8 replaced by U+FFFD, as with
// error_handler_t::replace), so text written here hashes and compares like
// a dumped Json.
inline void AppendJsonString(std::string* out, std::string_view s) {
  for (char ch : s) {
    if (static_cast<unsigned char>(ch) >= 0x80) {  // UTF-8: let nlohmann check it
      *out += Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
      return;
    }
  }
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
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

}  // namespace sluice
