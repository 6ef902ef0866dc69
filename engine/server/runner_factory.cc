// RunnerFactory: the RunHandle over the real Runner.
#include "engine/server/run_manager.h"

#include <mutex>
#include <optional>

namespace sluice::server {

namespace {

class RunnerHandle : public RunHandle {
 public:
  RunnerHandle(SpecPtr spec, Store* store, ArtifactStoreFor* artifacts, ExecutorsFactory* executors,
               RunOptions options)
      : spec_(std::move(spec)),
        store_(store),
        artifacts_(artifacts),
        make_executors_(executors),
        options_(std::move(options)) {}

  // Makes this run's executors, then runs it. A Cancel() that came first
  // cancels the Runner as soon as it exists.
  Result<RunSummary> Run() override {
    auto artifacts = (*artifacts_)(*spec_);
    if (!artifacts) return Error(artifacts.error());
    auto executors = (*make_executors_)(*spec_, options_.default_executor);
    if (!executors) return Error(executors.error());
    executors_ = std::move(*executors);
    {
      std::lock_guard lock(mu_);
      runner_.emplace(*spec_, store_, *artifacts, executors_.get(), std::move(options_));
      if (cancelled_) runner_->Cancel();
    }
    return runner_->Run();
  }
  void Cancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    if (runner_) runner_->Cancel();
  }

 private:
  SpecPtr spec_;  // the Runner borrows it
  Store* store_;
  ArtifactStoreFor* artifacts_;
  ExecutorsFactory* make_executors_;
  RunOptions options_;
  // Declared before runner_: the Runner borrows them and goes first.
  std::unique_ptr<ExecutorRegistry> executors_;
  std::mutex mu_;  // guards runner_'s creation against Cancel()
  bool cancelled_ = false;
  std::optional<Runner> runner_;
};

}  // namespace

RunFactory RunnerFactory(Store* store, ArtifactStoreFor artifacts, ExecutorsFactory executors) {
  if (!executors) return nullptr;
  // Shared by the factory's copies and kept alive by them: handles borrow them.
  auto shared = std::make_shared<ExecutorsFactory>(std::move(executors));
  auto stores = std::make_shared<ArtifactStoreFor>(std::move(artifacts));
  return [=](SpecPtr spec, RunOptions options) -> std::unique_ptr<RunHandle> {
    return std::make_unique<RunnerHandle>(std::move(spec), store, stores.get(), shared.get(),
                                          std::move(options));
  };
}

RunFactory RunnerFactory(Store* store, ArtifactStore* artifacts, ExecutorsFactory executors) {
  return RunnerFactory(
      store, [artifacts](const PipelineSpec&) -> Result<ArtifactStore*> { return artifacts; }, std::move(executors));
}

}  // namespace sluice::server
