#pragma once
// What every operator's Kubernetes object shares: names, labels, the pod
// template and its main container, per-step `kubernetes:` settings, status
// conditions and pod exit codes. Each operator builds its own object from
// these (operators/container: a batch/v1 Job, read from its Complete / Failed
// conditions; operators/training: a kubeflow.org/v1 TFJob or PyTorchJob, read
// from Succeeded / Failed). Pure functions: no I/O, no clock; golden-file
// tested.
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
//     object: pod                   # container steps: pod | job, else ManifestOptions::object
// Placement comes from the task's Resources (nodeSelector, tolerations). A
// GPU request adds the toleration {key: nvidia.com/gpu, operator: Exists,
// effect: NoSchedule} unless one for that key is given (what Kubernetes'
// ExtendedResourceToleration admission plugin does).
//
// tfjob / pytorchjob config (operators/training/training.h): the same shape
// the local executor runs, so one YAML runs both ways:
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

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/executor.h"
#include "engine/operator.h"
#include "engine/status.h"
#include "executors/kubernetes/api/objects.h"

namespace sluice::operators {

using Json = nlohmann::json;

// The engine's types under the names this header has always used.
using WorkloadKind = KubernetesKind;
using ManifestOptions = KubernetesObjectOptions;

// The kind for an operator type (OperatorRegistry::Global()'s operator);
// kInvalidArgument for a type with no Kubernetes object (the message lists
// the known ones).
Result<WorkloadKind> KindForOperator(const std::string& operator_type);

// The naming and label conventions (executors/kubernetes/api/objects.h),
// under the names operators have always used.
using k8s::DnsPart;
using k8s::ExitFromPods;
using k8s::LabelValue;
using k8s::ObjectName;
using k8s::PodExit;
using k8s::RunSelector;

// The manifest for `task`, built by the operator of task.operator_type in
// OperatorRegistry::Global(). Errors (kInvalidArgument, naming the step): no
// image, an unknown operator type, a malformed tfjob/pytorchjob config, a
// secret env var without a Secret reference.
Result<Json> BuildManifest(const Task& task, const ManifestOptions& options);

// The state of `object`, read by the operator of `operator_type`; not
// finished for an unknown type.
WorkloadState InterpretStatus(const std::string& operator_type, const Json& object);

// The pieces operators build their objects from.

// Requests and limits for `r` ({} when nothing is requested).
Json ResourceRequirements(const Resources& r);
// A per-replica `resources:` override: sluice's {cpu, memory, gpu} or a
// ResourceRequirements verbatim.
Json ReplicaResources(const Json& spec);

// The effective per-task settings: ManifestOptions overridden by the step's
// `kubernetes:` config.
struct PodSettings {
  std::string namespace_;
  std::string service_account, priority_class, queue;
  std::vector<std::string> pull_secrets;
  std::optional<int64_t> ttl;
  Json pod_labels = Json::object(), pod_annotations = Json::object();
  std::string object;  // "pod" | "job": what a container step becomes
};
// Errors (kInvalidArgument, naming the step): a malformed or unknown
// `kubernetes:` setting.
Result<PodSettings> Settings(const Task& task, const ManifestOptions& o);

// The main container: `name`, `image`, `argv`, the task's env plus
// `extra_env` (secrets as secretKeyRef), `resources`, the workdir and the
// workspace mount. Errors: a secret env var without a Secret reference.
Result<Json> Container(const Task& task, const ManifestOptions& o, const std::string& name,
                       const std::string& image, const std::vector<std::string>& argv,
                       const std::map<std::string, std::string>& extra_env,
                       const Json& resources);
// The pod template around `container`: labels, placement, service account,
// pull secrets, the workspace volume.
Json PodTemplate(const Task& task, const ManifestOptions& o, const PodSettings& s, Json container);
// The object's metadata: deterministic name, namespace, labels, annotations.
Json Metadata(const Task& task, const ManifestOptions& o, const PodSettings& s,
              const WorkloadKind& kind);
// activeDeadlineSeconds from the task's timeout, rounded up.
std::optional<int64_t> DeadlineSeconds(const Task& task);
// The task's image, else options.default_image.
std::string Image(const Task& task, const ManifestOptions& o);
// "step "x" has no image: ..."
Status NoImage(const Task& task);

// A bare Pod (`kubernetes.object: pod`): the object that runs a container
// step without a Job.
//
// The Pod is PodTemplate()'s metadata and spec, as a Job would carry them,
// plus what the Job would have added or enforced: the object's name and
// namespace, the queue label (Kueue's pod integration admits a pod that
// carries kueue.x-k8s.io/queue-name through its scheduling gate), the
// sluice annotations, activeDeadlineSeconds on the pod spec, the label
// sluice.dev/object=pod (which the executor's watch and cleanup select on)
// and the annotation sluice.dev/ttl-seconds-after-finished (pods have no
// TTL controller: sluice deletes them itself; docs/kubernetes.md).
Json BarePod(const Task& task, const ManifestOptions& o, const PodSettings& s, Json pod_template);
// How far a bare Pod has got: Succeeded -> kSucceeded; Failed -> kTimedOut
// when the pod's reason is DeadlineExceeded, kError for any other reason of
// the pod's own (Evicted, Preempting, ...: the cluster ended it), else
// kFailed (its container failed), with the pod's reason or the main
// container's terminated reason and message.
WorkloadState BarePodState(const Json& pod, const std::string& container_name);
// True when `object` is a Pod (kind Pod, or a pod spec's containers).
bool IsPod(const Json& object);

// How far an object that ends with a Complete or Failed condition has got
// (a batch/v1 Job, a Trainer TrainJob): Complete -> kSucceeded; Failed ->
// kTimedOut for reason DeadlineExceeded, else kFailed, with the message
// "<kind> failed: <reason>: <message>".
WorkloadState CompleteOrFailedState(const Json& object, const std::string& kind);

// The condition of `type` whose status is "True"; nullptr when none.
const Json* FindCondition(const Json& object, const std::string& type);
// "reason: message" of a condition.
std::string ConditionText(const Json& c);

}  // namespace sluice::operators
