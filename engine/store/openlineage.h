#pragma once
// OpenLineage export: a run and its step executions as OpenLineage RunEvents
// (spec 2-0-2), so tools users already run (Marquez, DataHub, ...) can ingest
// sluice's lineage.
//
// Mapping:
//   pipeline run   -> job "<pipeline>",           runId = UUID from the run id
//   step attempt   -> job "<pipeline>.<instance>", runId = UUID from execution,
//                     with a ParentRunFacet pointing at the pipeline run
//   artifacts      -> datasets: namespace "sluice", name = artifact URI,
//                     DatasetVersionDatasetFacet = content digest
//   START at start; COMPLETE / FAIL / ABORT at the end (ErrorMessageRunFacet
//   carries the message of a failure).
// UUIDs are derived deterministically (sha256, formatted as version 5), so
// exporting a run twice yields the same ids.

#include <string>
#include <vector>

#include "engine/spec.h"
#include "engine/store.h"

namespace sluice {

struct OpenLineageOptions {
  std::string job_namespace = "sluice";
  std::string producer = "https://github.com/sluice-dev/sluice";
};

// All events for a finished (or running) run: the run's START, one
// START/terminal pair per execution, and the run's terminal event, in time
// order. Inputs and outputs come from each execution's events.
std::vector<Json> BuildOpenLineageEvents(const RunRecord& run,
                                         const std::vector<ExecutionRecord>& executions,
                                         const std::vector<std::vector<ArtifactBinding>>& inputs,
                                         const std::vector<std::vector<ArtifactBinding>>& outputs,
                                         const OpenLineageOptions& options);

// A UUID (version-5 layout) derived from `name`.
std::string DeterministicUuid(const std::string& name);

}  // namespace sluice
