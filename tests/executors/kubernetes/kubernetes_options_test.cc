// The Kubernetes executor's settings that `sluice run`, `cancel` and `serve`
// build in one place (engine/cli/kubernetes_options.h): which namespace wins,
// the workspace flags, which steps need the executor, and how a run is
// prepared for it (operator steps as host controllers, an all-Kubernetes
// run's budgets). No cluster.

#include "engine/cli/kubernetes_options.h"

#include <gtest/gtest.h>

#include "dsl/dsl.h"

namespace sluice::cli {
namespace {

PipelineSpec Load(const std::string& yaml) {
  dsl::LoadResult loaded = dsl::LoadPipelineString(yaml, "pipeline.yaml");
  EXPECT_TRUE(loaded.ok()) << dsl::FormatDiagnosticsText(loaded.diagnostics);
  return loaded.spec.value_or(PipelineSpec{});
}

constexpr const char* kPipeline = R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: ns
executor: kubernetes
namespace: ml
steps:
  - name: train
    image: busybox:1.36
    command: [echo, train]
  - name: report
    executor: local
    command: [echo, report]
)";

TEST(KubernetesOptionsTest, TheNamespaceIsTheFlagsThenThePipelinesThenTheContexts) {
  PipelineSpec spec = Load(kPipeline);
  KubernetesFlags flags;
  auto from_pipeline = KubernetesOptionsFor(flags, &spec);
  ASSERT_TRUE(from_pipeline) << from_pipeline.error().ToString();
  EXPECT_EQ(from_pipeline->manifests.namespace_, "ml");
  EXPECT_EQ(from_pipeline->kubeconfig.namespace_, "");

  flags.namespace_ = "team-a";
  auto from_flag = KubernetesOptionsFor(flags, &spec);
  ASSERT_TRUE(from_flag) << from_flag.error().ToString();
  EXPECT_EQ(from_flag->manifests.namespace_, "team-a");
  EXPECT_EQ(from_flag->kubeconfig.namespace_, "team-a");

  // No pipeline (serve checking its kubeconfig at start): the context's.
  auto none = KubernetesOptionsFor(KubernetesFlags{}, nullptr);
  ASSERT_TRUE(none) << none.error().ToString();
  EXPECT_EQ(none->manifests.namespace_, "");
}

TEST(KubernetesOptionsTest, TheFlagsReachTheKubeconfigAndTheManifests) {
  KubernetesFlags flags;
  flags.kubeconfig = "/etc/sluice/kubeconfig";
  flags.context = "prod";
  flags.workspace_pvc = "shared";
  flags.workspace_host_dir = "/srv/workspace/";
  auto options = KubernetesOptionsFor(flags, nullptr);
  ASSERT_TRUE(options) << options.error().ToString();
  EXPECT_EQ(options->kubeconfig.kubeconfig, "/etc/sluice/kubeconfig");
  EXPECT_EQ(options->kubeconfig.context, "prod");
  EXPECT_EQ(options->manifests.workspace_pvc, "shared");
  EXPECT_EQ(options->manifests.host_workspace_root, "/srv/workspace");
  EXPECT_EQ(WorkspaceWarning(*options, "/srv/workspace/.sluice"), "");
  EXPECT_EQ(WorkspaceWarning(*options, "/home/me/.sluice"),
            "the store /home/me/.sluice is not under --workspace-host-dir /srv/workspace: pods "
            "will not see the steps' directories or inputs (use --store /srv/workspace/.sluice)");
}

TEST(KubernetesOptionsTest, AWorkspaceHostDirWithoutAClaimIsRefused) {
  KubernetesFlags flags;
  flags.workspace_host_dir = "/srv/workspace";
  auto options = KubernetesOptionsFor(flags, nullptr);
  ASSERT_FALSE(options);
  EXPECT_EQ(options.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(options.error().message(),
            "--workspace-host-dir needs --workspace-pvc, the claim pods mount that directory from");
}

TEST(KubernetesOptionsTest, AStepRunsOnItsOwnExecutorThenTheDefaultThenThePipelines) {
  PipelineSpec spec = Load(kPipeline);
  EXPECT_EQ(ExecutorOf(spec.steps[0], "", spec), "kubernetes");
  EXPECT_EQ(ExecutorOf(spec.steps[1], "", spec), "local");
  EXPECT_EQ(ExecutorOf(spec.steps[0], "local", spec), "local");
  EXPECT_TRUE(NeedsKubernetes(spec, ""));
  EXPECT_FALSE(NeedsKubernetes(spec, "local"));
}

// A deploy and a traffic-validation step in a pipeline that runs on the
// cluster: they run here, as its controllers (docs/deploy.md).
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
      kubernetes: {replicas: 3}
  - name: smoke
    type: traffic-validation
    depends: [deploy]
    validation:
      endpoint: http://fraud.example.internal
      requests: /sluice/shared/smoke.jsonl
      kubernetes: {namespace: canary}
)";

// The operator programs `sluice run` and `sluice serve` register.
RunOptions WithOperators() {
  RunOptions options;
  options.operator_commands["deploy"] = {"/usr/bin/sluice-serving", "deploy"};
  options.operator_commands["traffic-validation"] = {"/usr/bin/sluice-serving", "validate"};
  return options;
}

TEST(KubernetesOptionsTest, OperatorStepsBoundForTheClusterRunHereAsItsControllers) {
  PipelineSpec spec = Load(kServing);
  KubernetesFlags flags;
  flags.kubeconfig = "/etc/sluice/kubeconfig";
  flags.context = "prod";
  RunOptions options = WithOperators();
  PrepareRunForKubernetes(spec, flags, HostLimitFlags{}, options);

  ASSERT_EQ(spec.steps.size(), 3u);
  EXPECT_EQ(ExecutorOf(spec.steps[0], "", spec), "kubernetes");  // a plain step stays a pod
  EXPECT_EQ(spec.steps[1].executor, "local");
  EXPECT_EQ(spec.steps[1].config.dump(),
            R"({"executor":"kubernetes",)"
            R"("kubernetes":{"context":"prod","kubeconfig":"/etc/sluice/kubeconfig","namespace":"ml","replicas":3},)"
            R"("model":"/models/fraud.pkl",)"
            R"("serve":{"command":["serve","--port","${port}"],"image":"registry.example/fraud-server:1.4"},)"
            R"("service":"fraud"})");
  EXPECT_EQ(spec.steps[2].executor, "local");
  // The step's own namespace wins over the pipeline's.
  EXPECT_EQ(spec.steps[2].config.dump(),
            R"({"endpoint":"http://fraud.example.internal","executor":"kubernetes",)"
            R"("kubernetes":{"context":"prod","kubeconfig":"/etc/sluice/kubeconfig","namespace":"canary"},)"
            R"("requests":"/sluice/shared/smoke.jsonl"})");
  // Two steps now run here: the run keeps this host's budgets.
  EXPECT_EQ(options.cpu_budget_millis, 0);
  EXPECT_EQ(options.memory_budget_bytes, 0);
  EXPECT_EQ(options.gpu_budget, 0);
  EXPECT_EQ(options.parallelism, 0);

  // --namespace wins over the pipeline's; --executor local keeps them local
  // steps with their config as written.
  PipelineSpec flagged = Load(kServing);
  flags = KubernetesFlags{};
  flags.namespace_ = "team-a";
  RunOptions flagged_options = WithOperators();
  PrepareRunForKubernetes(flagged, flags, HostLimitFlags{}, flagged_options);
  EXPECT_EQ(flagged.steps[1].config["kubernetes"].dump(), R"({"namespace":"team-a","replicas":3})");
  PipelineSpec local = Load(kServing);
  RunOptions local_options = WithOperators();
  local_options.default_executor = "local";
  PrepareRunForKubernetes(local, KubernetesFlags{}, HostLimitFlags{}, local_options);
  EXPECT_EQ(local.steps[1].executor, "");
  EXPECT_FALSE(local.steps[1].config.contains("executor"));
}

TEST(KubernetesOptionsTest, WithoutTheOperatorProgramTheStepsAreLeftAsWritten) {
  PipelineSpec spec = Load(kServing);
  RunOptions options;  // no sluice-serving found
  PrepareRunForKubernetes(spec, KubernetesFlags{}, HostLimitFlags{}, options);
  EXPECT_EQ(spec.steps[1].executor, "");
  EXPECT_FALSE(spec.steps[1].config.contains("executor"));
}

constexpr const char* kAllKubernetes = R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: train
executor: kubernetes
steps:
  - name: prep
    image: busybox:1.36
    command: [echo, prep]
finally:
  - name: notify
    image: busybox:1.36
    command: [echo, done]
)";

TEST(KubernetesOptionsTest, AnAllKubernetesRunIsNotBoundedByThisHost) {
  PipelineSpec spec = Load(kAllKubernetes);
  RunOptions options;
  PrepareRunForKubernetes(spec, KubernetesFlags{}, HostLimitFlags{}, options);
  constexpr int64_t kUnbounded = int64_t{1} << 50;
  EXPECT_EQ(options.cpu_budget_millis, kUnbounded);
  EXPECT_EQ(options.memory_budget_bytes, kUnbounded);
  EXPECT_EQ(options.gpu_budget, kUnbounded);
  EXPECT_EQ(options.parallelism, kKubernetesParallelism);
  EXPECT_EQ(kKubernetesParallelism, 256);
}

TEST(KubernetesOptionsTest, AnAllKubernetesRunKeepsTheLimitsTheUserGave) {
  PipelineSpec spec = Load(kAllKubernetes);
  RunOptions options;
  options.cpu_budget_millis = 4000;  // --cpus 4
  options.gpu_budget = 0;            // --gpus 0
  options.parallelism = 8;           // -j 8
  HostLimitFlags given;
  given.cpus = true;
  given.gpus = true;
  given.parallelism = true;
  PrepareRunForKubernetes(spec, KubernetesFlags{}, given, options);
  EXPECT_EQ(options.cpu_budget_millis, 4000);
  EXPECT_EQ(options.memory_budget_bytes, int64_t{1} << 50);
  EXPECT_EQ(options.gpu_budget, 0);
  EXPECT_EQ(options.parallelism, 8);
}

TEST(KubernetesOptionsTest, AMixedRunKeepsThisHostsBudgets) {
  PipelineSpec spec = Load(kPipeline);  // `report` runs here
  RunOptions options;
  PrepareRunForKubernetes(spec, KubernetesFlags{}, HostLimitFlags{}, options);
  EXPECT_EQ(options.cpu_budget_millis, 0);
  EXPECT_EQ(options.memory_budget_bytes, 0);
  EXPECT_EQ(options.gpu_budget, 0);
  EXPECT_EQ(options.parallelism, 0);
  // --executor kubernetes sends `report` there too.
  options.default_executor = "kubernetes";
  PrepareRunForKubernetes(spec, KubernetesFlags{}, HostLimitFlags{}, options);
  EXPECT_EQ(options.parallelism, 0);  // report's own `executor: local` wins
}

}  // namespace
}  // namespace sluice::cli
