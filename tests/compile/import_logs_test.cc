// `sluice import-run` copies each attempt's pod log into the store, so
// `sluice logs` works on an imported run: the real sluice binary against a
// fake API server that serves the Workflow, its pods and their logs.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "tests/support/subprocess.h"

namespace {

namespace fs = std::filesystem;
using sluice::testutil::RunProcess;

// A Workflow compiled from
//
//   steps:
//     - name: prepare   (retries: {limit: 1}; its first attempt failed)
//   finally:
//     - name: report
//
// after it ran under the workflow-controller. report's pod is gone.
constexpr const char* kWorkflow = R"json({
  "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
  "metadata": {"name": "demo-x7k2p", "namespace": "ml", "creationTimestamp": "2026-11-25T18:00:00Z",
    "annotations": {"sluice.dev/pipeline": "demo", "sluice.dev/pipeline-digest": "abc123"}},
  "spec": {"entrypoint": "main", "templates": [
      {"name": "main", "dag": {"tasks": []}},
      {"name": "prepare", "metadata": {"annotations": {"sluice.dev/step": "prepare"}}},
      {"name": "sluice-finally", "dag": {"tasks": []}},
      {"name": "report", "metadata": {"annotations": {"sluice.dev/step": "report"}}}]},
  "status": {"phase": "Succeeded", "startedAt": "2026-11-25T18:00:01Z", "finishedAt": "2026-11-25T18:01:00Z",
    "nodes": {
      "w": {"id": "w", "name": "demo-x7k2p", "displayName": "demo-x7k2p", "type": "DAG", "templateName": "main",
            "phase": "Succeeded", "children": ["p"]},
      "p": {"id": "p", "name": "demo-x7k2p.prepare", "displayName": "prepare", "type": "Retry",
            "templateName": "prepare", "phase": "Succeeded", "children": ["p0", "p1"],
            "startedAt": "2026-11-25T18:00:02Z", "finishedAt": "2026-11-25T18:00:20Z"},
      "p0": {"id": "p0", "name": "demo-x7k2p.prepare(0)", "displayName": "prepare(0)", "type": "Pod",
             "templateName": "prepare", "phase": "Failed", "message": "Error (exit code 3)",
             "startedAt": "2026-11-25T18:00:02Z", "finishedAt": "2026-11-25T18:00:08Z",
             "outputs": {"exitCode": "3"}},
      "p1": {"id": "p1", "name": "demo-x7k2p.prepare(1)", "displayName": "prepare(1)", "type": "Pod",
             "templateName": "prepare", "phase": "Succeeded",
             "startedAt": "2026-11-25T18:00:10Z", "finishedAt": "2026-11-25T18:00:20Z",
             "outputs": {"exitCode": "0"}},
      "r": {"id": "r", "name": "demo-x7k2p.onExit.report", "displayName": "report", "type": "Pod",
            "templateName": "report", "phase": "Succeeded",
            "startedAt": "2026-11-25T18:00:40Z", "finishedAt": "2026-11-25T18:01:00Z",
            "outputs": {"exitCode": "0"}}}}
})json";

// The Workflow's pods that still exist (report's is gone), labelled and
// annotated as the workflow-controller makes them.
constexpr const char* kPods = R"json({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
  "items": [
    {"metadata": {"name": "demo-x7k2p-prepare-1111", "namespace": "ml",
      "labels": {"workflows.argoproj.io/workflow": "demo-x7k2p"},
      "annotations": {"workflows.argoproj.io/node-id": "p0"}}},
    {"metadata": {"name": "demo-x7k2p-prepare-2222", "namespace": "ml",
      "labels": {"workflows.argoproj.io/workflow": "demo-x7k2p"},
      "annotations": {"workflows.argoproj.io/node-id": "p1"}}}]})json";

class FakeApiServer {
 public:
  FakeApiServer() {
    server_.Get("/apis/argoproj.io/v1alpha1/namespaces/ml/workflows/demo-x7k2p",
                [](const httplib::Request&, httplib::Response& res) { res.set_content(kWorkflow, "application/json"); });
    server_.Get("/api/v1/namespaces/ml/pods", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      selector_ = req.get_param_value("labelSelector");
      res.set_content(kPods, "application/json");
    });
    server_.Get(R"(/api/v1/namespaces/ml/pods/([^/]+)/log)", [](const httplib::Request& req, httplib::Response& res) {
      std::string pod = req.matches[1];
      if (req.get_param_value("container") != "main") {
        res.status = 400;
        return;
      }
      if (pod == "demo-x7k2p-prepare-1111") res.set_content("loading data\nerror: disk full\n", "text/plain");
      else if (pod == "demo-x7k2p-prepare-2222") res.set_content("loading data\n569 rows", "text/plain");
      else res.status = 404;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeApiServer() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  // The label selector of the last pod list.
  std::string selector() {
    std::lock_guard<std::mutex> lock(mu_);
    return selector_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::mutex mu_;
  std::string selector_;
  std::thread thread_;
};

class ImportLogsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sluice-import-logs-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string WriteKubeconfig(int port) {
    std::string path = (dir_ / "kubeconfig").string();
    std::ofstream(path) << "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
                           "clusters: [{name: fake, cluster: {server: \"http://127.0.0.1:"
                        << port
                        << "\"}}]\nusers: [{name: u, user: {token: t}}]\n"
                           "contexts: [{name: fake, context: {cluster: fake, user: u, namespace: ml}}]\n";
    return path;
  }

  fs::path dir_;
};

TEST_F(ImportLogsTest, EachAttemptsPodLogIsCopiedIntoTheStore) {
  FakeApiServer api;
  std::string kubeconfig = WriteKubeconfig(api.port());
  std::string store = (dir_ / "store").string();
  auto imported = RunProcess({SLUICE_BIN, "import-run", "demo-x7k2p", "--namespace", "ml", "--kubeconfig",
                              kubeconfig, "--store", store},
                             dir_.string());
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(imported.out,
            "imported workflow ml/demo-x7k2p as run demo-x7k2p (Succeeded, 2 step instances, 3 attempts, "
            "2 pod logs copied (1 pod gone))\n"
            "artifacts not digested (no --workspace-host-dir): lineage shows steps and params only\n");

  auto latest = RunProcess({SLUICE_BIN, "logs", "demo-x7k2p", "prepare", "--store", store}, dir_.string());
  EXPECT_EQ(latest.exit_code, 0) << latest.err;
  EXPECT_EQ(latest.out, "loading data\n569 rows\n");
  auto first = RunProcess({SLUICE_BIN, "logs", "demo-x7k2p", "prepare", "--attempt", "1", "--store", store},
                          dir_.string());
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, "loading data\nerror: disk full\n");
  EXPECT_EQ(api.selector(), "workflows.argoproj.io/workflow=demo-x7k2p");
  EXPECT_TRUE(fs::exists(fs::path(store) / "runs/demo-x7k2p/logs/prepare.attempt2.log"));
  EXPECT_FALSE(fs::exists(fs::path(store) / "runs/demo-x7k2p/logs/report.attempt1.log"));
}

}  // namespace
