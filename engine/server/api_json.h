#pragma once
// The API's JSON shapes for runs and steps (server side) and their parsing
// back into records (the `submit` client side), in one place.

#include <optional>
#include <string>

#include "engine/spec.h"
#include "engine/status.h"
#include "engine/store.h"

namespace sluice::server {

// "2026-11-25T15:30:12.345Z".
std::string IsoTime(TimePoint t);
// Parses IsoTime's output, RFC 3339 with an offset, or a bare date
// ("2026-11-25", midnight UTC). nullopt when none fits.
std::optional<TimePoint> ParseIsoTime(const std::string& text);

// The API's run object (GET /api/v1/runs/{run} "run").
Json RunToJson(const RunRecord& run);
// The API's step object. `now` closes the duration of a running step.
Json StepToJson(const StepRecord& step);
Json ArtifactToJson(const ArtifactRecord& artifact);

// The inverse, for clients; missing fields keep their defaults.
// kInvalidArgument when `j` is not an object or a phase is unknown.
Result<RunRecord> RunFromJson(const Json& j);
Result<StepRecord> StepFromJson(const Json& j);

}  // namespace sluice::server
