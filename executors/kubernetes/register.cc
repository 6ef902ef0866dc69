#include "engine/executor.h"
#include "executors/kubernetes/kubernetes_executor.h"

namespace sluice {

// Kept apart from kubernetes_executor.cc so that code using the executor
// alone (its tests) does not need the runner.
Status RegisterKubernetesExecutor(ExecutorRegistry& registry,
                                  const KubernetesExecutorOptions& options) {
  auto executor = NewKubernetesExecutor(options);
  if (!executor) return executor.error();
  return registry.Register("kubernetes", std::move(*executor));
}

}  // namespace sluice
