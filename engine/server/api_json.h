#pragma once
// The API's JSON shapes for runs and steps (server side; built by
// engine/store/record_json.h) and their parsing back into records (the
// `submit` client side).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"
#include "engine/store.h"
#include "engine/store/record_json.h"

namespace sluice::server {

// Parses IsoTime's output (engine/time_format.h): "YYYY-MM-DDTHH:MM:SS", optional fraction (kept to
// the millisecond), then "Z" or an offset ("+02:00", "-0530"); or a bare date
// ("2026-11-25", midnight UTC). nullopt for anything else, and for times
// outside what a TimePoint holds (1678 to 2261).
std::optional<TimePoint> ParseIsoTime(const std::string& text);

// The API's run object (GET /api/v1/runs/{run} "run"): RunRecordJson's
// RecordView::kApi.
Json RunToJson(const RunRecord& run);
// The API's step object: StepRecordJson's RecordView::kApi (a running step
// is timed up to now).
Json StepToJson(const StepRecord& step);
// The API's artifact object: ArtifactRecordJson.
Json ArtifactToJson(const ArtifactRecord& artifact);

// The inverse, for clients; missing (or null) fields keep their defaults.
// kInvalidArgument when `j` is not an object, a phase is unknown, or a field
// has the wrong type ("run field 'pipeline' is not a string", "step field
// 'index' is not an integer in the range of an int").
Result<RunRecord> RunFromJson(const Json& j);
Result<StepRecord> StepFromJson(const Json& j);

// Request bodies, parsed apart from the HTTP server so they can be tested and
// fuzzed on their own. Errors are kInvalidArgument with the text the API
// returns to the client.

// The deepest nesting of arrays and objects a request body may have (the
// whole body counts as depth 1): deeper JSON is refused before anything
// serialises it again, since nlohmann::json's dump() recurses per level.
inline constexpr int kMaxBodyDepth = 64;

// A request body as a JSON object; an empty body is {}. Errors: "request body
// is not a JSON object", "request body nests deeper than 64 levels".
Result<Json> ParseBodyObject(std::string_view body);

// POST /api/v1/pipelines/{pipeline}/runs: {"params": {name: value, ...},
// "run_id": "..."}, both optional.
struct SubmitBody {
  Json params;         // the "params" object; null when the body has none
  std::string run_id;  // "" = let the server generate one
};
// Errors: those of ParseBodyObject, and "'params' must be an object name ->
// value".
Result<SubmitBody> ParseSubmitBody(std::string_view body);

// POST /api/v1/runs/{run}/rerun: {"from": "step"} or {"from": ["a", "b"]}.
// Returns the step names, in order. Errors: those of ParseBodyObject, and
// "rerun needs 'from': a step name or a list of them".
Result<std::vector<std::string>> ParseRerunBody(std::string_view body);

}  // namespace sluice::server
