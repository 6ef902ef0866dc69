#include "engine/run/shared_cache.h"

#include <chrono>

namespace sluice {

namespace {

int64_t Millis(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

ArtifactType TypeNamed(const std::string& name) {
  for (ArtifactType t : {ArtifactType::kDataset, ArtifactType::kModel, ArtifactType::kMetrics})
    if (name == ArtifactTypeName(t)) return t;
  return ArtifactType::kOther;
}

}  // namespace

std::string SharedCacheEntry(const std::string& key, const StepRecord& step, TimePoint finished) {
  Json outputs = Json::array();
  for (const ArtifactBinding& b : step.outputs) {
    outputs.push_back({{"name", b.name},
                       {"digest", b.artifact.digest},
                       {"type", ArtifactTypeName(b.artifact.type)},
                       {"size", b.artifact.size},
                       {"is_directory", b.artifact.is_directory}});
  }
  Json entry = {{"key", key},
                {"source", step.run_id + "/" + step.instance},
                {"finished_at", Millis(finished)},
                {"exit_code", step.exit_code},
                {"output_params", step.output_params},
                {"metrics", step.metrics},
                {"outputs", outputs}};
  return entry.dump();
}

Result<CacheHit> FindSharedCacheHit(ArtifactStore& artifacts, const std::string& key,
                                    std::optional<TimePoint> not_before) {
  std::string where;
  auto text = artifacts.GetCacheEntry(key, &where);
  if (!text) return Error(text.error());
  const Json entry = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& what) {
    return Error(Status::FailedPrecondition("shared cache entry " + where + " " + what));
  };
  if (!entry.is_object() || entry.value("key", "") != key || !entry.contains("outputs") ||
      !entry["outputs"].is_array() || !entry.value("finished_at", Json()).is_number_integer()) {
    return bad("is not a cache entry for key " + key);
  }
  const TimePoint finished{std::chrono::milliseconds(entry["finished_at"].get<int64_t>())};
  if (not_before && finished < *not_before) {
    return Error(Status::NotFound("shared cache entry " + where + " is older than the step's cache.maxAge"));
  }
  CacheHit hit;
  StepRecord& s = hit.step;
  const std::string source = entry.value("source", "");
  s.run_id = source.substr(0, source.find('/'));
  s.instance = source.find('/') == std::string::npos ? "" : source.substr(source.find('/') + 1);
  s.cached_from = where;
  s.cache_key = key;
  s.exit_code = entry.value("exit_code", 0);
  s.phase = NodePhase::kSucceeded;
  s.finished_at = finished;
  if (entry.contains("output_params") && entry["output_params"].is_object()) s.output_params = entry["output_params"];
  if (entry.contains("metrics") && entry["metrics"].is_object()) s.metrics = entry["metrics"];
  for (const Json& o : entry["outputs"]) {
    if (!o.is_object() || !o.value("name", Json()).is_string() || !o.value("digest", Json()).is_string())
      return bad("has a malformed output");
    ArtifactBinding b;
    b.name = o["name"];
    b.artifact.digest = o["digest"];
    b.artifact.type = TypeNamed(o.value("type", ""));
    b.artifact.size = o.value("size", int64_t{0});
    b.artifact.is_directory = o.value("is_directory", false);
    // Where the store keeps it (the content-addressed layout).
    const std::string hex = b.artifact.digest.substr(b.artifact.digest.find(':') + 1);
    if (!artifacts.Location().empty() && hex.size() > 2)
      b.artifact.uri = artifacts.Location() + "/cas/sha256/" + hex.substr(0, 2) + "/" + hex;
    s.outputs.push_back(std::move(b));
  }
  return hit;
}

}  // namespace sluice
