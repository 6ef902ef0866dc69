#pragma once
// The name rules of pipeline files, shared by the loader (dsl.cc) and the
// notebook importer (notebook.cc), so both accept exactly the same names.

#include <string>
#include <string_view>

namespace sluice::dsl {

// A DNS-1123 label, [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters:
// step, pipeline and output names.
bool IsDnsLabel(std::string_view s);

// A lower-cased, '-' separated spelling of `s` that IsDnsLabel accepts
// ("Load_Data" -> "load-data"), or "" when there is none.
std::string ToDnsLabel(std::string_view s);

// [A-Za-z_][A-Za-z0-9_]*: names used in expressions and environment
// variables (and Python's plain identifiers).
bool IsIdentifier(std::string_view s);

}  // namespace sluice::dsl
