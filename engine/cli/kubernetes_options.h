#pragma once
// The Kubernetes executor's settings, built in one place for `sluice run`
// (resume, rerun) and `sluice serve`: from the same flags, from the
// environment as kubectl reads it, and from the pipeline's `namespace:`.

#include <string>

#include "engine/spec.h"
#include "engine/status.h"
#ifdef SLUICE_CLI_KUBERNETES
#include "executors/kubernetes/kubernetes_executor.h"
#endif

namespace sluice::cli {

// The Kubernetes flags `sluice run` and `sluice serve` share (docs/cli.md,
// docs/server.md).
struct KubernetesFlags {
  std::string kubeconfig;          // --kubeconfig; "" = $KUBECONFIG, ~/.kube/config, in-cluster
  std::string context;             // --context; "" = current-context
  std::string namespace_;          // --namespace; "" = the pipeline's, then the context's
  std::string workspace_pvc;       // --workspace-pvc; "" = none
  std::string workspace_host_dir;  // --workspace-host-dir; "" = the host does not see it
};

// The executor `step` runs on: its own `executor:`, else `default_executor`
// (--executor), else the pipeline's, else "local" (the Runner's rule).
std::string ExecutorOf(const StepSpec& step, const std::string& default_executor,
                       const PipelineSpec& spec);

// True when some step of `spec` (finally steps included) runs on Kubernetes.
bool NeedsKubernetes(const PipelineSpec& spec, const std::string& default_executor);

#ifdef SLUICE_CLI_KUBERNETES
// The executor's settings for a run of `spec` (null: no pipeline yet, e.g.
// `serve` checking its kubeconfig at start). A step's namespace is its
// `kubernetes.namespace`, else --namespace, else the pipeline's
// `namespace:`, else the kubeconfig context's, else "default".
// --workspace-host-dir is made absolute. Errors: kInvalidArgument when
// --workspace-host-dir is given without --workspace-pvc.
Result<KubernetesExecutorOptions> KubernetesOptionsFor(const KubernetesFlags& flags,
                                                       const PipelineSpec* spec);

// A warning when the pods cannot see the store at `state_dir` (the store is
// not under --workspace-host-dir); "" when they can or there is no workspace.
std::string WorkspaceWarning(const KubernetesExecutorOptions& options, const std::string& state_dir);
#endif

}  // namespace sluice::cli
