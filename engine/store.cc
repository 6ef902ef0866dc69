#include "engine/store.h"

#include <iterator>

namespace sluice {

namespace {

constexpr const char* kRunPhaseNames[] = {"Pending", "Running", "Succeeded",
                                          "Failed",  "Error",   "Cancelled"};
constexpr const char* kNodePhaseNames[] = {"Pending", "Running",   "Succeeded",
                                           "Failed",  "Error",     "Skipped",
                                           "Omitted", "Cancelled", "Cached"};

}  // namespace

const char* RunPhaseName(RunPhase phase) {
  auto i = static_cast<size_t>(phase);
  return i < std::size(kRunPhaseNames) ? kRunPhaseNames[i] : "Unknown";
}

const char* NodePhaseName(NodePhase phase) {
  auto i = static_cast<size_t>(phase);
  return i < std::size(kNodePhaseNames) ? kNodePhaseNames[i] : "Unknown";
}

std::optional<RunPhase> ParseRunPhase(const std::string& name) {
  for (size_t i = 0; i < std::size(kRunPhaseNames); ++i)
    if (name == kRunPhaseNames[i]) return static_cast<RunPhase>(i);
  return std::nullopt;
}

std::optional<NodePhase> ParseNodePhase(const std::string& name) {
  for (size_t i = 0; i < std::size(kNodePhaseNames); ++i)
    if (name == kNodePhaseNames[i]) return static_cast<NodePhase>(i);
  return std::nullopt;
}

bool IsTerminal(NodePhase phase) {
  return phase != NodePhase::kPending && phase != NodePhase::kRunning;
}

bool IsTerminal(RunPhase phase) {
  return phase != RunPhase::kPending && phase != RunPhase::kRunning;
}

Status Store::Write(const StoreBatch& batch) {
  for (const auto& e : batch.executions) {
    ExecutionRecord record = e.record;
    if (!record.snapshot_text.empty()) {
      record.snapshot = Json::parse(record.snapshot_text, nullptr, /*allow_exceptions=*/false);
      if (!record.snapshot.is_object()) return Status::InvalidArgument("execution snapshot text is not a JSON object");
      record.snapshot_text.clear();
    }
    if (record.id == 0) {
      auto id = StartExecution(record);
      if (!id) return id.error();
      record.id = *id;
    }
    SLUICE_RETURN_IF_ERROR(FinishExecution(record, e.inputs, e.outputs));
  }
  for (const auto& step : batch.steps) SLUICE_RETURN_IF_ERROR(PutStep(step));
  return Status::Ok();
}

Result<CacheHit> Store::FindCacheHit(const std::string& cache_key, std::optional<TimePoint> not_before) {
  auto step = FindCached(cache_key, not_before);
  if (!step) return Error(step.error());
  return CacheHit{std::move(*step), 0};
}

}  // namespace sluice
