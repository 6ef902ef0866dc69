#pragma once
// Step types. An Operator owns everything that differs between the types a
// step can have (`type: container`, `tfjob`, `pytorchjob`, `deploy`,
// `traffic-validation`): its config section and the rules checked on it at
// lint time, the outputs every step of the type writes, whether its results
// may be reused from the cache, the processes that run it on this machine,
// and the Kubernetes object that runs it on a cluster and how to read that
// object's status. The rest of sluice asks the OperatorRegistry and never
// switches on a type name, so a new step type is one folder under operators/
// and one line in operators/builtin.cc (docs/architecture.md).
//
// The shape follows Envoy's typed factories (envoy/config/typed_config.h):
// an interface per extension point, a registry keyed by name, and explicit
// registration by the program (main) before anything reads a pipeline.
//
// Thread-safety: operators are immutable once registered; every method is
// const and may be called from any thread. A registry is filled before use
// and read-only afterwards.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/executor.h"
#include "engine/spec.h"
#include "engine/status.h"

namespace sluice {

// A mistake in a step's config section, found at lint time. `path` names the
// offending value below the section as object keys and array indexes
// ({"replicas", "Worker", "replicas"}); empty means the section itself. dsl/
// turns it into file:line:col.
struct ConfigProblem {
  std::vector<std::string> path;
  std::string message;
};

// One process of a task run on this machine (a container step's only
// process, or one replica of a tfjob/pytorchjob).
struct LocalProcess {
  std::string type;  // lower-case: "main" for a single process, else "chief", "worker", ...
  int index = 0;
  std::vector<std::string> argv;           // never empty
  std::map<std::string, std::string> env;  // task env plus the replica's contract

  // "worker-1"; "main" for a single process.
  std::string Name() const;
};

// What to start for a task on this machine, and when it has succeeded.
struct LocalPlan {
  // One per replica; a single-process task has one, "main".
  std::vector<LocalProcess> replicas;
  // Indexes into `replicas` that must all exit 0 for the task to succeed;
  // any process exiting non-zero fails it.
  std::vector<size_t> success_set;
  bool distributed = false;  // several cooperating processes (tfjob/pytorchjob)
};

// Returns a free TCP port on the loopback interface, or an error.
using PortAllocator = std::function<Result<int>()>;

// Where a kind of Kubernetes object lives in the API, and how its pods are
// labelled. An empty `plural` from Operator::Kind() means the type runs
// objects of any kind (`type: resource`): Operator::KindOf() reads each
// object's own.
struct KubernetesKind {
  std::string api_version;      // "batch/v1"
  std::string kind;             // "Job"
  std::string plural;           // "jobs"
  std::string pod_name_label;   // pods carry <pod_name_label>=<object name>; "" = pods unknown
  std::string container_name;   // the main container's name ("main", "tensorflow", "pytorch")
  size_t max_name_length = 63;
};

// Object storage instead of a shared volume: a task whose Task::files are
// set runs through sluice-launcher (engine/launch.h), placed into its pod by
// an init container, which moves its inputs, code and outputs through the
// bucket (docs/kubernetes.md).
struct KubernetesObjectStorage {
  std::string url;       // "s3://bucket/prefix"; "" = off
  std::string endpoint;  // as the pods reach it; "" = the launcher's environment
  std::string region;    // "" = the launcher's environment
  // The Secret whose keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY become
  // the launcher's credentials (secretKeyRef: never in a manifest).
  std::string credentials_secret = "sluice-s3";
  // The image holding the launcher (the CLI's default: the sluice image of
  // its version), and the launcher's path in it.
  std::string launcher_image;
  std::string launcher_path = "/usr/local/bin/sluice-launcher";
};

// Settings shared by all objects of one executor or compile (a step's
// `kubernetes:` config overrides the per-object fields; docs/kubernetes.md).
struct KubernetesObjectOptions {
  std::string namespace_;     // "" = "default"
  std::string default_image;  // used when Task::image is empty
  // What a `type: container` step becomes when its `kubernetes.object` does
  // not say: "pod" (sluice creates and watches the Pod itself) or "job" (a
  // batch/v1 Job; its controller creates the Pod). docs/kubernetes.md.
  std::string object = "pod";
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
  KubernetesObjectStorage object_storage;
};

// How far a Kubernetes object has got, read from its status.
struct WorkloadState {
  bool finished = false;
  TaskOutcome outcome = TaskOutcome::kError;  // meaningful when finished
  std::string message;                        // the condition's reason: message
};

class Operator {
 public:
  virtual ~Operator() = default;

  // The step type, as written after `type:` ("tfjob").
  virtual std::string_view Name() const = 0;

  // The step key that holds this type's configuration ("tfjob", "deploy",
  // "validation"); "" when the type has none.
  virtual std::string_view SectionKey() const { return {}; }

  // True when a step of this type must give `command` (its argv).
  virtual bool RequiresCommand() const { return false; }

  // Lint: the mistakes in `step`'s config section (StepSpec::config, without
  // its `kubernetes:` part), with where they are. Empty when there are none.
  virtual std::vector<ConfigProblem> CheckConfig(const StepSpec& step) const { return {}; }

  // Lint: declares on `step` the outputs every step of this type writes
  // (a deploy step's endpoint, ...), so later steps can reference them and
  // the runner collects them like any step's; `at` is the step's location.
  virtual void AddFixedOutputs(StepSpec* step, const SourceLocation& at) const {}

  // False when a step of this type acts on the world (shifts a service's
  // traffic, ...): it is never a cache hit and always runs.
  virtual bool Cacheable() const { return true; }

  // True when a step of this type runs a program of the operator's own: the
  // run loop renders the step's config section and runs
  // RunOptions::operator_commands[Name()] + ["--config", <JSON>, "--out", "."]
  // as a container task, the way Argo and KFP run their built-in steps as a
  // launcher in a container (docs/deploy.md). Such an operator has no local
  // plan and no Kubernetes kind of its own.
  virtual bool RunsOperatorProgram() const { return false; }

  // True when the strings of the step's config section are templates
  // (`{{ params.x }}`), rendered in the run's scope for each attempt into
  // Task::config (a `type: resource` manifest). Otherwise Task::config is
  // the section as written.
  virtual bool RendersConfig() const { return false; }

  // True when a step of this type runs only on Kubernetes (its object is
  // one only a cluster can run): LocalOperator() refuses it, and a run
  // refuses such a step on the local executor before anything starts.
  virtual bool KubernetesOnly() const { return false; }

  // The processes that run `task` on this machine, ports from `ports`.
  // Errors: kInvalidArgument for a malformed config or an empty command (the
  // message names the key); whatever `ports` returns.
  virtual Result<LocalPlan> PlanLocal(const Task& task, const PortAllocator& ports) const;

  // The kind of Kubernetes object that runs a step of this type; nullopt
  // when the type runs as a container task (RunsOperatorProgram()).
  virtual std::optional<KubernetesKind> Kind() const { return std::nullopt; }

  // The object that runs `task` on a cluster. Errors (kInvalidArgument,
  // naming the step): no image, a malformed config, a secret env var without
  // a Secret reference.
  virtual Result<Json> KubernetesObject(const Task& task,
                                        const KubernetesObjectOptions& options) const;

  // The kind of `object`, one that KubernetesObject() built: Kind() unless
  // the type runs objects of any kind. nullopt when it has none.
  virtual std::optional<KubernetesKind> KindOf(const Json& object) const { return Kind(); }

  // How far `object` (of Kind()) has got.
  virtual WorkloadState ReadStatus(const Json& object) const { return {}; }

  // For `sluice compile`: Argo runs a step whose Kind() is not a batch/v1
  // Job as a resource template over KubernetesObject(); these are its
  // successCondition and failureCondition, label selectors over the
  // object's status paths (Argo cannot select an entry of
  // status.conditions). Empty strings when the kind has none.
  struct ArgoConditions {
    std::string success;
    std::string failure;
    // Why Argo cannot tell when such an object ends (its end is a status
    // condition, which a label selector cannot select): compile refuses the
    // step with this reason. "" = the conditions above say it.
    std::string unsupported;
  };
  virtual ArgoConditions ArgoResourceConditions(const Json& object) const { return {}; }
};

using OperatorPtr = std::unique_ptr<Operator>;

// Operators by type name. Names and section keys register once.
class OperatorRegistry {
 public:
  // Fails with kAlreadyExists when the name or the section key is taken.
  Status Register(OperatorPtr op);

  // nullptr when unknown.
  const Operator* Find(std::string_view type) const;
  // The operator whose SectionKey() is `key`; nullptr when none.
  const Operator* FindBySection(std::string_view key) const;
  // Type names in registration order.
  std::vector<std::string> Names() const;
  // Every operator, in registration order.
  std::vector<const Operator*> All() const;
  bool empty() const { return operators_.empty(); }

  // The registry of this process. Programs fill it in main()
  // (operators/builtin.h) before they read a pipeline; the loaders,
  // executors and compilers use it unless given another one.
  static OperatorRegistry& Global();
  // `registry` when given, else Global(): the rule of every `operators`
  // option (dsl LoadOptions, RunOptions, the executors' and compilers'
  // options).
  static const OperatorRegistry& OrGlobal(const OperatorRegistry* registry) {
    return registry ? *registry : Global();
  }

 private:
  std::vector<OperatorPtr> operators_;
};

// The operator that runs tasks of `type` on this machine ("" means
// container): one that does not RunsOperatorProgram(). Otherwise
// kInvalidArgument "the local executor cannot run steps of type 'x'; it runs
// container, tfjob and pytorchjob steps", or for a KubernetesOnly() type
// "steps of type 'x' run only on Kubernetes: run with --executor kubernetes
// (or set executor: kubernetes on the step)".
Result<const Operator*> LocalOperator(const OperatorRegistry& registry, std::string_view type);

// The operator that runs tasks of `type` on Kubernetes: one with a Kind().
// Otherwise kInvalidArgument "step type "x" cannot run on Kubernetes (known:
// container, tfjob, pytorchjob)".
Result<const Operator*> KubernetesOperator(const OperatorRegistry& registry, std::string_view type);

// The operator whose objects are of the API resource `plural` ("jobs"), for
// reading the status of an object before its task is known; for a plural no
// type claims, the type that runs objects of any kind (Kind()'s plural
// empty); nullptr when there is none.
const Operator* OperatorForResource(const OperatorRegistry& registry, std::string_view plural);

}  // namespace sluice
