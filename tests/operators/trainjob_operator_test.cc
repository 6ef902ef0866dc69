// `type: trainjob`: one section runs both ways. Locally, one process per node
// with the environment the Trainer's torch runtime gives each node's pod; on
// Kubernetes, a trainer.kubeflow.org/v1alpha1 TrainJob whose state comes
// from its Complete / Failed conditions.

#include "operators/training/trainjob.h"

#include <string>

#include <gtest/gtest.h>

#include "engine/operator.h"

namespace sluice::operators {
namespace {

Task TrainJobTask(const char* config) {
  Task t;
  t.run_id = "r1";
  t.pipeline = "p";
  t.step = "train";
  t.instance = "train";
  t.operator_type = "trainjob";
  t.argv = {"torchrun", "train.py", "--epochs", "3"};
  t.env = {{"LR", "0.1"}};
  t.image = "pytorch/pytorch:2.5";
  t.resources.gpu = 1;
  t.config = Json::parse(config);
  return t;
}

TEST(TrainJobOperatorTest, LocallyEachNodeGetsTheTorchRuntimesEnvironment) {
  TrainJobOperator op;
  int port = 29400;
  auto plan = op.PlanLocal(TrainJobTask(R"({"runtime": "torch-distributed", "numNodes": 3})"),
                           [&] { return Result<int>(port++); });
  ASSERT_TRUE(plan) << plan.error().ToString();
  ASSERT_EQ(plan->replicas.size(), 3u);
  EXPECT_TRUE(plan->distributed);
  EXPECT_EQ(plan->success_set, (std::vector<size_t>{0, 1, 2}));
  const LocalProcess& node = plan->replicas[2];
  EXPECT_EQ(node.Name(), "node-2");
  EXPECT_EQ(node.argv, (std::vector<std::string>{"torchrun", "train.py", "--epochs", "3"}));
  EXPECT_EQ(node.env, (std::map<std::string, std::string>{{"JOB_COMPLETION_INDEX", "2"},
                                                          {"LR", "0.1"},
                                                          {"PET_MASTER_ADDR", "127.0.0.1"},
                                                          {"PET_MASTER_PORT", "29400"},
                                                          {"PET_NNODES", "3"},
                                                          {"PET_NODE_RANK", "2"},
                                                          {"PET_NPROC_PER_NODE", "1"},
                                                          {"SLUICE_REPLICA_INDEX", "2"},
                                                          {"SLUICE_REPLICA_TYPE", "node"}}));
  // Every node shares the one master port.
  EXPECT_EQ(plan->replicas[0].env.at("PET_MASTER_PORT"), "29400");
}

TEST(TrainJobOperatorTest, OnKubernetesItIsATrainJobOnTheNamedRuntime) {
  TrainJobOperator op;
  KubernetesObjectOptions o;
  o.namespace_ = "ml";
  auto object = op.KubernetesObject(
      TrainJobTask(R"({"trainjob": {"runtime": "torch-distributed", "numNodes": 2, "numProcPerNode": 4},
                      "kubernetes": {"queue": "team-a"}})"),
      o);
  ASSERT_TRUE(object) << object.error().ToString();
  EXPECT_EQ((*object)["apiVersion"], "trainer.kubeflow.org/v1alpha1");
  EXPECT_EQ((*object)["kind"], "TrainJob");
  const Json& meta = (*object)["metadata"];
  EXPECT_EQ(meta["namespace"], "ml");
  EXPECT_EQ(meta["labels"]["sluice.dev/run"], "r1");
  EXPECT_EQ(meta["labels"]["sluice.dev/step"], "train");
  EXPECT_EQ(meta["labels"]["kueue.x-k8s.io/queue-name"], "team-a");
  EXPECT_LE(meta["name"].get<std::string>().size(), 40u);
  EXPECT_EQ((*object)["spec"], Json::parse(R"({
    "runtimeRef": {"name": "torch-distributed", "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime"},
    "trainer": {
      "image": "pytorch/pytorch:2.5",
      "command": ["torchrun", "train.py", "--epochs", "3"],
      "numNodes": 2,
      "numProcPerNode": 4,
      "resourcesPerNode": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
      "env": [{"name": "LR", "value": "0.1"},
              {"name": "SLUICE_ATTEMPT", "value": "1"},
              {"name": "SLUICE_INSTANCE", "value": "train"},
              {"name": "SLUICE_PIPELINE", "value": "p"},
              {"name": "SLUICE_RUN_ID", "value": "r1"},
              {"name": "SLUICE_STEP", "value": "train"}]
    }
  })")) << object->dump(2);
  EXPECT_EQ(op.Kind()->pod_name_label, "jobset.sigs.k8s.io/jobset-name");
  EXPECT_EQ(op.Kind()->container_name, "node");
}

TEST(TrainJobOperatorTest, WhatTheTrainJobApiCannotCarryIsAnError) {
  TrainJobOperator op;
  KubernetesObjectOptions o;
  o.object_storage.url = "s3://bucket/sluice";
  Task remote = TrainJobTask(R"({"runtime": "torch-distributed"})");
  remote.files.result_key = "results/r1/train/1";
  EXPECT_EQ(op.KubernetesObject(remote, o).error().message(),
            "step \"train\": trainjob: a TrainJob's pods come from its training runtime, and the TrainJob API has "
            "no field for sluice's launcher (an init container and its volumes); run it without --artifacts s3://");
  // The workspace volume is left out: the runtime owns the pod template.
  KubernetesObjectOptions pvc;
  pvc.workspace_pvc = "sluice-artifacts";
  auto object = op.KubernetesObject(TrainJobTask(R"({"runtime": "torch-distributed"})"), pvc);
  ASSERT_TRUE(object) << object.error().ToString();
  EXPECT_FALSE((*object)["spec"]["trainer"].contains("volumeMounts"));
  EXPECT_EQ(object->dump().find("sluice-artifacts"), std::string::npos);
  EXPECT_EQ(op.KubernetesObject(TrainJobTask(R"({"numNodes": 2})"), {}).error().message(),
            "step \"train\": trainjob: trainjob.runtime is required: the training runtime's name, e.g. runtime: "
            "torch-distributed");
  Task no_image = TrainJobTask(R"({"runtime": "torch-distributed"})");
  no_image.image.clear();
  EXPECT_FALSE(op.KubernetesObject(no_image, {}));
}

TEST(TrainJobOperatorTest, ItsConditionsGiveTheOutcome) {
  TrainJobOperator op;
  auto state = [&](const char* conditions) {
    return op.ReadStatus(Json{{"status", {{"conditions", Json::parse(conditions)}}}});
  };
  WorkloadState running = state(R"([{"type": "Suspended", "status": "False", "reason": "Resumed"}])");
  EXPECT_FALSE(running.finished);
  WorkloadState done = state(R"([{"type": "Complete", "status": "True", "reason": "JobsCompleted",
                                  "message": "jobset completed"}])");
  EXPECT_TRUE(done.finished);
  EXPECT_EQ(done.outcome, TaskOutcome::kSucceeded);
  WorkloadState failed = state(R"([{"type": "Failed", "status": "True", "reason": "FailedJobs",
                                    "message": "jobset failed: node-1 failed"}])");
  EXPECT_EQ(failed.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(failed.message, "TrainJob failed: FailedJobs: jobset failed: node-1 failed");
  WorkloadState late = state(R"([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                  "message": "the TrainJob ran past its deadline"}])");
  EXPECT_EQ(late.outcome, TaskOutcome::kTimedOut);
}

}  // namespace
}  // namespace sluice::operators
