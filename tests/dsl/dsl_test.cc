// Loading valid pipelines: every DSL feature lands in the right spec field.

#include "dsl/dsl.h"

#include <gtest/gtest.h>

namespace sluice::dsl {
namespace {

using std::chrono::milliseconds;

PipelineSpec MustLoad(const std::string& yaml) {
  LoadResult r = LoadPipelineString(yaml, "p.yaml");
  EXPECT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  return r.ok() ? *r.spec : PipelineSpec{};
}

const char* kHeader = "apiVersion: sluice.dev/v1\nkind: Pipeline\nmetadata: {name: t}\n";

TEST(LoadPipeline, RetrainExampleLoadsCleanly) {
  LoadResult r = LoadPipelineFile(std::string(SLUICE_SOURCE_DIR) + "/examples/retrain/pipeline.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  EXPECT_TRUE(r.diagnostics.empty()) << FormatDiagnosticsText(r.diagnostics);
  const PipelineSpec& s = *r.spec;
  EXPECT_EQ(s.api_version, "sluice.dev/v1");
  EXPECT_EQ(s.kind, "Pipeline");
  EXPECT_EQ(s.name, "retrain");
  EXPECT_EQ(s.labels.at("team"), "ml-platform");
  EXPECT_EQ(s.file_digest.size(), 64u);
  ASSERT_EQ(s.params.size(), 5u);
  EXPECT_EQ(s.params[0].name, "models");
  EXPECT_EQ(s.params[0].type, ParamType::kList);
  EXPECT_EQ(*s.params[0].default_value, Json::parse(R"(["logreg","random_forest","gradient_boosting"])"));
  EXPECT_EQ(s.params[1].type, ParamType::kNumber);
  EXPECT_EQ(*s.params[2].default_value, 42);
  EXPECT_EQ(s.timeout, milliseconds(3600000));
  ASSERT_EQ(s.steps.size(), 8u);
  ASSERT_EQ(s.finally_steps.size(), 1u);
  EXPECT_TRUE(s.finally_steps[0].is_finally);

  const StepSpec& prepare = s.steps[0];
  EXPECT_EQ(prepare.name, "prepare");
  EXPECT_EQ(prepare.type, "container");
  EXPECT_EQ(prepare.image, "python:3.11-slim");  // from defaults
  EXPECT_EQ(prepare.timeout, milliseconds(600000));
  EXPECT_EQ(prepare.retries.limit, 1);
  EXPECT_EQ(prepare.retries.backoff, milliseconds(1000));
  EXPECT_EQ(prepare.retries.max_backoff, milliseconds(10000));
  EXPECT_EQ(prepare.retries.retry_on, RetryOn::kOnError);
  EXPECT_EQ(prepare.resources.cpu_millis, 500);
  EXPECT_EQ(prepare.resources.memory_bytes, 512LL << 20);
  ASSERT_EQ(prepare.command.size(), 8u);
  EXPECT_EQ(prepare.command[1].text, "{{ pipeline.dir }}/steps/prepare.py");
  // prepare, train and evaluate use the components of examples/components.
  EXPECT_EQ(prepare.command[1].loc.ToString(), std::string(SLUICE_SOURCE_DIR) + "/examples/components/prepare.yaml:17:23");
  EXPECT_EQ(prepare.component_file, "../components/prepare.yaml");
  EXPECT_EQ(prepare.code, (std::vector<std::string>{"steps/prepare.py", "../components/prepare.yaml"}));
  EXPECT_EQ(prepare.output_artifacts[0].type, ArtifactType::kDataset);
  EXPECT_EQ(prepare.output_params[0].path, "data/rows.txt");

  const StepSpec& train = s.steps[1];
  ASSERT_TRUE(train.foreach.has_value());
  EXPECT_EQ(train.foreach->kind, ForEachSpec::Kind::kExpression);
  EXPECT_EQ(train.foreach->expression.text, "{{ params.models }}");
  EXPECT_EQ(train.foreach->parallelism, 2);
  EXPECT_EQ(train.resources.cpu_millis, 1000);            // step overrides
  EXPECT_EQ(train.resources.memory_bytes, 512LL << 20);   // default kept
  EXPECT_EQ(train.inputs.at("dataset").text, "{{ steps.prepare.outputs.artifacts.dataset }}");
  EXPECT_EQ(StepDependencies(train), std::vector<std::string>{"prepare"});

  EXPECT_EQ(s.steps[2].metrics_file, "metrics.json");
  EXPECT_EQ(StepDependencies(s.steps[3]), (std::vector<std::string>{"evaluate", "train"}));
  const StepSpec& reg = s.steps[4];
  ASSERT_TRUE(reg.when.has_value());
  EXPECT_EQ(reg.when->text, "{{ steps.select.outputs.metrics.accuracy > params.threshold }}");
  EXPECT_EQ(StepDependencies(reg), std::vector<std::string>{"select"});
  EXPECT_EQ(s.finally_steps[0].code, std::vector<std::string>{"steps/report.py"});
}

TEST(LoadPipeline, DefaultsApplyAndStepsOverride) {
  PipelineSpec s = MustLoad(std::string(kHeader) + R"yaml(
defaults:
  image: base:1
  timeout: 5m
  priority: 3
  executor: kubernetes
  cache: {enabled: false, maxAge: 1d}
  env: {A: "1", B: "2"}
  retries: {limit: 2, backoff: 2s}
  resources: {cpu: 2, memory: 1Gi, gpu: 1}
steps:
  - name: plain
    command: [echo]
  - name: custom
    command: [echo]
    image: custom:2
    timeout: 30s
    priority: -1
    executor: local
    cache: {enabled: true}
    env: {B: "override", C: "3"}
    retries: {limit: 0}
    resources: {memory: 256Mi}
)yaml");
  ASSERT_EQ(s.steps.size(), 2u);
  const StepSpec& p = s.steps[0];
  EXPECT_EQ(p.image, "base:1");
  EXPECT_EQ(p.timeout, milliseconds(300000));
  EXPECT_EQ(p.priority, 3);
  EXPECT_EQ(p.executor, "kubernetes");
  EXPECT_FALSE(p.cache.enabled);
  EXPECT_EQ(p.cache.max_age, milliseconds(86400000));
  ASSERT_EQ(p.env.size(), 2u);
  EXPECT_EQ(p.retries.limit, 2);
  EXPECT_EQ(p.resources.gpu, 1);
  const StepSpec& c = s.steps[1];
  EXPECT_EQ(c.image, "custom:2");
  EXPECT_EQ(c.timeout, milliseconds(30000));
  EXPECT_EQ(c.priority, -1);
  EXPECT_EQ(c.executor, "local");
  EXPECT_TRUE(c.cache.enabled);
  EXPECT_EQ(c.cache.max_age, milliseconds(86400000));  // merged field by field
  ASSERT_EQ(c.env.size(), 3u);
  EXPECT_EQ(c.env[0].name, "A");
  EXPECT_EQ(c.env[1].value.text, "override");
  EXPECT_EQ(c.env[2].name, "C");
  EXPECT_EQ(c.retries.limit, 0);
  EXPECT_EQ(c.retries.backoff, milliseconds(2000));
  EXPECT_EQ(c.resources.cpu_millis, 2000);
  EXPECT_EQ(c.resources.memory_bytes, 256LL << 20);
}

TEST(LoadPipeline, EveryStepFeature) {
  PipelineSpec s = MustLoad(std::string(kHeader) + R"yaml(
params:
  n: 3
  flag: {type: bool, default: true, description: a flag, secret: true}
  names: [x, y]
  required_one: {type: string}
timeout: 2h
executor: kubernetes
namespace: ml
steps:
  - name: src
    command: [python3, -c, "print(1)"]
    workdir: "work/{{ params.n }}"
    code: [a.py, b.py]
    outputs:
      artifacts:
        - {name: data, path: out/data.csv, type: dataset}
        - {name: other, path: o}
      params:
        - {name: count, path: count.txt}
      metrics: m.json
  - name: literal-fan
    foreach: [1, {a: b}, three]
    parallelism: 0
    command: [echo, "{{ item }}", "{{ item_index }}"]
  - name: range-fan
    foreach: {range: {start: 2, end: 10, step: 4}}
    command: [echo, "{{ item }}"]
  - name: short-range
    foreach: {range: 3}
    command: [echo, "{{ item }}"]
  - name: use
    depends: [literal-fan]
    inputs: {data: "{{ steps.src.outputs.artifacts.data }}"}
    when: steps.src.outputs.metrics.loss < 0.5 && params.flag
    ifUpstreamSkipped: run
    retries: {limit: 3, backoff: 500ms, factor: 1.5, maxBackoff: 1m, retryOn: OnFailure}
    timeout: 1h30m
    priority: 7
    cache: {maxAge: 12h, ignoreInputs: [data], envIgnore: [SEED]}
    resources:
      cpu: "250m"
      memory: 1G
      gpu: 2
      nodeSelector: {pool: gpu}
      tolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]
    env:
      SEED: 7
      PASSWORD: {secret: {name: db, key: password}}
      COUNT: "{{ steps.src.outputs.params.count }}"
    command: [echo, "{{ inputs.data }}"]
  - name: train
    type: tfjob
    tfjob: {replicas: {worker: 2}, image: tf:2}
  - name: no-cache
    command: [echo]
    cache: false
    retries: 2
finally:
  - name: report
    command: [echo, "{{ run.status }}", "{{ run.id }}", "{{ pipeline.name }}"]
schedule:
  cron: "0 3 * * *"
  timezone: Europe/Paris
  concurrencyPolicy: Forbid
  startingDeadline: 5m
  catchup: latest
  catchupLimit: 2
  historyLimit: 5
  params: {n: "4", required_one: "{{ params.n }}"}
)yaml");
  EXPECT_EQ(s.timeout, milliseconds(7200000));
  EXPECT_EQ(s.executor, "kubernetes");
  EXPECT_EQ(s.namespace_, "ml");
  ASSERT_EQ(s.params.size(), 4u);
  EXPECT_EQ(s.params[0].type, ParamType::kInt);  // inferred from the shorthand
  EXPECT_EQ(*s.params[0].default_value, 3);
  EXPECT_TRUE(s.params[1].secret);
  EXPECT_EQ(s.params[1].description, "a flag");
  EXPECT_EQ(s.params[2].type, ParamType::kList);
  EXPECT_TRUE(s.params[3].required);
  EXPECT_FALSE(s.params[3].default_value.has_value());

  const StepSpec& src = s.steps[0];
  EXPECT_EQ(src.workdir->text, "work/{{ params.n }}");
  EXPECT_EQ(src.code, (std::vector<std::string>{"a.py", "b.py"}));
  ASSERT_EQ(src.output_artifacts.size(), 2u);
  EXPECT_EQ(src.output_artifacts[0].type, ArtifactType::kDataset);
  EXPECT_EQ(src.output_artifacts[1].type, ArtifactType::kOther);
  EXPECT_EQ(src.output_params[0].name, "count");
  EXPECT_EQ(src.metrics_file, "m.json");

  const ForEachSpec& lit = *s.steps[1].foreach;
  EXPECT_EQ(lit.kind, ForEachSpec::Kind::kItems);
  EXPECT_EQ(Json(lit.items), Json::parse(R"([1, {"a": "b"}, "three"])"));
  const ForEachSpec& range = *s.steps[2].foreach;
  EXPECT_EQ(range.kind, ForEachSpec::Kind::kRange);
  EXPECT_EQ(range.range_start, 2);
  EXPECT_EQ(range.range_end, 10);
  EXPECT_EQ(range.range_step, 4);
  EXPECT_EQ(s.steps[3].foreach->range_end, 3);
  EXPECT_EQ(s.steps[3].foreach->range_start, 0);

  const StepSpec& use = s.steps[4];
  EXPECT_EQ(use.depends, std::vector<std::string>{"literal-fan"});
  EXPECT_EQ(use.when->text, "steps.src.outputs.metrics.loss < 0.5 && params.flag");
  EXPECT_EQ(use.upstream_skipped, UpstreamSkippedPolicy::kRun);
  EXPECT_EQ(use.retries.limit, 3);
  EXPECT_EQ(use.retries.backoff, milliseconds(500));
  EXPECT_EQ(use.retries.factor, 1.5);
  EXPECT_EQ(use.retries.max_backoff, milliseconds(60000));
  EXPECT_EQ(use.retries.retry_on, RetryOn::kOnFailure);
  EXPECT_EQ(use.timeout, milliseconds(5400000));
  EXPECT_EQ(use.priority, 7);
  EXPECT_EQ(use.cache.max_age, milliseconds(43200000));
  EXPECT_EQ(use.cache.ignore_inputs, std::vector<std::string>{"data"});
  EXPECT_EQ(use.cache.env_ignore, std::vector<std::string>{"SEED"});
  EXPECT_EQ(use.resources.cpu_millis, 250);
  EXPECT_EQ(use.resources.memory_bytes, 1000000000);
  EXPECT_EQ(use.resources.gpu, 2);
  EXPECT_EQ(use.resources.node_selector.at("pool"), "gpu");
  EXPECT_EQ(use.resources.tolerations[0]["operator"], "Exists");
  ASSERT_EQ(use.env.size(), 3u);
  EXPECT_EQ(use.env[0].value.text, "7");
  ASSERT_TRUE(use.env[1].secret.has_value());
  EXPECT_EQ(use.env[1].secret->name, "db");
  EXPECT_EQ(use.env[1].secret->key, "password");
  EXPECT_EQ(StepDependencies(use), (std::vector<std::string>{"literal-fan", "src"}));

  const StepSpec& tf = s.steps[5];
  EXPECT_EQ(tf.type, "tfjob");
  EXPECT_EQ(tf.config, Json::parse(R"({"replicas": {"worker": 2}, "image": "tf:2"})"));
  EXPECT_TRUE(tf.command.empty());
  EXPECT_FALSE(s.steps[6].cache.enabled);
  EXPECT_EQ(s.steps[6].retries.limit, 2);

  ASSERT_TRUE(s.schedule.has_value());
  EXPECT_EQ(s.schedule->cron, std::vector<std::string>{"0 3 * * *"});
  EXPECT_EQ(s.schedule->timezone, "Europe/Paris");
  EXPECT_EQ(s.schedule->concurrency_policy, "Forbid");
  EXPECT_EQ(s.schedule->starting_deadline, milliseconds(300000));
  EXPECT_EQ(s.schedule->catchup, "latest");
  EXPECT_EQ(s.schedule->catchup_limit, 2);
  EXPECT_EQ(s.schedule->history_limit, 5);
  EXPECT_EQ(s.schedule->params.at("n").text, "4");
}

TEST(LoadPipeline, ArtifactStoreKey) {
  PipelineSpec s = MustLoad(std::string(kHeader) + "artifacts: s3://ml-artifacts/team-a/\nsteps:\n  - name: a\n    command: [echo]\n");
  EXPECT_EQ(s.artifacts, "s3://ml-artifacts/team-a/");
  EXPECT_EQ(MustLoad(std::string(kHeader) + "steps:\n  - name: a\n    command: [echo]\n").artifacts, "");
  LoadResult bad = LoadPipelineString(std::string(kHeader) + "artifacts: s3://ml_artifacts/a//b\nsteps:\n  - name: a\n    command: [echo]\n", "p.yaml");
  EXPECT_EQ(FormatDiagnosticsText(bad.diagnostics),
            "p.yaml:4:12: error: invalid artifact store: 's3://ml_artifacts/a//b': bucket name 'ml_artifacts' is not "
            "valid (3 to 63 lower-case letters, digits, '-' and '.')\n");
  bad = LoadPipelineString(std::string(kHeader) + "artifacts: {bucket: b}\nsteps:\n  - name: a\n    command: [echo]\n", "p.yaml");
  EXPECT_EQ(FormatDiagnosticsText(bad.diagnostics), "p.yaml:4:12: error: 'artifacts' must be a string, got a map\n");
}

TEST(LoadPipeline, TemplateLocationsPointAtTheText) {
  PipelineSpec s = MustLoad(std::string(kHeader) + "steps:\n  - name: a\n    command: [echo, '{{ run.id }}', plain]\n");
  EXPECT_EQ(s.steps[0].loc.ToString(), "p.yaml:5:5");
  EXPECT_EQ(s.steps[0].command[1].loc.ToString(), "p.yaml:6:22");  // after the quote
  EXPECT_EQ(s.steps[0].command[2].loc.ToString(), "p.yaml:6:37");
}

TEST(LoadPipeline, AnchorsAndAliasesAreResolved) {
  PipelineSpec s = MustLoad(std::string(kHeader) + R"yaml(
steps:
  - name: a
    command: &cmd [echo, hi]
  - name: b
    command: *cmd
)yaml");
  ASSERT_EQ(s.steps[1].command.size(), 2u);
  EXPECT_EQ(s.steps[1].command[1].text, "hi");
}

TEST(LoadPipeline, ErrorsComeInFileOrderAndWarningsDoNotBlock) {
  LoadResult warn = LoadPipelineString(std::string(kHeader) +
                                           "steps:\n  - name: a\n    command: [echo]\n    parallelism: 2\n",
                                       "w.yaml");
  ASSERT_TRUE(warn.ok());
  EXPECT_EQ(FormatDiagnosticsText(warn.diagnostics),
            "w.yaml:7:18: warning: 'parallelism' has no effect without 'foreach'\n");
  EXPECT_EQ(warn.ErrorCount(), 0u);

  LoadResult bad = LoadPipelineString(std::string(kHeader) +
                                          "steps:\n  - name: b\n    command: [echo]\n    timeout: 3\n"
                                          "  - name: a\n    command: [echo]\n    priority: x\n",
                                      "e.yaml");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.ErrorCount(), 2u);
  EXPECT_EQ(FormatDiagnosticsText(bad.diagnostics),
            "e.yaml:7:14: error: 'timeout': invalid duration '3': add a unit, e.g. '3s' or '3m'\n"
            "e.yaml:10:15: error: 'priority' must be an integer, got 'x'\n");
}

TEST(LoadPipeline, UnreadableFileIsADiagnostic) {
  LoadResult r = LoadPipelineFile("/nonexistent/dir/p.yaml");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(FormatDiagnosticsText(r.diagnostics),
            "/nonexistent/dir/p.yaml: error: cannot read the pipeline file: No such file or directory\n");
}

TEST(LoadPipeline, DuplicateKeysInLargeMapsAreFound) {
  std::string yaml = std::string(kHeader) + "params:\n";
  for (int i = 0; i < 40; ++i) yaml += "  p" + std::to_string(i) + ": 1\n";
  yaml += "  p7: 2\nsteps:\n  - {name: a, command: [echo]}\n";
  LoadResult r = LoadPipelineString(yaml, "big.yaml");
  EXPECT_EQ(FormatDiagnosticsText(r.diagnostics),
            "big.yaml:45:3: error: duplicate key 'p7' (first defined at line 12); remove one of them\n");
}

TEST(FormatDiagnostics, Json) {
  LoadResult r = LoadPipelineString(std::string(kHeader) + "steps:\n  - name: a\n    comand: [echo]\n", "j.yaml");
  Json got = Json::parse(FormatDiagnosticsJson(r.diagnostics));
  EXPECT_EQ(got, Json::parse(R"([
    {"file": "j.yaml", "line": 6, "column": 5, "severity": "error",
     "message": "unknown key 'comand' in step 'a'; did you mean 'command'?"}
  ])"));
  EXPECT_EQ(FormatDiagnosticsJson({}), "[]\n");
}

PipelineSpec ParamsSpec() {
  return MustLoad(std::string(kHeader) + R"yaml(
params:
  epochs: {type: int, default: 3}
  lr: {type: number, default: 0.1}
  deploy: {type: bool, default: false}
  models: {type: list, default: [a]}
  name: {type: string}
steps:
  - {name: a, command: [echo]}
)yaml");
}

TEST(BindParams, TypedValuesAndDefaults) {
  PipelineSpec s = ParamsSpec();
  auto r = BindParams(s, {{"epochs", "10"}, {"lr", "1e-3"}, {"deploy", "true"}, {"models", "x, y"}, {"name", "n"}});
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(*r, Json::parse(R"({"epochs": 10, "lr": 0.001, "deploy": true, "models": ["x", "y"], "name": "n"})"));
  auto d = BindParams(s, {{"name", "only"}, {"models", R"(["p", 2])"}});
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(*d, Json::parse(R"({"epochs": 3, "lr": 0.1, "deploy": false, "models": ["p", 2], "name": "only"})"));
  EXPECT_EQ((*BindParams(s, {{"name", "x"}, {"lr", "2"}}))["lr"], 2);
}

TEST(BindParams, AllErrorsInOneMessage) {
  PipelineSpec s = ParamsSpec();
  auto r = BindParams(s, {{"epochs", "ten"}, {"deploy", "maybe"}, {"lrr", "1"}, {"models", "[1,"}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.error().message(),
            "parameter 'deploy' expects bool, got 'maybe' (give true or false)\n"
            "parameter 'epochs' expects int, got 'ten'\n"
            "unknown parameter 'lrr'; did you mean 'lr'?\n"
            "parameter 'models' expects list, got '[1,' (give a JSON array or comma-separated values)\n"
            "missing required parameter 'name'; pass -p name=VALUE");
}

TEST(LoadPipeline, KubernetesSectionKeptBesideTheOperatorSection) {
  PipelineSpec s = MustLoad(std::string(kHeader) + R"yaml(
steps:
  - name: fit
    image: trainer:1
    command: [python3, fit.py]
    kubernetes: {serviceAccountName: trainer, queue: team-a}
  - name: dist
    type: tfjob
    image: tf:2
    kubernetes: {priorityClassName: high}
    tfjob:
      replicas: {Worker: {replicas: 2}}
)yaml");
  ASSERT_EQ(s.steps.size(), 2u);
  EXPECT_EQ(s.steps[0].config, Json::parse(R"({"kubernetes": {"serviceAccountName": "trainer", "queue": "team-a"}})"));
  EXPECT_EQ(s.steps[1].config,
            Json::parse(R"({"replicas": {"Worker": {"replicas": 2}}, "kubernetes": {"priorityClassName": "high"}})"));
}

// defaults.kubernetes is merged key by key into each step's section; the
// step's own keys win.
TEST(LoadPipeline, KubernetesDefaultsMergeIntoEachStep) {
  PipelineSpec s = MustLoad(std::string(kHeader) + R"yaml(
defaults:
  kubernetes: {object: job, queue: team-a}
steps:
  - name: fit
    image: trainer:1
    command: [python3, fit.py]
    kubernetes: {object: pod}
  - name: report
    image: trainer:1
    command: [python3, report.py]
)yaml");
  ASSERT_EQ(s.steps.size(), 2u);
  EXPECT_EQ(s.steps[0].config, Json::parse(R"({"kubernetes": {"object": "pod", "queue": "team-a"}})"));
  EXPECT_EQ(s.steps[1].config, Json::parse(R"({"kubernetes": {"object": "job", "queue": "team-a"}})"));
}

}  // namespace
}  // namespace sluice::dsl
