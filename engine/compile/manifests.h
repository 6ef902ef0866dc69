#pragma once
// `sluice compile FILE --target manifests` and `sluice run --dry-run
// --executor kubernetes`: the Kubernetes objects a run would create, for
// review and GitOps, built by the Kubernetes executor's own code path
// (KubernetesDryRun) from the same Tasks the runner would start.
//
// Values that exist only at run time (other steps' outputs, the run id) are
// rendered as placeholders "<steps.prepare.outputs.artifacts.dataset>".
// A foreach over a literal list, a range or a parameter expands to one object
// per item; a foreach over another step's output is one object with
// item "<item>". Dependencies are annotations: sluice.dev/depends-on
// (comma-separated step names), sluice.dev/when (the condition, unevaluated).
// Excluded steps are listed in annotation sluice.dev/excluded-steps of every
// object.

#include <string>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"
#include "executors/kubernetes/kubernetes_executor.h"

namespace sluice::compile {

struct ManifestsOptions {
  KubernetesExecutorOptions executor;  // manifests.* settings (namespace, PVC, ...)
  std::string run_id = "<run.id>";     // run id used in names and labels
  std::string pipeline_dir;            // what {{ pipeline.dir }} renders to
  // Steps left out on purpose (`--exclude-step`, e.g. deploy and
  // traffic-validation steps, whose objects the serving operator creates at
  // run time). Each must exist and no kept step may depend on one.
  std::vector<std::string> exclude_steps;
};

// The objects, in topological order. `params` are bound values
// (dsl::BindParams). Errors: kInvalidArgument naming the step and the
// template that cannot be rendered, an excluded step that does not exist or
// that a kept step depends on, or the executor's manifest errors.
Result<std::vector<Json>> CompileToManifests(const PipelineSpec& spec, const Json& params,
                                             const ManifestsOptions& options);

}  // namespace sluice::compile
