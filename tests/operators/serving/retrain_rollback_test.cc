// End to end, the rollback path of examples/retrain with the real `sluice`
// binary, real Python steps and real scikit-learn: run pipeline.yaml (a good
// model is deployed, validated and promoted), then pipeline-regression.yaml in
// the same store (a broken model is deployed as a canary, fails traffic
// validation and is rolled back). Then the store, the CLI and the live
// endpoint must all say that the good model serves again.

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "operators/serving/deploy.h"
#include "operators/serving/service_state.h"
#include "run_test_util.h"
#include "serving_test_util.h"

namespace sluice::serving {
namespace {

namespace fs = std::filesystem;
using testing::MakeTempDir;
using testing::Ran;
using testing::RunBounded;

std::string Example(const std::string& file) {
  return std::string(SLUICE_SOURCE_DIR) + "/examples/retrain/" + file;
}

class RetrainRollbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("sluice-retrain-rollback-");
    ASSERT_FALSE(dir_.empty());
    // A clear skip, not a failure, where the example's Python packages are
    // missing (`.ci/setup` installs examples/requirements.txt).
    Ran probe = RunBounded({"/usr/bin/env", "python3", "-c", "import sklearn, joblib, numpy"}, dir_,
                           std::chrono::seconds(60));
    if (probe.exit_code != 0) {
      GTEST_SKIP() << "scikit-learn is not importable (" << probe.err
                   << "); install examples/requirements.txt";
    }
  }

  void TearDown() override {
    if (dir_.empty()) return;
    // Stop whatever still serves (the proxy and the stable server).
    RunBounded({SLUICE_SERVING_BIN, "undeploy", "--service", "breast-cancer", "--state-dir",
                dir_ + "/.sluice"},
               dir_, std::chrono::seconds(60));
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Ran Sluice(const std::vector<std::string>& args,
             std::chrono::seconds bound = std::chrono::seconds(60)) {
    std::vector<std::string> argv = {SLUICE_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunBounded(argv, dir_, bound);
  }

  static nlohmann::json ParseJson(const Ran& ran) {
    try {
      return nlohmann::json::parse(ran.out);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not JSON: " << e.what() << "\n" << ran.out << ran.err;
      return nullptr;
    }
  }

  std::string dir_;
};

TEST_F(RetrainRollbackTest, WorseCandidateFailsValidationAndThePreviousModelServesAgain) {
  // 1. The good variant: deployed (first deployment: stable at 100%) and validated.
  Ran good = Sluice({"run", Example("pipeline.yaml")}, std::chrono::seconds(600));
  ASSERT_EQ(good.exit_code, 0) << good.out << good.err;
  Ran deployed = Sluice({"lineage", "--deployed", "breast-cancer", "--format", "json"});
  ASSERT_EQ(deployed.exit_code, 0) << deployed.out << deployed.err;
  const nlohmann::json before = ParseJson(deployed)["deployment"];
  const std::string good_digest = before.value("model_digest", "");
  ASSERT_EQ(good_digest.size(), 71u) << deployed.out;
  EXPECT_EQ(before["traffic_percent"], 100);

  // 2. The regression variant, in the same store.
  Ran bad = Sluice({"run", Example("pipeline-regression.yaml")}, std::chrono::seconds(600));
  EXPECT_EQ(bad.exit_code, 1) << bad.out << bad.err;
  const std::string run_id = testing::RunId(bad);
  ASSERT_FALSE(run_id.empty()) << bad.out << bad.err;

  // The run's final phases, as docs/deploy.md documents them.
  Ran status = Sluice({"status", run_id, "--format", "json"});
  ASSERT_EQ(status.exit_code, 0) << status.out << status.err;
  nlohmann::json st = ParseJson(status);
  EXPECT_EQ(st["run"]["phase"], "Failed") << status.out;
  std::map<std::string, std::string> phases;
  for (const auto& s : st["steps"]) phases[s["instance"].get<std::string>()] = s["phase"];
  // The first run computed prepare ... register and requests: cache hits.
  for (const char* cached : {"prepare", "train[0]", "evaluate[2]", "select", "register", "requests"}) {
    EXPECT_EQ(phases[cached], "Cached") << cached << "\n" << status.out;
  }
  for (const char* ok : {"package", "deploy", "report"}) {
    EXPECT_EQ(phases[ok], "Succeeded") << ok << "\n" << status.out;
  }
  EXPECT_EQ(phases["validate"], "Failed") << status.out;

  // The validation step failed its thresholds with the figures named: the
  // always-0 model gets the 53 malignant rows of 143 right.
  Ran log = Sluice({"logs", run_id, "validate"});
  ASSERT_EQ(log.exit_code, 0) << log.out << log.err;
  EXPECT_NE(log.out.find("failed at stage 1/3 (10% traffic): accuracy 0.3706 (143 labelled) < "
                         "min_accuracy 0.9 (passed: error rate 0.0000 (0/143) <= max_error_rate "
                         "0.01; p99 latency "),
            std::string::npos)
      << log.out;
  EXPECT_NE(log.out.find("Rolled back: service breast-cancer serves version " +
                         before["version"].get<std::string>() + " (" + good_digest +
                         ") at 100% again; the candidate was stopped"),
            std::string::npos)
      << log.out;

  // The step's metrics file (a failed step's outputs are not collected into
  // the store, so it is read where the step wrote it): the figures, and the
  // rollback.
  nlohmann::json metrics;
  try {
    metrics = nlohmann::json::parse(
        testing::ReadFile(dir_ + "/.sluice/runs/" + run_id + "/steps/validate/metrics.json"));
  } catch (const std::exception& e) {
    FAIL() << "validate's metrics.json: " << e.what();
  }
  EXPECT_EQ(metrics["passed"], 0);
  EXPECT_EQ(metrics["rolled_back"], 1);
  EXPECT_EQ(metrics["promoted"], 0);
  EXPECT_EQ(metrics["stages_passed"], 0);
  EXPECT_EQ(metrics["requests"], 143);
  EXPECT_EQ(metrics["errors"], 0);
  EXPECT_NEAR(metrics["accuracy"].get<double>(), 53.0 / 143.0, 1e-9);

  // The rollback is recorded, and the previous model digest serves again.
  Ran after = Sluice({"lineage", "--deployed", "breast-cancer", "--format", "json"});
  ASSERT_EQ(after.exit_code, 0) << after.out << after.err;
  nlohmann::json now = ParseJson(after)["deployment"];
  EXPECT_EQ(now["action"], "rollback");
  EXPECT_EQ(now["model_digest"], good_digest);
  EXPECT_EQ(now["version"], before["version"]);
  EXPECT_EQ(now["traffic_percent"], 100);
  EXPECT_EQ(now["run_id"], run_id);
  EXPECT_EQ(now["instance"], "validate");
  EXPECT_EQ(now["endpoint"], before["endpoint"]);

  // The endpoint is still up and answers from the good model only: the
  // server reports the digest it loaded, and every answer comes from it.
  httplib::Client client(now["endpoint"].get<std::string>());
  client.set_connection_timeout(std::chrono::seconds(5));
  client.set_read_timeout(std::chrono::seconds(10));
  for (int i = 0; i < 20; ++i) {
    auto r = client.Get("/healthz");
    ASSERT_TRUE(r) << "GET " << now["endpoint"] << "/healthz: " << httplib::to_string(r.error());
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(nlohmann::json::parse(r->body)["digest"], good_digest) << "request " << i;
  }
  // The service state agrees: one stable backend, no canary.
  auto state = LoadServiceState(dir_ + "/.sluice", "breast-cancer");
  ASSERT_TRUE(state.has_value() && state->has_value());
  EXPECT_FALSE((*state)->candidate.has_value());
  EXPECT_EQ((*state)->stable->model_digest, good_digest);
  EXPECT_EQ((*state)->stable->traffic_percent, 100);
}

}  // namespace
}  // namespace sluice::serving
