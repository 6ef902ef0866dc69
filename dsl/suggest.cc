#include "dsl/suggest.h"

#include <algorithm>
#include <cctype>

namespace sluice::dsl {

namespace {

// The optimal-string-alignment distance over three caller-provided rows of
// b.size() + 1 entries each.
size_t Osa(std::string_view a, std::string_view b, size_t* prev2, size_t* prev, size_t* cur) {
  const size_t n = a.size(), m = b.size();
  for (size_t j = 0; j <= m; ++j) prev[j] = j;
  for (size_t i = 1; i <= n; ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= m; ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[m];
}

}  // namespace

size_t EditDistance(std::string_view a, std::string_view b) {
  // Names are short: rows on the stack, no allocation per comparison (lint
  // may compare one name against thousands of step names).
  constexpr size_t kStackRow = 64;
  if (b.size() < kStackRow) {
    size_t rows[3][kStackRow + 1];
    return Osa(a, b, rows[0], rows[1], rows[2]);
  }
  std::vector<size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  return Osa(a, b, prev2.data(), prev.data(), cur.data());
}

namespace {

bool EqualIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

}  // namespace

std::string ClosestMatch(std::string_view word, const std::vector<std::string>& candidates) {
  // Typos are in short names; an edit distance is quadratic in the length.
  if (word.size() > kMaxSuggestedLength) return "";
  for (const auto& c : candidates)
    if (EqualIgnoringCase(word, c) && word != c) return c;
  const size_t limit = std::max<size_t>(1, word.size() / 3);
  std::string best;
  size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    if (c == word) continue;
    // Cheap bound: lengths that differ by more than the limit cannot match.
    size_t diff = c.size() > word.size() ? c.size() - word.size() : word.size() - c.size();
    if (diff > limit) continue;
    size_t d = EditDistance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

std::string DidYouMean(std::string_view word, const std::vector<std::string>& candidates) {
  std::string m = ClosestMatch(word, candidates);
  if (m.empty()) return "";
  return "; did you mean '" + m + "'?";
}

}  // namespace sluice::dsl
