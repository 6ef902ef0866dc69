// RunManager preparing each served run as `sluice run` prepares its own, with
// the preparation `sluice serve` passes (engine/cli/kubernetes_options.h,
// compiled in): a real store and registry, a fake RunHandle. No cluster.
#include "engine/server/run_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>

#include "engine/cli/kubernetes_options.h"
#include "engine/store/provenance.h"
#include "engine/server/api_json.h"
#include "engine/server/pipeline_registry.h"
#include "engine/store/sqlite_store.h"
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

constexpr const char* kSecret = R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: secret
params:
  tok: {type: string, secret: true}
  size: {type: int, default: 3}
steps:
  - name: use
    command: [python3, -c, "print(1)", "{{ params.tok }}"]
)yaml";

TEST(RunManagerTest, AQueuedRunShowsItsSecretParamsRedacted) {
  const std::string root = testing::MakeTempDir("run-manager-secret");
  testing::WriteFile(root + "/pipelines/secret.yaml", kSecret);
  auto store = SqliteStore::Open(root + "/state");
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  PipelineRegistry registry(root + "/pipelines");
  ASSERT_TRUE(registry.Reload(true).has_value());
  testing::FakeRunControl control;
  control.hold = true;  // the first run holds the only worker; the second stays queued
  std::mutex mu;
  std::vector<Json> ran_params;
  RunFactory fake = testing::FakeFactory([&] { return store->get(); }, &control);
  RunFactory factory = [&](SpecPtr spec, RunOptions options) {
    {
      std::lock_guard lock(mu);
      ran_params.push_back(options.params);
    }
    return fake(std::move(spec), std::move(options));
  };
  RunManagerOptions options;
  options.state_dir = root + "/state";
  options.max_concurrent = 1;
  {
    RunManager runs(options, store->get(), &registry, factory, nullptr);
    SubmitRequest first;
    first.pipeline = "secret";
    first.params = {{"tok", "first-s3cr3t"}};
    ASSERT_TRUE(runs.Submit(first).has_value());
    ASSERT_TRUE(control.WaitStarted(1));
    SubmitRequest second;
    second.pipeline = "secret";
    second.typed_params = Json{{"tok", "second-s3cr3t"}};
    auto id = runs.Submit(second);
    ASSERT_TRUE(id.has_value()) << id.error().ToString();
    auto queued = runs.Queued(*id);
    ASSERT_TRUE(queued.has_value());
    EXPECT_EQ(RunToJson(*queued)["params"].dump(), R"({"size":3,"tok":"<redacted>"})");
    ASSERT_EQ(runs.QueuedRuns().size(), 1u);
    EXPECT_EQ(RunToJson(runs.QueuedRuns()[0]).dump().find("s3cr3t"), std::string::npos);
    control.Release();
    ASSERT_TRUE(runs.WaitIdle(std::chrono::seconds(30)));
  }
  // The runs themselves were given the values.
  std::lock_guard lock(mu);
  ASSERT_EQ(ran_params.size(), 2u);
  EXPECT_EQ(ran_params[0]["tok"], "first-s3cr3t");
  EXPECT_EQ(ran_params[1]["tok"], "second-s3cr3t");
  store->reset();
  std::filesystem::remove_all(root);
}

TEST(RunManagerTest, AnInterruptedRunWithASecretEndsWithTheReasonInsteadOfResumingWithoutIt) {
  const std::string root = testing::MakeTempDir("run-manager-resume-secret");
  testing::WriteFile(root + "/pipelines/secret.yaml", kSecret);
  auto store = SqliteStore::Open(root + "/state");
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  PipelineRegistry registry(root + "/pipelines");
  ASSERT_TRUE(registry.Reload(true).has_value());
  // A run whose driving process died (pid 0x7fffffff is never alive).
  RunRecord run;
  run.id = "secret-1";
  run.pipeline = "secret";
  run.pipeline_file = root + "/pipelines/secret.yaml";
  run.pipeline_yaml = kSecret;
  run.params = Json{{"size", 3}, {"tok", "<redacted>"}};
  run.phase = RunPhase::kRunning;
  run.host = HostName();
  run.pid = 0x7fffffff;
  run.created_at = std::chrono::system_clock::now();
  run.started_at = run.created_at;
  ASSERT_TRUE((*store)->CreateRun(run).ok());
  testing::FakeRunControl control;
  std::atomic<int> started{0};
  RunFactory fake = testing::FakeFactory([&] { return store->get(); }, &control);
  RunFactory factory = [&](SpecPtr spec, RunOptions options) {
    ++started;
    return fake(std::move(spec), std::move(options));
  };
  RunManagerOptions options;
  options.state_dir = root + "/state";
  {
    RunManager runs(options, store->get(), &registry, factory, nullptr);
    EXPECT_EQ(runs.ResumeInterrupted(), std::vector<std::string>{});
    ASSERT_TRUE(runs.WaitIdle(std::chrono::seconds(30)));
  }
  EXPECT_EQ(started.load(), 0);
  auto after = (*store)->GetRun("secret-1");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->phase, RunPhase::kError);
  EXPECT_EQ(after->message,
            "the server restarted and cannot resume this run: its secret parameter(s) tok are not recorded; resume "
            "it with `sluice resume secret-1 -p NAME=VALUE`");
  store->reset();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace sluice::server
