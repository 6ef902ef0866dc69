// The Kubernetes executor's settings that `sluice run`, `cancel` and `serve`
// build in one place (engine/cli/kubernetes_options.h): which namespace wins,
// the workspace flags, and which steps need the executor. No cluster.

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

}  // namespace
}  // namespace sluice::cli
