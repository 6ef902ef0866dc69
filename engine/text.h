#pragma once
// Small pure helpers on text shared by the whole tree: trimming, URL
// encoding and edit distance. No allocation beyond the returned value, no
// locale: the character classes are ASCII ones.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

// `s` when it has at most `n` characters, else its first `n` and "...": a
// value quoted in an error message.
inline std::string Ellipsize(const std::string& s, size_t n = 60) {
  return s.size() <= n ? s : s.substr(0, n) + "...";
}

// The characters std::isspace accepts in the "C" locale.
inline constexpr std::string_view kAsciiSpace = " \t\n\v\f\r";

// `s` without its leading characters from `chars`. The result points into
// `s`: it must not outlive the text `s` views.
std::string_view TrimLeft(std::string_view s, std::string_view chars = kAsciiSpace);

// `s` without its trailing characters from `chars`; points into `s`.
std::string_view TrimRight(std::string_view s, std::string_view chars = kAsciiSpace);

// `s` without leading and trailing characters from `chars`; points into `s`.
std::string_view Trim(std::string_view s, std::string_view chars = kAsciiSpace);

// `parts` with `separator` between each two: Join({"a", "b"}, ", ") is "a, b".
std::string Join(const std::vector<std::string>& parts, std::string_view separator);

// The description of errno value `err` ("No such file or directory"), without
// the "Unknown error N" of strerror for a value that has none: then "unknown
// error". Thread-safe.
std::string ErrnoText(int err);

// Percent-encodes every byte of `s` but the unreserved characters of
// RFC 3986 (A-Z a-z 0-9 - _ . ~), with upper-case hex: "a b/c" -> "a%20b%2Fc".
// For a URL path segment or a query parameter value.
std::string UrlEncode(std::string_view s);

// Which edits EditDistance counts, each at a cost of one.
enum class EditOps {
  kLevenshtein,         // insert, delete, substitute
  kWithTranspositions,  // those, and swapping two adjacent characters
                        // (optimal string alignment: "retires" is one edit
                        // from "retries")
};

// The number of edits that turn `a` into `b`. Quadratic in the lengths:
// callers bound the length of what they compare.
size_t EditDistance(std::string_view a, std::string_view b,
                    EditOps ops = EditOps::kWithTranspositions);

}  // namespace sluice
