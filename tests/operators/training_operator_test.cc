// The training operator: `Worker: 2` is short for `Worker: {replicas: 2}` in
// both the local plan and the Kubernetes object, so one YAML runs both ways.

#include <map>
#include <string>
#include <tuple>

#include <gtest/gtest.h>

#include "engine/launch.h"
#include "engine/operator.h"
#include "operators/training/training.h"

namespace sluice::operators {
namespace {

Task TfTask(const char* config) {
  Task t;
  t.run_id = "r1";
  t.pipeline = "p";
  t.step = "train";
  t.instance = "train";
  t.operator_type = "tfjob";
  t.argv = {"python3", "train.py"};
  t.image = "tf:2";
  t.config = Json::parse(config);
  return t;
}

TEST(TrainingOperatorTest, AReplicaCountAloneIsShortForItsSpec) {
  TrainingOperator tf(TrainingOperator::Flavor::kTensorFlow);
  int port = 20000;
  auto ports = [&] { return Result<int>(port++); };
  auto short_plan = tf.PlanLocal(TfTask(R"({"replicas": {"Worker": 2}})"), ports);
  auto long_plan = tf.PlanLocal(TfTask(R"({"replicas": {"Worker": {"replicas": 2}}})"), ports);
  ASSERT_TRUE(short_plan) << short_plan.error().ToString();
  ASSERT_TRUE(long_plan) << long_plan.error().ToString();
  ASSERT_EQ(short_plan->replicas.size(), 2u);
  EXPECT_EQ(short_plan->replicas[1].Name(), "worker-1");
  EXPECT_EQ(short_plan->success_set, long_plan->success_set);

  auto short_object = tf.KubernetesObject(TfTask(R"({"replicas": {"Worker": 2}})"), {});
  auto long_object = tf.KubernetesObject(TfTask(R"({"replicas": {"Worker": {"replicas": 2}}})"), {});
  ASSERT_TRUE(short_object) << short_object.error().ToString();
  EXPECT_EQ(*short_object, *long_object);
  EXPECT_EQ((*short_object)["spec"]["tfReplicaSpecs"]["Worker"]["replicas"], 2);

  const Operator::ArgoConditions c = tf.ArgoResourceConditions(*short_object);
  EXPECT_EQ(c.success, "status.replicaStatuses.Worker.succeeded == 2");
  EXPECT_EQ(c.failure, "status.replicaStatuses.Worker.failed > 0");
}

TEST(TrainingOperatorTest, ConfigProblemsNameTheValue) {
  TrainingOperator torch(TrainingOperator::Flavor::kPyTorch);
  StepSpec step;
  step.name = "train";
  step.type = "pytorchjob";
  step.config = Json::parse(R"({"replicas": {"Worker": {"env": {"N": 1}}}, "kubernetes": {"queue": "q"}})");
  auto problems = torch.CheckConfig(step);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].path, (std::vector<std::string>{"replicas", "Worker", "env", "N"}));
  EXPECT_EQ(problems[0].message, "pytorchjob.replicas.Worker.env.N must be a string");
}

// With object storage every replica runs through the launcher, and each
// replica's launch spec names the rule that picks the one pod that stores
// the step's outputs (the chief; rank 0 for PyTorch).
TEST(TrainingOperatorTest, ObjectStorageReplicasAgreeOnWhoReports) {
  for (const auto& [flavor, type, reporter] :
       {std::tuple{TrainingOperator::Flavor::kTensorFlow, "tfjob", "tf-chief"},
        std::tuple{TrainingOperator::Flavor::kPyTorch, "pytorchjob", "pytorch-rank0"}}) {
    TrainingOperator op(flavor);
    Task t = TfTask(type == std::string("tfjob") ? R"({"replicas": {"Chief": 1, "Worker": 2}})"
                                                  : R"({"replicas": {"Master": 1, "Worker": 2}})");
    t.operator_type = type;
    t.files.outputs = {{"model", "", "model", ArtifactType::kModel}};
    t.files.code_digest = "sha256:c0de";
    t.files.code_dir = "/ws";
    t.files.result_key = "results/r1/train/attempt-1.json";
    KubernetesObjectOptions o;
    o.object_storage.url = "s3://ml-artifacts/team-a";
    o.object_storage.launcher_image = "registry.example/sluice:1.0";
    auto object = op.KubernetesObject(t, o);
    ASSERT_TRUE(object) << object.error().ToString();
    const Json& specs = (*object)["spec"][type == std::string("tfjob") ? "tfReplicaSpecs" : "pytorchReplicaSpecs"];
    ASSERT_EQ(specs.size(), 2u) << type;
    for (const auto& [replica, spec] : specs.items()) {
      std::string launch;
      for (const auto& e : spec["template"]["spec"]["containers"][0]["env"])
        if (e["name"] == "SLUICE_LAUNCH") launch = e["value"];
      auto parsed = LaunchSpecFromJson(launch);
      ASSERT_TRUE(parsed) << type << " " << replica << ": " << launch;
      EXPECT_EQ(parsed->reporter, reporter) << type << " " << replica;
      EXPECT_EQ(parsed->result_key, "results/r1/train/attempt-1.json");
    }
  }
}

// Which pod reports, from the environment the training-operator gives it.
TEST(TrainingOperatorTest, LaunchReportsPicksOnePodPerJob) {
  LaunchSpec spec;
  auto reports = [&](std::map<std::string, std::string> env) {
    return LaunchReports(spec, [&](const char* name) -> const char* {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  };
  EXPECT_TRUE(reports({}));  // a step of one pod
  spec.reporter = "pytorch-rank0";
  EXPECT_TRUE(reports({{"RANK", "0"}}));
  EXPECT_FALSE(reports({{"RANK", "2"}}));
  EXPECT_FALSE(reports({}));
  spec.reporter = "tf-chief";
  const std::string cluster = R"("cluster": {"chief": ["c:2222"], "worker": ["w0:2222", "w1:2222"], "ps": ["p:2222"]})";
  EXPECT_TRUE(reports({{"TF_CONFIG", "{" + cluster + R"(, "task": {"type": "chief", "index": 0}})"}}));
  EXPECT_FALSE(reports({{"TF_CONFIG", "{" + cluster + R"(, "task": {"type": "worker", "index": 0}})"}}));
  EXPECT_FALSE(reports({{"TF_CONFIG", "{" + cluster + R"(, "task": {"type": "ps", "index": 0}})"}}));
  // Without a chief (or master), worker 0 is the chief.
  const std::string workers = R"("cluster": {"worker": ["w0:2222", "w1:2222"]})";
  EXPECT_TRUE(reports({{"TF_CONFIG", "{" + workers + R"(, "task": {"type": "worker", "index": 0}})"}}));
  EXPECT_FALSE(reports({{"TF_CONFIG", "{" + workers + R"(, "task": {"type": "worker", "index": 1}})"}}));
  EXPECT_FALSE(reports({{"TF_CONFIG", "not json"}}));
  spec.reporter = "a rule from a newer sluice";
  EXPECT_FALSE(reports({{"RANK", "0"}}));
}

}  // namespace
}  // namespace sluice::operators
