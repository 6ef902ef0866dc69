// `sluice compile --target argo`: golden files for whole pipelines, exact
// messages for what Argo cannot express.
#include "engine/compile/argo.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dsl/dsl.h"
#include "engine/compile/manifests.h"

namespace sluice::compile {
namespace {

namespace fs = std::filesystem;

const fs::path kData = fs::path(SLUICE_SOURCE_DIR) / "tests/compile/testdata";

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

PipelineSpec Load(const std::string& name) {
  // Load by a relative name so locations in messages are stable.
  auto result = dsl::LoadPipelineString(Read(kData / name), name);
  EXPECT_TRUE(result.ok()) << dsl::FormatDiagnosticsText(result.diagnostics);
  return result.ok() ? *result.spec : PipelineSpec{};
}

// Compares with testdata/<name>.argo.yaml; SLUICE_UPDATE_GOLDEN=1 rewrites it.
void ExpectGolden(const std::string& name, const std::string& actual) {
  fs::path golden = kData / (name + ".argo.yaml");
  if (std::getenv("SLUICE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(golden) << actual;
    return;
  }
  EXPECT_EQ(actual, Read(golden)) << "golden file " << golden
                                  << " differs; rerun with SLUICE_UPDATE_GOLDEN=1 and review the diff";
}

TEST(ArgoCompileTest, ContainerDagWithFanOutFanInWhenAndFinally) {
  PipelineSpec spec = Load("train.yaml");
  auto out = CompileToArgo(spec, kData.string(), {});
  ASSERT_TRUE(out.ok()) << out.errors[0].ToString();
  ASSERT_EQ(out.objects.size(), 1u);
  EXPECT_EQ(out.objects[0]["kind"], "Workflow");
  ExpectGolden("train", ToYaml(out.objects));
}

TEST(ArgoCompileTest, ScheduledTfJobBecomesTemplateAndCron) {
  PipelineSpec spec = Load("dist.yaml");
  ArgoOptions options;
  options.namespace_ = "ml";
  auto out = CompileToArgo(spec, kData.string(), options);
  ASSERT_TRUE(out.ok()) << out.errors[0].ToString();
  ASSERT_EQ(out.objects.size(), 2u);
  EXPECT_EQ(out.objects[0]["kind"], "WorkflowTemplate");
  EXPECT_EQ(out.objects[1]["kind"], "CronWorkflow");
  ExpectGolden("dist", ToYaml(out.objects));
}

TEST(ArgoCompileTest, RejectsWhatArgoCannotExpress) {
  PipelineSpec spec = Load("bad.yaml");
  auto out = CompileToArgo(spec, kData.string(), {});
  std::vector<std::string> messages;
  for (const auto& e : out.errors) messages.push_back(e.ToString());
  EXPECT_EQ(messages,
            (std::vector<std::string>{
                "bad.yaml:6:3: error: schedule catchup: all cannot be compiled to Argo: a CronWorkflow "
                "starts at most the latest missed run (use catchup: latest, or `sluice backfill`)",
                "bad.yaml:12:22: error: cannot compile 'item_index' to Argo: Argo's withItems/withParam have "
                "no item index; loop over a list of objects with an index field, or over a range",
                "bad.yaml:12:42: error: cannot compile '{{ item > 1 }}' to Argo: only a single name can be "
                "substituted here, not an expression",
                "bad.yaml:13:5: error: step 'prio': priority orders sluice's ready queue and has no Argo "
                "equivalent; use kubernetes.priorityClassName for pod priority",
                "bad.yaml:20:22: error: cannot compile 'steps.prio.phase' to Argo: Argo's exit handler "
                "cannot read the outputs of the main DAG's tasks; pass what the finally step needs "
                "through run.status or a parameter",
            }));
}

TEST(ManifestsCompileTest, ObjectsOfARunWithDependencyAnnotations) {
  PipelineSpec spec = Load("train.yaml");
  auto params = dsl::BindParams(spec, {{"mode", "slow"}});
  ASSERT_TRUE(params.has_value()) << params.error().ToString();
  ManifestsOptions options;
  options.run_id = "nightly-1";
  options.pipeline_dir = "/sluice/src";
  options.executor.manifests.namespace_ = "ml";
  options.executor.manifests.workspace_pvc = "sluice-workspace";
  auto objects = CompileToManifests(spec, *params, options);
  ASSERT_TRUE(objects.has_value()) << objects.error().ToString();
  std::vector<std::string> names;
  for (const auto& o : *objects) names.push_back(o["metadata"]["annotations"]["sluice.dev/instance"]);
  // fit fans out over the models param's default; the finally step comes last.
  EXPECT_EQ(names, (std::vector<std::string>{"sweep[0]", "sweep[1]", "sweep[2]", "prep", "fit[0]", "fit[1]",
                                             "fit[2]", "pick", "ship", "notify"}));
  ExpectGolden("train.manifests", ToYaml(*objects));
}

}  // namespace
}  // namespace sluice::compile
