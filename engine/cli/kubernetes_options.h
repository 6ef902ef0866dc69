#pragma once
// The Kubernetes executor's settings, built in one place for `sluice run`
// (resume, rerun) and `sluice serve`: from the same flags, from the
// environment as kubectl reads it, and from the pipeline's `namespace:`.

#include <map>
#include <string>
#include <vector>

#include "engine/run/runner.h"
#include "engine/spec.h"
#include "engine/status.h"
#include "executors/kubernetes/kubernetes_executor.h"

namespace sluice::cli {

// The Kubernetes flags `sluice run` and `sluice serve` share (docs/cli.md,
// docs/server.md).
struct KubernetesFlags {
  std::string kubeconfig;          // --kubeconfig; "" = $KUBECONFIG, ~/.kube/config, in-cluster
  std::string context;             // --context; "" = current-context
  std::string namespace_;          // --namespace; "" = the pipeline's, then the context's
  std::string workspace_pvc;       // --workspace-pvc; "" = none
  std::string workspace_host_dir;  // --workspace-host-dir; "" = the host does not see it
  // Object storage between pods: an s3:// --artifacts makes every
  // Kubernetes step run through sluice-launcher (launcher_pod.h).
  std::string artifacts;           // --artifacts; "" or a local store = none
  std::string artifacts_endpoint;  // --artifacts-endpoint; "" = $SLUICE_S3_ENDPOINT
  std::string launcher_image;      // --launcher-image; "" = ghcr.io/sluice-dev/sluice:<version>
};

// The executor `step` runs on: its own `executor:`, else `default_executor`
// (--executor), else the pipeline's, else "local" (the Runner's rule).
std::string ExecutorOf(const StepSpec& step, const std::string& default_executor,
                       const PipelineSpec& spec);

// True when some step of `spec` (finally steps included) runs on Kubernetes.
bool NeedsKubernetes(const PipelineSpec& spec, const std::string& default_executor);

// Steps in flight at once when every step runs on Kubernetes and -j is not
// given (the cluster's scheduler and quotas decide what actually runs).
inline constexpr int kKubernetesParallelism = 256;

// Which of this host's limits the user set (--cpus, --memory, --gpus, -j):
// PrepareRunForKubernetes keeps those as given.
struct HostLimitFlags {
  bool cpus = false;
  bool memory = false;
  bool gpus = false;
  bool parallelism = false;
};

// Prepares a run of `spec` for where its steps run, the same way for
// `sluice run` (resume, rerun) and every run of `sluice serve`. Call it once
// `options` holds the run's default_executor, operator_commands, budgets and
// parallelism; it changes `spec` and `options` in place (under serve the spec
// is shared between runs: pass a copy). Two things:
//  1. Deploy and traffic-validation steps (the types in
//     options.operator_commands) are controllers: their process
//     (sluice-serving) runs on this host and acts on the cluster itself; as a
//     Job it would find neither its binary nor the store in the pod. So such
//     a step that would run on Kubernetes runs here instead (executor
//     "local"), with `executor: kubernetes` and the run's namespace
//     (flags.namespace_, else the pipeline's), kubeconfig and context in its
//     config unless the config names them; a deploy's `serve.image` defaults
//     to the step's image.
//  2. The budgets are this machine's. When (after 1.) every step runs on
//     Kubernetes the cluster's scheduler places the pods, so this host's CPU,
//     memory and GPU budgets become unbounded and parallelism becomes
//     kKubernetesParallelism, except those in `given`. A mixed pipeline
//     keeps the host's budgets for all its steps (the plan budgets a run,
//     not an executor).
// Never fails: a config that is not an object is left alone.
void PrepareRunForKubernetes(PipelineSpec& spec, const KubernetesFlags& flags,
                             const HostLimitFlags& given, RunOptions& options);

// Refuses a run whose steps on Kubernetes pass files (declare inputs,
// output artifacts, output params or a metrics file) when the flags give
// them no way between pods: neither an s3:// --artifacts nor
// --workspace-pvc. Checked before any object is created. Errors:
// kInvalidArgument naming the first such step, what it passes and both
// options (docs/kubernetes.md).
Status CheckFilesCanMove(const PipelineSpec& spec, const KubernetesFlags& flags,
                         const std::string& default_executor);

// The executor's settings for a run of `spec` (null: no pipeline yet, e.g.
// `serve` checking its kubeconfig at start). A step's namespace is its
// `kubernetes.namespace`, else --namespace, else the pipeline's
// `namespace:`, else the kubeconfig context's, else "default".
// --workspace-host-dir is made absolute. An s3:// --artifacts sets
// manifests.object_storage (endpoint --artifacts-endpoint, else
// $SLUICE_S3_ENDPOINT; region $SLUICE_S3_REGION); it cannot be combined
// with --workspace-pvc (kInvalidArgument). Errors: kInvalidArgument when
// --workspace-host-dir is given without --workspace-pvc.
Result<KubernetesExecutorOptions> KubernetesOptionsFor(const KubernetesFlags& flags,
                                                       const PipelineSpec* spec);

// A warning when the pods cannot see the store at `state_dir` (the store is
// not under --workspace-host-dir); "" when they can or there is no workspace.
std::string WorkspaceWarning(const KubernetesExecutorOptions& options, const std::string& state_dir);

}  // namespace sluice::cli
