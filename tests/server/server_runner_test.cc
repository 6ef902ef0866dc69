// `sluice serve` with the real Runner and the local executor: real processes,
// a real SQLite store, over HTTP.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <sstream>
#include <thread>
#include <vector>

#include "engine/server/client.h"
#include "engine/server/config.h"
#include "engine/server/server.h"
#include "executors/local/local_executor.h"
#include "server_test_util.h"

namespace sluice::server {
namespace {

// Each run's executors: a local executor of its own, as `sluice serve`
// makes them.
ExecutorsFactory LocalExecutors() {
  return [](const PipelineSpec&, const std::string&) -> Result<std::unique_ptr<ExecutorRegistry>> {
    auto registry = std::make_unique<ExecutorRegistry>();
    if (Status st = RegisterLocalExecutor(*registry); !st.ok()) return Error(st);
    return registry;
  };
}

// A server over `root`/pipelines and `root`/state with the real Runner and
// local executor, token "tok", no scheduler thread.
struct RealServer {
  explicit RealServer(const std::string& root, int run_parallelism = 0) {
    testing::WriteFile(root + "/server.yaml",
                       "tokens:\n  - name: t\n    sha256: " + HashToken("tok") + "\n");
    ServerOptions o;
    o.pipelines_dir = root + "/pipelines";
    o.state_dir = root + "/state";
    o.listen = "127.0.0.1:0";
    o.config_path = root + "/server.yaml";
    o.run_scheduler = false;
    o.watch = false;
    o.run_parallelism = run_parallelism;
    server = std::make_unique<Server>(o, LocalExecutors());
    Status st = server->Start();
    EXPECT_TRUE(st.ok()) << st.ToString();
    client = std::make_unique<httplib::Client>("127.0.0.1", server->port());
  }
  // POSTs a run of `pipeline`; its id, or "" (with a test failure).
  std::string Trigger(const std::string& pipeline, const std::string& body = "{}") {
    auto res = client->Post(("/api/v1/pipelines/" + pipeline + "/runs").c_str(), auth, body,
                            "application/json");
    EXPECT_TRUE(res);
    if (!res) return "";
    EXPECT_EQ(res->status, 201) << res->body;
    return Json::parse(res->body).value("run_id", "");
  }

  std::unique_ptr<Server> server;
  std::unique_ptr<httplib::Client> client;
  httplib::Headers auth = {{"Authorization", "Bearer tok"}};
};

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
  RealServer real(root);
  Server& server = *real.server;
  httplib::Client& c = *real.client;
  httplib::Headers auth = real.auth;
  std::string id = real.Trigger("hello", R"({"params": {"who": "sluice"}})");
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
  real.server.reset();
  std::filesystem::remove_all(root);
}

// Polls the server's /metrics text until it contains every line, up to 30 s.
bool WaitForMetricLines(Server& server, const std::vector<std::string>& lines) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (true) {
    std::string text = server.MetricsText();
    bool all = true;
    for (const auto& line : lines) all = all && text.find(line + "\n") != std::string::npos;
    if (all) return true;
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "metrics never showed the expected lines:\n" << text;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Step durations and cache hits are recorded as steps end, while the run
// goes on; the ready queue counts step instances that wait for a slot.
TEST(ServerRunnerTest, StepMetricsAreLiveAndTheReadyQueueCountsWaitingSteps) {
  std::string root = testing::MakeTempDir("live");
  testing::WriteFile(root + "/pipelines/live.yaml", R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: live
steps:
  - name: quick
    command: [sh, -c, "echo 1 > v.txt"]
    outputs:
      params:
        - {name: v, path: v.txt}
  - name: gate
    depends: [quick]
    command: [sh, -c, "while [ ! -e )" + root + R"(/go ]; do sleep 0.01; done"]
  - name: waiting
    depends: [quick]
    command: [echo, waited]
)");
  RealServer real(root, /*run_parallelism=*/1);  // gate runs, waiting waits for the slot
  Server& server = *real.server;
  std::string id = real.Trigger("live");
  ASSERT_TRUE(WaitForMetricLines(
      server, {"sluice_step_duration_seconds_count{pipeline=\"live\",step=\"quick\",operator=\"container\"} 1",
               "sluice_ready_queue_depth 1"}));
  // All of that while the run is still going.
  EXPECT_EQ(server.store()->GetRun(id).value().phase, RunPhase::kRunning);
  std::string during = server.MetricsText();
  EXPECT_EQ(during.find("sluice_runs_succeeded_total{pipeline=\"live\"}"), std::string::npos);
  EXPECT_EQ(during.find("step=\"gate\""), std::string::npos);

  testing::WriteFile(root + "/go", "");
  ASSERT_TRUE(server.runs()->WaitIdle(std::chrono::seconds(60)));
  std::string after = server.MetricsText();
  for (const char* line : {
           "sluice_ready_queue_depth 0\n",
           "sluice_runs_succeeded_total{pipeline=\"live\"} 1\n",
           "sluice_step_duration_seconds_count{pipeline=\"live\",step=\"gate\",operator=\"container\"} 1\n",
           "sluice_step_duration_seconds_count{pipeline=\"live\",step=\"waiting\",operator=\"container\"} 1\n",
       })
    EXPECT_NE(after.find(line), std::string::npos) << line << after;
  EXPECT_EQ(after.find("sluice_cache_hits_total{"), std::string::npos) << after;

  // Again: quick is a cache hit (counted, no duration); the others run.
  ASSERT_FALSE(real.Trigger("live").empty());
  ASSERT_TRUE(server.runs()->WaitIdle(std::chrono::seconds(60)));
  after = server.MetricsText();
  for (const char* line : {
           "sluice_cache_hits_total{pipeline=\"live\"} 1\n",
           "sluice_step_duration_seconds_count{pipeline=\"live\",step=\"quick\",operator=\"container\"} 1\n",
           "sluice_step_duration_seconds_count{pipeline=\"live\",step=\"gate\",operator=\"container\"} 2\n",
           "sluice_ready_queue_depth 0\n",
       })
    EXPECT_NE(after.find(line), std::string::npos) << line << after;
  real.server.reset();
  std::filesystem::remove_all(root);
}

// Checks `done` every 10 ms until it holds, up to 30 s.
bool WaitFor(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// Runs at once do not share executors: each finds its own steps' results
// (task ids are numbered per run), and cancelling one leaves the others.
TEST(ServerRunnerTest, RunsAtOnceEachHaveTheirOwnExecutors) {
  std::string root = testing::MakeTempDir("together");
  testing::WriteFile(root + "/pipelines/pair.yaml", R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: pair
params:
  tag: {type: string}
steps:
  - name: hold
    command: [sh, -c, "touch )" + root + R"(/started-{{ params.tag }}; while [ ! -e )" + root + R"(/go ]; do sleep 0.01; done"]
  - name: after
    depends: [hold]
    command: [echo, done]
)");
  RealServer real(root);
  Server& server = *real.server;
  std::string a = real.Trigger("pair", R"({"params": {"tag": "a"}})");
  std::string b = real.Trigger("pair", R"({"params": {"tag": "b"}})");
  std::string c = real.Trigger("pair", R"({"params": {"tag": "c"}})");
  ASSERT_TRUE(WaitFor([&] {
    for (const char* tag : {"a", "b", "c"})
      if (!std::filesystem::exists(root + "/started-" + tag)) return false;
    return true;
  })) << "the three runs' first steps did not all start";
  auto cancel = real.client->Post(("/api/v1/runs/" + b + "/cancel").c_str(), real.auth, "", "application/json");
  ASSERT_TRUE(cancel);
  EXPECT_EQ(cancel->status, 202) << cancel->body;
  ASSERT_TRUE(WaitFor([&] {
    auto run = server.store()->GetRun(b);
    return run && IsTerminal(run->phase);
  }));
  testing::WriteFile(root + "/go", "");
  ASSERT_TRUE(server.runs()->WaitIdle(std::chrono::seconds(60)));
  for (const std::string& id : {a, c}) {
    EXPECT_EQ(server.store()->GetRun(id).value().phase, RunPhase::kSucceeded) << id;
    auto steps = server.store()->ListSteps(id);
    ASSERT_TRUE(steps);
    ASSERT_EQ(steps->size(), 2u);
    for (const StepRecord& st : *steps)
      EXPECT_EQ(st.phase, NodePhase::kSucceeded) << id << " " << st.instance << ": " << st.message;
  }
  EXPECT_EQ(server.store()->GetRun(b).value().phase, RunPhase::kCancelled);
  real.server.reset();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace sluice::server

namespace sluice::server {
namespace {

// `sluice submit --wait` right after the 201: the run is visible (queued,
// taken by a worker, or in the store) at every poll, so each submission ends
// with the run's own outcome, never "no run".
TEST(ServerRunnerTest, SubmitWaitReportsTheOutcomeOfEveryRunInARow) {
  std::string root = testing::MakeTempDir("submitwait");
  testing::WriteFile(root + "/pipelines/outcome.yaml", R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: outcome
params:
  code: {type: int}
steps:
  - name: finish
    command: [sh, -c, "exit {{ params.code }}"]
)");
  RealServer real(root);
  SubmitOptions o;
  o.server = real.server->url();
  o.token = "tok";
  o.pipeline = "outcome";
  o.wait = true;
  o.poll_interval = Duration(1);
  for (int i = 0; i < 20; ++i) {
    o.params = {{"code", i % 2 == 0 ? "0" : "1"}};
    std::ostringstream out, err;
    int code = SubmitCommand(o, out, err);
    EXPECT_EQ(code, i % 2 == 0 ? kSubmitOk : kSubmitRunFailed) << "submission " << i << ": " << err.str();
    std::string id = out.str().substr(out.str().rfind('\n', out.str().size() - 2) + 1);
    EXPECT_EQ(id.substr(id.find(' ') + 1), i % 2 == 0 ? "Succeeded\n" : "Failed\n") << out.str();
  }
  real.server.reset();
  std::filesystem::remove_all(root);
}

// --timeout: exit 124 while the run goes on; with --cancel-on-timeout the
// run is cancelled. A run cancelled while submit waits exits 130.
TEST(ServerRunnerTest, SubmitTimeoutLeavesTheRunOrCancelsItAndACancelledRunExits130) {
  std::string root = testing::MakeTempDir("submittimeout");
  testing::WriteFile(root + "/pipelines/hold.yaml", R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: hold
steps:
  - name: hold
    command: [sh, -c, "while [ ! -e )" + root + R"(/go ]; do sleep 0.01; done"]
)");
  RealServer real(root);
  Server& server = *real.server;
  SubmitOptions o;
  o.server = server.url();
  o.token = "tok";
  o.pipeline = "hold";
  o.wait = true;
  o.poll_interval = Duration(10);
  o.timeout = Duration(300);

  o.output = "json";  // what it saw: the run id and phase printed
  std::ostringstream out, err;
  ASSERT_EQ(SubmitCommand(o, out, err), kSubmitTimedOut) << err.str();
  Json seen = Json::parse(out.str());
  std::string goes_on = seen["run_id"];
  EXPECT_EQ(err.str(), "sluice submit: --timeout passed; run " + goes_on + " is still " +
                           seen["phase"].get<std::string>() +
                           " and goes on (--cancel-on-timeout cancels it)\n");
  EXPECT_TRUE(server.runs()->IsActive(goes_on));

  o.cancel_on_timeout = true;
  std::ostringstream out2, err2;
  ASSERT_EQ(SubmitCommand(o, out2, err2), kSubmitTimedOut) << err2.str();
  Json seen2 = Json::parse(out2.str());
  std::string cancelled = seen2["run_id"];
  EXPECT_EQ(err2.str(), "sluice submit: --timeout passed; run " + cancelled + " was " +
                            seen2["phase"].get<std::string>() + "; cancellation requested\n");
  ASSERT_TRUE(WaitFor([&] {
    auto run = server.store()->GetRun(cancelled);
    return run && run->id == cancelled && IsTerminal(run->phase) && !server.runs()->IsActive(cancelled);
  }));
  EXPECT_EQ(server.store()->GetRun(cancelled)->phase, RunPhase::kCancelled);

  // Cancelled by someone else while this submit waits.
  o.timeout.reset();
  o.cancel_on_timeout = false;
  o.output = "text";
  std::ostringstream out3, err3;
  std::thread canceller([&] {
    std::string id;
    ASSERT_TRUE(WaitFor([&] {
      auto runs = server.store()->ListRuns(RunFilter{});
      if (!runs) return false;
      for (const RunRecord& r : *runs)
        if (r.id != goes_on && r.id != cancelled && r.phase == RunPhase::kRunning) id = r.id;
      return !id.empty();
    }));
    auto res = real.client->Post(("/api/v1/runs/" + id + "/cancel").c_str(), real.auth, "",
                                 "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 202) << res->body;
  });
  EXPECT_EQ(SubmitCommand(o, out3, err3), kSubmitCancelled) << err3.str();
  canceller.join();
  EXPECT_NE(out3.str().find(" Cancelled\n"), std::string::npos) << out3.str();

  testing::WriteFile(root + "/go", "");
  ASSERT_TRUE(server.runs()->WaitIdle(std::chrono::seconds(60)));
  EXPECT_EQ(server.store()->GetRun(goes_on)->phase, RunPhase::kSucceeded);
  real.server.reset();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace sluice::server
