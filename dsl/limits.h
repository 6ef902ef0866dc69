#pragma once
// Hard limits on what a pipeline file may hold, so that hostile or broken
// input is a lint error with a location, never a crash, a hang or an
// allocation the machine cannot serve. docs/dsl.md ("Limits") lists them with
// their error texts; each value is far beyond what a real pipeline needs.
// The expression language's own limit is expr::kMaxExpressionDepth
// (engine/expr.h).

#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice::dsl {

// Bytes in one pipeline file. The largest benchmarked pipeline (10,000
// steps, docs/performance.md) is 2.2 MB.
inline constexpr size_t kMaxFileBytes = 16 * 1024 * 1024;

// Nested maps and lists, counting the top-level map as 1 and counting an
// alias as the depth of the node it repeats. A Kubernetes pod spec under a
// tfjob section is about 15 deep.
inline constexpr size_t kMaxYamlDepth = 64;

// YAML nodes in the document once every alias is expanded (each `*name`
// counts the whole node it repeats). The 10,000-step benchmark pipeline has
// about 200,000.
inline constexpr uint64_t kMaxYamlNodes = 1'000'000;

// Bytes in one scalar (a string, a template, a key): Linux refuses to pass a
// single argument or environment string longer than 128 KiB to a process
// (MAX_ARG_STRLEN).
inline constexpr size_t kMaxScalarBytes = 128 * 1024;

// Steps (`steps` and `finally` together), twice the largest benchmarked
// pipeline.
inline constexpr size_t kMaxSteps = 20'000;

// Entries of the top-level `params`.
inline constexpr size_t kMaxParams = 1'000;

// Entries of one `env` map (a step's or the defaults'); Linux passes at most
// 2 MiB of arguments and environment to a process (ARG_MAX).
inline constexpr size_t kMaxEnvEntries = 1'000;

// Values of one `foreach: {range: ...}`, like the items a literal list may
// hold; and the bounds of a range (2^53: exact in every JSON reader, and no
// arithmetic on them overflows int64_t).
inline constexpr size_t kMaxRangeInstances = 1'000'000;
inline constexpr int64_t kMaxRangeValue = int64_t{1} << 53;

// Distinct component files one pipeline may use (each is read and parsed
// once, however many steps use it).
inline constexpr size_t kMaxComponents = 256;

// Errors reported for one file; checking stops after them. Far more than
// anyone reads, few enough that "did you mean" searches stay cheap.
inline constexpr size_t kMaxErrors = 1'000;

// A limit as error messages spell it: 20000 -> "20,000".
inline std::string WithThousands(uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace sluice::dsl
