#pragma once
// Compiles a pipeline to Argo Workflows objects, for teams that run Argo and
// deploy through GitOps: `sluice compile FILE --target argo`.
//
// Output: a Workflow; or, when the pipeline has a schedule, a
// WorkflowTemplate plus a CronWorkflow that refers to it.
//
// The mapping (docs/compile.md has the full table):
//   steps + depends/references -> one DAG template, tasks with `depends`
//   when                       -> task `when` (names become Argo variables)
//   foreach                    -> withItems (literal list), withSequence
//                                 (range), withParam (expression); a
//                                 parallelism cap wraps the fan-out in a DAG
//                                 template of its own with `parallelism`
//   retries                    -> retryStrategy {limit, retryPolicy, backoff
//                                 {duration, factor, cap}}
//   timeout                    -> activeDeadlineSeconds (template and run)
//   finally                    -> onExit, a DAG template of the finally steps
//   resources, nodeSelector, tolerations -> the template's container and pod
//   output params / metrics    -> Argo output parameters
//   artifacts                  -> files on a shared RWX workspace volume
//                                 (PVC); their paths travel as output
//                                 parameters, so fan-in of artifacts from a
//                                 foreach works (Argo's own artifacts cannot:
//                                 argoproj/argo-workflows#861); or, with
//                                 ArgoOptions::s3, Argo S3 artifacts (no
//                                 shared volume; container steps only, no
//                                 fan-in from a foreach)
//   tfjob / pytorchjob         -> resource templates creating the CR, with
//                                 success/failure conditions on
//                                 status.conditions
//   cache                      -> memoize (ConfigMap cache), for steps
//                                 without input artifacts; see docs
//   deploy                     -> a DAG of resource templates applying the
//                                 serving operator's Deployment and Services
//                                 (model fetched by an init container from
//                                 the workspace volume), each waiting for
//                                 its rollout
//   traffic-validation         -> the staged rollout as a DAG: per stage a
//                                 resource template scaling the two
//                                 Deployments and a container running
//                                 `sluice-serving validate` on the canary;
//                                 promote, or roll back when a stage fails
// What Argo cannot express is rejected with the feature and the line, never
// dropped silently.
//
// Every template carries the step's identity in annotations
// (sluice.dev/step, sluice.dev/pipeline, sluice.dev/pipeline-digest) so that
// `sluice import-run` can map a finished Workflow back to sluice's store.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/operator.h"
#include "engine/spec.h"
#include "engine/status.h"

namespace sluice::compile {

// The serving operator's Kubernetes objects, for deploy and
// traffic-validation steps: operators/serving/k8s_manifests.h, the same code
// the Kubernetes executor's deploy applies. engine/compile does not link
// operators/serving (engine core <- operators); the caller passes them in,
// e.g. OperatorServingObjects() from engine/compile/serving_objects.h (the
// sluice CLI and the tests). Empty: deploy steps are rejected.
struct ServingObjects {
  // A deploy config (the step's `deploy:` section, executor kubernetes) ->
  // a v1/List of the objects to apply (serving::BuildKubernetesObjects after
  // serving::ParseDeployConfig). Errors name the config field.
  std::function<Result<Json>(const Json& deploy_config)> build;
  // The canary's replicas at share% of total (serving::CanaryReplicasAt).
  std::function<int64_t(int64_t total, double share)> canary_replicas;
  // The merge patch promoting a canary Deployment onto the stable one at
  // total replicas (serving::PromotePatch).
  std::function<Json(const Json& canary_deployment, int64_t total)> promote_patch;

  bool available() const { return build && canary_replicas && promote_patch; }
};

// Artifacts through S3-compatible storage instead of the workspace volume
// (`compile --artifacts s3://bucket/prefix`, or the pipeline's
// `artifacts:`): each container step's declared outputs become Argo S3
// output artifacts, and a step that reads one gets it as an input artifact
// (`from: "{{tasks.X.outputs.artifacts.Y}}"`) at /sluice/inputs/X/Y, the
// path its command is given. The pods share no volume: each works in an
// emptyDir at /sluice/work. Credentials come from a Secret in the
// Workflow's namespace.
struct ArgoS3 {
  std::string endpoint;   // host[:port], without scheme (Argo's form)
  bool insecure = false;  // plain HTTP to the endpoint
  std::string bucket;
  std::string prefix;     // key prefix; "" = none
  std::string region;     // "" = Argo's default
  // Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
  std::string secret = "sluice-s3";
};

struct ArgoOptions {
  std::string namespace_;                          // "" = none (kubectl's current)
  std::string workspace_pvc = "sluice-workspace";  // RWX claim shared by all pods
  std::string workspace_mount = "/sluice";         // where pods see it
  // Where pods see the pipeline's source tree ({{ pipeline.dir }}): the
  // repository baked into the image, or checked out on the workspace.
  std::string source_dir = "/sluice/src";
  std::string service_account;  // default service account for the pods
  std::string default_image;    // for steps without an image
  bool keep_going = false;      // DAG failFast: false
  // Steps left out on purpose (`--exclude-step`), e.g. deploy and
  // traffic-validation steps, which need sluice's serving operator. Each
  // must exist, no kept step may depend on one, and the Workflow names them
  // in the annotation sluice.dev/excluded-steps, so nothing is dropped
  // silently.
  std::vector<std::string> exclude_steps;
  // An image with `sluice-serving` on its PATH: traffic-validation steps
  // run its checks in a pod (`--sluice-image`). Required by them.
  std::string sluice_image;
  // Deploy and traffic-validation steps' objects (see ServingObjects).
  ServingObjects serving;
  // The step types; null = OperatorRegistry::Global().
  const OperatorRegistry* operators = nullptr;
  // Set: artifacts through S3 (see ArgoS3); unset: the workspace volume.
  std::optional<ArgoS3> s3;
};

// One reason the pipeline cannot be compiled, at its location.
struct CompileError {
  SourceLocation loc;
  std::string message;

  // "file:line:col: error: message"
  std::string ToString() const;
};

struct ArgoOutput {
  std::vector<Json> objects;  // in apply order
  std::vector<CompileError> errors;

  bool ok() const { return errors.empty(); }
};

// Compiles `spec` (validated by dsl/). `pipeline_dir` is where the `code`
// files are, to fold their digests into memoization keys.
ArgoOutput CompileToArgo(const PipelineSpec& spec, const std::string& pipeline_dir,
                         const ArgoOptions& options);

// Objects as a multi-document YAML stream ("---" between documents), keys in
// a stable order, so output can be committed and diffed.
std::string ToYaml(const std::vector<Json>& objects);

}  // namespace sluice::compile
