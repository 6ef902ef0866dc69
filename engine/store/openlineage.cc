#include "engine/store/openlineage.h"

#include <algorithm>
#include <cstdio>

#include "engine/sha256.h"
#include "engine/store/record_json.h"
#include "engine/time_format.h"

namespace sluice {
namespace {

constexpr const char* kSchemaUrl = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
constexpr const char* kParentFacetUrl =
    "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
constexpr const char* kVersionFacetUrl =
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet";
constexpr const char* kErrorFacetUrl =
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
constexpr const char* kJobTypeFacetUrl =
    "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet";

Json Dataset(const ArtifactBinding& b, const OpenLineageOptions& options) {
  Json facets = Json::object();
  facets["version"] = {{"_producer", options.producer},
                       {"_schemaURL", kVersionFacetUrl},
                       {"datasetVersion", b.artifact.digest}};
  return {{"namespace", options.job_namespace},
          {"name", b.artifact.uri.empty() ? b.artifact.digest : b.artifact.uri},
          {"facets", facets}};
}

Json JobTypeFacet(const char* job_type, const OpenLineageOptions& options) {
  return {{"_producer", options.producer},
          {"_schemaURL", kJobTypeFacetUrl},
          {"processingType", "BATCH"},
          {"integration", "SLUICE"},
          {"jobType", job_type}};
}

const char* TerminalEventType(const std::string& outcome) {
  if (outcome == "Succeeded" || outcome == "Cached") return "COMPLETE";
  if (outcome == "Cancelled") return "ABORT";
  if (outcome == "Running") return "RUNNING";
  return "FAIL";
}

}  // namespace

std::string DeterministicUuid(const std::string& name) {
  std::string hex = Sha256Hex(name);
  // Version 5 layout: xxxxxxxx-xxxx-5xxx-yxxx-xxxxxxxxxxxx, y in 8..b.
  hex[12] = '5';
  const char variant[] = "89ab";
  hex[16] = variant[std::stoi(hex.substr(16, 1), nullptr, 16) & 3];
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

std::vector<Json> BuildOpenLineageEvents(const RunRecord& run,
                                         const std::vector<ExecutionRecord>& executions,
                                         const std::vector<std::vector<ArtifactBinding>>& inputs,
                                         const std::vector<std::vector<ArtifactBinding>>& outputs,
                                         const OpenLineageOptions& options) {
  struct Timed {
    TimePoint at;
    int order;  // keeps START before terminal events at equal times
    Json event;
  };
  std::vector<Timed> events;
  const std::string run_uuid = DeterministicUuid("run:" + run.id);
  const Json run_job = {{"namespace", options.job_namespace},
                        {"name", run.pipeline},
                        {"facets", {{"jobType", JobTypeFacet("DAG", options)}}}};

  auto base = [&](const char* type, TimePoint at) {
    return Json{{"eventType", type},
                {"eventTime", IsoTime(at)},
                {"producer", options.producer},
                {"schemaURL", kSchemaUrl},
                {"inputs", Json::array()},
                {"outputs", Json::array()}};
  };

  TimePoint run_start = run.started_at.value_or(run.created_at);
  Json start = base("START", run_start);
  start["run"] = {{"runId", run_uuid}, {"facets", Json::object()}};
  start["job"] = run_job;
  events.push_back({run_start, 0, std::move(start)});

  for (size_t i = 0; i < executions.size(); ++i) {
    const ExecutionRecord& e = executions[i];
    const std::string uuid = DeterministicUuid("execution:" + run.id + ":" + std::to_string(e.id));
    Json parent = {{"_producer", options.producer},
                   {"_schemaURL", kParentFacetUrl},
                   {"run", {{"runId", run_uuid}}},
                   {"job", {{"namespace", options.job_namespace}, {"name", run.pipeline}}}};
    Json job = {{"namespace", options.job_namespace},
                {"name", run.pipeline + "." + e.instance},
                {"facets", {{"jobType", JobTypeFacet("TASK", options)}}}};
    Json in = Json::array(), out = Json::array();
    if (i < inputs.size())
      for (const auto& b : inputs[i]) in.push_back(Dataset(b, options));
    if (i < outputs.size())
      for (const auto& b : outputs[i]) out.push_back(Dataset(b, options));

    Json s = base("START", e.started_at);
    s["run"] = {{"runId", uuid}, {"facets", {{"parent", parent}}}};
    s["job"] = job;
    s["inputs"] = in;
    events.push_back({e.started_at, 1, std::move(s)});

    if (!e.finished_at) continue;
    Json end = base(TerminalEventType(e.outcome), *e.finished_at);
    Json facets = {{"parent", parent}};
    if (std::string(TerminalEventType(e.outcome)) == "FAIL")
      facets["errorMessage"] = {{"_producer", options.producer},
                                {"_schemaURL", kErrorFacetUrl},
                                {"message", e.message.empty() ? e.outcome : e.message},
                                {"programmingLanguage", "process"}};
    end["run"] = {{"runId", uuid}, {"facets", facets}};
    end["job"] = job;
    end["inputs"] = in;
    end["outputs"] = out;
    events.push_back({*e.finished_at, 2, std::move(end)});
  }

  if (run.finished_at) {
    const char* type = run.phase == RunPhase::kSucceeded   ? "COMPLETE"
                       : run.phase == RunPhase::kCancelled ? "ABORT"
                                                           : "FAIL";
    Json end = base(type, *run.finished_at);
    Json facets = Json::object();
    if (std::string(type) == "FAIL")
      facets["errorMessage"] = {{"_producer", options.producer},
                                {"_schemaURL", kErrorFacetUrl},
                                {"message", run.message.empty() ? RunPhaseName(run.phase) : run.message},
                                {"programmingLanguage", "process"}};
    end["run"] = {{"runId", run_uuid}, {"facets", facets}};
    end["job"] = run_job;
    events.push_back({*run.finished_at, 3, std::move(end)});
  }
  std::stable_sort(events.begin(), events.end(), [](const Timed& a, const Timed& b) {
    if (a.at != b.at) return a.at < b.at;
    return a.order < b.order;
  });
  std::vector<Json> result;
  result.reserve(events.size());
  for (auto& t : events) result.push_back(std::move(t.event));
  return result;
}

}  // namespace sluice
