#pragma once
// Durations and resource quantities as pipelines write them: the DSL
// (dsl/) reads a pipeline's with these, and the operators (operators/) their
// configs', so both accept the same text ("30s", "1h30m", "500m", "512Mi").

#include <cstdint>
#include <string_view>

#include "engine/spec.h"
#include "engine/status.h"

namespace sluice {

// "500ms", "30s", "10m", "1h", "1h30m", "1.5h", "2d", "0". Units: ms, s, m,
// h, d. Errors: kInvalidArgument with a message that says how to write one.
Result<Duration> ParseDuration(std::string_view text);

// Kubernetes CPU quantity to millicores: "500m" -> 500, "0.5" -> 500,
// "2" -> 2000. Must be a whole number of millicores and not negative.
Result<int64_t> ParseCpu(std::string_view text);

// Kubernetes memory quantity to bytes: "512Mi", "1Gi", "1G", "1500k",
// "1048576". Binary suffixes Ki Mi Gi Ti Pi Ei, decimal k M G T P E.
Result<int64_t> ParseMemory(std::string_view text);

}  // namespace sluice
