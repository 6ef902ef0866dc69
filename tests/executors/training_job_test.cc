// Replica planning for tfjob/pytorchjob tasks: the processes, their exact
// environment contract and success rules, and config errors.
#include "operators/training/local_plan.h"

#include <gtest/gtest.h>

namespace sluice::local {
namespace {

// Hands out 2000, 2001, ... so addresses are predictable.
PortAllocator CountingPorts() {
  auto next = std::make_shared<int>(2000);
  return [next]() -> Result<int> { return (*next)++; };
}

Task MakeTask(const std::string& type, const std::string& config_json) {
  Task task;
  task.id = 1;
  task.step = "train";
  task.instance = "train";
  task.operator_type = type;
  task.argv = {"python3", "train.py"};
  task.env = {{"EPOCHS", "3"}};
  task.config = Json::parse(config_json);
  return task;
}

std::vector<std::string> Names(const TaskPlan& plan) {
  std::vector<std::string> out;
  for (const auto& r : plan.replicas) out.push_back(r.Name());
  return out;
}

TEST(PlanTaskTest, ContainerIsOneProcessWithTheTaskEnv) {
  Task task = MakeTask("container", "{}");
  auto plan = PlanTask(task, CountingPorts());
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_FALSE(plan->distributed);
  EXPECT_EQ(Names(*plan), (std::vector<std::string>{"main"}));
  EXPECT_EQ(plan->replicas[0].argv, task.argv);
  EXPECT_EQ(plan->replicas[0].env, task.env);
  EXPECT_EQ(plan->success_set, (std::vector<size_t>{0}));
}

TEST(PlanTaskTest, TfJobSetsTheTrainingOperatorsTfConfig) {
  Task task = MakeTask("tfjob", R"({"replicas": {
      "Worker": {"replicas": 2},
      "PS": {"replicas": 1},
      "Chief": {"replicas": 1, "command": ["python3", "chief.py"], "env": {"ROLE": "lead"}},
      "Evaluator": {"replicas": 1}}})");
  auto plan = PlanTask(task, CountingPorts());
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_TRUE(plan->distributed);
  EXPECT_EQ(Names(*plan), (std::vector<std::string>{"chief-0", "worker-0", "worker-1", "ps-0",
                                                    "evaluator-0"}));
  // Ports are taken in replica order: chief, worker, ps; cluster keys sorted.
  const std::string cluster =
      R"({"chief":["127.0.0.1:2000"],"ps":["127.0.0.1:2003"],)"
      R"("worker":["127.0.0.1:2001","127.0.0.1:2002"]})";
  EXPECT_EQ(plan->replicas[2].env.at("TF_CONFIG"),
            R"({"cluster":)" + cluster + R"(,"task":{"type":"worker","index":1},"environment":"cloud"})");
  EXPECT_EQ(plan->replicas[4].env.at("TF_CONFIG"),
            R"({"cluster":)" + cluster +
                R"(,"task":{"type":"evaluator","index":0},"environment":"cloud"})");
  EXPECT_EQ(plan->replicas[0].argv, (std::vector<std::string>{"python3", "chief.py"}));
  EXPECT_EQ(plan->replicas[0].env.at("ROLE"), "lead");
  EXPECT_EQ(plan->replicas[1].argv, task.argv);
  EXPECT_EQ(plan->replicas[1].env.count("ROLE"), 0u);
  EXPECT_EQ(plan->replicas[3].env.at("EPOCHS"), "3");
  EXPECT_EQ(plan->replicas[3].env.at("SLUICE_REPLICA_TYPE"), "ps");
  EXPECT_EQ(plan->replicas[3].env.at("SLUICE_REPLICA_INDEX"), "0");
  EXPECT_EQ(plan->success_set, (std::vector<size_t>{0}));  // the chief
}

TEST(PlanTaskTest, TfJobWithoutChiefSucceedsOnWorkerZeroOrAllWorkers) {
  auto plan = PlanTask(MakeTask("tfjob", R"({"replicas": {"Worker": {"replicas": 3}}})"),
                       CountingPorts());
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_EQ(plan->success_set, (std::vector<size_t>{0}));

  plan = PlanTask(MakeTask("tfjob", R"({"successPolicy": "AllWorkers",
                                        "replicas": {"Worker": {"replicas": 3}}})"),
                  CountingPorts());
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_EQ(plan->success_set, (std::vector<size_t>{0, 1, 2}));
}

TEST(PlanTaskTest, AcceptsTheSectionUnderItsOwnKeyAndKubeflowSpelling) {
  auto plan = PlanTask(
      MakeTask("tfjob", R"({"tfjob": {"tfReplicaSpecs": {"worker": {"replicas": 1}}}})"),
      CountingPorts());
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_EQ(plan->replicas[0].env.at("TF_CONFIG"),
            R"({"cluster":{"worker":["127.0.0.1:2000"]},"task":{"type":"worker","index":0},)"
            R"("environment":"cloud"})");
}

TEST(PlanTaskTest, PyTorchJobSetsMasterAddrRankAndWorldSize) {
  auto plan = PlanTask(MakeTask("pytorchjob", R"({"nprocPerNode": 2, "replicas": {
                                                   "Worker": {"replicas": 2},
                                                   "Master": {"replicas": 1}}})"),
                       CountingPorts());
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_EQ(Names(*plan), (std::vector<std::string>{"master-0", "worker-0", "worker-1"}));
  std::map<std::string, std::string> expected = {
      {"EPOCHS", "3"},
      {"MASTER_ADDR", "127.0.0.1"},
      {"MASTER_PORT", "2000"},
      {"PET_MASTER_ADDR", "127.0.0.1"},
      {"PET_MASTER_PORT", "2000"},
      {"PET_NNODES", "3"},
      {"PET_NODE_RANK", "2"},
      {"PET_NPROC_PER_NODE", "2"},
      {"RANK", "2"},
      {"SLUICE_REPLICA_INDEX", "1"},
      {"SLUICE_REPLICA_TYPE", "worker"},
      {"WORLD_SIZE", "6"},
  };
  EXPECT_EQ(plan->replicas[2].env, expected);
  EXPECT_EQ(plan->replicas[0].env.at("RANK"), "0");
  EXPECT_EQ(plan->success_set, (std::vector<size_t>{0}));
}

TEST(PlanTaskTest, PyTorchJobWithoutMasterRanksWorkersFromZero) {
  auto plan = PlanTask(
      MakeTask("pytorchjob", R"({"nprocPerNode": "auto", "replicas": {"Worker": {"replicas": 2}}})"),
      CountingPorts());
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_EQ(plan->replicas[0].env.at("RANK"), "0");
  EXPECT_EQ(plan->replicas[1].env.at("RANK"), "1");
  EXPECT_EQ(plan->replicas[1].env.at("WORLD_SIZE"), "2");
  EXPECT_EQ(plan->replicas[1].env.at("PET_NPROC_PER_NODE"), "auto");
  EXPECT_EQ(plan->success_set, (std::vector<size_t>{0, 1}));
}

struct BadConfig {
  std::string type;
  std::string config;
  std::string message;
};

class PlanTaskErrorTest : public testing::TestWithParam<BadConfig> {};

TEST_P(PlanTaskErrorTest, ReportsTheOffendingKey) {
  auto plan = PlanTask(MakeTask(GetParam().type, GetParam().config), CountingPorts());
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(plan.error().message(), GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, PlanTaskErrorTest,
    testing::Values(
        BadConfig{"tfjob", R"({})",
                  "tfjob: 'replicas' must map replica types (Chief, Master, Worker, PS, "
                  "Evaluator) to {replicas: N}, e.g. replicas: {Worker: {replicas: 2}}"},
        BadConfig{"tfjob", R"({"replicas": {"Wroker": {"replicas": 2}}})",
                  "tfjob: unknown replica type 'Wroker'; expected one of Chief, Master, Worker, "
                  "PS, Evaluator"},
        BadConfig{"tfjob", R"({"replicas": {"Worker": {"replicas": "2"}}})",
                  "tfjob.replicas.Worker.replicas must be an integer from 0 to 1024"},
        BadConfig{"tfjob", R"({"replicas": {"Worker": {"command": "python3 w.py"}}})",
                  "tfjob.replicas.Worker.command must be a non-empty list of strings"},
        BadConfig{"tfjob", R"({"replicas": {"Worker": {"env": {"N": 1}}}})",
                  "tfjob.replicas.Worker.env.N must be a string"},
        BadConfig{"tfjob", R"({"successPolicy": "AllChiefs", "replicas": {"Worker": {}}})",
                  "tfjob.successPolicy must be \"\" (chief, else worker 0) or \"AllWorkers\""},
        BadConfig{"tfjob", R"({"replicas": {"PS": {"replicas": 1}}})",
                  "tfjob: needs a Chief, a Master or at least one Worker; it succeeds when the "
                  "Chief (or worker 0) succeeds"},
        BadConfig{"tfjob", R"({"replicas": {"Chief": {"replicas": 2}}})",
                  "tfjob: at most one Chief (or Master) replica is allowed"},
        BadConfig{"pytorchjob", R"({"replicas": {"Worker": {"replicas": 0}}})",
                  "pytorchjob: all replica counts are 0; nothing would run"},
        BadConfig{"pytorchjob", R"({"replicas": {"Master": {}, "master": {}}})",
                  "pytorchjob: replica type 'master' is given twice (names are "
                  "case-insensitive)"},
        BadConfig{"pytorchjob", R"({"nprocPerNode": 0, "replicas": {"Master": {}}})",
                  "pytorchjob.nprocPerNode must be a positive integer or a string such as "
                  "\"auto\""},
        BadConfig{"deploy", R"({})",
                  "the local executor cannot run steps of type 'deploy'; it runs container, "
                  "tfjob, pytorchjob and trainjob steps"}));

TEST(PlanTaskTest, ContainerWithoutCommandIsAnError) {
  Task task = MakeTask("container", "{}");
  task.argv.clear();
  auto plan = PlanTask(task, CountingPorts());
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().message(), "the step has no command; set 'command: [program, args...]'");
}

TEST(PlanTaskTest, PortAllocationFailureIsReturned) {
  PortAllocator none = []() -> Result<int> { return Error(Status::Unavailable("no ports")); };
  auto plan = PlanTask(MakeTask("pytorchjob", R"({"replicas": {"Master": {}}})"), none);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error(), Status::Unavailable("no ports"));
}

}  // namespace
}  // namespace sluice::local
