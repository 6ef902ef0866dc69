// End-to-end: `sluice serve` on the live test cluster (tests/k8s). Each test
// starts the real binary as a server over a pipelines directory whose
// pipeline says `executor: kubernetes` and `namespace:` (a namespace of the
// test's own), drives it through the authenticated REST API, and checks the
// steps' Pods (a container step's default object) through the Kubernetes API.
//
//   - a run triggered through the API creates its Pods in the pipeline's
//     namespace and succeeds;
//   - kill -9 of the server while a Kubernetes step runs, then a restart: the
//     in-flight (scheduled) run is resumed under its id, the step's Pod is
//     adopted (same object, attempt 1, no second Pod), and the schedule
//     neither launches that cron time again nor loses it.
//
// Registered with FIXTURES_REQUIRED k8s and LABELS k8s; skipped when the
// cluster's kubeconfig is absent. Waits are on events (process exit through
// a pidfd, watch events) or on API answers, each with a bound.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <httplib.h>

#include "tests/executors/kubernetes/live_cluster.h"
#include "tests/executors/kubernetes/sluice_process.h"

namespace sluice {
using test_support::ReadText;
using test_support::RunObjects;
using test_support::SluiceProcess;
using test_support::WaitUntil;
namespace {

namespace fs = std::filesystem;


constexpr const char* kToken = test_support::kServeToken;
constexpr const char* kTokenSha256 = test_support::kServeTokenSha256;

class KubernetesServeTest : public test_support::LiveServeFixture<::testing::Test> {
 protected:
  void SetUp() override { SetUpSandbox("serve", "sluice-k8s-serve", "pipelines", kTokenSha256); }

  void TearDown() override {
    server_.reset();  // SIGKILL if a test left it running
    TearDownSandbox();
  }

  // Writes pipelines/pipeline.yaml: `body` after a header that runs every
  // step on Kubernetes in this test's namespace.
  void WritePipeline(const std::string& name, const std::string& body) {
    std::ofstream(dir_ / "pipelines" / "pipeline.yaml") << R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: )" << name << R"(
executor: kubernetes
namespace: )" << ns_ << R"(
defaults:
  image: busybox:1.36
  resources: {cpu: 100m, memory: 64Mi}
)" << body;
  }

  // Starts `sluice serve` on a free port with the test cluster's kubeconfig
  // and waits (bounded) until it says where it listens.
  void StartServer() {
    int n = ++starts_;
    server_ = std::make_unique<SluiceProcess>(
        std::vector<std::string>{"serve", "--pipelines", (dir_ / "pipelines").string(), "--store",
                                 (dir_ / "store").string(), "--listen", "127.0.0.1:0", "--config",
                                 (dir_ / "server.yaml").string(), "--kubeconfig", kubeconfig_},
        dir_ / ("serve" + std::to_string(n) + ".out"), dir_ / ("serve" + std::to_string(n) + ".err"));
    const int port = test_support::WaitForListenPort(*server_, std::chrono::seconds(60));
    ASSERT_NE(port, 0) << "sluice serve did not start listening: " << server_->err();
    http_ = std::make_unique<httplib::Client>("127.0.0.1", port);
    http_->set_read_timeout(30, 0);
  }

  // GET `path` with the token; the parsed body (null when it failed).
  Json Get(const std::string& path) {
    auto res = http_->Get(path.c_str(), {{"Authorization", std::string("Bearer ") + kToken}});
    if (!res || res->status != 200) return Json();
    return Json::parse(res->body, nullptr, false);
  }

  // GET /api/v1/runs/RUN until the run has ended, up to `bound`; its body.
  Json WaitForRunEnd(const std::string& run_id, std::chrono::seconds bound) {
    Json run;
    EXPECT_TRUE(WaitUntil(
        [&] {
          run = Get("/api/v1/runs/" + run_id);
          if (!run.is_object() || !run.contains("run")) return false;
          std::string phase = run["run"].value("phase", "");
          return phase != "Pending" && phase != "Running" && !run.value("active", true);
        },
        bound))
        << "run " << run_id << " did not end: " << run.dump();
    return run;
  }

  // instance -> "Phase/attempts/exit_code" from the API's run body.
  static std::map<std::string, std::string> StepPhases(const Json& run) {
    std::map<std::string, std::string> out;
    if (!run.contains("steps")) return out;
    for (const auto& s : run["steps"])
      out[s["instance"].get<std::string>()] = s["phase"].get<std::string>() + "/" +
                                             std::to_string(s["attempts"].get<int>()) + "/" +
                                             std::to_string(s["exit_code"].get<int>());
    return out;
  }

  // The run's Pods in namespace `ns`: name -> "step/attempt".
  std::map<std::string, std::string> Pods(const std::string& ns, const std::string& run_id) {
    return RunObjects(*client_, k8s::PodKind(), ns, run_id);
  }

  // SIGTERM, then a bounded wait for exit code 0.
  void StopServer() {
    ASSERT_EQ(::kill(server_->pid(), SIGTERM), 0);
    EXPECT_EQ(server_->Wait(std::chrono::seconds(60)), 0) << server_->err();
  }

  std::unique_ptr<SluiceProcess> server_;
  std::unique_ptr<httplib::Client> http_;
  int starts_ = 0;
};

TEST_F(KubernetesServeTest, ARunTriggeredThroughTheApiRunsItsPodsInThePipelinesNamespace) {
  const std::string pipeline = "serve-" + tag_;
  WritePipeline(pipeline, R"(steps:
  - name: prepare
    command: [sh, -c, "echo prepare"]
  - name: train
    depends: [prepare]
    command: [sh, -c, "echo train"]
)");
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const std::string run_id = "api-" + tag_;
  const std::string body = Json{{"run_id", run_id}}.dump();
  const std::string path = "/api/v1/pipelines/" + pipeline + "/runs";
  // Without the token: refused, and nothing runs.
  auto refused = http_->Post(path.c_str(), body, "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);
  auto res = http_->Post(path.c_str(), {{"Authorization", std::string("Bearer ") + kToken}}, body,
                         "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  EXPECT_EQ(Json::parse(res->body).value("run_id", ""), run_id);

  Json run = WaitForRunEnd(run_id, std::chrono::minutes(3));
  EXPECT_EQ(run["run"]["phase"], "Succeeded") << run.dump() << server_->err();
  EXPECT_EQ(run["run"]["executor"], "kubernetes");
  EXPECT_EQ(StepPhases(run), (std::map<std::string, std::string>{{"prepare", "Succeeded/1/0"},
                                                                 {"train", "Succeeded/1/0"}}));
  // One Pod per step, in the pipeline's namespace; none in the context's.
  EXPECT_EQ(Pods(ns_, run_id), (std::map<std::string, std::string>{
                                   {operators::ObjectName(run_id, "prepare", 1), "prepare/1"},
                                   {operators::ObjectName(run_id, "train", 1), "train/1"}}));
  EXPECT_EQ(Pods("default", run_id), (std::map<std::string, std::string>{}));
  StopServer();
}

TEST_F(KubernetesServeTest, KillDashNineWhileAStepRunsThenRestartAdoptsItsPod) {
  // A yearly schedule whose state says 2025-12-31 was handled: at start the
  // server catches up the newest missed time, 2026-01-01T00:00:00Z, at once,
  // and no other time falls due while the test runs.
  const std::string pipeline = "cron-" + tag_;
  WritePipeline(pipeline, R"(schedule:
  cron: "0 0 1 1 *"
  catchup: latest
steps:
  - name: prepare
    command: [sh, -c, "echo prepare"]
  - name: slow
    depends: [prepare]
    command: [sh, -c, "sleep 8"]
    kubernetes:
      podAnnotations: {sluice.dev/kwok-duration: "8s"}
)");
  fs::create_directories(dir_ / "store" / "server");
  std::ofstream(dir_ / "store" / "server" / "schedules.json")
      << Json{{"version", 1}, {"last", {{pipeline, "2025-12-31T00:00:00Z"}}}, {"pending", Json::array()}}
             .dump();
  const std::string run_id = pipeline + "-cron-20260101-000000";
  const std::string slow_pod = operators::ObjectName(run_id, "slow", 1);

  ASSERT_NO_FATAL_FAILURE(StartServer());
  // Kill the server once the store shows `slow` Running and its Pod exists.
  std::string slow_uid;
  ASSERT_TRUE(WaitUntil(
      [&] {
        Json run = Get("/api/v1/runs/" + run_id);
        if (StepPhases(run)["slow"] != "Running/1/-1") return false;
        auto pod = client_->Get(k8s::PodKind(), ns_, slow_pod);
        if (!pod) return false;
        slow_uid = (*pod)["metadata"].value("uid", "");
        return true;
      },
      std::chrono::minutes(2)))
      << "the scheduled run's slow step never ran: " << server_->err();
  ASSERT_EQ(::kill(server_->pid(), SIGKILL), 0);
  ASSERT_EQ(server_->Wait(std::chrono::seconds(30)), 128 + SIGKILL);
  const std::string first_err = server_->err();

  ASSERT_NO_FATAL_FAILURE(StartServer());
  Json run = WaitForRunEnd(run_id, std::chrono::minutes(3));
  EXPECT_EQ(run["run"]["phase"], "Succeeded") << run.dump() << first_err << server_->err();
  // Resumed under its own id; `slow` continued its first attempt.
  EXPECT_EQ(StepPhases(run), (std::map<std::string, std::string>{{"prepare", "Succeeded/1/0"},
                                                                 {"slow", "Succeeded/1/0"}}));
  // The same Pod (same uid) was adopted; no second Pod was made.
  auto pod = client_->Get(k8s::PodKind(), ns_, slow_pod);
  ASSERT_TRUE(pod) << pod.error().ToString();
  EXPECT_EQ((*pod)["metadata"].value("uid", ""), slow_uid);
  EXPECT_EQ(Pods(ns_, run_id), (std::map<std::string, std::string>{
                                   {operators::ObjectName(run_id, "prepare", 1), "prepare/1"},
                                   {slow_pod, "slow/1"}}));
  // Exactly one run of the pipeline: the cron time was neither launched a
  // second time after the restart nor lost; the schedule's state has it.
  Json runs = Get("/api/v1/runs?pipeline=" + pipeline);
  ASSERT_TRUE(runs.contains("runs")) << runs.dump();
  std::vector<std::string> ids;
  for (const auto& r : runs["runs"]) ids.push_back(r.value("id", ""));
  EXPECT_EQ(ids, std::vector<std::string>{run_id});
  Json schedules = Get("/api/v1/schedules");
  ASSERT_TRUE(schedules.contains("schedules")) << schedules.dump();
  ASSERT_EQ(schedules["schedules"].size(), 1u) << schedules.dump();
  EXPECT_EQ(schedules["schedules"][0]["last_scheduled"], "2026-01-01T00:00:00Z");
  StopServer();
  EXPECT_EQ(Json::parse(ReadText(dir_ / "store" / "server" / "schedules.json"))["pending"], Json::array());
}

}  // namespace
}  // namespace sluice
