#pragma once
// Operators for Kubernetes: a resolved Task (engine/executor.h) becomes the
// manifest of one Kubernetes object, and that object's status becomes a
// TaskOutcome. Pure functions: no I/O, no clock; golden-file tested.
//
//   operator_type   object                      status read from
//   container       batch/v1 Job                Complete / Failed conditions
//   tfjob           kubeflow.org/v1 TFJob       Succeeded / Failed conditions
//   pytorchjob      kubeflow.org/v1 PyTorchJob  Succeeded / Failed conditions
//
// Every object gets:
//   - a deterministic name from (run, instance, attempt): DNS-1123/1035 safe,
//     starting with a letter, at most 63 characters (48 for TFJob/PyTorchJob,
//     whose pods and services append "-<replica>-<index>"), with an 8-hex hash
//     of the raw values when the name had to be changed or truncated;
//   - labels sluice.dev/pipeline, sluice.dev/run, sluice.dev/step,
//     sluice.dev/attempt, app.kubernetes.io/managed-by=sluice (also on the
//     pods), and kueue.x-k8s.io/queue-name when a queue is set;
//   - annotations with the raw run id, pipeline, step and instance;
//   - no retries of its own (Job backoffLimit 0, replica restartPolicy Never,
//     runPolicy.backoffLimit 0): each sluice attempt is a new object;
//   - activeDeadlineSeconds from the task timeout (rounded up to seconds) and
//     ttlSecondsAfterFinished.
//
// Kubernetes-only settings live in the step's config under `kubernetes:`
// (Task::config["kubernetes"]), overriding ManifestOptions:
//   kubernetes:
//     namespace: ml                 # else ManifestOptions::namespace_, else "default"
//     serviceAccountName: trainer
//     priorityClassName: high
//     imagePullSecrets: [regcred]
//     queue: team-a                 # Kueue LocalQueue
//     ttlSecondsAfterFinished: 3600
//     podLabels: {k: v}             # extra pod labels
//     podAnnotations: {k: v}        # extra pod annotations
// Placement comes from the task's Resources (nodeSelector, tolerations). A
// GPU request adds the toleration {key: nvidia.com/gpu, operator: Exists,
// effect: NoSchedule} unless one for that key is given (what Kubernetes'
// ExtendedResourceToleration admission plugin does).
//
// tfjob / pytorchjob config: the same shape the local executor runs
// (operators/training/local_plan.h), so one YAML runs both ways:
//   tfjob:      {replicas: {Chief|Master|Worker|PS|Evaluator: {replicas, command, env,
//                image, resources}}, successPolicy, runPolicy}
//   pytorchjob: {replicas: {Master|Worker: {...}}, nprocPerNode, elasticPolicy, runPolicy}
// Per replica, `image` overrides the step image and `resources` overrides the
// step resources: either sluice's form {cpu: "2", memory: 4Gi, gpu: 1} (values
// passed as Kubernetes quantities, used as requests and limits) or a
// Kubernetes ResourceRequirements {requests: ..., limits: ...} verbatim.
//
// Secrets: every name in Task::secret_env is emitted as a secretKeyRef from
// Task::secret_refs; a secret without a ref is an error. Values are never
// written into a manifest.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/executor.h"
#include "engine/status.h"

namespace sluice::operators {

using Json = nlohmann::json;

// Where a kind of object lives in the API, and how its pods are labelled.
struct WorkloadKind {
  std::string api_version;      // "batch/v1"
  std::string kind;             // "Job"
  std::string plural;           // "jobs"
  std::string pod_name_label;   // pods carry <pod_name_label>=<object name>
  std::string container_name;   // the main container's name ("main", "tensorflow", "pytorch")
  size_t max_name_length = 63;
};

// The kind for an operator type; kInvalidArgument for a type with no
// Kubernetes mapping (the message lists the known ones).
Result<WorkloadKind> KindForOperator(const std::string& operator_type);

// Settings shared by all tasks of an executor (per-step `kubernetes:` config
// overrides the per-task fields).
struct ManifestOptions {
  std::string namespace_;  // "" = "default"
  std::string default_image;  // used when Task::image is empty
  // Shared RWX PersistentVolumeClaim mounted into every pod at
  // workspace_mount_path; "" mounts nothing.
  std::string workspace_pvc;
  std::string workspace_mount_path = "/sluice";
  // When set, every occurrence of this host directory prefix in the task's
  // workdir, argv and env values is rewritten to workspace_mount_path (the
  // PVC is the same storage seen from the sluice host at this path).
  std::string host_workspace_root;
  std::optional<int64_t> ttl_seconds_after_finished = 86400;
  std::string service_account;
  std::string priority_class;
  std::vector<std::string> image_pull_secrets;
  std::string queue;  // Kueue LocalQueue name; "" = none
};

// "s<run>-<instance>-<hash>-a<attempt>"-style deterministic object name; see
// the header comment. Same inputs, same name, always.
std::string ObjectName(const std::string& run_id, const std::string& instance, int attempt,
                       size_t max_length = 63);

// `value` as a valid label value (<= 63 chars of [A-Za-z0-9._-], alphanumeric
// at both ends), with a hash suffix when it had to change; "" stays "".
std::string LabelValue(const std::string& value);

// The label selector matching every object (and pod) of a run.
std::string RunSelector(const std::string& run_id);

// The manifest for `task`. Errors (kInvalidArgument, naming the step): no
// image, an unknown operator type, a malformed tfjob/pytorchjob config, a
// secret env var without a Secret reference.
Result<Json> BuildManifest(const Task& task, const ManifestOptions& options);

// How far an object has got, read from its status.
struct WorkloadState {
  bool finished = false;
  TaskOutcome outcome = TaskOutcome::kError;  // meaningful when finished
  std::string message;                        // the condition's reason: message
};

// Reads Job conditions (Complete; Failed, with reason DeadlineExceeded ->
// kTimedOut) or TFJob/PyTorchJob conditions (Succeeded; Failed) of `object`.
WorkloadState InterpretStatus(const std::string& operator_type, const Json& object);

// From the pods of a finished object: the first non-zero container exit code
// (-1 when none), and a short description of the failing container
// ("pod x container main: exit 1 (Error)").
struct PodExit {
  int exit_code = -1;
  std::string description;
};
PodExit ExitFromPods(const std::vector<Json>& pods);

}  // namespace sluice::operators
