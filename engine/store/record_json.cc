#include "engine/store/record_json.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <optional>

namespace sluice {
namespace {

Json IsoTimeOrNull(const std::optional<TimePoint>& t) { return t ? Json(IsoTime(*t)) : Json(nullptr); }

// stop - start in seconds, computed per end so that two far-apart time
// points never overflow the 64-bit nanosecond count.
double SecondsBetween(TimePoint start, TimePoint stop) {
  auto seconds = [](TimePoint t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
  };
  return seconds(stop) - seconds(start);
}

// The CLI's "duration_ms": up to now while running, -1 before the start,
// never negative.
int64_t DurationMillis(const std::optional<TimePoint>& start, const std::optional<TimePoint>& end) {
  if (!start) return -1;
  TimePoint stop = end ? *end : std::chrono::system_clock::now();
  if (stop <= *start) return 0;
  // Both ends fit 64-bit nanoseconds, their difference need not (a record
  // read from a server may hold any year TimePoint can): saturate.
  double millis = SecondsBetween(*start, stop) * 1000.0;
  if (millis >= 9.0e18) return INT64_MAX;
  return static_cast<int64_t>(millis);
}

// The API's "duration_seconds": up to now while running, null before the
// start.
Json DurationSeconds(const std::optional<TimePoint>& start, const std::optional<TimePoint>& end) {
  if (!start) return nullptr;
  TimePoint stop = end ? *end : std::chrono::system_clock::now();
  return SecondsBetween(*start, stop);
}

Json BindingsJson(const std::vector<ArtifactBinding>& bindings, RecordView view) {
  Json out = Json::array();
  for (const ArtifactBinding& b : bindings) out.push_back(ArtifactBindingJson(b, view));
  return out;
}

}  // namespace

Json RunRecordJson(const RunRecord& run, RecordView view) {
  Json j = {{"id", run.id},
            {"pipeline", run.pipeline},
            {"pipeline_file", run.pipeline_file},
            {"pipeline_digest", run.pipeline_digest},
            {"git_commit", run.git_commit},
            {"git_dirty", run.git_dirty},
            {"params", run.params},
            {"executor", run.executor},
            {"phase", RunPhaseName(run.phase)},
            {"message", run.message},
            {"resumed_from", run.resumed_from},
            {"created_at", IsoTime(run.created_at)},
            {"started_at", IsoTimeOrNull(run.started_at)},
            {"finished_at", IsoTimeOrNull(run.finished_at)},
            {"host", run.host},
            {"pid", run.pid}};
  if (view == RecordView::kCli) j["duration_ms"] = DurationMillis(run.started_at, run.finished_at);
  return j;
}

Json StepRecordJson(const StepRecord& step, RecordView view) {
  Json j = {{"instance", step.instance},
            {"step", step.step},
            {"index", step.index},
            {"item", step.item},
            {"phase", NodePhaseName(step.phase)},
            {"attempts", step.attempts},
            {"exit_code", step.exit_code},
            {"message", step.message},
            {"log_path", step.log_path},
            {"cache_key", step.cache_key},
            {"cached_from", step.cached_from},
            {"started_at", IsoTimeOrNull(step.started_at)},
            {"finished_at", IsoTimeOrNull(step.finished_at)},
            {"output_params", step.output_params},
            {"metrics", step.metrics},
            {"outputs", BindingsJson(step.outputs, view)},
            {"inputs", BindingsJson(step.inputs, view)}};
  if (view == RecordView::kCli) {
    j["duration_ms"] = DurationMillis(step.started_at, step.finished_at);
  } else {
    j["has_log"] = !step.log_path.empty();
    j["duration_seconds"] = DurationSeconds(step.started_at, step.finished_at);
  }
  return j;
}

Json ArtifactRecordJson(const ArtifactRecord& a) {
  return {{"digest", a.digest}, {"uri", a.uri}, {"type", ArtifactTypeName(a.type)},
          {"size", a.size}, {"is_directory", a.is_directory}, {"properties", a.properties}};
}

Json ArtifactBindingJson(const ArtifactBinding& binding, RecordView view) {
  Json j = ArtifactRecordJson(binding.artifact);
  if (view == RecordView::kCli) j.erase("properties");
  j["name"] = binding.name;
  return j;
}

Json AuditEntryJson(const AuditEntry& e) {
  return {{"id", e.id},         {"at", IsoTime(e.at)},         {"who", e.who},
          {"role", e.role},     {"method", e.method},          {"route", e.route},
          {"run_id", e.run_id}, {"pipeline", e.pipeline},      {"code", e.code}};
}

}  // namespace sluice
