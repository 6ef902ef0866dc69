// `sluice import-run`: a finished Argo Workflow (as `kubectl get workflow -o
// json` prints it) mapped back to sluice's runs, steps and attempts.
#include "engine/compile/argo_import.h"

#include <gtest/gtest.h>

namespace sluice::compile {
namespace {

// A Workflow compiled from
//
//   steps:
//     - name: prepare            (retries: {limit: 1}; failed once)
//       outputs: {artifacts: [{name: dataset, path: data, type: dataset}],
//                 params: [{name: rows, path: rows.txt}]}
//     - name: train
//       foreach: [logreg, rf]
//       inputs: {dataset: "{{ steps.prepare.outputs.artifacts.dataset }}"}
//       outputs: {metrics: metrics.json}
//     - name: register
//       when: "{{ params.threshold > 2 }}"
//   finally:
//     - name: report
//
// after it ran under the workflow-controller (node ids shortened).
constexpr const char* kWorkflow = R"json({
  "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
  "metadata": {"name": "demo-x7k2p", "namespace": "ml", "creationTimestamp": "2026-11-25T18:00:00Z",
    "annotations": {"sluice.dev/pipeline": "demo", "sluice.dev/pipeline-digest": "abc123"}},
  "spec": {"entrypoint": "main", "arguments": {"parameters": [
      {"name": "threshold", "value": "1"}, {"name": "models", "value": "[\"logreg\",\"rf\"]"},
      {"name": "label", "value": "nightly"}]},
    "templates": [
      {"name": "main", "dag": {"tasks": []}},
      {"name": "prepare", "metadata": {"annotations": {"sluice.dev/step": "prepare",
        "sluice.dev/artifacts": "dataset=dataset"}}},
      {"name": "train", "metadata": {"annotations": {"sluice.dev/step": "train",
        "sluice.dev/inputs": "dataset=a0"}}},
      {"name": "register", "metadata": {"annotations": {"sluice.dev/step": "register"}}},
      {"name": "sluice-finally", "dag": {"tasks": []}},
      {"name": "report", "metadata": {"annotations": {"sluice.dev/step": "report"}}}]},
  "status": {"phase": "Succeeded", "startedAt": "2026-11-25T18:00:01Z", "finishedAt": "2026-11-25T18:01:00Z",
    "nodes": {
      "w": {"id": "w", "name": "demo-x7k2p", "displayName": "demo-x7k2p", "type": "DAG", "templateName": "main",
            "phase": "Succeeded", "children": ["p"]},
      "p": {"id": "p", "name": "demo-x7k2p.prepare", "displayName": "prepare", "type": "Retry",
            "templateName": "prepare", "phase": "Succeeded", "children": ["p0", "p1"],
            "startedAt": "2026-11-25T18:00:02Z", "finishedAt": "2026-11-25T18:00:20Z",
            "outputs": {"parameters": [{"name": "rows", "value": "569"},
              {"name": "sluice-artifact-dataset", "value": "/sluice/runs/demo-x7k2p/prepare/p1/data"}],
              "exitCode": "0"}},
      "p0": {"id": "p0", "name": "demo-x7k2p.prepare(0)", "displayName": "prepare(0)", "type": "Pod",
             "templateName": "prepare", "phase": "Failed", "message": "Error (exit code 3)",
             "startedAt": "2026-11-25T18:00:02Z", "finishedAt": "2026-11-25T18:00:08Z",
             "outputs": {"exitCode": "3"}},
      "p1": {"id": "p1", "name": "demo-x7k2p.prepare(1)", "displayName": "prepare(1)", "type": "Pod",
             "templateName": "prepare", "phase": "Succeeded",
             "startedAt": "2026-11-25T18:00:10Z", "finishedAt": "2026-11-25T18:00:20Z",
             "outputs": {"parameters": [{"name": "rows", "value": "569"},
               {"name": "sluice-artifact-dataset", "value": "/sluice/runs/demo-x7k2p/prepare/p1/data"}],
               "exitCode": "0"}},
      "g": {"id": "g", "name": "demo-x7k2p.train", "displayName": "train", "type": "TaskGroup",
            "templateName": "train", "phase": "Succeeded", "children": ["t0", "t1"]},
      "t1": {"id": "t1", "name": "demo-x7k2p.train(1:rf)", "displayName": "train(1:rf)", "type": "Pod",
             "templateName": "train", "phase": "Succeeded",
             "startedAt": "2026-11-25T18:00:22Z", "finishedAt": "2026-11-25T18:00:40.5Z",
             "inputs": {"parameters": [{"name": "a0", "value": "/sluice/runs/demo-x7k2p/prepare/p1/data"}]},
             "outputs": {"parameters": [{"name": "sluice-metrics", "value": "{\"accuracy\": 0.95, \"note\": \"x\"}"}],
               "exitCode": "0"}},
      "t0": {"id": "t0", "name": "demo-x7k2p.train(0:logreg)", "displayName": "train(0:logreg)", "type": "Pod",
             "templateName": "train", "phase": "Succeeded",
             "startedAt": "2026-11-25T18:00:21Z", "finishedAt": "2026-11-25T18:00:30Z",
             "inputs": {"parameters": [{"name": "a0", "value": "/sluice/runs/demo-x7k2p/prepare/p1/data"}]},
             "outputs": {"parameters": [{"name": "sluice-metrics", "value": "{\"accuracy\": 0.9}"}], "exitCode": "0"}},
      "r": {"id": "r", "name": "demo-x7k2p.register", "displayName": "register", "type": "Skipped",
            "templateName": "register", "phase": "Skipped", "message": "when '1 > 2' evaluated false",
            "startedAt": "2026-11-25T18:00:41Z", "finishedAt": "2026-11-25T18:00:41Z"},
      "e": {"id": "e", "name": "demo-x7k2p.onExit", "displayName": "demo-x7k2p.onExit", "type": "DAG",
            "templateName": "sluice-finally", "phase": "Succeeded", "children": ["f"]},
      "f": {"id": "f", "name": "demo-x7k2p.onExit.report", "displayName": "report", "type": "Pod",
            "templateName": "report", "phase": "Succeeded",
            "startedAt": "2026-11-25T18:00:50Z", "finishedAt": "2026-11-25T18:00:59Z",
            "outputs": {"exitCode": "0"}}}}
})json";

TEST(ArgoImportTest, StepsAttemptsPhasesAndOutputs) {
  auto imported = ImportArgoWorkflow(Json::parse(kWorkflow));
  ASSERT_TRUE(imported.has_value()) << imported.error().message();
  const RunRecord& run = imported->run;
  EXPECT_EQ(run.id, "demo-x7k2p");
  EXPECT_EQ(run.pipeline, "demo");
  EXPECT_EQ(run.pipeline_digest, "abc123");
  EXPECT_EQ(run.executor, "argo");
  EXPECT_EQ(run.phase, RunPhase::kSucceeded);
  EXPECT_EQ(run.host, "argo:ml/demo-x7k2p");
  EXPECT_EQ(run.params, Json::parse(R"({"threshold": 1, "models": ["logreg", "rf"], "label": "nightly"})"));
  ASSERT_TRUE(run.started_at && run.finished_at);
  EXPECT_EQ(*run.finished_at - *run.started_at, std::chrono::seconds(59));

  std::vector<std::string> rows;
  for (const auto& s : imported->steps)
    rows.push_back(s.instance + " " + s.step + " " + std::to_string(s.index) + " " + s.item.dump() + " " +
                   NodePhaseName(s.phase) + " attempts=" + std::to_string(s.attempts) +
                   " exit=" + std::to_string(s.exit_code));
  EXPECT_EQ(rows, (std::vector<std::string>{
                      "prepare prepare -1 null Succeeded attempts=2 exit=0",
                      "train[0] train 0 \"logreg\" Succeeded attempts=1 exit=0",
                      "train[1] train 1 \"rf\" Succeeded attempts=1 exit=0",
                      "register register -1 null Skipped attempts=0 exit=-1",
                      "report report -1 null Succeeded attempts=1 exit=0",
                  }));
  EXPECT_EQ(imported->steps[0].output_params, Json::parse(R"({"rows": "569"})"));
  EXPECT_EQ(imported->steps[2].metrics, Json::parse(R"({"accuracy": 0.95})"));
  EXPECT_EQ(imported->steps[3].message, "when '1 > 2' evaluated false");
  ASSERT_TRUE(imported->steps[2].started_at && imported->steps[2].finished_at);
  EXPECT_EQ(*imported->steps[2].finished_at - *imported->steps[2].started_at, std::chrono::milliseconds(18500));

  std::vector<std::string> attempts;
  for (const auto& e : imported->executions) {
    std::string row = e.record.instance + "#" + std::to_string(e.record.attempt) + " " + e.record.outcome +
                      " exit=" + std::to_string(e.record.exit_code) + " node=" + e.record.external_id;
    for (const auto& a : e.inputs) row += " in:" + a.name + "=" + a.path;
    for (const auto& a : e.outputs)
      row += " out:" + a.name + "(" + ArtifactTypeName(a.type) + ")=" + a.path;
    attempts.push_back(row);
  }
  std::sort(attempts.begin(), attempts.end());
  EXPECT_EQ(attempts, (std::vector<std::string>{
                          "prepare#1 Failed exit=3 node=p0",
                          "prepare#2 Succeeded exit=0 node=p1 out:dataset(dataset)=/sluice/runs/demo-x7k2p/prepare/p1/data",
                          "report#1 Succeeded exit=0 node=f",
                          "train[0]#1 Succeeded exit=0 node=t0 in:dataset=/sluice/runs/demo-x7k2p/prepare/p1/data",
                          "train[1]#1 Succeeded exit=0 node=t1 in:dataset=/sluice/runs/demo-x7k2p/prepare/p1/data",
                      }));
}

TEST(ArgoImportTest, RefusesAWorkflowStillRunning) {
  Json wf = Json::parse(kWorkflow);
  wf["status"]["phase"] = "Running";
  auto imported = ImportArgoWorkflow(wf);
  ASSERT_FALSE(imported.has_value());
  EXPECT_EQ(imported.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(imported.error().message(),
            "workflow demo-x7k2p has not finished (phase Running); import it once it has (kubectl wait "
            "--for=jsonpath='{.status.phase}'=Succeeded workflow/demo-x7k2p)");
}

TEST(ArgoImportTest, RefusesAWorkflowNotCompiledBySluice) {
  Json wf = Json::parse(kWorkflow);
  wf["metadata"].erase("annotations");
  auto imported = ImportArgoWorkflow(wf);
  ASSERT_FALSE(imported.has_value());
  EXPECT_EQ(imported.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(imported.error().message(),
            "workflow demo-x7k2p was not compiled by `sluice compile --target argo` (it has no "
            "sluice.dev/pipeline annotation), so its nodes cannot be mapped to pipeline steps");
}

TEST(ArgoImportTest, ParsesKubernetesTimes) {
  auto whole = ParseKubernetesTime("2026-11-25T18:00:01Z");
  auto frac = ParseKubernetesTime("2026-11-25T18:00:01.250Z");
  ASSERT_TRUE(whole && frac);
  EXPECT_EQ(*frac - *whole, std::chrono::milliseconds(250));
  EXPECT_EQ(std::chrono::system_clock::to_time_t(*whole), 1795629601);
  EXPECT_FALSE(ParseKubernetesTime("2026-11-25 18:00:01"));
  EXPECT_FALSE(ParseKubernetesTime("2026-11-25T18:00:01+01:00"));
}

}  // namespace
}  // namespace sluice::compile
