// Components (`kind: Component` files used by `uses:`): what a using step
// becomes, and lint's errors, reported in the file where each mistake is,
// with the other file's location where it helps.

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "dsl/dsl.h"

namespace sluice::dsl {
namespace {

namespace fs = std::filesystem;

const char* kTrain = R"(apiVersion: sluice.dev/v1
kind: Component
metadata:
  name: train
  description: Train one model family on a prepared data set.
inputs:
  model: {type: string}
  lr: {type: number, default: 0.1}
  dataset: {type: artifact}
outputs:
  artifacts:
    - {name: model, path: model.pkl, type: model}
step:
  image: python:3.11-slim
  command: [python3, "{{ component.dir }}/train.py", --model, "{{ inputs.model }}", --lr, "{{ inputs.lr }}",
            --data, "{{ inputs.dataset }}", --out, model.pkl]
  code: [train.py]
  resources: {cpu: "1"}
)";

class ComponentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sluice-components-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_ / "components");
    Write("components/train.yaml", kTrain);
    Write("components/train.py", "print('training')\n");
    Write("prepare.py", "print('preparing')\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& rel, const std::string& text) { std::ofstream(dir_ / rel) << text; }

  // Loads pipeline.yaml with `steps` after a header that declares a `models`
  // list param and a `prepare` step with a `dataset` artifact.
  LoadResult Load(const std::string& steps) {
    Write("pipeline.yaml", std::string(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: p}
params:
  models: {type: list, default: [logreg, forest]}
  rate: {type: number, default: 0.5}
  name: {type: string, default: x}
steps:
  - name: prepare
    command: [python3, "{{ pipeline.dir }}/prepare.py"]
    code: [prepare.py]
    outputs:
      artifacts: [{name: dataset, path: data, type: dataset}]
)") + steps);
    return LoadPipelineFile((dir_ / "pipeline.yaml").string());
  }

  // Diagnostics with the temporary directory cut out.
  std::string Lint(const std::string& steps) {
    std::string text = FormatDiagnosticsText(Load(steps).diagnostics);
    const std::string prefix = dir_.string() + "/";
    for (size_t at = text.find(prefix); at != std::string::npos; at = text.find(prefix, at)) text.erase(at, prefix.size());
    return text;
  }

  fs::path dir_;
};

TEST_F(ComponentsTest, AUsingStepBecomesTheComponentsStepWithItsInputsBound) {
  LoadResult r = Load(R"(  - name: train
    uses: components/train.yaml
    foreach: "{{ params.models }}"
    timeout: 5m
    with:
      model: "{{ item }}"
      dataset: "{{ steps.prepare.outputs.artifacts.dataset }}"
)");
  ASSERT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  const StepSpec& s = r.spec->steps[1];
  EXPECT_EQ(s.name, "train");
  ASSERT_EQ(s.command.size(), 10u);
  EXPECT_EQ(s.command[1].text, "{{ pipeline.dir }}/components/train.py");
  EXPECT_EQ(s.command[3].text, "{{ inputs.model }}");
  EXPECT_EQ(s.image, "python:3.11-slim");
  EXPECT_EQ(s.resources.cpu_millis, 1000);
  ASSERT_TRUE(s.timeout.has_value());
  EXPECT_EQ(s.timeout->count(), 300000);
  ASSERT_TRUE(s.foreach.has_value());
  // Bound inputs, and the default of the one left unbound.
  ASSERT_EQ(s.inputs.size(), 3u);
  EXPECT_EQ(s.inputs.at("model").text, "{{ item }}");
  EXPECT_EQ(s.inputs.at("dataset").text, "{{ steps.prepare.outputs.artifacts.dataset }}");
  EXPECT_EQ(s.inputs.at("lr").text, "0.1");
  ASSERT_EQ(s.output_artifacts.size(), 1u);
  EXPECT_EQ(s.output_artifacts[0].name, "model");
  // The component's code and the component file itself make the code digest.
  EXPECT_EQ(s.code, (std::vector<std::string>{"components/train.py", "components/train.yaml"}));
  EXPECT_EQ(s.component_file, "components/train.yaml");
  EXPECT_EQ(s.component_digest.size(), 64u);
  // The dependency on prepare comes through the binding.
  EXPECT_EQ(StepDependencies(s), std::vector<std::string>{"prepare"});
}

TEST_F(ComponentsTest, ABindingOfTheWrongTypeNamesBothFiles) {
  EXPECT_EQ(Lint(R"(  - name: train
    uses: components/train.yaml
    with:
      model: "{{ params.models }}"
      lr: "fast"
      dataset: "{{ params.name }}"
)"),
            "pipeline.yaml:17:14: error: input 'model' of component components/train.yaml "
            "(components/train.yaml:7:3) expects string, got list\n"
            "pipeline.yaml:18:11: error: input 'lr' of component components/train.yaml "
            "(components/train.yaml:8:3) expects number, got string\n"
            "pipeline.yaml:19:16: error: input 'dataset' of component components/train.yaml "
            "(components/train.yaml:9:3) expects an artifact, got string\n");
}

TEST_F(ComponentsTest, UnknownAndMissingInputs) {
  EXPECT_EQ(Lint(R"(  - name: train
    uses: components/train.yaml
    with:
      modle: logreg
)"),
            "pipeline.yaml:17:7: error: component components/train.yaml has no input 'modle'; did you mean "
            "'model'?; its inputs are: model, lr, dataset\n"
            "pipeline.yaml:17:7: error: component components/train.yaml needs input 'model' "
            "(components/train.yaml:7:3); bind it under 'with:'\n"
            "pipeline.yaml:17:7: error: component components/train.yaml needs input 'dataset' "
            "(components/train.yaml:9:3); bind it under 'with:'\n");
}

TEST_F(ComponentsTest, AUsingStepCannotSetWhatItRuns) {
  EXPECT_EQ(Lint(R"(  - name: train
    uses: components/train.yaml
    command: [python3, other.py]
    with: {model: logreg, dataset: "{{ steps.prepare.outputs.artifacts.dataset }}"}
)"),
            "pipeline.yaml:16:5: error: 'command' comes from the component; a step that uses one may set only: "
            "name, uses, with, depends, when, ifUpstreamSkipped, foreach, parallelism, retries, timeout, "
            "pendingTimeout, resources, priority, cache, executor, image, env, kubernetes, minSuccessRatio\n");
  EXPECT_EQ(Lint(R"(  - name: other
    command: [python3, other.py]
    with: {model: logreg}
)"),
            "pipeline.yaml:16:5: error: 'with' binds the inputs of a component; add 'uses: "
            "path/to/component.yaml'\n");
}

TEST_F(ComponentsTest, MistakesInTheComponentAreReportedInTheComponentFile) {
  Write("components/bad.yaml", R"(apiVersion: sluice.dev/v1
kind: Component
inputs:
  lr: {type: float}
  data: {type: artifact, default: x}
step:
  command: [python3, "{{ component.dir }}/train.py", "{{ params.rate }}", "{{ inputs.lrr }}"]
  code: [missing.py]
)");
  EXPECT_EQ(Lint(R"(  - name: train
    uses: components/bad.yaml
)"),
            "components/bad.yaml:4:14: error: invalid input type 'float'; valid values are: string, int, number, "
            "bool, list, artifact\n"
            "components/bad.yaml:5:35: error: artifact input 'data' cannot have a default; the using step binds it\n"
            "components/bad.yaml:7:58: error: a component sees only its inputs: 'params.rate' cannot be used here; "
            "declare an input and bind it under 'with:' in the step that uses the component\n"
            "components/bad.yaml:7:79: error: unknown input 'lrr' in 'inputs.lrr'; did you mean 'lr'?; declared "
            "inputs are: lr, data\n"
            "components/bad.yaml:8:10: error: code file 'missing.py' not found (looked for components/missing.py); "
            "code paths are relative to the component file\n"
            "pipeline.yaml:15:11: error: component 'components/bad.yaml' has errors (reported above); fix them "
            "first\n");
}

TEST_F(ComponentsTest, AMissingComponentFileIsReportedAtUses) {
  EXPECT_EQ(Lint(R"(  - name: train
    uses: components/nope.yaml
)"),
            "pipeline.yaml:15:11: error: cannot read component file 'components/nope.yaml' (looked for "
            "components/nope.yaml): No such file or directory; 'uses' paths are relative to the pipeline file\n");
}

// A component graph: train (the one-step train.yaml) then score, each
// reading the component's inputs; its outputs come from its steps.
const char* kChain = R"(apiVersion: sluice.dev/v1
kind: Component
metadata: {name: chain}
inputs:
  model: {type: string}
  dataset: {type: artifact}
outputs:
  artifacts:
    model: "{{ steps.train.outputs.artifacts.model }}"
  params:
    score: "{{ steps.score.outputs.params.score }}"
steps:
  - name: train
    uses: train.yaml
    with: {model: "{{ inputs.model }}", dataset: "{{ inputs.dataset }}"}
  - name: score
    inputs:
      model: "{{ steps.train.outputs.artifacts.model }}"
    command: [python3, "{{ component.dir }}/score.py", "{{ inputs.model }}", "{{ inputs.dataset }}"]
    code: [score.py]
    outputs:
      params: [{name: score, path: score.txt}]
)";

TEST_F(ComponentsTest, AComponentGraphExpandsIntoItsStepsNamedUnderTheUsingStep) {
  Write("components/chain.yaml", kChain);
  Write("components/score.py", "print('scoring')\n");
  LoadResult r = Load(R"(  - name: chain
    uses: components/chain.yaml
    foreach: "{{ params.models }}"
    when: "{{ params.rate > 0.1 }}"
    with:
      model: "{{ item }}"
      dataset: "{{ steps.prepare.outputs.artifacts.dataset }}"
  - name: report
    command: [python3, -c, pass, "{{ steps.chain.outputs.params.score }}"]
)");
  ASSERT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  ASSERT_EQ(r.spec->steps.size(), 4u);
  const StepSpec& train = r.spec->steps[1];
  const StepSpec& score = r.spec->steps[2];
  EXPECT_EQ(train.name, "chain/train");
  EXPECT_EQ(score.name, "chain/score");
  // The nested component's step keeps its own component; the graph's own
  // step is recorded with the graph.
  EXPECT_EQ(train.component_file, "components/train.yaml");
  EXPECT_EQ(train.command[1].text, "{{ pipeline.dir }}/components/train.py");
  EXPECT_EQ(train.inputs.at("model").text, "{{ item }}");
  EXPECT_EQ(train.inputs.at("dataset").text, "{{ steps.prepare.outputs.artifacts.dataset }}");
  EXPECT_EQ(score.component_file, "components/chain.yaml");
  EXPECT_EQ(score.component_digest.size(), 64u);
  EXPECT_EQ(score.code, (std::vector<std::string>{"components/score.py", "components/chain.yaml"}));
  EXPECT_EQ(score.command[1].text, "{{ pipeline.dir }}/components/score.py");
  EXPECT_EQ(score.command[2].text, "{{ inputs.model }}");
  EXPECT_EQ(score.command[3].text, "{{ steps.prepare.outputs.artifacts.dataset }}");
  EXPECT_EQ(score.inputs.at("model").text, "{{ steps.chain/train.outputs.artifacts.model }}");
  // One chain per item, and the using step's `when` decides for each step.
  for (const StepSpec* s : {&train, &score}) {
    ASSERT_TRUE(s->foreach.has_value()) << s->name;
    EXPECT_EQ(s->foreach->group, "chain");
    ASSERT_TRUE(s->when.has_value()) << s->name;
    EXPECT_EQ(s->when->text, "{{ params.rate > 0.1 }}");
  }
  EXPECT_EQ(StepDependencies(score), (std::vector<std::string>{"prepare", "chain/train"}));
  EXPECT_EQ(r.spec->steps[3].command[3].text, "{{ steps.chain/score.outputs.params.score }}");
}

TEST_F(ComponentsTest, MistakesInAComponentGraphAreReportedInTheirFile) {
  Write("components/graph.yaml", R"(apiVersion: sluice.dev/v1
kind: Component
inputs:
  model: {type: string}
outputs:
  params:
    score: "{{ steps.scor.outputs.params.score }}"
    other: "{{ steps.a.outputs.params.nothing }}"
steps:
  - name: a
    command: [python3, "{{ pipeline.dir }}/a.py", "{{ params.rate }}", "{{ steps.b.outputs.params.x }}"]
    outputs:
      params: [{name: x, path: x}]
  - name: b
    command: [python3, b.py, "{{ steps.a.outputs.params.x }}"]
    outputs:
      params: [{name: x, path: x}]
)");
  EXPECT_EQ(Lint(R"(  - name: g
    uses: components/graph.yaml
    with: {model: logreg}
)"),
            "components/graph.yaml:7:16: error: unknown step 'scor' in 'steps.scor.outputs.params.score'\n"
            "components/graph.yaml:8:16: error: step 'a' has no output parameter 'nothing'; it declares: x\n"
            "components/graph.yaml:10:5: error: dependency cycle: a -> b -> a\n"
            "components/graph.yaml:11:28: error: a component names its files with {{ component.dir }}, not "
            "{{ pipeline.dir }}\n"
            "components/graph.yaml:11:55: error: a component sees only its inputs: 'params.rate' cannot be used "
            "here; declare an input and bind it under 'with:' in the step that uses the component\n"
            "pipeline.yaml:15:11: error: component 'components/graph.yaml' has errors (reported above); fix them "
            "first\n");
}

TEST_F(ComponentsTest, AStepUsingAComponentGraphBindsItsInputsAndSetsOnlyWhereAndWhen) {
  Write("components/chain.yaml", kChain);
  Write("components/score.py", "print('scoring')\n");
  EXPECT_EQ(Lint(R"(  - name: chain
    uses: components/chain.yaml
    retries: {limit: 2}
    image: python:3.12
    with:
      model: "{{ params.models }}"
      dataset: "{{ params.name }}"
      seed: 1
  - name: report
    command: [python3, -c, pass, "{{ steps.chain.outputs.params.nothing }}"]
)"),
            "pipeline.yaml:16:5: error: 'retries' cannot be set on a step that runs a component graph: it would "
            "retry each inner step on its own, not the group as a whole as Argo retries a DAG task; set 'retries' "
            "on the component's steps\n"
            "pipeline.yaml:17:5: error: 'image' comes from the component; a step that runs a component graph may "
            "set only: name, uses, with, depends, when, foreach, parallelism, minSuccessRatio\n"
            "pipeline.yaml:19:14: error: input 'model' of component components/chain.yaml "
            "(components/chain.yaml:5:3) expects string, got list\n"
            "pipeline.yaml:20:16: error: input 'dataset' of component components/chain.yaml "
            "(components/chain.yaml:6:3) expects an artifact, got string\n"
            "pipeline.yaml:21:7: error: component components/chain.yaml has no input 'seed'; its inputs are: "
            "model, dataset\n"
            "pipeline.yaml:23:38: error: step 'chain' has no output parameter 'nothing'; it declares: score\n");
}

TEST_F(ComponentsTest, AComponentGraphMayUseAnotherComponentGraph) {
  Write("components/chain.yaml", kChain);
  Write("components/score.py", "print('scoring')\n");
  Write("components/twice.yaml", R"(apiVersion: sluice.dev/v1
kind: Component
metadata: {name: twice}
inputs:
  dataset: {type: artifact}
outputs:
  params:
    first: "{{ steps.one.outputs.params.score }}"
steps:
  - name: one
    uses: chain.yaml
    with: {model: logreg, dataset: "{{ inputs.dataset }}"}
  - name: two
    uses: chain.yaml
    depends: [one]
    with: {model: forest, dataset: "{{ inputs.dataset }}"}
)");
  LoadResult r = Load(R"(  - name: t
    uses: components/twice.yaml
    with: {dataset: "{{ steps.prepare.outputs.artifacts.dataset }}"}
  - name: show
    command: [echo, "{{ steps.t.outputs.params.first }}"]
)");
  ASSERT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  std::vector<std::string> names;
  for (const auto& s : r.spec->steps) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"prepare", "t/one/train", "t/one/score", "t/two/train", "t/two/score",
                                             "show"}));
  const StepSpec& two_train = r.spec->steps[3];
  EXPECT_EQ(two_train.inputs.at("model").text, "{{ 'forest' }}");  // a bound literal, as an expression
  EXPECT_EQ(two_train.inputs.at("dataset").text, "{{ steps.prepare.outputs.artifacts.dataset }}");
  EXPECT_EQ(StepDependencies(two_train), (std::vector<std::string>{"t/one/train", "t/one/score", "prepare"}));
  EXPECT_EQ(r.spec->steps[2].component_file, "components/chain.yaml");
  EXPECT_EQ(r.spec->steps[5].command[1].text, "{{ steps.t/one/score.outputs.params.score }}");
}

}  // namespace
}  // namespace sluice::dsl
