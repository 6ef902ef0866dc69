#include "engine/text.h"

#include <string.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace sluice {

std::string_view TrimLeft(std::string_view s, std::string_view chars) {
  size_t b = s.find_first_not_of(chars);
  return b == std::string_view::npos ? s.substr(s.size()) : s.substr(b);
}

std::string_view TrimRight(std::string_view s, std::string_view chars) {
  size_t e = s.find_last_not_of(chars);
  return e == std::string_view::npos ? s.substr(0, 0) : s.substr(0, e + 1);
}

std::string_view Trim(std::string_view s, std::string_view chars) {
  return TrimRight(TrimLeft(s, chars), chars);
}

std::string Join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += separator;
    out += parts[i];
  }
  return out;
}

std::string ErrnoText(int err) {
  const char* d = strerrordesc_np(err);
  return d ? d : "unknown error";
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  auto unreserved = [](unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
  };
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (unreserved(c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

namespace {

// The distance over three caller-provided rows of b.size() + 1 entries each
// (two before the current one: a transposition looks two rows back).
size_t Distance(std::string_view a, std::string_view b, bool transpositions, size_t* prev2, size_t* prev,
                size_t* cur) {
  const size_t n = a.size(), m = b.size();
  for (size_t j = 0; j <= m; ++j) prev[j] = j;
  for (size_t i = 1; i <= n; ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= m; ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (transpositions && i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[m];
}

}  // namespace

size_t EditDistance(std::string_view a, std::string_view b, EditOps ops) {
  const bool transpositions = ops == EditOps::kWithTranspositions;
  // Names are short: rows on the stack, no allocation per comparison (lint
  // may compare one name against thousands of step names).
  constexpr size_t kStackRow = 64;
  if (b.size() < kStackRow) {
    size_t rows[3][kStackRow + 1];
    return Distance(a, b, transpositions, rows[0], rows[1], rows[2]);
  }
  std::vector<size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  return Distance(a, b, transpositions, prev2.data(), prev.data(), cur.data());
}

}  // namespace sluice
