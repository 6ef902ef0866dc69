// RunnerFactory: the RunHandle over the real Runner. Compiled only when this
// tree has engine/runner.cc (SLUICE_HAVE_RUNNER); otherwise the factory is
// empty and the server reports that it cannot start runs.
#include "engine/server/run_manager.h"

namespace sluice::server {

#if SLUICE_HAVE_RUNNER
namespace {

class RunnerHandle : public RunHandle {
 public:
  RunnerHandle(SpecPtr spec, Store* store, ArtifactStore* artifacts, ExecutorRegistry* executors,
               RunOptions options)
      : spec_(std::move(spec)), runner_(*spec_, store, artifacts, executors, std::move(options)) {}
  Result<RunSummary> Run() override { return runner_.Run(); }
  void Cancel() override { runner_.Cancel(); }

 private:
  SpecPtr spec_;  // the Runner borrows it
  Runner runner_;
};

}  // namespace

RunFactory RunnerFactory(Store* store, ArtifactStore* artifacts, ExecutorRegistry* executors) {
  return [=](SpecPtr spec, RunOptions options) -> std::unique_ptr<RunHandle> {
    return std::make_unique<RunnerHandle>(std::move(spec), store, artifacts, executors,
                                          std::move(options));
  };
}
#else
RunFactory RunnerFactory(Store*, ArtifactStore*, ExecutorRegistry*) { return nullptr; }
#endif

}  // namespace sluice::server
