#pragma once
// `sluice import-run`: a finished Argo Workflow compiled by `sluice compile
// --target argo`, read back into sluice's store as a run with its steps,
// attempts, phases, timings and outputs, so that `sluice runs`, `status`,
// `show` and `lineage` work on it.
//
// The mapping relies on what the compiler records (engine/compile/argo.h):
// the Workflow's sluice.dev/pipeline and sluice.dev/pipeline-digest
// annotations, and on each step's template the sluice.dev/step annotation
// (and sluice.dev/inputs, "name=aN ...", naming which input parameter holds
// each declared input). A node is a step instance when its template is the
// step's own template (template name == sluice.dev/step):
//   - a foreach instance's display name "train(1:rf)" gives instance
//     "train[1]", index 1 and item "rf" (the item is parsed as JSON when it
//     is JSON, else kept as a string);
//   - a Retry node is the instance and its Pod children are its attempts
//     (one execution each); a Pod node is one attempt; a DAG node (a
//     tfjob/pytorchjob step with outputs) is one attempt; Skipped and Omitted
//     nodes ran nothing;
//   - phases map one to one (Argo's node phases are sluice's), a memoization
//     hit becomes Cached;
//   - output parameter sluice-metrics is the metrics JSON, sluice-artifact-X
//     the path of output artifact X on the workspace volume, the others are
//     the step's output params.
// Artifacts are paths on the workspace volume as the pods saw them
// (mount + "/runs/<workflow>/..."); ImportedExecution lists them so that the
// caller can digest them where this host sees that volume.

#include <map>
#include <string>
#include <vector>

#include "engine/status.h"
#include "engine/store.h"

namespace sluice::compile {

// An artifact path as a pod saw it.
struct ImportedArtifact {
  std::string name;
  std::string path;
  ArtifactType type = ArtifactType::kOther;
};

// One attempt of one step instance.
struct ImportedExecution {
  ExecutionRecord record;  // id unset; external_id is the Argo node id
  std::vector<ImportedArtifact> inputs;
  std::vector<ImportedArtifact> outputs;  // empty unless the attempt succeeded
};

struct ImportedRun {
  RunRecord run;                        // id = the Workflow's name
  std::vector<StepRecord> steps;        // in the order of their start time
  std::vector<ImportedExecution> executions;
};

// Reads `workflow` (an argoproj.io/v1alpha1 Workflow as the API returns it).
// Errors: kInvalidArgument when it is not a Workflow or was not compiled by
// sluice (no sluice.dev/pipeline annotation), kFailedPrecondition when it has
// not finished (the message names its phase and what to do).
Result<ImportedRun> ImportArgoWorkflow(const Json& workflow);

// An RFC 3339 time as the Kubernetes API writes it ("2026-11-25T18:01:02Z",
// optionally with fractional seconds); nullopt when malformed.
std::optional<TimePoint> ParseKubernetesTime(const std::string& text);

}  // namespace sluice::compile
