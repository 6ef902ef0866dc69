// End-to-end failover of `sluice serve --leader-election`: two real `sluice
// serve` processes share a PostgreSQL store (the CTest fixture "postgres")
// and elect a leader, with a Kubernetes Lease on the live test cluster
// (fixture "k8s") or with the store's advisory lock. Each iteration:
//
//   1. replica A starts and leads; its scheduler fires a due cron time of
//      pipeline `run-*` at once, a run whose Kubernetes step (a kwok pod
//      kept Running for 8 s by its sluice.dev/kwok-duration annotation) is
//      in progress;
//   2. replica B starts and stands by; with the Lease it forwards a submit
//      to A (A drives the run) and refuses, with 503 naming A, a write that
//      was forwarded already;
//   3. pipeline `due-*` has a cron time due in B's schedule state (not in
//      A's: A saw it first now, so nothing is due for A);
//   4. A is killed with SIGKILL while the step's pod runs;
//   5. B leads within lease duration + 5 s (Lease: 4 s, renew deadline 3 s,
//      retry 1 s; the lock: retry 1 s), resumes A's run, adopting its pod
//      (same uid, attempt 1, one pod), and the run succeeds;
//   6. B fires `due-*`'s time exactly once and does not launch `run-*`'s
//      time a second time (the store holds one run per cron time);
//   7. B stops cleanly (SIGTERM, exit 0) and, with the Lease, clears the
//      holder.
//
// Waits are on process output, API answers or the cluster, each bounded.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

#include "executors/kubernetes/lease_lock.h"
#include "tests/executors/kubernetes/live_cluster.h"
#include "tests/executors/kubernetes/sluice_process.h"
#include "tests/support/postgres_server.h"

namespace sluice {
using test_support::RunObjects;
using test_support::SluiceProcess;
using test_support::WaitUntil;
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kToken = test_support::kServeToken;
constexpr const char* kTokenSha256 = test_support::kServeTokenSha256;
// The short Lease of these tests, and the bound on a takeover after a kill.
constexpr int kLeaseSeconds = 4;
constexpr auto kTakeoverBound = std::chrono::seconds(kLeaseSeconds + 5);
// Iterations in a row of each test.
constexpr int kIterations = 10;

// One `sluice serve` replica in a directory of its own (its state files),
// with an API client once it listens.
struct Replica {
  std::unique_ptr<SluiceProcess> process;
  std::unique_ptr<httplib::Client> http;
  std::string name;

  Json Get(const std::string& path) {
    auto res = http->Get(path.c_str(), {{"Authorization", std::string("Bearer ") + kToken}});
    if (!res || res->status != 200) return Json();
    return Json::parse(res->body, nullptr, false);
  }
};

class ServeFailoverTest : public test_support::LiveServeFixture<::testing::TestWithParam<std::string>> {
 protected:
  void SetUp() override {
    const std::string pg = testutil::PostgresTestUrl(SLUICE_TEST_POSTGRES_STATE);
    if (pg.empty()) GTEST_SKIP() << testutil::NoPostgresReason(SLUICE_TEST_POSTGRES_STATE);
    SetUpSandbox("failover", "sluice-failover", "", kTokenSha256);
    if (IsSkipped() || HasFatalFailure()) return;
    db_ = std::make_unique<testutil::TestDatabase>(pg);
    ASSERT_EQ(db_->error(), "");
  }

  void TearDown() override { TearDownSandbox(); }

  bool WithLease() const { return GetParam() == "kubernetes"; }

  // Writes a pipeline `name` into `pipelines`: one Kubernetes step in this
  // test's namespace, running `seconds` (0: at once), with a yearly
  // schedule when `scheduled`.
  void WritePipeline(const fs::path& pipelines, const std::string& name, int seconds, bool scheduled = true) {
    std::ofstream(pipelines / (name + ".yaml")) << R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: )" << name << R"(
executor: kubernetes
namespace: )" << ns_ << R"(
defaults:
  image: busybox:1.36
  resources: {cpu: 100m, memory: 64Mi}
)" << (scheduled ? "schedule:\n  cron: \"0 0 1 1 *\"\n  catchup: latest\n" : "") << R"(steps:
  - name: step
    command: [sh, -c, "sleep )" << seconds << R"("]
    kubernetes:
      podAnnotations: {sluice.dev/kwok-duration: ")" << seconds << R"(s"}
)";
  }

  // A replica named `name` under `iteration`'s directory, whose scheduler
  // state says each of `handled` (pipeline -> time) was the last handled.
  Replica Start(const fs::path& iteration, const std::string& name, const Json& handled) {
    Replica r;
    r.name = name;
    const fs::path cwd = iteration / name;
    fs::create_directories(cwd / ".sluice" / "server");
    std::ofstream(cwd / ".sluice" / "server" / "schedules.json")
        << Json{{"version", 1}, {"last", handled}, {"pending", Json::array()}}.dump();
    std::vector<std::string> args = {"serve", "--pipelines", (iteration / "pipelines").string(), "--store",
                                     db_->url(), "--listen", "127.0.0.1:0", "--config",
                                     (dir_ / "server.yaml").string(), "--kubeconfig", kubeconfig_,
                                     "--leader-election", GetParam(), "--retry-period", "1s"};
    if (WithLease()) {
      for (const char* a : {"--lease-namespace", ns_.c_str(), "--lease-name", lease_.c_str(), "--lease-duration",
                            "4s", "--renew-deadline", "3s", "--leader-identity", name.c_str()})
        args.push_back(a);
    }
    r.process = std::make_unique<SluiceProcess>(args, cwd / "serve.out", cwd / "serve.err",
                                                std::map<std::string, std::string>{}, cwd.string());
    const int port = test_support::WaitForListenPort(*r.process, std::chrono::seconds(60));
    EXPECT_NE(port, 0) << name << " did not start listening: " << r.process->err();
    r.http = std::make_unique<httplib::Client>("127.0.0.1", port);
    r.http->set_read_timeout(30, 0);
    return r;
  }

  // Waits (at most `bound`) until `r` has written `text` to stderr.
  static bool WaitForStderr(Replica& r, const std::string& text, std::chrono::seconds bound) {
    return WaitUntil([&] { return r.process->err().find(text) != std::string::npos; }, bound);
  }

  std::string Leading(const std::string& name) const {
    return WithLease() ? "sluice serve: leading: this replica (" + name + ") holds the Lease " + ns_ + "/" + lease_
                       : "sluice serve: leading: this replica holds the store's leader lock";
  }
  std::string StandingBy(const std::string& leader) const {
    return WithLease() ? "sluice serve: standing by: " + leader + " holds the Lease " + ns_ + "/" + lease_
                       : "sluice serve: standing by: another replica holds the store's leader lock";
  }

  // GET /api/v1/runs/RUN on `r` until the run has ended (bounded); its body.
  static Json WaitForRunEnd(Replica& r, const std::string& run_id, std::chrono::seconds bound) {
    Json run;
    EXPECT_TRUE(WaitUntil(
        [&] {
          run = r.Get("/api/v1/runs/" + run_id);
          if (!run.is_object() || !run.contains("run")) return false;
          std::string phase = run["run"].value("phase", "");
          return phase != "Pending" && phase != "Running" && !run.value("active", true);
        },
        bound))
        << "run " << run_id << " did not end: " << run.dump() << r.process->err();
    return run;
  }

  // The ids of `pipeline`'s runs in the store, as `r` lists them.
  static std::vector<std::string> RunIds(Replica& r, const std::string& pipeline) {
    std::vector<std::string> ids;
    Json runs = r.Get("/api/v1/runs?pipeline=" + pipeline);
    if (runs.contains("runs"))
      for (const auto& run : runs["runs"]) ids.push_back(run.value("id", ""));
    return ids;
  }

  void Iterate(int i);

  std::unique_ptr<testutil::TestDatabase> db_;
  std::string lease_ = "sluice-leader";
  std::vector<double> takeover_seconds_;
};

void ServeFailoverTest::Iterate(int i) {
  const fs::path iteration = dir_ / ("i" + std::to_string(i));
  fs::create_directories(iteration / "pipelines");
  const std::string suffix = std::to_string(i) + "-" + tag_;
  const std::string running = "run-" + suffix, due = "due-" + suffix;
  WritePipeline(iteration / "pipelines", running, 8);
  WritePipeline(iteration / "pipelines", due, 0);
  const std::string submitted = "api-" + suffix, submitted_id = "api-run-" + suffix;
  WritePipeline(iteration / "pipelines", submitted, 0, false);
  const std::string run_id = running + "-cron-20260101-000000";
  const std::string due_id = due + "-cron-20260101-000000";
  const std::string pod_name = operators::ObjectName(run_id, "step", 1);
  const std::string a_name = "a" + std::to_string(i), b_name = "b" + std::to_string(i);

  Replica a = Start(iteration, a_name, {{running, "2025-12-31T00:00:00Z"}});
  ASSERT_TRUE(WaitForStderr(a, Leading(a_name), std::chrono::seconds(60))) << a.process->err();
  Replica b = Start(iteration, b_name, {{running, "2025-12-31T00:00:00Z"}, {due, "2025-12-31T00:00:00Z"}});
  ASSERT_TRUE(WaitForStderr(b, StandingBy(a_name), std::chrono::seconds(60))) << b.process->err();
  const httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kToken}};
  if (WithLease()) {
    // Only the leader starts runs: the standby forwards a submit to the
    // leader's URL on the Lease, and relays its answer.
    auto res = b.http->Post(("/api/v1/pipelines/" + submitted + "/runs").c_str(), auth,
                            Json{{"run_id", submitted_id}}.dump(), "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 201) << res->body;
    EXPECT_EQ(res->get_header_value("X-Sluice-Leader"), a_name);
    // A drives it (the record appears once A's worker starts it).
    Json run;
    ASSERT_TRUE(WaitUntil(
        [&] {
          run = b.Get("/api/v1/runs/" + submitted_id);
          return run.contains("run") && run["run"].value("pid", 0) != 0;
        },
        std::chrono::seconds(60)))
        << run.dump();
    EXPECT_EQ(run["run"]["pid"], a.process->pid());
    // A write that a standby already forwarded is not forwarded again: a
    // standby refuses it, naming the leader.
    httplib::Headers forwarded = auth;
    forwarded.emplace("X-Sluice-Forwarded-By", "elsewhere");
    res = b.http->Post(("/api/v1/pipelines/" + submitted + "/runs").c_str(), forwarded, "{}", "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 503) << res->body;
    EXPECT_EQ(res->get_header_value("X-Sluice-Leader"), a_name);
    EXPECT_EQ(res->body, Json({{"error",
                                {{"code", "UNAVAILABLE"},
                                 {"message", "this replica (" + b_name + ") is standing by; only the leader (" +
                                                 a_name + ") starts and changes runs: send writes to it, or retry"}}}})
                             .dump());
  }

  // Kill A once its run's step is Running and the pod exists.
  std::string uid;
  ASSERT_TRUE(WaitUntil(
      [&] {
        Json run = a.Get("/api/v1/runs/" + run_id);
        if (!run.contains("steps") || run["steps"].empty() || run["steps"][0].value("phase", "") != "Running")
          return false;
        auto pod = client_->Get(k8s::PodKind(), ns_, pod_name);
        if (!pod) return false;
        uid = (*pod)["metadata"].value("uid", "");
        return true;
      },
      std::chrono::minutes(2)))
      << "the leader's scheduled run never ran its step: " << a.process->err();
  const auto killed = SteadyClock::now();
  ASSERT_EQ(::kill(a.process->pid(), SIGKILL), 0);
  ASSERT_EQ(a.process->Wait(std::chrono::seconds(30)), 128 + SIGKILL);

  ASSERT_TRUE(WaitForStderr(b, Leading(b_name), std::chrono::seconds(60))) << b.process->err();
  const double took = std::chrono::duration<double>(SteadyClock::now() - killed).count();
  takeover_seconds_.push_back(took);
  EXPECT_LE(took, std::chrono::duration<double>(kTakeoverBound).count()) << b.process->err();

  Json run = WaitForRunEnd(b, run_id, std::chrono::minutes(2));
  EXPECT_EQ(run["run"]["phase"], "Succeeded") << run.dump() << a.process->err() << b.process->err();
  ASSERT_EQ(run["steps"].size(), 1u) << run.dump();
  EXPECT_EQ(run["steps"][0]["phase"], "Succeeded");
  EXPECT_EQ(run["steps"][0]["attempts"], 1);
  auto pod = client_->Get(k8s::PodKind(), ns_, pod_name);
  ASSERT_TRUE(pod) << pod.error().ToString();
  EXPECT_EQ((*pod)["metadata"].value("uid", ""), uid);  // adopted, not made again
  EXPECT_EQ(RunObjects(*client_, k8s::PodKind(), ns_, run_id),
            (std::map<std::string, std::string>{{pod_name, "step/1"}}));

  Json due_run = WaitForRunEnd(b, due_id, std::chrono::minutes(2));
  EXPECT_EQ(due_run["run"]["phase"], "Succeeded") << due_run.dump() << b.process->err();
  // One run per cron time: nothing launched twice, nothing lost.
  EXPECT_EQ(RunIds(b, running), std::vector<std::string>{run_id});
  EXPECT_EQ(RunIds(b, due), std::vector<std::string>{due_id});
  EXPECT_EQ(testutil::PgRow(db_->url(), "SELECT count(*) FROM runs WHERE pipeline IN ('" + running + "', '" + due +
                                            "')"),
            std::vector<std::string>{"2"});
  if (WithLease()) {
    Json api_run = WaitForRunEnd(b, submitted_id, std::chrono::minutes(2));
    EXPECT_EQ(api_run["run"]["phase"], "Succeeded") << api_run.dump();
    EXPECT_EQ(RunIds(b, submitted), std::vector<std::string>{submitted_id});
  }

  ASSERT_EQ(::kill(b.process->pid(), SIGTERM), 0);
  EXPECT_EQ(b.process->Wait(std::chrono::seconds(60)), 0) << b.process->err();
  if (WithLease()) {
    // A clean stop gives the Lease up: the next replica need not wait.
    auto lease = client_->Get(k8s::LeaseKind(), ns_, lease_);
    ASSERT_TRUE(lease) << lease.error().ToString();
    EXPECT_EQ((*lease)["spec"].value("holderIdentity", ""), "") << lease->dump();
    EXPECT_EQ((*lease)["spec"].value("leaseTransitions", -1), 2 * i + 1) << lease->dump();
  }
}

TEST_P(ServeFailoverTest, TheStandbyTakesOverAKilledLeadersRunAndItsDueCronTimeTenTimesInARow) {
  const auto started = SteadyClock::now();
  for (int i = 0; i < kIterations; ++i) {
    SCOPED_TRACE("iteration " + std::to_string(i));
    ASSERT_NO_FATAL_FAILURE(Iterate(i));
    if (HasFailure()) break;
  }
  std::cout << GetParam() << ": " << takeover_seconds_.size() << " failovers in "
            << std::chrono::duration<double>(SteadyClock::now() - started).count() << " s; takeover after kill -9 (s):";
  for (double t : takeover_seconds_) std::cout << " " << t;
  std::cout << "\n";
}

INSTANTIATE_TEST_SUITE_P(Elections, ServeFailoverTest, ::testing::Values("kubernetes", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sluice
