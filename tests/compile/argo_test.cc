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
#ifdef SLUICE_COMPILE_SERVING
#include "engine/compile/serving_objects.h"
#endif

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

// Artifacts through S3: output artifacts with an `s3:` location, input
// artifacts `from` the upstream task at the path the command is given, a
// fan-out's inputs passed through its wrapper, no workspace volume.
ArgoOptions S3Options() {
  ArgoOptions options;
  options.s3 = ArgoS3{};
  options.s3->endpoint = "minio.minio:9000";
  options.s3->insecure = true;
  options.s3->bucket = "ml-artifacts";
  options.s3->prefix = "team-a";
  options.s3->region = "us-east-1";
  return options;
}

TEST(ArgoCompileTest, S3ArtifactsInsteadOfTheWorkspaceVolume) {
  PipelineSpec spec = Load("s3.yaml");
  EXPECT_EQ(spec.artifacts, "s3://ml-artifacts/team-a");
  auto out = CompileToArgo(spec, kData.string(), S3Options());
  ASSERT_TRUE(out.ok()) << out.errors[0].ToString();
  ASSERT_EQ(out.objects.size(), 1u);
  ExpectGolden("s3", ToYaml(out.objects));
}

TEST(ArgoCompileTest, S3ArtifactsRefuseFanInAndNonContainerSteps) {
  auto fan_in = CompileToArgo(Load("train.yaml"), kData.string(), S3Options());
  ASSERT_EQ(fan_in.errors.size(), 1u);
  EXPECT_EQ(fan_in.errors[0].ToString(),
            "train.yaml:32:44: error: step 'pick' reads artifact 'model' of foreach step 'fit': Argo S3 artifacts "
            "cannot gather the outputs of a fan-out (argoproj/argo-workflows#861); compile without --artifacts (the "
            "workspace volume), or pass a parameter instead");
  auto tfjob = CompileToArgo(Load("dist.yaml"), kData.string(), S3Options());
  ASSERT_EQ(tfjob.errors.size(), 1u);
  EXPECT_EQ(tfjob.errors[0].ToString(),
            "dist.yaml:12:5: error: step 'tf' of type tfjob cannot be compiled with S3 artifacts: only container "
            "steps pass artifacts through S3 under Argo; compile without --artifacts (the workspace volume) or "
            "--exclude-step tf");
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

constexpr const char* kThreeSteps = R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: three
defaults:
  image: busybox:1.36
steps:
  - name: train
    command: [echo, train]
  - name: deploy
    type: deploy
    depends: [train]
    deploy: {service: s, model: m}
  - name: smoke
    depends: [deploy]
    command: [echo, smoke]
)yaml";

PipelineSpec LoadString(const std::string& text) {
  auto result = dsl::LoadPipelineString(text, "three.yaml");
  EXPECT_TRUE(result.ok()) << dsl::FormatDiagnosticsText(result.diagnostics);
  return result.ok() ? *result.spec : PipelineSpec{};
}

TEST(ArgoCompileTest, ExcludedStepsAreLeftOutAndNamed) {
  PipelineSpec spec = LoadString(kThreeSteps);
  ArgoOptions options;
  options.exclude_steps = {"deploy", "smoke"};
  auto out = CompileToArgo(spec, kData.string(), options);
  ASSERT_TRUE(out.ok()) << out.errors[0].ToString();
  const Json& wf = out.objects.at(0);
  EXPECT_EQ(wf["metadata"]["annotations"]["sluice.dev/excluded-steps"], "deploy,smoke");
  std::vector<std::string> tasks;
  for (const auto& t : wf["spec"]["templates"][0]["dag"]["tasks"]) tasks.push_back(t["name"]);
  EXPECT_EQ(tasks, (std::vector<std::string>{"train"}));
}

TEST(ArgoCompileTest, ExcludingAStepOthersNeedIsAnError) {
  PipelineSpec spec = LoadString(kThreeSteps);
  ArgoOptions options;
  options.exclude_steps = {"deploy", "nosuch"};
  auto out = CompileToArgo(spec, kData.string(), options);
  std::vector<std::string> messages;
  for (const auto& e : out.errors) messages.push_back(e.ToString());
  EXPECT_EQ(messages, (std::vector<std::string>{
                          "three.yaml: error: --exclude-step nosuch: the pipeline has no step 'nosuch'",
                          "three.yaml:14:5: error: step 'smoke' depends on excluded step 'deploy': exclude it "
                          "too (--exclude-step smoke), or keep 'deploy'",
                      }));
}

TEST(ArgoCompileTest, DeployStepWithoutTheServingObjectsIsRejectedWithItsLine) {
  PipelineSpec spec = LoadString(kThreeSteps);
  auto out = CompileToArgo(spec, kData.string(), {});
  ASSERT_EQ(out.errors.size(), 1u);
  EXPECT_EQ(out.errors[0].ToString(),
            "three.yaml:10:5: error: deploy step 'deploy' cannot be compiled to Argo: this sluice was built "
            "without the serving operator's manifests");
}

// A TrainJob ends with a status condition, which Argo's successCondition
// cannot select: the step is refused at its line, not compiled into a
// resource template that Argo would call done at its creation.
TEST(ArgoCompileTest, TrainJobStepIsRejectedWithItsLine) {
  PipelineSpec spec = LoadString(R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: three
steps:
  - name: finetune
    type: trainjob
    image: pytorch/pytorch:2.5
    command: [torchrun, train.py]
    trainjob: {runtime: torch-distributed, numNodes: 2}
)yaml");
  auto out = CompileToArgo(spec, kData.string(), {});
  ASSERT_EQ(out.errors.size(), 1u);
  EXPECT_EQ(out.errors[0].ToString(),
            "three.yaml:6:5: error: trainjob step 'finetune' cannot be compiled to Argo: a TrainJob ends with its "
            "Complete or Failed status condition, which Argo's successCondition (a label selector over status "
            "paths) cannot select; run it with `sluice run --executor kubernetes`");
}

#ifdef SLUICE_COMPILE_SERVING
// Loaded from its file: the retrain example uses components beside it.
PipelineSpec LoadExample(const fs::path& file) {
  auto loaded = dsl::LoadPipelineFile(file.string());
  EXPECT_TRUE(loaded.ok()) << dsl::FormatDiagnosticsText(loaded.diagnostics);
  return loaded.ok() ? *loaded.spec : PipelineSpec{};
}

// The whole retrain example: the deploy step becomes the serving operator's
// Deployment and Services as resource templates, the traffic-validation step
// the staged rollout (shift, validate, promote or roll back).
TEST(ArgoCompileTest, RetrainWithDeployAndStagedRolloutCompilesWhole) {
  const fs::path dir = fs::path(SLUICE_SOURCE_DIR) / "examples/retrain";
  PipelineSpec spec = LoadExample(dir / "pipeline.yaml");
  ArgoOptions options;
  options.namespace_ = "ml";
  options.sluice_image = "ghcr.io/example/sluice:0.1.0";
  options.serving = OperatorServingObjects();
  auto out = CompileToArgo(spec, dir.string(), options);
  ASSERT_TRUE(out.ok()) << out.errors[0].ToString();
  ASSERT_EQ(out.objects.size(), 1u);
  const Json& wf = out.objects[0];
  EXPECT_FALSE(wf["metadata"]["annotations"].contains("sluice.dev/excluded-steps"));
  std::map<std::string, Json> templates;
  for (const auto& t : wf["spec"]["templates"]) templates[t["name"]] = t;
  auto task_names = [&](const std::string& tmpl) {
    std::vector<std::string> names;
    for (const auto& t : templates.at(tmpl)["dag"]["tasks"])
      names.push_back(t["name"].get<std::string>() + (t.contains("depends") ? " <- " + t["depends"].get<std::string>() : ""));
    return names;
  };
  EXPECT_EQ(task_names("deploy"),
            (std::vector<std::string>{
                "model", "probe", "canary <- model.Succeeded && probe.Succeeded", "scale-stable <- canary.Succeeded",
                "service-canary <- scale-stable.Succeeded",
                "undo-stable <- canary.Failed || scale-stable.Failed || service-canary.Failed",
                "undo-canary <- undo-stable.Succeeded || undo-stable.Failed",
                "undo-service-canary <- undo-canary.Succeeded || undo-canary.Failed",
                "stable <- model.Succeeded && probe.Succeeded", "service <- service-canary.Succeeded || stable.Succeeded"}));
  // 2 replicas: the canary has 1 at 10% and at 50% (no shift for stage 2,
  // as sluice's Shift), 2 at 100%.
  EXPECT_EQ(task_names("validate"),
            (std::vector<std::string>{
                "check", "shift-1-canary", "shift-1-stable <- shift-1-canary.Succeeded",
                "validate-1 <- shift-1-stable.Succeeded", "validate-2 <- validate-1.Succeeded",
                "shift-3-canary <- validate-2.Succeeded", "shift-3-stable <- shift-3-canary.Succeeded",
                "validate-3 <- shift-3-stable.Succeeded", "promote <- validate-3.Succeeded",
                "promote-delete-canary <- promote.Succeeded",
                "promote-delete-service <- promote-delete-canary.Succeeded",
                "rollback <- validate-1.Failed || validate-2.Failed || validate-3.Failed",
                "rollback-delete-canary <- rollback.Succeeded",
                "rollback-delete-service <- rollback-delete-canary.Succeeded",
                "rolled-back <- rollback-delete-service.Succeeded"}));
  ExpectGolden("retrain", ToYaml(out.objects));
}

// A replace deploy has no probe and no canary; a validation of a bare
// endpoint is one check, with no rollout.
TEST(ArgoCompileTest, ReplaceDeployAndEndpointValidation) {
  PipelineSpec spec = Load("serve.yaml");
  ArgoOptions options;
  options.sluice_image = "ghcr.io/example/sluice:0.1.0";
  options.serving = OperatorServingObjects();
  auto out = CompileToArgo(spec, kData.string(), options);
  ASSERT_TRUE(out.ok()) << out.errors[0].ToString();
  std::map<std::string, Json> templates;
  for (const auto& t : out.objects.at(0)["spec"]["templates"]) templates[t["name"]] = t;
  std::vector<std::string> deploy, smoke;
  for (const auto& t : templates.at("deploy")["dag"]["tasks"]) deploy.push_back(t["name"]);
  for (const auto& t : templates.at("smoke")["dag"]["tasks"]) smoke.push_back(t["name"]);
  EXPECT_EQ(deploy, (std::vector<std::string>{"model", "stable", "service"}));
  EXPECT_EQ(smoke, (std::vector<std::string>{"check"}));
  EXPECT_EQ(templates.at("deploy-stable")["resource"]["successCondition"],
            "status.replicas == 3, status.updatedReplicas == 3, status.availableReplicas == 3");
  EXPECT_EQ(templates.at("deploy-stable")["activeDeadlineSeconds"], 120);
  ExpectGolden("serve", ToYaml(out.objects));
}

constexpr const char* kServingSteps = R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: serving
defaults:
  image: busybox:1.36
steps:
  - name: train
    command: [echo, train]
    outputs:
      artifacts: [{name: model, path: model.pkl, type: model}]
  - name: ks
    type: deploy
    deploy:
      service: ks
      model: "{{ steps.train.outputs.artifacts.model }}"
      kubernetes: {kserve: true}
  - name: orphan
    type: traffic-validation
    validation:
      service: elsewhere
      requests: /data/requests.jsonl
  - name: smoke
    command: [echo, "{{ steps.ks.outputs.params.endpoint }}"]
)yaml";

TEST(ArgoCompileTest, AStepNamedLikeAPartOfADeployIsAnError) {
  PipelineSpec spec = Load("serve.yaml");
  spec.steps[0].name = "deploy-model";  // the deploy step's model check is template deploy-model
  spec.steps[1].inputs["model"].text = "{{ steps.deploy-model.outputs.artifacts.model }}";
  ArgoOptions options;
  options.sluice_image = "ghcr.io/example/sluice:0.1.0";
  options.serving = OperatorServingObjects();
  auto out = CompileToArgo(spec, kData.string(), options);
  ASSERT_EQ(out.errors.size(), 1u);
  EXPECT_EQ(out.errors[0].ToString(),
            "serve.yaml: error: two Argo templates would be named 'deploy-model' (a step of that name, and a "
            "part of a deploy or traffic-validation step, or a step's -fanout/-job/-outputs template): rename "
            "the step");
}

TEST(ArgoCompileTest, ServingStepsArgoCannotRunAreRejectedWithTheirLines) {
  auto loaded = dsl::LoadPipelineString(kServingSteps, "serving.yaml");
  ASSERT_TRUE(loaded.ok()) << dsl::FormatDiagnosticsText(loaded.diagnostics);
  ArgoOptions options;
  options.serving = OperatorServingObjects();
  auto messages = [&] {
    std::vector<std::string> m;
    for (const auto& e : CompileToArgo(*loaded.spec, kData.string(), options).errors) m.push_back(e.ToString());
    return m;
  };
  const std::string kserve =
      "serving.yaml:12:5: error: deploy step 'ks' cannot be compiled to Argo: kubernetes.kserve: an "
      "InferenceService is ready when its Ready status condition is True, which Argo's successCondition (a "
      "label selector over status paths) cannot select; deploy KServe with `sluice run --executor kubernetes`";
  const std::string outputs =
      "serving.yaml:24:22: error: cannot compile 'steps.ks.outputs.params.endpoint' to Argo: under Argo, deploy "
      "step 'ks' is a DAG of Kubernetes objects and checks, not the sluice-serving process that writes these "
      "outputs; read them with `sluice run`, or from the cluster in a container step";
  EXPECT_EQ(messages(), (std::vector<std::string>{
                            kserve,
                            "serving.yaml:18:5: error: traffic-validation step 'orphan' cannot be compiled to "
                            "Argo: its checks run `sluice-serving validate` in a pod: name an image that has "
                            "sluice-serving on its PATH with --sluice-image IMAGE",
                            outputs}));
  options.sluice_image = "registry.example/sluice:test";
  EXPECT_EQ(messages(), (std::vector<std::string>{
                            kserve,
                            "serving.yaml:18:5: error: traffic-validation step 'orphan' cannot be compiled to "
                            "Argo: no deploy step upstream of it deploys service \"elsewhere\": the rollout's "
                            "replica counts and its promote come from that step's deploy config; deploy the "
                            "service earlier in the same pipeline, with depends",
                            outputs}));
}
#endif

// examples/distributed: the outputs of a tfjob/pytorchjob step are published
// by a container step after the CR, inside a DAG template named after the step.
TEST(ArgoCompileTest, OutputsOfTrainingJobsArePublishedAfterTheJob) {
  const fs::path dir = fs::path(SLUICE_SOURCE_DIR) / "examples/distributed";
  auto loaded = dsl::LoadPipelineString(Read(dir / "pipeline.yaml"), "pipeline.yaml");
  ASSERT_TRUE(loaded.ok()) << dsl::FormatDiagnosticsText(loaded.diagnostics);
  auto out = CompileToArgo(*loaded.spec, dir.string(), {});
  ASSERT_TRUE(out.ok()) << out.errors[0].ToString();
  const Json& templates = out.objects.at(0)["spec"]["templates"];
  std::vector<std::string> names;
  for (const auto& t : templates) names.push_back(t["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"main", "tf-mean", "tf-mean-job", "tf-mean-outputs", "torch-mean",
                                             "torch-mean-job", "torch-mean-outputs", "compare"}));
  // The DAG passes its inputs (the feature param) on to the CR's template.
  const Json& wrapper = templates[1];
  EXPECT_EQ(wrapper["dag"]["tasks"].dump(),
            R"([{"arguments":{"parameters":[{"name":"a0","value":"{{inputs.parameters.a0}}"}]},)"
            R"("name":"job","template":"tf-mean-job"},)"
            R"({"depends":"job.Succeeded","name":"outputs","template":"tf-mean-outputs"}])");
  EXPECT_EQ(wrapper["outputs"].dump(),
            R"({"parameters":[{"name":"sluice-metrics","valueFrom":)"
            R"({"parameter":"{{tasks.outputs.outputs.parameters.sluice-metrics}}"}}]})");
  EXPECT_EQ(templates[2]["resource"]["action"], "create");
  const Json& env = templates[3]["container"]["env"];
  EXPECT_EQ(env[0].dump(), R"({"name":"SLUICE_WORKDIR","value":"/sluice/runs/{{workflow.name}}/tf-mean"})");
  EXPECT_EQ(env[3].dump(), R"({"name":"SLUICE_METRICS","value":"stats.json"})");
}

// A resource step: Argo's own resource template over the manifest, its
// conditions as written, its templates as Argo parameters; in the manifests,
// the object with the params' values.
TEST(ArgoCompileTest, ResourceStepBecomesAResourceTemplateWithItsConditions) {
  PipelineSpec spec = Load("mpi.yaml");
  auto out = CompileToArgo(spec, kData.string(), {});
  ASSERT_TRUE(out.ok()) << out.errors[0].ToString();
  ExpectGolden("mpi", ToYaml(out.objects));

  auto params = dsl::BindParams(spec, {{"workers", "4"}});
  ASSERT_TRUE(params.has_value()) << params.error().ToString();
  ManifestsOptions options;
  options.run_id = "nightly-1";
  options.executor.manifests.namespace_ = "ml";
  auto objects = CompileToManifests(spec, *params, options);
  ASSERT_TRUE(objects.has_value()) << objects.error().ToString();
  ASSERT_EQ(objects->size(), 2u);
  const Json& mpi = objects->at(1);
  EXPECT_EQ(mpi["kind"], "MPIJob");
  EXPECT_EQ(mpi["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"], 4);
  EXPECT_EQ(mpi["metadata"]["annotations"]["sluice.dev/depends-on"], "prep");
  ExpectGolden("mpi.manifests", ToYaml(*objects));
}

// A sub-pipeline's steps are loaded as steps of their own ("eval/train");
// Argo gets them as DAG tasks named "eval--train", manifests under their
// names. Loaded from the file, as sub-pipeline paths are relative to it. A
// component graph (compgraph.yaml uses one) compiles the same way.
TEST(ArgoCompileTest, SubPipelineStepsBecomeTasksOfTheDag) {
  for (const std::string file : {"subpipe.yaml", "compgraph.yaml"}) {
    SCOPED_TRACE(file);
    auto loaded = dsl::LoadPipelineFile((kData / file).string());
    ASSERT_TRUE(loaded.ok()) << dsl::FormatDiagnosticsText(loaded.diagnostics);
    auto out = CompileToArgo(*loaded.spec, kData.string(), {});
    ASSERT_TRUE(out.ok()) << out.errors[0].ToString();
    std::vector<std::string> tasks;
    for (const auto& t : out.objects[0]["spec"]["templates"][0]["dag"]["tasks"])
      tasks.push_back(t["name"].get<std::string>() + " <- " + t.value("depends", ""));
    EXPECT_EQ(tasks, (std::vector<std::string>{"prepare <- ", "eval--train <- prepare.Succeeded",
                                               "eval--score <- eval--train.Succeeded",
                                               "publish <- eval--score.Succeeded"}));
    if (file == "subpipe.yaml") ExpectGolden("subpipe", ToYaml(out.objects));

    auto objects = CompileToManifests(*loaded.spec, Json::object(), ManifestsOptions());
    ASSERT_TRUE(objects.has_value()) << objects.error().ToString();
    std::vector<std::string> steps;
    for (const auto& o : *objects) steps.push_back(o["metadata"]["annotations"]["sluice.dev/step"]);
    EXPECT_EQ(steps, (std::vector<std::string>{"prepare", "eval/train", "eval/score", "publish"}));
  }
}

// A group fan-out, of a sub-pipeline or of a component graph, has no Argo
// form yet.
TEST(ArgoCompileTest, RejectsASubPipelineRunWithForeach) {
  for (const std::string file : {"subpipe_foreach.yaml", "compgraph_foreach.yaml"}) {
    auto loaded = dsl::LoadPipelineFile((kData / file).string());
    ASSERT_TRUE(loaded.ok()) << dsl::FormatDiagnosticsText(loaded.diagnostics);
    auto out = CompileToArgo(*loaded.spec, kData.string(), {});
    std::vector<std::string> messages;
    for (const auto& e : out.errors) messages.push_back(e.ToString());
    const std::string at = (kData / file).string() + ":13:14: error: step '";
    EXPECT_EQ(messages, (std::vector<std::string>{
                            at + "eval/train': a group of steps run with foreach (a sub-pipeline or a component "
                                 "graph) has no Argo form; run it with `sluice run`",
                            at + "eval/score': a group of steps run with foreach (a sub-pipeline or a component "
                                 "graph) has no Argo form; run it with `sluice run`",
                        }));
  }
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
  options.executor.manifests.object = "job";
  auto objects = CompileToManifests(spec, *params, options);
  ASSERT_TRUE(objects.has_value()) << objects.error().ToString();
  std::vector<std::string> names;
  for (const auto& o : *objects) names.push_back(o["metadata"]["annotations"]["sluice.dev/instance"]);
  // fit fans out over the models param's default; the finally step comes last.
  EXPECT_EQ(names, (std::vector<std::string>{"sweep[0]", "sweep[1]", "sweep[2]", "prep", "fit[0]", "fit[1]",
                                             "fit[2]", "pick", "ship", "notify"}));
  ExpectGolden("train.manifests", ToYaml(*objects));

  // By default a container step is a bare Pod: the same pod, the same
  // dependency annotations.
  options.executor.manifests.object = "pod";
  auto pods = CompileToManifests(spec, *params, options);
  ASSERT_TRUE(pods.has_value()) << pods.error().ToString();
  ASSERT_EQ(pods->size(), objects->size());
  for (size_t i = 0; i < pods->size(); ++i) {
    const Json& pod = pods->at(i);
    const Json& job = objects->at(i);
    EXPECT_EQ(pod["kind"], "Pod");
    EXPECT_EQ(pod["metadata"]["annotations"].value("sluice.dev/depends-on", ""),
              job["metadata"]["annotations"].value("sluice.dev/depends-on", ""));
  }
  ExpectGolden("train.manifests.pod", ToYaml(*pods));
}

TEST(ManifestsCompileTest, DeployStepWithoutTheServingObjectsIsRejectedWithItsLine) {
  PipelineSpec spec = LoadString(kThreeSteps);
  auto objects = CompileToManifests(spec, Json::object(), {});
  ASSERT_FALSE(objects.has_value());
  EXPECT_EQ(objects.error().message(),
            "three.yaml:10:5: deploy step 'deploy': this sluice was built without the serving operator's "
            "manifests; compile it with operators/serving, or leave the step out with --exclude-step deploy");
}

#ifdef SLUICE_COMPILE_SERVING
ManifestsOptions ServingManifestsOptions() {
  ManifestsOptions options;
  options.run_id = "nightly-1";
  options.pipeline_dir = "/sluice/src";
  options.executor.manifests.namespace_ = "ml";
  options.executor.manifests.workspace_pvc = "sluice-workspace";
  options.executor.manifests.object = "job";
  options.serving = OperatorServingObjects();
  return options;
}

// The whole retrain example as the Kubernetes executor would run it: the
// Jobs, the canary deploy's Deployment and Services (the model's digest a
// placeholder), and the traffic-validation step, which creates no object,
// named on every object.
TEST(ManifestsCompileTest, RetrainWithCanaryDeployAndHostSideValidation) {
  const fs::path dir = fs::path(SLUICE_SOURCE_DIR) / "examples/retrain";
  PipelineSpec spec = LoadExample(dir / "pipeline.yaml");
  auto params = dsl::BindParams(spec, {});
  ASSERT_TRUE(params.has_value()) << params.error().ToString();
  auto objects = CompileToManifests(spec, *params, ServingManifestsOptions());
  ASSERT_TRUE(objects.has_value()) << objects.error().ToString();
  std::vector<std::string> names;
  for (const auto& o : *objects) {
    names.push_back(o["kind"].get<std::string>() + " " + o["metadata"]["annotations"]["sluice.dev/instance"].get<std::string>());
    EXPECT_EQ(o["metadata"]["annotations"]["sluice.dev/host-steps"], "validate");
    EXPECT_EQ(o["metadata"]["namespace"], "ml");
  }
  EXPECT_EQ(names, (std::vector<std::string>{
                       "Job prepare", "Job requests", "Job train[0]", "Job train[1]", "Job train[2]",
                       "Job evaluate[0]", "Job evaluate[1]", "Job evaluate[2]", "Job select", "Job register",
                       "Deployment deploy", "Service deploy", "Service deploy", "Job report"}));
  const Json& canary = objects->at(10);
  EXPECT_EQ(canary["metadata"]["name"], "breast-cancer-canary");
  EXPECT_EQ(canary["metadata"]["annotations"]["sluice.dev/depends-on"], "select,register");
  EXPECT_EQ(canary["metadata"]["annotations"]["sluice.dev/scales-stable"], "breast-cancer-stable=1");
  EXPECT_EQ(canary["metadata"]["annotations"]["sluice.dev/model-digest"],
            "sha256:<steps.select.outputs.artifacts.best_model.sha256>");
  ExpectGolden("retrain.manifests", ToYaml(*objects));
}

// A replace deploy: the stable Deployment at the config's replicas and its
// Service; a run-time-free validation of a bare endpoint still creates no
// object.
TEST(ManifestsCompileTest, ReplaceDeploy) {
  PipelineSpec spec = Load("serve.yaml");
  auto params = dsl::BindParams(spec, {});
  ASSERT_TRUE(params.has_value()) << params.error().ToString();
  auto objects = CompileToManifests(spec, *params, ServingManifestsOptions());
  ASSERT_TRUE(objects.has_value()) << objects.error().ToString();
  std::vector<std::string> names;
  for (const auto& o : *objects) names.push_back(o["kind"].get<std::string>() + " " + o["metadata"]["name"].get<std::string>());
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names[1], "Deployment fraud-stable");
  EXPECT_EQ(names[2], "Service fraud");
  EXPECT_EQ(objects->at(1)["spec"]["replicas"], 3);
  EXPECT_EQ(objects->at(1)["metadata"]["labels"]["sluice.dev/step"], "deploy");
  ExpectGolden("serve.manifests", ToYaml(*objects));
}

TEST(ManifestsCompileTest, DeployStepsThatCannotBeBuiltAreRejectedWithTheirLines) {
  auto compile = [](const std::string& deploy) {
    PipelineSpec spec = LoadString(std::string(R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: bad-deploy
defaults:
  image: busybox:1.36
steps:
  - name: train
    command: [echo, train]
    outputs:
      params: [{name: svc, path: svc.txt}]
  - name: deploy
    type: deploy
)yaml") + deploy);
    auto objects = CompileToManifests(spec, Json::object(), ServingManifestsOptions());
    return objects ? std::string("ok") : objects.error().message();
  };
  EXPECT_EQ(compile("    foreach: [a, b]\n    deploy: {service: s, model: m}\n"),
            "three.yaml:12:5: deploy step 'deploy': foreach: a deploy step deploys one service; use one "
            "step per service");
  EXPECT_EQ(compile("    deploy: {service: \"{{ steps.train.outputs.params.svc }}\", model: m}\n"),
            "three.yaml:12:5: deploy step 'deploy': deploy.service: '<steps.train.outputs.params.svc>' is "
            "known only at run time, and the Deployment and Service are named after it: write the name, or "
            "take it from a param");
  EXPECT_EQ(compile("    deploy: {service: s, model: m, serve: {image: \"\"}}\n"),
            "three.yaml:12:5: deploy step 'deploy': deploy.serve.image: required on Kubernetes: the serving "
            "image");
}
#endif

}  // namespace
}  // namespace sluice::compile
