// The training operator: `Worker: 2` is short for `Worker: {replicas: 2}` in
// both the local plan and the Kubernetes object, so one YAML runs both ways.

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace sluice::operators
