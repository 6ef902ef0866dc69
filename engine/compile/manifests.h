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
//
// Deploy steps: the Deployment(s) and Service(s) the Kubernetes executor's
// deploy applies, built by the serving operator's own code
// (ManifestsOptions::serving, e.g. OperatorServingObjects()): mode canary ->
// Deployment <service>-canary, Service <service>, Service <service>-canary;
// mode replace -> Deployment <service>-stable, Service <service>. No cluster
// state is read at compile time, so the objects are those of a deploy that
// finds no state to adapt to: at run time a canary deploy with no stable
// Deployment beside it is deployed as stable at 100% instead, and one with a
// stable Deployment also scales that one down (a merge patch of a live
// object, not an object of its own: annotation sluice.dev/scales-stable on
// the canary Deployment says to how many replicas). The model's digest is a
// placeholder "<MODEL.sha256>" (e.g.
// "<steps.select.outputs.artifacts.best_model.sha256>") unless the config
// gives a literal model_digest. The objects carry the step's annotations and
// labels like the Jobs; a deploy step's foreach is rejected.
//
// Traffic-validation steps create no object on Kubernetes (their controller
// runs on the host and acts on the deploy's objects): every object names them
// in annotation sluice.dev/host-steps, so none is dropped silently.

#include <functional>
#include <string>
#include <vector>

#include "engine/compile/argo.h"
#include "engine/executor.h"
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
  // The serving operator's objects for deploy steps (the seam of
  // `--target argo`, engine/compile/argo.h). Empty: deploy steps are
  // rejected, naming the step's line.
  ServingObjects serving;
};

// The objects, in topological order. `params` are bound values
// (dsl::BindParams). Errors: kInvalidArgument at the step's file:line:col
// naming the step and the template that cannot be rendered, an excluded step
// that does not exist or that a kept step depends on, a deploy step that
// cannot be built (the serving operator's config errors, no `serving`, a
// foreach), or the executor's manifest errors.
Result<std::vector<Json>> CompileToManifests(const PipelineSpec& spec, const Json& params,
                                             const ManifestsOptions& options);

}  // namespace sluice::compile
