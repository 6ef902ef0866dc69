// End to end with the real `sluice` binary: a run whose deploy step leaves a
// model server and its canary proxy running says so in its summary (where
// they listen, the command that stops them), and that command, run as shown
// where the pipeline ran, stops them without --state-dir.

#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "operators/serving/process.h"
#include "operators/serving/service_state.h"
#include "run_test_util.h"
#include "serving_test_util.h"

namespace sluice::serving {
namespace {

namespace fs = std::filesystem;
using testing::MakeTempDir;
using testing::Ran;
using testing::RunBounded;
using testing::WriteFile;

constexpr char kService[] = "summary-svc";

class RunSummaryTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir("sluice-run-summary-"); }
  void TearDown() override {
    RunBounded({SLUICE_SERVING_BIN, "undeploy", "--service", kService, "--state-dir", dir_ + "/.sluice"},
               dir_, std::chrono::seconds(60));
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_F(RunSummaryTest, NamesWhatTheRunLeftServingAndUndeployFindsTheStoreByDefault) {
  WriteFile(dir_ + "/pipeline.yaml", std::string(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: serve-demo}
steps:
  - name: model
    command: [sh, -c, "echo '{\"answer\": 1}' > model.json"]
    outputs:
      artifacts:
        - {name: model, path: model.json, type: model}
  - name: deploy
    type: deploy
    inputs:
      model: "{{ steps.model.outputs.artifacts.model }}"
    deploy:
      service: )") + kService + R"(
      model: "{{ inputs.model }}"
      serve:
        command: [python3, )" + FAKE_MODEL_SERVER + R"(, --model, "${model}", --port, "${port}"]
      readiness: {path: /healthz, timeout: 60s}
)");
  Ran run = RunBounded({SLUICE_BIN, "run", "pipeline.yaml", "--run-id", "serve-1"}, dir_,
                       std::chrono::seconds(120));
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;

  auto state = LoadServiceState(dir_ + "/.sluice", kService);
  ASSERT_TRUE(state && state->has_value());
  const ServiceState& st = **state;
  ASSERT_TRUE(st.proxy && st.stable);
  std::ostringstream expected;
  expected << "run serve-1 Succeeded in ";
  const std::string tail = run.out.substr(run.out.find(expected.str()));
  std::ostringstream left;
  left << "left running: service " << kService << " at " << st.proxy->Endpoint()
       << " (canary proxy, pid " << st.proxy->process.pid << "); model server " << st.stable->name
       << " at " << st.stable->url << " (pid " << st.stable->process.pid
       << ", 100% of the traffic)\n  stop it: " << SLUICE_SERVING_BIN << " undeploy --service "
       << kService << "\n";
  EXPECT_EQ(tail.substr(tail.find('\n') + 1), left.str()) << run.out;

  // Where the pipeline ran, the command as shown finds the store itself.
  Ran undeploy = RunBounded({SLUICE_SERVING_BIN, "undeploy", "--service", kService}, dir_,
                            std::chrono::seconds(60));
  EXPECT_EQ(undeploy.exit_code, 0) << undeploy.err;
  EXPECT_EQ(undeploy.err, std::string("sluice-serving undeploy: service ") + kService + " stopped\n");
  EXPECT_FALSE(IsAlive(st.proxy->process));
  EXPECT_FALSE(IsAlive(st.stable->process));

  // Elsewhere there is no store to default to: a usage error that says so.
  fs::create_directories(dir_ + "/elsewhere");
  Ran nowhere = RunBounded({SLUICE_SERVING_BIN, "undeploy", "--service", kService},
                           dir_ + "/elsewhere", std::chrono::seconds(60));
  EXPECT_EQ(nowhere.exit_code, 2);
  EXPECT_EQ(nowhere.err, "sluice-serving undeploy: error: no sluice store in " + dir_ +
                             "/elsewhere/.sluice: run this where the pipeline ran, or pass "
                             "--state-dir (or set SLUICE_STATE_DIR)\n");
}

}  // namespace
}  // namespace sluice::serving
