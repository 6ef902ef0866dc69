// RunManager preparing each served run as `sluice run` prepares its own, with
// the preparation `sluice serve` passes (engine/cli/kubernetes_options.h,
// compiled in): a real store and registry, a fake RunHandle. No cluster.
#include "engine/server/run_manager.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <mutex>

#include "engine/cli/kubernetes_options.h"
#include "engine/server/pipeline_registry.h"
#include "engine/sqlite_store.h"
#include "server_test_util.h"

namespace sluice::server {
namespace {

constexpr const char* kServing = R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: serve
executor: kubernetes
namespace: ml
defaults:
  image: registry.example/fraud-server:1.4
steps:
  - name: train
    command: [python3, train.py]
  - name: deploy
    type: deploy
    depends: [train]
    deploy:
      service: fraud
      model: /models/fraud.pkl
      serve:
        command: [serve, --port, "${port}"]
)";

TEST(RunManagerTest, AServedRunsDeployStepIsPreparedAsAHostController) {
  const std::string root = testing::MakeTempDir("run-manager");
  testing::WriteFile(root + "/pipelines/serve.yaml", kServing);
  auto store = SqliteStore::Open(root + "/state");
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  PipelineRegistry registry(root + "/pipelines");
  ASSERT_TRUE(registry.Reload(true).has_value());

  // What the run was handed, taken as the run starts.
  std::mutex mu;
  SpecPtr ran;
  RunOptions ran_options;
  testing::FakeRunControl control;
  RunFactory fake = testing::FakeFactory([&] { return store->get(); }, &control);
  RunFactory factory = [&](SpecPtr spec, RunOptions options) {
    {
      std::lock_guard lock(mu);
      ran = spec;
      ran_options = options;
    }
    return fake(std::move(spec), std::move(options));
  };

  RunManagerOptions options;
  options.state_dir = root + "/state";
  options.operator_commands["deploy"] = {"/usr/bin/sluice-serving", "deploy"};
  cli::KubernetesFlags flags;
  flags.context = "prod";
  options.prepare = [flags](PipelineSpec& spec, RunOptions& run) {
    cli::PrepareRunForKubernetes(spec, flags, cli::HostLimitFlags{}, run);
  };
  {
    RunManager runs(options, store->get(), &registry, factory, nullptr);
    SubmitRequest request;
    request.pipeline = "serve";
    auto id = runs.Submit(request);
    ASSERT_TRUE(id.has_value()) << id.error().ToString();
    ASSERT_TRUE(runs.WaitIdle(std::chrono::seconds(30)));
  }

  std::lock_guard lock(mu);
  ASSERT_NE(ran, nullptr);
  ASSERT_EQ(ran->steps.size(), 2u);
  EXPECT_EQ(ran->steps[1].executor, "local");
  EXPECT_EQ(ran->steps[1].config.dump(),
            R"({"executor":"kubernetes","kubernetes":{"context":"prod","namespace":"ml"},)"
            R"("model":"/models/fraud.pkl",)"
            R"("serve":{"command":["serve","--port","${port}"],"image":"registry.example/fraud-server:1.4"},)"
            R"("service":"fraud"})");
  // The deploy step runs here: the run keeps this host's budgets.
  EXPECT_EQ(ran_options.parallelism, 0);
  EXPECT_EQ(ran_options.cpu_budget_millis, 0);
  // The registry's version, shared by every run, is as loaded.
  SpecPtr loaded = registry.Find("serve");
  ASSERT_NE(loaded, nullptr);
  EXPECT_EQ(loaded->steps[1].executor, "");
  EXPECT_FALSE(loaded->steps[1].config.contains("executor"));
  store->reset();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace sluice::server
