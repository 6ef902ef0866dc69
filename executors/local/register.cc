#include "executors/local/local_executor.h"
#include "engine/executor.h"

namespace sluice {

// Kept apart from local_executor.cc so that code using the executor alone
// (its tests) does not need the runner.
Status RegisterLocalExecutor(ExecutorRegistry& registry, const LocalExecutorOptions& options) {
  return registry.Register("local", NewLocalExecutor(options));
}

}  // namespace sluice
