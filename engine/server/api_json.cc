#include "engine/server/api_json.h"

#include <sstream>

#include <date/date.h>

namespace sluice::server {
namespace {

Json OptTime(const std::optional<TimePoint>& t) { return t ? Json(IsoTime(*t)) : Json(nullptr); }

std::optional<TimePoint> GetTime(const Json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) return std::nullopt;
  return ParseIsoTime(j[key].get<std::string>());
}

Json BindingsJson(const std::vector<ArtifactBinding>& bindings) {
  Json out = Json::array();
  for (const auto& b : bindings) {
    Json j = ArtifactToJson(b.artifact);
    j["name"] = b.name;
    out.push_back(j);
  }
  return out;
}

}  // namespace

std::string IsoTime(TimePoint t) {
  return date::format("%FT%TZ", std::chrono::floor<std::chrono::milliseconds>(t));
}

std::optional<TimePoint> ParseIsoTime(const std::string& s) {
  for (const char* fmt : {"%FT%TZ", "%FT%T%Ez", "%FT%T%z", "%F"}) {
    std::istringstream in(s);
    std::chrono::sys_time<std::chrono::milliseconds> t;
    in >> date::parse(fmt, t);
    if (!in.fail() && in.peek() == std::char_traits<char>::eof()) return TimePoint(t);
  }
  return std::nullopt;
}

Json ArtifactToJson(const ArtifactRecord& a) {
  return {{"digest", a.digest}, {"uri", a.uri}, {"type", ArtifactTypeName(a.type)},
          {"size", a.size}, {"is_directory", a.is_directory}, {"properties", a.properties}};
}

Json RunToJson(const RunRecord& r) {
  return {{"id", r.id}, {"pipeline", r.pipeline}, {"pipeline_file", r.pipeline_file},
          {"pipeline_digest", r.pipeline_digest}, {"git_commit", r.git_commit},
          {"git_dirty", r.git_dirty}, {"params", r.params}, {"executor", r.executor},
          {"phase", RunPhaseName(r.phase)}, {"message", r.message},
          {"resumed_from", r.resumed_from}, {"created_at", IsoTime(r.created_at)},
          {"started_at", OptTime(r.started_at)}, {"finished_at", OptTime(r.finished_at)},
          {"host", r.host}, {"pid", r.pid}};
}

Json StepToJson(const StepRecord& s) {
  Json j = {{"instance", s.instance}, {"step", s.step}, {"index", s.index}, {"item", s.item},
            {"phase", NodePhaseName(s.phase)}, {"attempts", s.attempts},
            {"exit_code", s.exit_code}, {"message", s.message}, {"cache_key", s.cache_key},
            {"cached_from", s.cached_from}, {"started_at", OptTime(s.started_at)},
            {"finished_at", OptTime(s.finished_at)}, {"output_params", s.output_params},
            {"metrics", s.metrics}, {"outputs", BindingsJson(s.outputs)},
            {"inputs", BindingsJson(s.inputs)}, {"has_log", !s.log_path.empty()},
            {"log_path", s.log_path}};
  if (s.started_at) {
    TimePoint end = s.finished_at ? *s.finished_at : std::chrono::system_clock::now();
    j["duration_seconds"] = std::chrono::duration<double>(end - *s.started_at).count();
  } else {
    j["duration_seconds"] = nullptr;
  }
  return j;
}

Result<RunRecord> RunFromJson(const Json& j) {
  if (!j.is_object()) return Error(Status::InvalidArgument("run is not a JSON object"));
  RunRecord r;
  r.id = j.value("id", "");
  r.pipeline = j.value("pipeline", "");
  r.pipeline_file = j.value("pipeline_file", "");
  r.pipeline_digest = j.value("pipeline_digest", "");
  r.git_commit = j.value("git_commit", "");
  r.executor = j.value("executor", "");
  r.message = j.value("message", "");
  r.resumed_from = j.value("resumed_from", "");
  r.host = j.value("host", "");
  if (j.contains("params") && j["params"].is_object()) r.params = j["params"];
  auto phase = ParseRunPhase(j.value("phase", "Pending"));
  if (!phase) return Error(Status::InvalidArgument("unknown run phase '" + j.value("phase", "") + "'"));
  r.phase = *phase;
  if (auto t = GetTime(j, "created_at")) r.created_at = *t;
  r.started_at = GetTime(j, "started_at");
  r.finished_at = GetTime(j, "finished_at");
  return r;
}

Result<StepRecord> StepFromJson(const Json& j) {
  if (!j.is_object()) return Error(Status::InvalidArgument("step is not a JSON object"));
  StepRecord s;
  s.instance = j.value("instance", "");
  s.step = j.value("step", "");
  s.index = j.value("index", -1);
  s.attempts = j.value("attempts", 0);
  s.exit_code = j.value("exit_code", -1);
  s.message = j.value("message", "");
  s.cached_from = j.value("cached_from", "");
  s.log_path = j.value("log_path", "");
  auto phase = ParseNodePhase(j.value("phase", "Pending"));
  if (!phase) return Error(Status::InvalidArgument("unknown step phase '" + j.value("phase", "") + "'"));
  s.phase = *phase;
  s.started_at = GetTime(j, "started_at");
  s.finished_at = GetTime(j, "finished_at");
  if (j.contains("metrics") && j["metrics"].is_object()) s.metrics = j["metrics"];
  if (j.contains("output_params") && j["output_params"].is_object()) s.output_params = j["output_params"];
  return s;
}

}  // namespace sluice::server
