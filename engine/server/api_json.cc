#include "engine/server/api_json.h"

#include <climits>
#include <cstdint>
#include <utility>

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

std::optional<TimePoint> ParseIsoTime(const std::string& s) {
  // Parsed by hand: date::parse rounds a missing %S field it never read and
  // negates an unset %z offset (undefined behaviour on malformed text).
  size_t pos = 0;
  auto number = [&](size_t width, int* out) {
    if (s.size() - pos < width) return false;
    int value = 0;
    for (size_t i = 0; i < width; ++i) {
      char c = s[pos + i];
      if (c < '0' || c > '9') return false;
      value = value * 10 + (c - '0');
    }
    pos += width;
    *out = value;
    return true;
  };
  auto literal = [&](char c) {
    if (pos >= s.size() || s[pos] != c) return false;
    ++pos;
    return true;
  };
  using namespace std::chrono;
  int year, month, day;
  if (!number(4, &year) || !literal('-') || !number(2, &month) || !literal('-') || !number(2, &day))
    return std::nullopt;
  date::year_month_day ymd{date::year{year}, date::month{static_cast<unsigned>(month)},
                           date::day{static_cast<unsigned>(day)}};
  if (!ymd.ok()) return std::nullopt;
  sys_time<milliseconds> t = date::sys_days(ymd);
  if (pos < s.size()) {
    int hour, minute, second;
    if (!literal('T') || !number(2, &hour) || !literal(':') || !number(2, &minute) ||
        !literal(':') || !number(2, &second) || hour > 23 || minute > 59 || second > 59)
      return std::nullopt;
    t += hours{hour} + minutes{minute} + seconds{second};
    if (literal('.')) {
      int digits = 0, millis = 0;
      for (; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; ++pos, ++digits)
        if (digits < 3) millis = millis * 10 + (s[pos] - '0');
      if (digits == 0) return std::nullopt;
      for (; digits < 3; ++digits) millis *= 10;
      t += milliseconds{millis};
    }
    if (!literal('Z')) {
      int sign = literal('+') ? 1 : literal('-') ? -1 : 0;
      int offset_hours, offset_minutes;
      if (sign == 0 || !number(2, &offset_hours)) return std::nullopt;
      literal(':');
      if (!number(2, &offset_minutes) || offset_hours > 23 || offset_minutes > 59)
        return std::nullopt;
      t -= sign * (hours{offset_hours} + minutes{offset_minutes});
    }
    if (pos != s.size()) return std::nullopt;
  }
  // TimePoint counts nanoseconds in 64 bits: years 1678 to 2261 fit.
  static const sys_time<milliseconds> kMin = ceil<milliseconds>(TimePoint::min());
  static const sys_time<milliseconds> kMax = floor<milliseconds>(TimePoint::max());
  if (t < kMin || t > kMax) return std::nullopt;
  return TimePoint(t);
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

namespace {

// Reads `what`.`key` into `out` when present: a string field must be a JSON
// string, an int field an integer that fits an int. json::value() would
// throw (or, for a large float, convert with undefined behaviour) instead.
Status ReadField(const Json& j, const char* what, const char* key, std::string* out) {
  if (!j.contains(key) || j[key].is_null()) return Status::Ok();
  if (!j[key].is_string())
    return Status::InvalidArgument(std::string(what) + " field '" + key + "' is not a string");
  *out = j[key].get<std::string>();
  return Status::Ok();
}

Status ReadField(const Json& j, const char* what, const char* key, int* out) {
  if (!j.contains(key) || j[key].is_null()) return Status::Ok();
  const Json& v = j[key];
  bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= INT_MAX
              : v.is_number_integer() ? v.get<int64_t>() >= INT_MIN && v.get<int64_t>() <= INT_MAX
                                      : false;
  if (!fits)
    return Status::InvalidArgument(std::string(what) + " field '" + key +
                                   "' is not an integer in the range of an int");
  *out = static_cast<int>(v.get<int64_t>());
  return Status::Ok();
}

}  // namespace

Result<RunRecord> RunFromJson(const Json& j) {
  if (!j.is_object()) return Error(Status::InvalidArgument("run is not a JSON object"));
  RunRecord r;
  std::string phase_name = "Pending";
  for (auto [key, out] : {std::pair{"id", &r.id}, {"pipeline", &r.pipeline},
                          {"pipeline_file", &r.pipeline_file},
                          {"pipeline_digest", &r.pipeline_digest}, {"git_commit", &r.git_commit},
                          {"executor", &r.executor}, {"message", &r.message},
                          {"resumed_from", &r.resumed_from}, {"host", &r.host},
                          {"phase", &phase_name}})
    SLUICE_RETURN_IF_ERROR_RESULT(ReadField(j, "run", key, out));
  if (j.contains("params") && j["params"].is_object()) r.params = j["params"];
  auto phase = ParseRunPhase(phase_name);
  if (!phase) return Error(Status::InvalidArgument("unknown run phase '" + phase_name + "'"));
  r.phase = *phase;
  if (auto t = GetTime(j, "created_at")) r.created_at = *t;
  r.started_at = GetTime(j, "started_at");
  r.finished_at = GetTime(j, "finished_at");
  return r;
}

Result<StepRecord> StepFromJson(const Json& j) {
  if (!j.is_object()) return Error(Status::InvalidArgument("step is not a JSON object"));
  StepRecord s;
  std::string phase_name = "Pending";
  for (auto [key, out] : {std::pair{"instance", &s.instance}, {"step", &s.step},
                          {"message", &s.message}, {"cached_from", &s.cached_from},
                          {"log_path", &s.log_path}, {"phase", &phase_name}})
    SLUICE_RETURN_IF_ERROR_RESULT(ReadField(j, "step", key, out));
  for (auto [key, out] : {std::pair{"index", &s.index}, {"attempts", &s.attempts},
                          {"exit_code", &s.exit_code}})
    SLUICE_RETURN_IF_ERROR_RESULT(ReadField(j, "step", key, out));
  auto phase = ParseNodePhase(phase_name);
  if (!phase) return Error(Status::InvalidArgument("unknown step phase '" + phase_name + "'"));
  s.phase = *phase;
  s.started_at = GetTime(j, "started_at");
  s.finished_at = GetTime(j, "finished_at");
  if (j.contains("metrics") && j["metrics"].is_object()) s.metrics = j["metrics"];
  if (j.contains("output_params") && j["output_params"].is_object()) s.output_params = j["output_params"];
  return s;
}

Result<Json> ParseBodyObject(std::string_view body) {
  if (body.empty()) return Json::object();
  bool too_deep = false;
  // The callback sees each value's depth as it is parsed; discarding keeps
  // the parser from building the deep part at all.
  // `depth` counts the containers around the one that starts.
  Json::parser_callback_t limit = [&too_deep](int depth, Json::parse_event_t event, Json&) {
    bool starts = event == Json::parse_event_t::object_start ||
                  event == Json::parse_event_t::array_start;
    if (starts && depth >= kMaxBodyDepth) too_deep = true;
    return !too_deep;
  };
  Json j = Json::parse(body, limit, /*allow_exceptions=*/false);
  if (too_deep)
    return Error(Status::InvalidArgument("request body nests deeper than " +
                                         std::to_string(kMaxBodyDepth) + " levels"));
  if (j.is_discarded() || !j.is_object())
    return Error(Status::InvalidArgument("request body is not a JSON object"));
  return j;
}

Result<SubmitBody> ParseSubmitBody(std::string_view body) {
  auto j = ParseBodyObject(body);
  if (!j) return Error(j.error());
  SubmitBody out;
  if (j->contains("params")) {
    if (!(*j)["params"].is_object())
      return Error(Status::InvalidArgument("'params' must be an object name -> value"));
    out.params = std::move((*j)["params"]);
  }
  if (j->contains("run_id")) {
    // Checked (ValidateRunId) by RunManager::Submit, the one door for every trigger.
    if (!(*j)["run_id"].is_string())
      return Error(Status::InvalidArgument("'run_id' must be a string"));
    out.run_id = (*j)["run_id"];
  }
  return out;
}

Result<std::vector<std::string>> ParseRerunBody(std::string_view body) {
  auto j = ParseBodyObject(body);
  if (!j) return Error(j.error());
  std::vector<std::string> from;
  const Json& value = j->value("from", Json::array());
  if (value.is_string()) {
    from.push_back(value);
  } else if (value.is_array()) {
    for (const auto& f : value)
      if (f.is_string()) from.push_back(f);
  }
  if (from.empty())
    return Error(Status::InvalidArgument("rerun needs 'from': a step name or a list of them"));
  return from;
}

}  // namespace sluice::server
