// Step types through the operator seam (engine/operator.h): lint asks the
// registry it is given for the known types, their sections and config checks,
// and reports an operator's config mistakes at the value's file:line:col.

#include <gtest/gtest.h>

#include "dsl/dsl.h"
#include "engine/operator.h"
#include "operators/builtin.h"

namespace sluice::dsl {
namespace {

const char* kHeader = "apiVersion: sluice.dev/v1\nkind: Pipeline\nmetadata: {name: t}\nsteps:\n";

std::string Lint(const std::string& steps, const LoadOptions& options = {}) {
  return FormatDiagnosticsText(LoadPipelineString(std::string(kHeader) + steps, "p.yaml", options).diagnostics);
}

TEST(TrainingConfigAtLint, EachMistakeIsReportedAtItsValue) {
  EXPECT_EQ(Lint("  - name: train\n"
                 "    type: tfjob\n"
                 "    command: [python3, train.py]\n"
                 "    tfjob:\n"
                 "      replicas:\n"
                 "        Worker: {replicas: 2000}\n"),
            "p.yaml:10:28: error: tfjob.replicas.Worker.replicas must be an integer from 0 to 1024\n");
  EXPECT_EQ(Lint("  - name: train\n"
                 "    type: pytorchjob\n"
                 "    command: [python3, train.py]\n"
                 "    pytorchjob:\n"
                 "      replicas: {Launcher: {replicas: 1}}\n"),
            "p.yaml:9:28: error: pytorchjob: unknown replica type 'Launcher'; expected one of Master, Worker\n");
  EXPECT_EQ(Lint("  - name: train\n"
                 "    type: tfjob\n"
                 "    command: [python3, train.py]\n"
                 "    tfjob:\n"
                 "      replicas: {Worker: 2}\n"
                 "      successPolicy: AllChiefs\n"),
            "p.yaml:10:22: error: tfjob.successPolicy must be \"\" (chief, else worker 0) or \"AllWorkers\"\n");
  EXPECT_EQ(Lint("  - name: train\n"
                 "    type: tfjob\n"
                 "    command: [python3, train.py]\n"
                 "    tfjob: {successPolicy: AllWorkers}\n"),
            "p.yaml:8:12: error: tfjob: 'replicas' must map replica types (Chief, Master, Worker, PS, Evaluator) "
            "to {replicas: N}, e.g. replicas: {Worker: {replicas: 2}}\n");
}

TEST(TrainJobConfigAtLint, EachMistakeIsReportedAtItsValue) {
  const std::string step = "  - name: train\n    type: trainjob\n    command: [torchrun, train.py]\n";
  EXPECT_EQ(Lint(step + "    trainjob: {runtime: torch-distributed, numNodes: 2, numProcPerNode: 4}\n"), "");
  EXPECT_EQ(Lint(step + "    trainjob: {numNodes: 2}\n"),
            "p.yaml:8:15: error: trainjob.runtime is required: the training runtime's name, e.g. runtime: "
            "torch-distributed\n");
  EXPECT_EQ(Lint(step + "    trainjob: {runtime: torch-distributed, numNodes: 0}\n"),
            "p.yaml:8:54: error: trainjob.numNodes must be an integer from 1 to 1024\n");
  EXPECT_EQ(Lint(step + "    trainjob:\n      runtime: torch-distributed\n      runtimeKind: Runtime\n"),
            "p.yaml:10:20: error: trainjob.runtimeKind must be ClusterTrainingRuntime or TrainingRuntime\n");
  EXPECT_EQ(Lint(step + "    trainjob: {runtime: torch-distributed, numNode: 2}\n"),
            "p.yaml:8:53: error: trainjob: unknown key 'numNode' (known: runtime, runtimeKind, numNodes, "
            "numProcPerNode)\n");
  EXPECT_EQ(Lint("  - name: train\n    command: [torchrun, train.py]\n    trainjob: {runtime: torch}\n"),
            "p.yaml:7:15: error: the 'trainjob' section needs 'type: trainjob'\n");
}

TEST(TrainingConfigAtLint, AStepWithoutACommandRunsItsImagesEntrypointOnKubernetes) {
  // Only a local run needs a command; lint does not ask for one.
  EXPECT_EQ(Lint("  - name: train\n"
                 "    type: tfjob\n"
                 "    image: tf:2\n"
                 "    tfjob: {replicas: {Worker: {replicas: 2}}}\n"),
            "");
}

// A step type of the test's own, in a registry of its own: lint knows it,
// its section and its check only through the registry it is given.
class EchoOperator : public Operator {
 public:
  std::string_view Name() const override { return "echo"; }
  std::string_view SectionKey() const override { return "echo"; }
  std::vector<ConfigProblem> CheckConfig(const StepSpec& step) const override {
    if (step.config.contains("words") && !step.config["words"].is_array())
      return {{{"words"}, "echo.words must be a list"}};
    return {};
  }
  void AddFixedOutputs(StepSpec* step, const SourceLocation& at) const override {
    step->output_params.push_back({"said", "said.txt", at});
  }
  std::optional<KubernetesKind> Kind() const override {
    return KubernetesKind{"example.dev/v1", "Echo", "echoes", "example.dev/echo", "echo", 63};
  }
};

TEST(OperatorRegistryInLint, ANewStepTypeIsOneRegistration) {
  OperatorRegistry registry;
  ASSERT_TRUE(operators::RegisterBuiltinOperators(registry).ok());
  ASSERT_TRUE(registry.Register(std::make_unique<EchoOperator>()).ok());
  LoadOptions options;
  options.operators = &registry;

  LoadResult ok = LoadPipelineString(std::string(kHeader) +
                                         "  - name: hello\n"
                                         "    type: echo\n"
                                         "    echo: {words: [a, b]}\n",
                                     "p.yaml", options);
  ASSERT_TRUE(ok.ok()) << FormatDiagnosticsText(ok.diagnostics);
  ASSERT_EQ(ok.spec->steps[0].output_params.size(), 1u);
  EXPECT_EQ(ok.spec->steps[0].output_params[0].name, "said");
  EXPECT_EQ(ok.spec->steps[0].config, Json::parse(R"({"words": ["a", "b"]})"));

  EXPECT_EQ(Lint("  - name: hello\n"
                 "    type: echo\n"
                 "    echo: {words: loud}\n",
                 options),
            "p.yaml:7:19: error: echo.words must be a list\n");
  // The global registry (the built-in types) does not know it.
  EXPECT_EQ(Lint("  - name: hello\n"
                 "    type: echo\n"
                 "    echo: {words: [a]}\n"),
            Lint("  - name: hello\n"
                 "    type: echo\n"
                 "    echo: {words: [a]}\n",
                 LoadOptions{&OperatorRegistry::Global()}));
  EXPECT_NE(Lint("  - name: hello\n"
                 "    type: echo\n"
                 "    echo: {words: [a]}\n"),
            "");
}

TEST(OperatorRegistryInLint, NamesAndSectionKeysRegisterOnce) {
  OperatorRegistry registry;
  ASSERT_TRUE(operators::RegisterBuiltinOperators(registry).ok());
  EXPECT_EQ(registry.Names(),
            (std::vector<std::string>{"container", "tfjob", "pytorchjob", "trainjob", "deploy",
                                      "traffic-validation", "resource"}));
  EXPECT_EQ(registry.Register(std::make_unique<EchoOperator>()).ToString(), "OK");
  EXPECT_EQ(registry.Register(std::make_unique<EchoOperator>()).ToString(),
            "ALREADY_EXISTS: step type 'echo' is already registered");
  EXPECT_EQ(operators::RegisterBuiltinOperators(registry).ToString(),
            "ALREADY_EXISTS: step type 'container' is already registered");
  EXPECT_EQ(registry.FindBySection("validation")->Name(), "traffic-validation");
  EXPECT_EQ(registry.FindBySection("kubernetes"), nullptr);
}

TEST(OperatorRegistryInLint, TheExecutorsKnowWhichTypesTheyRun) {
  OperatorRegistry registry;
  ASSERT_TRUE(operators::RegisterBuiltinOperators(registry).ok());
  EXPECT_EQ(LocalOperator(registry, "deploy").error().ToString(),
            "INVALID_ARGUMENT: the local executor cannot run steps of type 'deploy'; it runs container, tfjob, "
            "pytorchjob and trainjob steps");
  EXPECT_EQ(KubernetesOperator(registry, "nope").error().ToString(),
            "INVALID_ARGUMENT: step type \"nope\" cannot run on Kubernetes (known: container, tfjob, pytorchjob, "
            "trainjob, resource)");
  EXPECT_EQ((*LocalOperator(registry, ""))->Name(), "container");
  EXPECT_EQ(OperatorForResource(registry, "pytorchjobs")->Name(), "pytorchjob");
  EXPECT_EQ(OperatorForResource(registry, "trainjobs")->Name(), "trainjob");
  // A kind no type claims is one a resource step created.
  EXPECT_EQ(OperatorForResource(registry, "mpijobs")->Name(), "resource");
}

}  // namespace
}  // namespace sluice::dsl
