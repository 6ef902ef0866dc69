// `sluice serve` with the real Runner and the local executor: real processes,
// a real SQLite store, over HTTP.
#include <gtest/gtest.h>
#include <httplib.h>

#include "engine/server/config.h"
#include "engine/server/server.h"
#include "executors/local/local_executor.h"
#include "server_test_util.h"

namespace sluice::server {
namespace {

TEST(ServerRunnerTest, RunsAPipelineWithRealProcessesAndServesItsLogs) {
  std::string root = testing::MakeTempDir("runner");
  testing::WriteFile(root + "/pipelines/hello.yaml", R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: hello
params:
  who:
    type: string
    default: world
steps:
  - name: greet
    command: [sh, -c, "echo hello {{ params.who }}"]
  - name: after
    depends: [greet]
    command: [sh, -c, "echo done"]
)");
  testing::WriteFile(root + "/server.yaml",
                     "tokens:\n  - name: t\n    sha256: " + HashToken("tok") + "\n");
  ExecutorRegistry executors;
  ASSERT_TRUE(RegisterLocalExecutor(executors).ok());
  ServerOptions o;
  o.pipelines_dir = root + "/pipelines";
  o.state_dir = root + "/state";
  o.listen = "127.0.0.1:0";
  o.config_path = root + "/server.yaml";
  o.run_scheduler = false;
  o.watch = false;
  Server server(o, &executors);
  ASSERT_TRUE(server.Start().ok());
  httplib::Client c("127.0.0.1", server.port());
  httplib::Headers auth = {{"Authorization", "Bearer tok"}};
  auto res = c.Post("/api/v1/pipelines/hello/runs", auth, R"({"params": {"who": "sluice"}})",
                    "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  std::string id = Json::parse(res->body)["run_id"];
  ASSERT_TRUE(server.runs()->WaitIdle(std::chrono::seconds(60)));
  auto run = c.Get(("/api/v1/runs/" + id).c_str(), auth);
  ASSERT_TRUE(run);
  Json j = Json::parse(run->body);
  EXPECT_EQ(j["run"]["phase"], "Succeeded") << run->body;
  ASSERT_EQ(j["steps"].size(), 2u);
  auto log = c.Get(("/api/v1/runs/" + id + "/steps/greet/logs").c_str(), auth);
  ASSERT_TRUE(log);
  EXPECT_NE(log->body.find("hello sluice\n"), std::string::npos) << log->body;
  EXPECT_NE(server.MetricsText().find("sluice_runs_succeeded_total{pipeline=\"hello\"} 1\n"),
            std::string::npos);
  server.Stop();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace sluice::server
