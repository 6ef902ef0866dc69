#pragma once
// "Did you mean ...?" suggestions by edit distance.

#include <string>
#include <string_view>
#include <vector>

#include "engine/text.h"  // EditDistance

namespace sluice::dsl {

// Words longer than this get no suggestion (a name this long is no typo).
inline constexpr size_t kMaxSuggestedLength = 256;

// The candidate closest to `word`, or "" when none is close enough
// (distance <= max(1, len/3), or equal ignoring case) or `word` is longer
// than kMaxSuggestedLength. Ties go to the first candidate in order.
std::string ClosestMatch(std::string_view word, const std::vector<std::string>& candidates);

// "; did you mean 'x'?" or "" when ClosestMatch finds nothing.
std::string DidYouMean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace sluice::dsl
