// Retention on a real SQLite store: Store::DeleteRun, history limits
// (PruneHistory, a schedule's historyLimit through the server) and `sluice
// gc` (CollectGarbage). Runs are made by the real Runner and local executor,
// so cache hits and lineage are the real thing.
#include <gtest/gtest.h>

#include <date/date.h>

#include <filesystem>

#include "dsl/dsl.h"
#include "engine/store/artifact_store.h"
#include "engine/clock.h"
#include "engine/store/lineage.h"
#include "engine/run/runner.h"
#include "engine/server/retention.h"
#include "engine/server/server.h"
#include "engine/store/sqlite_store.h"
#include "executors/local/local_executor.h"
#include "server_test_util.h"

namespace sluice::server {
namespace {

namespace fs = std::filesystem;
using testing::MakeTempDir;
using testing::WriteFile;

// `make` writes a model, `score` reads it: both cacheable.
const char kTrain[] = R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: train
steps:
  - name: make
    command: [sh, -c, "echo weights > model.bin"]
    outputs:
      artifacts:
        - {name: model, path: model.bin, type: model}
  - name: score
    command: [sh, -c, "wc -c < \"$SLUICE_INPUT_MODEL\" > score.txt"]
    inputs:
      model: "{{ steps.make.outputs.artifacts.model }}"
    outputs:
      artifacts:
        - {name: score, path: score.txt, type: metrics}
)";

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("retention");
    state_ = root_ + "/state";
    WriteFile(root_ + "/train.yaml", kTrain);
    auto loaded = dsl::LoadPipelineFile(root_ + "/train.yaml");
    ASSERT_TRUE(loaded.spec.has_value());
    spec_ = std::move(*loaded.spec);
    auto store = SqliteStore::Open(state_);
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
    artifacts_ = std::make_unique<FileArtifactStore>(state_);
    ASSERT_TRUE(RegisterLocalExecutor(executors_).ok());
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(root_);
  }

  // Runs the pipeline as run `id`; returns its phase.
  RunPhase RunPipeline(const std::string& id, bool no_cache = false) {
    RunOptions o;
    o.run_id = id;
    o.state_dir = state_;
    o.parallelism = 2;
    o.no_cache = no_cache;
    Runner runner(spec_, store_.get(), artifacts_.get(), &executors_, o);
    auto summary = runner.Run();
    EXPECT_TRUE(summary.has_value()) << summary.error().ToString();
    return summary ? summary->run.phase : RunPhase::kError;
  }

  std::string OutputDigest(const std::string& run, const std::string& instance) {
    auto step = store_->GetStep(run, instance);
    EXPECT_TRUE(step.has_value());
    return step && !step->outputs.empty() ? step->outputs[0].artifact.digest : "";
  }

  std::vector<std::string> RunIds() {
    RunFilter all;
    all.limit = 0;
    auto runs = store_->ListRuns(all);
    EXPECT_TRUE(runs.has_value());
    std::vector<std::string> ids;
    for (const RunRecord& r : runs.value_or(std::vector<RunRecord>{})) ids.push_back(r.id);
    return ids;
  }

  std::string root_, state_;
  PipelineSpec spec_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<FileArtifactStore> artifacts_;
  ExecutorRegistry executors_;
};

TEST_F(RetentionTest, DeleteRunRemovesItsRecordsAndFilesButNotBytesAnotherRunRecorded) {
  ASSERT_EQ(RunPipeline("train-1"), RunPhase::kSucceeded);
  ASSERT_EQ(RunPipeline("train-2", /*no_cache=*/true), RunPhase::kSucceeded);
  const std::string model = OutputDigest("train-2", "make");
  ASSERT_EQ(OutputDigest("train-1", "make"), model);  // same bytes, one artifact
  ASSERT_TRUE(fs::exists(state_ + "/runs/train-1/logs"));

  Status st = DeleteRunAndFiles(store_.get(), state_, "train-1");
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(RunIds(), std::vector<std::string>{"train-2"});
  EXPECT_EQ(store_->GetRun("train-1").error().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->ListSteps("train-1").value().empty());
  EXPECT_TRUE(store_->ListExecutions("train-1").value().empty());
  EXPECT_FALSE(fs::exists(state_ + "/runs/train-1"));
  EXPECT_TRUE(fs::exists(state_ + "/runs/train-2/logs"));
  // The model is still recorded (train-2 wrote it too), produced by train-2 only.
  ASSERT_TRUE(store_->GetArtifact(model).has_value());
  auto producers = store_->ProducersOf(model).value();
  ASSERT_EQ(producers.size(), 1u);
  EXPECT_EQ(producers[0].run_id, "train-2");
  EXPECT_EQ(producers[0].instance, "make");
  EXPECT_TRUE(artifacts_->LocalPath(model).has_value());
  EXPECT_EQ(store_->IntegrityCheck().value(), "ok");

  GcOptions gc;
  gc.grace = Duration(0);
  auto collected = CollectGarbage(store_.get(), state_, gc);
  ASSERT_TRUE(collected.has_value()) << collected.error().ToString();
  EXPECT_EQ(collected->removed, 0);
  EXPECT_EQ(collected->kept, 2);  // model.bin and score.txt
}

TEST_F(RetentionTest, ARunWhoseOutputsALaterCachedRunReusesIsKeptWithItsLineage) {
  ASSERT_EQ(RunPipeline("train-1"), RunPhase::kSucceeded);
  ASSERT_EQ(RunPipeline("train-2"), RunPhase::kSucceeded);
  auto make = store_->GetStep("train-2", "make").value();
  ASSERT_EQ(make.phase, NodePhase::kCached);
  EXPECT_EQ(make.cached_from, "train-1/make");

  Status st = store_->DeleteRun("train-1");
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "run train-1 is kept: cached steps of run train-2 reuse its outputs, and their lineage "
            "leads to it; delete that run first");
  EXPECT_EQ(RunIds(), (std::vector<std::string>{"train-2", "train-1"}));

  // The cached run's score still traces back to the executions that made it.
  auto target = ResolveLineageTarget(store_.get(), OutputDigest("train-2", "score"));
  ASSERT_TRUE(target.has_value()) << target.error().ToString();
  auto graph = QueryLineage(store_.get(), *target, LineageOptions{});
  ASSERT_TRUE(graph.has_value()) << graph.error().ToString();
  std::vector<std::string> executions;
  for (const auto& [id, le] : graph->executions)
    executions.push_back(le.execution.run_id + "/" + le.execution.instance + " " + le.execution.outcome);
  EXPECT_EQ(executions, (std::vector<std::string>{"train-1/make Succeeded", "train-1/score Succeeded"}));

  // Pruning to one run of each outcome keeps train-1 and says why.
  HistoryPolicy policy;
  policy.pipeline = "train";
  policy.keep_succeeded = policy.keep_failed = 1;
  auto pruned = PruneHistory(store_.get(), state_, policy);
  ASSERT_TRUE(pruned.has_value());
  EXPECT_TRUE(pruned->deleted.empty());
  ASSERT_EQ(pruned->kept.size(), 1u);
  EXPECT_EQ(pruned->kept[0].first, "train-1");

  // Once the reusing run is gone, the source goes too, and so do its bytes.
  const std::string model = OutputDigest("train-1", "make");
  ASSERT_TRUE(DeleteRunAndFiles(store_.get(), state_, "train-2").ok());
  ASSERT_TRUE(DeleteRunAndFiles(store_.get(), state_, "train-1").ok());
  EXPECT_TRUE(RunIds().empty());
  EXPECT_EQ(store_->GetArtifact(model).error().code(), StatusCode::kNotFound);
  ASSERT_TRUE(artifacts_->LocalPath(model).has_value());  // bytes stay until gc

  GcOptions gc;
  gc.grace = Duration(0);
  gc.dry_run = true;
  auto dry = CollectGarbage(store_.get(), state_, gc);
  ASSERT_TRUE(dry.has_value());
  EXPECT_EQ(dry->removed, 2);
  EXPECT_EQ(dry->removed_bytes, 8 + 2);  // "weights\n", "8\n"
  EXPECT_TRUE(artifacts_->LocalPath(model).has_value());
  gc.dry_run = false;
  auto done = CollectGarbage(store_.get(), state_, gc);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->removed, 2);
  EXPECT_EQ(done->kept, 0);
  EXPECT_EQ(artifacts_->LocalPath(model).error().code(), StatusCode::kNotFound);
  // The cache no longer offers what is gone: the next run executes both steps.
  ASSERT_EQ(RunPipeline("train-3"), RunPhase::kSucceeded);
  EXPECT_EQ(store_->GetStep("train-3", "make").value().phase, NodePhase::kSucceeded);
}

// Records a finished (or running) run the way the Runner does, with one step.
void Record(Store* store, const std::string& id, RunPhase phase, int minute) {
  RunRecord run;
  run.id = id;
  run.pipeline = "nightly";
  run.pipeline_digest = "sha256:p";
  run.phase = phase;
  run.created_at = TimePoint(date::sys_days(date::year(2026) / 11 / 25)) + std::chrono::minutes(minute);
  run.started_at = run.created_at;
  if (IsTerminal(phase)) run.finished_at = run.created_at + std::chrono::seconds(5);
  run.host = "h";
  run.pid = 42;
  ASSERT_TRUE(store->CreateRun(run).ok());
  StepRecord step;
  step.run_id = id;
  step.instance = step.step = "a";
  step.phase = phase == RunPhase::kSucceeded ? NodePhase::kSucceeded : NodePhase::kFailed;
  ASSERT_TRUE(store->PutStep(step).ok());
}

TEST_F(RetentionTest, HistoryLimitKeepsTheNewestRunsOfEachOutcomeAndNeverRunningOnes) {
  Record(store_.get(), "nightly-cron-1", RunPhase::kSucceeded, 1);
  Record(store_.get(), "nightly-cron-2", RunPhase::kFailed, 2);
  Record(store_.get(), "nightly-cron-3", RunPhase::kSucceeded, 3);
  Record(store_.get(), "nightly-manual", RunPhase::kSucceeded, 4);
  Record(store_.get(), "nightly-cron-4", RunPhase::kError, 5);
  Record(store_.get(), "nightly-cron-5", RunPhase::kSucceeded, 6);
  Record(store_.get(), "nightly-cron-6", RunPhase::kCancelled, 7);
  Record(store_.get(), "nightly-cron-7", RunPhase::kRunning, 8);

  auto loaded = dsl::LoadPipelineString(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: nightly
schedule:
  cron: "@daily"
  historyLimit: 1
steps:
  - name: a
    command: [echo, a]
)",
                                        "nightly.yaml");
  ASSERT_TRUE(loaded.spec.has_value());
  auto policy = ScheduleHistoryPolicy(*loaded.spec);
  ASSERT_TRUE(policy.has_value());
  EXPECT_EQ(policy->id_prefix, "nightly-cron-");
  EXPECT_EQ(policy->keep_succeeded, 1);
  EXPECT_EQ(policy->keep_failed, 1);

  auto pruned = PruneHistory(store_.get(), state_, *policy);
  ASSERT_TRUE(pruned.has_value()) << pruned.error().ToString();
  EXPECT_EQ(pruned->deleted,
            (std::vector<std::string>{"nightly-cron-4", "nightly-cron-3", "nightly-cron-2",
                                      "nightly-cron-1"}));
  EXPECT_TRUE(pruned->kept.empty());
  EXPECT_EQ(RunIds(), (std::vector<std::string>{"nightly-cron-7", "nightly-cron-6",
                                                "nightly-cron-5", "nightly-manual"}));
  EXPECT_TRUE(store_->ListSteps("nightly-cron-1").value().empty());

  Status running = store_->DeleteRun("nightly-cron-7");
  EXPECT_EQ(running.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(running.message(),
            "run nightly-cron-7 is Running (process 42 on host 'h'); only finished runs are "
            "deleted: cancel it, or let it finish (an interrupted run continues with `sluice "
            "resume nightly-cron-7`)");
  EXPECT_EQ(store_->DeleteRun("nightly-cron-1").code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->IntegrityCheck().value(), "ok");
}

TEST_F(RetentionTest, TheRunBehindWhatAServiceServesIsKept) {
  Record(store_.get(), "nightly-cron-1", RunPhase::kSucceeded, 1);
  Record(store_.get(), "nightly-cron-2", RunPhase::kSucceeded, 2);
  DeploymentRecord d;
  d.service = "churn";
  d.action = "deploy";
  d.model_digest = "sha256:m1";
  d.run_id = "nightly-cron-1";
  d.at = TimePoint(date::sys_days(date::year(2026) / 11 / 25));
  ASSERT_TRUE(store_->RecordDeployment(d).has_value());
  Status st = store_->DeleteRun("nightly-cron-1");
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "run nightly-cron-1 is kept: it deployed or produced what service churn serves now "
            "(`sluice lineage --deployed` follows it)");
  // A newer deployment by another run: the old one is history now.
  d.run_id = "nightly-cron-2";
  d.model_digest = "sha256:m2";
  d.at += std::chrono::hours(1);
  ASSERT_TRUE(store_->RecordDeployment(d).has_value());
  EXPECT_TRUE(store_->DeleteRun("nightly-cron-1").ok());
  auto history = store_->ListDeployments("churn", 10).value();
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].run_id, "nightly-cron-2");
}

TEST(ServerRetentionTest, TheServerAppliesTheScheduleHistoryLimitAfterEachRun) {
  std::string root = MakeTempDir("sched-retention");
  WriteFile(root + "/pipelines/nightly.yaml", R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: nightly
schedule:
  cron: "0 * * * *"
  historyLimit: 2
steps:
  - name: a
    command: [echo, a]
)");
  FakeClock clock(TimePoint(date::sys_days(date::year(2026) / 11 / 25)));
  testing::FakeRunControl control;
  ServerOptions o;
  o.pipelines_dir = root + "/pipelines";
  o.state_dir = root + "/state";
  o.listen = "127.0.0.1:0";
  o.run_scheduler = false;
  o.watch = false;
  std::unique_ptr<Server> server;
  server = std::make_unique<Server>(o, nullptr, &clock,
                                    testing::FakeFactory([&server] { return server->store(); }, &control));
  ASSERT_TRUE(server->Start().ok());
  EXPECT_TRUE(server->scheduler()->Tick().empty());  // first sight: from now
  for (int hour = 1; hour <= 4; ++hour) {
    clock.Advance(std::chrono::hours(1));
    auto decisions = server->scheduler()->Tick();
    ASSERT_EQ(decisions.size(), 1u);
    EXPECT_EQ(decisions[0].action, "launched");
    ASSERT_TRUE(server->runs()->WaitIdle(std::chrono::seconds(30)));
  }
  RunFilter all;
  all.limit = 0;
  auto runs = server->store()->ListRuns(all);
  ASSERT_TRUE(runs.has_value());
  std::vector<std::string> ids;
  for (const RunRecord& r : *runs) ids.push_back(r.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"nightly-cron-20261125-040000", "nightly-cron-20261125-030000"}));
  EXPECT_NE(server->MetricsText().find("sluice_runs_deleted_total{pipeline=\"nightly\"} 2\n"),
            std::string::npos);
  server.reset();
  fs::remove_all(root);
}

}  // namespace
}  // namespace sluice::server
