#include "dsl/suggest.h"

#include <algorithm>
#include <cctype>

namespace sluice::dsl {

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
