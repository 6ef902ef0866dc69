// The Store contract, one suite run against every backend: SQLite (real
// files in a temporary directory) and PostgreSQL (a database of the test's
// own on the server the CTest fixture "postgres" starts). The PostgreSQL
// instances skip, saying why, only when no server was started.

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "engine/store/open_store.h"
#include "engine/store/pg_store.h"
#include "engine/store/sqlite_store.h"
#include "tests/engine/store_test_records.h"
#include "tests/support/postgres_server.h"

namespace sluice {
namespace {

using namespace sluice::testing;  // NOLINT: the records every test writes

enum class Backend { kSqlite, kPostgres };

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "sqlite" : "postgres";
}

// A store of the test's backend at location_ (opened by Open()), and more
// empty locations on request.
class StoreSuite : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kPostgres) {
      server_ = testutil::PostgresTestUrl(SLUICE_TEST_POSTGRES_STATE);
      if (server_.empty()) GTEST_SKIP() << testutil::NoPostgresReason(SLUICE_TEST_POSTGRES_STATE);
    }
    location_ = NewLocation();
  }

  // A new, empty store location: a temporary directory, or a new database.
  std::string NewLocation() {
    if (GetParam() == Backend::kSqlite) {
      dirs_.push_back(std::make_unique<TempDir>());
      return dirs_.back()->path();
    }
    databases_.push_back(std::make_unique<testutil::TestDatabase>(server_));
    EXPECT_EQ(databases_.back()->error(), "");
    return databases_.back()->url();
  }

  // The store at `location` (location_ by default), through OpenStore.
  StorePtr Open(const std::string& location) {
    auto store = OpenStore(location);
    EXPECT_TRUE(store.has_value()) << store.error().ToString();
    return store ? std::move(*store) : nullptr;
  }
  StorePtr Open() { return Open(location_); }

  // The first row `sql` yields from location_'s database, each column as
  // text (NULL as ""), read past the store as another tool would.
  std::vector<std::string> Raw(const char* sql) {
    if (GetParam() == Backend::kPostgres) return testutil::PgRow(location_, sql);
    return RowRaw(location_ + "/sluice.db", sql);
  }

  // The SQLite file passes its integrity check. (A PostgreSQL server checks
  // its own pages; what the store must keep is checked by the callers.)
  void ExpectSound(Store& store) {
    if (auto* sqlite = dynamic_cast<SqliteStore*>(&store)) EXPECT_EQ(sqlite->IntegrityCheck().value(), "ok");
  }

  std::string location_;

 private:
  std::string server_;
  std::vector<std::unique_ptr<TempDir>> dirs_;
  std::vector<std::unique_ptr<testutil::TestDatabase>> databases_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreSuite, ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         BackendName);


TEST_P(StoreSuite, RunRoundTripsEveryField) {
  auto store = Open();
  RunRecord run = MakeRun("retrain-20261125-153012-a1b2");
  run.message = "first";
  run.resumed_from = "retrain-0";
  run.no_cache = true;
  run.artifacts = "s3://ml-artifacts/team-a";
  ASSERT_TRUE(store->CreateRun(run).ok());
  auto got = store->GetRun(run.id);
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  EXPECT_EQ(got->id, run.id);
  EXPECT_EQ(got->pipeline, "retrain");
  EXPECT_EQ(got->pipeline_file, run.pipeline_file);
  EXPECT_EQ(got->pipeline_digest, "d1gest");
  EXPECT_EQ(got->pipeline_yaml, run.pipeline_yaml);
  EXPECT_EQ(got->git_commit, "0123abcd");
  EXPECT_TRUE(got->git_dirty);
  EXPECT_EQ(got->params, run.params);
  EXPECT_EQ(got->executor, "local");
  EXPECT_EQ(got->phase, RunPhase::kRunning);
  EXPECT_EQ(got->message, "first");
  EXPECT_EQ(got->resumed_from, "retrain-0");
  EXPECT_EQ(got->created_at, run.created_at);
  EXPECT_EQ(got->started_at, run.started_at);
  EXPECT_EQ(got->finished_at, std::nullopt);
  EXPECT_EQ(got->host, "ana-laptop");
  EXPECT_EQ(got->pid, 4242);
  EXPECT_TRUE(got->no_cache);
  EXPECT_EQ(got->artifacts, "s3://ml-artifacts/team-a");

  run.phase = RunPhase::kFailed;
  run.no_cache = false;
  run.artifacts = "s3://ml-artifacts/team-b";
  run.message = "step train[1] failed";
  run.finished_at = At(1764080009000);
  run.pid = 0;
  ASSERT_TRUE(store->UpdateRun(run).ok());
  got = store->GetRun(run.id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->phase, RunPhase::kFailed);
  EXPECT_EQ(got->message, "step train[1] failed");
  EXPECT_EQ(got->finished_at, run.finished_at);
  EXPECT_EQ(got->pid, 0);
  EXPECT_FALSE(got->no_cache);
  EXPECT_EQ(got->artifacts, "s3://ml-artifacts/team-b");
}

TEST_P(StoreSuite, DuplicateRunIsAlreadyExists) {
  auto store = Open();
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  Status st = store->CreateRun(MakeRun("r1"));
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(st.message(), "run r1 already exists");
}

TEST_P(StoreSuite, UpdatingAnUnknownRunIsNotFound) {
  auto store = Open();
  EXPECT_EQ(store->UpdateRun(MakeRun("ghost")).code(), StatusCode::kNotFound);
}

TEST_P(StoreSuite, RunLookupByUniquePrefix) {
  auto store = Open();
  for (const char* id : {"retrain-1", "retrain-10", "retrain-2", "etl-7"}) {
    ASSERT_TRUE(store->CreateRun(MakeRun(id)).ok());
  }
  EXPECT_EQ(store->GetRun("etl")->id, "etl-7");
  EXPECT_EQ(store->GetRun("retrain-2")->id, "retrain-2");
  // An exact id wins over longer ids it prefixes.
  EXPECT_EQ(store->GetRun("retrain-1")->id, "retrain-1");

  auto ambiguous = store->GetRun("retrain");
  ASSERT_FALSE(ambiguous.has_value());
  EXPECT_EQ(ambiguous.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ambiguous.error().message(),
            "run id prefix 'retrain' is ambiguous; it matches retrain-1, retrain-10, retrain-2; "
            "give more characters");

  auto missing = store->GetRun("train");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.error().message(), "no run 'train' in this store (`sluice runs` lists them)");
}

TEST_P(StoreSuite, ListRunsFiltersByPipelinePhaseAndTime) {
  auto store = Open();
  RunRecord a = MakeRun("a", "retrain", 1000);
  RunRecord b = MakeRun("b", "etl", 2000);
  RunRecord c = MakeRun("c", "retrain", 3000);
  c.phase = RunPhase::kSucceeded;
  for (const auto& r : {a, b, c}) ASSERT_TRUE(store->CreateRun(r).ok());

  auto ids = [&](const RunFilter& f) {
    std::vector<std::string> out;
    auto runs = store->ListRuns(f);
    EXPECT_TRUE(runs.has_value());
    for (const auto& r : *runs) out.push_back(r.id);
    return out;
  };
  RunFilter all;
  EXPECT_EQ(ids(all), (std::vector<std::string>{"c", "b", "a"}));
  RunFilter by_pipeline;
  by_pipeline.pipeline = "retrain";
  EXPECT_EQ(ids(by_pipeline), (std::vector<std::string>{"c", "a"}));
  RunFilter by_phase;
  by_phase.phase = RunPhase::kSucceeded;
  EXPECT_EQ(ids(by_phase), (std::vector<std::string>{"c"}));
  RunFilter since;
  since.since = At(2000);
  EXPECT_EQ(ids(since), (std::vector<std::string>{"c", "b"}));
  RunFilter limited;
  limited.limit = 1;
  EXPECT_EQ(ids(limited), (std::vector<std::string>{"c"}));
}

TEST_P(StoreSuite, StepRoundTripsAndIsReplacedAsAWhole) {
  auto store = Open();
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  StepRecord s = MakeStep("r1", "train[1]");
  s.index = 1;
  s.item = "random_forest";
  s.phase = NodePhase::kRunning;
  s.started_at = At(1764080001000);
  s.cache_key = "key1";
  ASSERT_TRUE(store->PutStep(s).ok());
  auto got = store->GetStep("r1", "train[1]");
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  EXPECT_EQ(got->step, "train");
  EXPECT_EQ(got->index, 1);
  EXPECT_EQ(got->item, Json("random_forest"));
  EXPECT_EQ(got->phase, NodePhase::kRunning);
  EXPECT_EQ(got->started_at, s.started_at);
  EXPECT_EQ(got->finished_at, std::nullopt);

  s.phase = NodePhase::kSucceeded;
  s.attempts = 2;
  s.finished_at = At(1764080002500);
  s.output_params = {{"accuracy", "0.97"}};
  s.metrics = {{"accuracy", 0.97}};
  s.outputs = {{"model", MakeArtifact(std::string(64, 'a'), ArtifactType::kModel)}};
  s.inputs = {{"dataset", MakeArtifact(std::string(64, 'b'), ArtifactType::kDataset)}};
  ASSERT_TRUE(store->PutStep(s).ok());
  got = store->GetStep("r1", "train[1]");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->phase, NodePhase::kSucceeded);
  EXPECT_EQ(got->attempts, 2);
  EXPECT_EQ(got->finished_at, s.finished_at);
  EXPECT_EQ(got->output_params, s.output_params);
  EXPECT_EQ(got->metrics, s.metrics);
  ASSERT_EQ(got->outputs.size(), 1u);
  EXPECT_EQ(got->outputs[0].name, "model");
  EXPECT_EQ(got->outputs[0].artifact.digest, "sha256:" + std::string(64, 'a'));
  EXPECT_EQ(got->outputs[0].artifact.type, ArtifactType::kModel);
  EXPECT_EQ(got->outputs[0].artifact.size, 1234);
  EXPECT_EQ(got->outputs[0].artifact.properties, Json({{"rows", 569}}));
  ASSERT_EQ(got->inputs.size(), 1u);
  EXPECT_EQ(got->inputs[0].artifact.type, ArtifactType::kDataset);
  // Artifacts named by a step are in the artifacts table too.
  EXPECT_EQ(store->GetArtifact("aaaa")->uri, s.outputs[0].artifact.uri);

  EXPECT_EQ(store->ListSteps("r1")->size(), 1u);
  auto missing = store->GetStep("r1", "train[9]");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().message(), "run r1 has no step 'train[9]'");
}

TEST_P(StoreSuite, ArtifactBindingsRoundTripWithAndWithoutEscapesOrProperties) {
  auto store = Open();
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  StepRecord step = MakeStep("r1", "train");
  ArtifactRecord plain = MakeArtifact(std::string(64, 'b'), ArtifactType::kModel);
  plain.properties = Json::object();
  plain.is_directory = true;
  ArtifactRecord quoted = MakeArtifact(std::string(64, 'c'), ArtifactType::kDataset);
  quoted.properties = Json::object();
  quoted.uri = "file:///store/cas/\"odd\"/c\xc3\xa9";
  step.outputs = {{"model", plain}, {"we\"ird\\name", quoted}};
  step.inputs = {{"data", MakeArtifact(std::string(64, 'd'), ArtifactType::kOther)}};
  ASSERT_TRUE(store->PutStep(step).ok());
  auto back = store->GetStep("r1", "train");
  ASSERT_TRUE(back.has_value());
  ASSERT_EQ(back->outputs.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back->outputs[i].name, step.outputs[i].name);
    EXPECT_EQ(back->outputs[i].artifact.digest, step.outputs[i].artifact.digest);
    EXPECT_EQ(back->outputs[i].artifact.uri, step.outputs[i].artifact.uri);
    EXPECT_EQ(back->outputs[i].artifact.type, step.outputs[i].artifact.type);
    EXPECT_EQ(back->outputs[i].artifact.size, 1234);
    EXPECT_EQ(back->outputs[i].artifact.is_directory, i == 0);
    EXPECT_EQ(back->outputs[i].artifact.properties, Json::object());
  }
  ASSERT_EQ(back->inputs.size(), 1u);
  EXPECT_EQ(back->inputs[0].artifact.properties, Json({{"rows", 569}}));
}

TEST_P(StoreSuite, StepOfAnUnknownRunIsNotFound) {
  auto store = Open();
  Status st = store->PutStep(MakeStep("ghost", "prepare"));
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_EQ(st.message(), "no run ghost for step prepare");
}

TEST_P(StoreSuite, ListStepsOrdersStartedStepsByStartThenPendingOnes) {
  auto store = Open();
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  StepRecord report = MakeStep("r1", "report");
  report.phase = NodePhase::kPending;
  StepRecord train = MakeStep("r1", "train[0]");
  train.started_at = At(2000);
  StepRecord prepare = MakeStep("r1", "prepare");
  prepare.started_at = At(1000);
  for (const auto& s : {report, train, prepare}) ASSERT_TRUE(store->PutStep(s).ok());
  std::vector<std::string> order;
  auto steps = store->ListSteps("r1");
  ASSERT_TRUE(steps.has_value());
  for (const auto& s : *steps) order.push_back(s.instance);
  EXPECT_EQ(order, (std::vector<std::string>{"prepare", "train[0]", "report"}));
}

TEST_P(StoreSuite, ExecutionsRecordAttemptsSnapshotsAndLineageEvents) {
  auto store = Open();
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  const ArtifactRecord dataset = MakeArtifact(std::string(64, 'd'), ArtifactType::kDataset);
  const ArtifactRecord model = MakeArtifact("e" + std::string(63, '0'), ArtifactType::kModel);

  ExecutionRecord prep;
  prep.run_id = "r1";
  prep.instance = "prepare";
  prep.started_at = At(1000);
  prep.snapshot = {{"command", {"python3", "prepare.py"}}};
  auto prep_id = store->StartExecution(prep);
  ASSERT_TRUE(prep_id.has_value()) << prep_id.error().ToString();
  prep.id = *prep_id;
  prep.outcome = "Succeeded";
  prep.exit_code = 0;
  prep.finished_at = At(1500);
  ASSERT_TRUE(store->FinishExecution(prep, {}, {{"dataset", dataset}}).ok());

  ExecutionRecord train;
  train.run_id = "r1";
  train.instance = "train[0]";
  train.attempt = 1;
  train.started_at = At(2000);
  train.cache_key = "k-train";
  auto t1 = store->StartExecution(train);
  ASSERT_TRUE(t1.has_value());
  EXPECT_GT(*t1, *prep_id);
  train.id = *t1;
  train.outcome = "Error";
  train.message = "spawn failed";
  ASSERT_TRUE(store->FinishExecution(train, {{"dataset", dataset}}, {}).ok());
  train.attempt = 2;
  auto t2 = store->StartExecution(train);
  ASSERT_TRUE(t2.has_value());
  train.id = *t2;
  train.outcome = "Succeeded";
  train.message = "";
  train.exit_code = 0;
  train.snapshot = {{"exit_code", 0}};
  ASSERT_TRUE(store->FinishExecution(train, {{"dataset", dataset}}, {{"model", model}}).ok());

  auto executions = store->ListExecutions("r1");
  ASSERT_TRUE(executions.has_value());
  ASSERT_EQ(executions->size(), 3u);
  EXPECT_EQ((*executions)[0].instance, "prepare");
  EXPECT_EQ((*executions)[0].snapshot, prep.snapshot);
  EXPECT_EQ((*executions)[0].finished_at, At(1500));
  EXPECT_EQ((*executions)[1].outcome, "Error");
  EXPECT_EQ((*executions)[1].message, "spawn failed");
  EXPECT_EQ((*executions)[2].attempt, 2);
  EXPECT_EQ((*executions)[2].outcome, "Succeeded");
  EXPECT_EQ((*executions)[2].cache_key, "k-train");
  EXPECT_EQ((*executions)[2].snapshot, Json({{"exit_code", 0}}));

  // Who produced the dataset, and who read it.
  auto producers = store->ProducersOf(dataset.digest);
  ASSERT_TRUE(producers.has_value()) << producers.error().ToString();
  ASSERT_EQ(producers->size(), 1u);
  EXPECT_EQ((*producers)[0].instance, "prepare");
  auto consumers = store->ConsumersOf(dataset.digest);
  ASSERT_TRUE(consumers.has_value());
  ASSERT_EQ(consumers->size(), 2u);
  EXPECT_EQ((*consumers)[0].id, *t1);
  EXPECT_EQ((*consumers)[1].id, *t2);
  EXPECT_TRUE(store->ConsumersOf(model.digest)->empty());

  auto inputs = store->InputsOf(*t2);
  ASSERT_TRUE(inputs.has_value());
  ASSERT_EQ(inputs->size(), 1u);
  EXPECT_EQ((*inputs)[0].name, "dataset");
  EXPECT_EQ((*inputs)[0].artifact.digest, dataset.digest);
  EXPECT_EQ((*inputs)[0].artifact.properties, Json({{"rows", 569}}));
  auto outputs = store->OutputsOf(*t2);
  ASSERT_TRUE(outputs.has_value());
  ASSERT_EQ(outputs->size(), 1u);
  EXPECT_EQ((*outputs)[0].name, "model");
  EXPECT_EQ((*outputs)[0].artifact.type, ArtifactType::kModel);

  auto got = store->GetExecution(*t2);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->instance, "train[0]");
  EXPECT_EQ(got->attempt, 2);
  EXPECT_EQ(store->GetExecution(9999).error().code(), StatusCode::kNotFound);

  EXPECT_EQ(store->GetArtifact("sha256:e0")->type, ArtifactType::kModel);
  EXPECT_EQ(store->GetArtifact("zz").error().code(), StatusCode::kNotFound);
}

TEST_P(StoreSuite, ArtifactPrefixMustBeUnique) {
  auto store = Open();
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  StepRecord s = MakeStep("r1", "prepare");
  s.outputs = {{"a", MakeArtifact("ab" + std::string(62, '1'), ArtifactType::kOther)},
               {"b", MakeArtifact("ab" + std::string(62, '2'), ArtifactType::kOther)}};
  ASSERT_TRUE(store->PutStep(s).ok());
  auto a = store->GetArtifact("ab");
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->GetArtifact("ab1")->digest, "sha256:ab" + std::string(62, '1'));
}

TEST_P(StoreSuite, FinishingAnUnknownExecutionIsNotFound) {
  auto store = Open();
  ExecutionRecord e;
  e.id = 77;
  e.outcome = "Succeeded";
  EXPECT_EQ(store->FinishExecution(e, {}, {}).code(), StatusCode::kNotFound);
}

TEST_P(StoreSuite, WriteRecordsABatchOfCacheHitsAndFinishes) {
  auto store = Open();
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  ExecutionRecord running;
  running.run_id = "r1";
  running.instance = "ran";
  running.started_at = At(1);
  auto started = store->StartExecution(running);
  ASSERT_TRUE(started.has_value());

  ASSERT_TRUE(store->Write(CachedBatch("r1", 0, 3, *started)).ok());
  auto steps = store->ListSteps("r1");
  ASSERT_EQ(steps->size(), 3u);
  for (const auto& s : *steps) {
    EXPECT_EQ(s.phase, NodePhase::kCached);
    EXPECT_EQ(s.cached_from, "old/" + s.instance);
  }
  auto executions = store->ListExecutions("r1");
  ASSERT_EQ(executions->size(), 4u);
  EXPECT_EQ((*executions)[0].instance, "ran");
  EXPECT_EQ((*executions)[0].outcome, "Succeeded");
  for (int i = 1; i <= 3; ++i) {
    const ExecutionRecord& e = (*executions)[i];
    EXPECT_EQ(e.outcome, "Cached");
    EXPECT_EQ(e.snapshot["i"], i - 1);
    auto outputs = store->OutputsOf(e.id);
    ASSERT_EQ(outputs->size(), 1u);
    EXPECT_EQ((*outputs)[0].name, "out");
    EXPECT_EQ((*store->ProducersOf((*outputs)[0].artifact.digest)).size(), 1u);
  }
}

TEST_P(StoreSuite, AFailingWriteLeavesNoneOfItsBatch) {
  auto store = Open();
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  // The last record finishes an execution that does not exist.
  StoreBatch batch = CachedBatch("r1", 0, 3, /*started_id=*/999);
  EXPECT_EQ(store->Write(batch).code(), StatusCode::kNotFound);
  EXPECT_TRUE(store->ListSteps("r1")->empty());
  EXPECT_TRUE(store->ListExecutions("r1")->empty());
  ExpectSound(*store);
  // And the connection is usable afterwards.
  EXPECT_TRUE(store->Write(CachedBatch("r1", 0, 3)).ok());
  EXPECT_EQ(store->ListSteps("r1")->size(), 3u);
}

TEST_P(StoreSuite, FindCachedReturnsTheLatestSuccessWithinMaxAge) {
  auto store = Open();
  for (const char* id : {"r1", "r2", "r3"}) ASSERT_TRUE(store->CreateRun(MakeRun(id)).ok());
  StepRecord old_hit = MakeStep("r1", "train[0]");
  old_hit.cache_key = "K";
  old_hit.finished_at = At(1000);
  StepRecord new_hit = MakeStep("r2", "train[0]");
  new_hit.cache_key = "K";
  new_hit.finished_at = At(5000);
  StepRecord failed = MakeStep("r3", "train[0]");
  failed.cache_key = "K";
  failed.phase = NodePhase::kFailed;
  failed.finished_at = At(9000);
  for (const auto& s : {old_hit, new_hit, failed}) ASSERT_TRUE(store->PutStep(s).ok());

  auto hit = store->FindCached("K", std::nullopt);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->run_id, "r2");
  hit = store->FindCached("K", At(5000));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->run_id, "r2");
  EXPECT_EQ(store->FindCached("K", At(5001)).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->FindCached("other", std::nullopt).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->FindCached("", std::nullopt).error().code(), StatusCode::kNotFound);
}

TEST_P(StoreSuite, FindCacheHitNamesTheExecutionThatProducedTheOutputs) {
  auto store = Open();
  const ArtifactRecord model = MakeArtifact(std::string(64, 'a'), ArtifactType::kModel);
  const int64_t ran = RecordRanTrain(*store, "r1", model);

  auto hit = store->FindCacheHit("K", std::nullopt);
  ASSERT_TRUE(hit.has_value()) << hit.error().ToString();
  EXPECT_EQ(hit->execution_id, ran);
  EXPECT_EQ(hit->step.run_id, "r1");
  EXPECT_EQ(hit->step.instance, "train");
  EXPECT_EQ(hit->step.exit_code, 0);
  EXPECT_EQ(hit->step.output_params, Json({{"auc", "0.97"}}));
  ASSERT_EQ(hit->step.outputs.size(), 1u);
  EXPECT_EQ(hit->step.outputs[0].name, "model");
  EXPECT_EQ(hit->step.outputs[0].artifact.digest, model.digest);
  EXPECT_EQ(hit->step.outputs[0].artifact.properties, Json({{"rows", 569}}));
  EXPECT_EQ(store->FindCacheHit("K", At(21)).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->FindCacheHit("other", std::nullopt).error().code(), StatusCode::kNotFound);
}

TEST_P(StoreSuite, ALightSnapshotIsStoredAsWrittenAndReadBackMerged) {
  auto store = Open();
  const ArtifactRecord model = MakeArtifact(std::string(64, 'a'), ArtifactType::kModel);
  const int64_t ran = RecordRanTrain(*store, "r1", model);
  ASSERT_TRUE(store->CreateRun(MakeRun("r2")).ok());
  StoreBatch batch = LightHit("r2", {{"workdir", "/store/runs/r2/steps/train"}, {"cached_from", "r1/train"}}, ran);
  batch.executions[0].outputs = {{"model", model}};
  const StoreBatch::Execution hit = batch.executions[0];
  ASSERT_TRUE(store->Write(batch).ok());

  const Json full = {{"step", "train"},
                     {"instance", "train"},
                     {"workdir", "/store/runs/r2/steps/train"},
                     {"code_digest", "sha256:c0de"},
                     {"params", {{"seed", 1}}},
                     {"outputs", {{"model", model.digest}}},
                     {"exit_code", 0},
                     {"cached_from", "r1/train"}};
  auto listed = store->ListExecutions("r2");
  ASSERT_TRUE(listed.has_value());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].snapshot, full);
  EXPECT_EQ((*listed)[0].snapshot_base, ran);
  EXPECT_EQ(store->GetExecution((*listed)[0].id)->snapshot, full);
  auto producers = store->ProducersOf(model.digest);
  ASSERT_EQ(producers->size(), 2u);
  EXPECT_EQ((*producers)[0].snapshot["workdir"], "/store/runs/r1/steps/train");
  EXPECT_EQ((*producers)[1].snapshot, full);
  // The base execution's own snapshot is untouched.
  EXPECT_EQ(store->GetExecution(ran)->snapshot["workdir"], "/store/runs/r1/steps/train");
  EXPECT_EQ(store->GetExecution(ran)->snapshot_base, 0);

  // On disk the hit keeps only its own keys.
  auto row = Raw("SELECT snapshot, snapshot_base FROM executions WHERE run_id = 'r2'");
  ASSERT_EQ(row.size(), 2u);
  EXPECT_EQ(Json::parse(row[0]), hit.record.snapshot);
  EXPECT_EQ(row[1], std::to_string(ran));
}

TEST_P(StoreSuite, ASnapshotGivenAsTextIsStoredAsWritten) {
  auto store = Open();
  const ArtifactRecord model = MakeArtifact(std::string(64, 'a'), ArtifactType::kModel);
  const int64_t ran = RecordRanTrain(*store, "r1", model);
  ASSERT_TRUE(store->CreateRun(MakeRun("r2")).ok());
  StoreBatch batch = LightHit("r2", {}, ran);
  batch.executions[0].record.snapshot = Json::object();
  const std::string text = R"({"cached_from":"r1/train","workdir":"/store/runs/r2/steps/train"})";
  batch.executions[0].record.snapshot_text = text;
  ASSERT_TRUE(store->Write(batch).ok());

  auto listed = store->ListExecutions("r2");
  ASSERT_TRUE(listed.has_value());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].snapshot["workdir"], "/store/runs/r2/steps/train");
  EXPECT_EQ((*listed)[0].snapshot["cached_from"], "r1/train");
  EXPECT_EQ((*listed)[0].snapshot["code_digest"], "sha256:c0de");  // from the base
  EXPECT_EQ((*listed)[0].snapshot_text, "");

  EXPECT_EQ(Raw("SELECT snapshot FROM executions WHERE run_id = 'r2'"),
            std::vector<std::string>{text});
}

TEST_P(StoreSuite, FindCacheHitSeesWhatIsCommittedAfterItsFirstLookup) {
  auto store = Open();
  // The first lookup opens the lookup connection and finds nothing.
  EXPECT_EQ(store->FindCacheHit("K", std::nullopt).error().code(), StatusCode::kNotFound);
  const ArtifactRecord model = MakeArtifact(std::string(64, 'a'), ArtifactType::kModel);
  const int64_t ran = RecordRanTrain(*store, "r1", model);
  auto hit = store->FindCacheHit("K", std::nullopt);
  ASSERT_TRUE(hit.has_value()) << hit.error().ToString();
  EXPECT_EQ(hit->execution_id, ran);

  // Lookups while a write runs on another thread (as the Runner's
  // StoreWriter does) are safe and see the committed state.
  ASSERT_TRUE(store->CreateRun(MakeRun("r2")).ok());
  std::thread writer([&] { EXPECT_TRUE(store->Write(CachedBatch("r2", 0, 200)).ok()); });
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(store->FindCacheHit("K", std::nullopt).has_value());
  writer.join();
  EXPECT_EQ(store->ListSteps("r2")->size(), 200u);
}

TEST_P(StoreSuite, DeploymentsAreListedNewestFirst) {
  auto store = Open();
  DeploymentRecord d;
  d.service = "breast-cancer";
  d.namespace_ = "local";
  d.executor = "local";
  d.action = "deploy";
  d.version = "v1";
  d.model_digest = "sha256:aa";
  d.endpoint = "http://127.0.0.1:8080";
  d.at = At(1000);
  d.details = {{"pid", 12}};
  auto id1 = store->RecordDeployment(d);
  ASSERT_TRUE(id1.has_value()) << id1.error().ToString();
  d.action = "shift";
  d.traffic_percent = 10;
  d.at = At(2000);
  ASSERT_TRUE(store->RecordDeployment(d).has_value());
  d.service = "other";
  ASSERT_TRUE(store->RecordDeployment(d).has_value());

  auto list = store->ListDeployments("breast-cancer", 10);
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].action, "shift");
  EXPECT_EQ((*list)[0].traffic_percent, 10);
  EXPECT_EQ((*list)[1].id, *id1);
  EXPECT_EQ((*list)[1].details, Json({{"pid", 12}}));
  EXPECT_EQ((*list)[1].at, At(1000));
  EXPECT_EQ(store->ListDeployments("", 0)->size(), 3u);
}

// The audit log outlives the runs it names and is kept across reopening.
TEST_P(StoreSuite, AuditLogAppendsAndListsNewestFirst) {
  const TimePoint t0 = TimePoint(std::chrono::milliseconds(1796000000000));
  {
    auto store = Open();
    ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
    for (int i = 0; i < 3; ++i) {
      AuditEntry e;
      e.at = t0 + std::chrono::seconds(i);
      e.who = i == 2 ? "ops" : "ci";
      e.role = i == 2 ? "admin" : "runner";
      e.method = i == 2 ? "DELETE" : "POST";
      e.route = i == 0 ? "/api/v1/pipelines/{pipeline}/runs" : "/api/v1/runs/{run}/cancel";
      e.run_id = "r1";
      e.pipeline = "retrain";
      e.code = i == 1 ? 409 : 201;
      ASSERT_TRUE(store->AppendAudit(e).ok());
    }
    RunRecord ended = MakeRun("r1");
    ended.phase = RunPhase::kSucceeded;
    ended.finished_at = ended.created_at;
    ASSERT_TRUE(store->UpdateRun(ended).ok());
    ASSERT_TRUE(store->DeleteRun("r1").ok());
  }
  auto store = Open();
  auto all = store->ListAudit({});
  ASSERT_TRUE(all.has_value()) << all.error().ToString();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].who, "ops");
  EXPECT_EQ((*all)[0].role, "admin");
  EXPECT_EQ((*all)[0].method, "DELETE");
  EXPECT_EQ((*all)[0].at, t0 + std::chrono::seconds(2));
  EXPECT_EQ((*all)[1].code, 409);
  EXPECT_EQ((*all)[1].route, "/api/v1/runs/{run}/cancel");
  EXPECT_EQ((*all)[2].route, "/api/v1/pipelines/{pipeline}/runs");
  EXPECT_EQ((*all)[2].run_id, "r1");
  EXPECT_EQ((*all)[2].pipeline, "retrain");
  EXPECT_LT((*all)[1].id, (*all)[0].id);
  AuditFilter newest;
  newest.limit = 1;
  EXPECT_EQ(store->ListAudit(newest)->front().who, "ops");
  AuditFilter since;
  since.since = t0 + std::chrono::seconds(1);
  EXPECT_EQ(store->ListAudit(since)->size(), 2u);
}

// DeleteRun keeps what other records need (an unfinished run, a run whose
// outputs a cached step reuses, a run behind what a service serves) with the
// same words on every store, and deletes the rest of a run's records.
TEST_P(StoreSuite, DeleteRunKeepsWhatOthersNeedAndRemovesTheRest) {
  auto store = Open();
  const ArtifactRecord model = MakeArtifact(std::string(64, 'a'), ArtifactType::kModel);
  RecordRanTrain(*store, "r1", model);
  RunRecord r1 = MakeRun("r1");
  r1.phase = RunPhase::kSucceeded;
  r1.finished_at = At(1764080009000);
  ASSERT_TRUE(store->UpdateRun(r1).ok());

  EXPECT_EQ(store->DeleteRun("ghost").ToString(), "NOT_FOUND: no run 'ghost' in this store (`sluice runs` lists them)");
  ASSERT_TRUE(store->CreateRun(MakeRun("r2")).ok());  // Running
  EXPECT_EQ(store->DeleteRun("r2").ToString(),
            "FAILED_PRECONDITION: run r2 is Running (process 4242 on host 'ana-laptop'); only finished runs are "
            "deleted: cancel it, or let it finish (an interrupted run continues with `sluice resume r2`)");

  StepRecord hit = MakeStep("r2", "train");
  hit.phase = NodePhase::kCached;
  hit.cached_from = "r1/train";
  hit.outputs = {{"model", model}};
  ASSERT_TRUE(store->PutStep(hit).ok());
  EXPECT_EQ(store->DeleteRun("r1").ToString(),
            "FAILED_PRECONDITION: run r1 is kept: cached steps of run r2 reuse its outputs, and their lineage "
            "leads to it; delete that run first");
  RunRecord r2 = MakeRun("r2");
  r2.phase = RunPhase::kSucceeded;
  r2.finished_at = At(1764080019000);
  ASSERT_TRUE(store->UpdateRun(r2).ok());
  ASSERT_TRUE(store->DeleteRun("r2").ok());

  DeploymentRecord d;
  d.service = "churn";
  d.action = "deploy";
  d.model_digest = model.digest;
  d.run_id = "deploy-1";
  d.at = At(1000);
  ASSERT_TRUE(store->RecordDeployment(d).has_value());
  EXPECT_EQ(store->DeleteRun("r1").ToString(),
            "FAILED_PRECONDITION: run r1 is kept: it deployed or produced what service churn serves now "
            "(`sluice lineage --deployed` follows it)");
  d.action = "undeploy";
  d.at = At(2000);
  ASSERT_TRUE(store->RecordDeployment(d).has_value());

  ASSERT_TRUE(store->DeleteRun("r1").ok());
  EXPECT_EQ(store->GetRun("r1").error().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store->ListExecutions("r1")->empty());
  EXPECT_TRUE(store->ListSteps("r1")->empty());
  EXPECT_TRUE(store->ProducersOf(model.digest)->empty());
  // The deployment history still names the model: its record stays.
  EXPECT_EQ(store->ArtifactDigests().value(), std::vector<std::string>{model.digest});
  EXPECT_EQ(store->ListDeployments("churn", 0)->size(), 2u);
}

// A second connection (as `sluice status` has) reads while the first writes.
TEST_P(StoreSuite, ReaderConnectionSeesCommittedStateWhileAWriterRuns) {
  auto writer = Open();
  auto reader = Open();
  ASSERT_TRUE(writer->CreateRun(MakeRun("r1")).ok());
  constexpr int kSteps = 300;
  std::atomic<bool> done{false};
  std::thread write_thread([&] {
    for (int i = 0; i < kSteps; ++i) {
      StepRecord s = MakeStep("r1", "s[" + std::to_string(i) + "]");
      s.started_at = At(i);
      ExecutionRecord e;
      e.run_id = "r1";
      e.instance = s.instance;
      e.started_at = At(i);
      auto id = writer->StartExecution(e);
      ASSERT_TRUE(id.has_value()) << id.error().ToString();
      ASSERT_TRUE(writer->PutStep(s).ok());
    }
    done = true;
  });
  size_t last = 0;
  int reads = 0;
  while (!done || last < kSteps) {
    auto steps = reader->ListSteps("r1");
    ASSERT_TRUE(steps.has_value()) << steps.error().ToString();
    ASSERT_GE(steps->size(), last);  // committed state only grows
    last = steps->size();
    ++reads;
    if (done && last < kSteps) {
      // One last read after the writer finished must see everything.
      ASSERT_EQ(reader->ListSteps("r1")->size(), static_cast<size_t>(kSteps));
      break;
    }
  }
  write_thread.join();
  EXPECT_EQ(reader->ListExecutions("r1")->size(), static_cast<size_t>(kSteps));
  EXPECT_GT(reads, 0);
}

// One store object shared by threads (the runner and a log follower).
TEST_P(StoreSuite, OneStoreIsSafeToShareBetweenThreads) {
  auto store = Open();
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        StepRecord s = MakeStep("r1", "t" + std::to_string(t) + "[" + std::to_string(i) + "]");
        EXPECT_TRUE(store->PutStep(s).ok());
        EXPECT_TRUE(store->ListSteps("r1").has_value());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(store->ListSteps("r1")->size(), 200u);
}

// Writes in a loop and reports each committed iteration on `report_fd`.
[[noreturn]] void WriterChild(const std::string& dir, int report_fd) {
  auto store = OpenStore(dir);
  if (!store) ::_exit(3);
  for (int i = 0;; ++i) {
    std::string run_id = "run-" + std::to_string(i);
    RunRecord run = MakeRun(run_id);
    if (!(*store)->CreateRun(run).ok()) ::_exit(4);
    ExecutionRecord e;
    e.run_id = run_id;
    e.instance = "train";
    e.started_at = At(i);
    e.snapshot = {{"i", i}, {"pad", std::string(512, 'x')}};
    auto id = (*store)->StartExecution(e);
    if (!id) ::_exit(5);
    e.id = *id;
    e.outcome = "Succeeded";
    ArtifactRecord out = MakeArtifact(std::string(60, 'c') + std::to_string(1000 + i % 9000),
                                      ArtifactType::kModel);
    if (!(*store)->FinishExecution(e, {}, {{"model", out}}).ok()) ::_exit(6);
    StepRecord s = MakeStep(run_id, "train");
    s.outputs = {{"model", out}};
    if (!(*store)->PutStep(s).ok()) ::_exit(7);
    if (::write(report_fd, &i, sizeof i) != sizeof i) ::_exit(8);
  }
}

// Forks `child(dir, report_fd)`, a writer that reports each committed
// iteration on report_fd, lets it report `kill_after` iterations, then kills
// it with SIGKILL wherever it is. `*committed` is the last reported one.
void KillWriterAfter(const std::string& dir, void (*child)(const std::string&, int), int kill_after,
                     int* committed) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    child(dir, fds[1]);
    ::_exit(9);
  }
  ::close(fds[1]);
  for (int got = 0; got < kill_after; ++got) {
    int i;
    ASSERT_EQ(::read(fds[0], &i, sizeof i), static_cast<ssize_t>(sizeof i)) << "writer died early";
    *committed = i;
  }
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  ::close(fds[0]);
}

// kill -9 at a random moment of a busy writer leaves a sound store that
// holds everything committed before the kill.
TEST_P(StoreSuite, KillNineDuringWritesLeavesAConsistentStore) {
  std::mt19937 rng(std::random_device{}());
  for (int round = 0; round < 5; ++round) {
    const std::string location = NewLocation();
    { Open(location); }
    // Let it commit a random number of iterations, then kill it wherever it is.
    int committed = -1;
    ASSERT_NO_FATAL_FAILURE(KillWriterAfter(location, WriterChild,
                                            std::uniform_int_distribution<int>(1, 150)(rng), &committed));

    auto store = Open(location);
    ASSERT_TRUE(store);
    ExpectSound(*store);
    for (int i = 0; i <= committed; ++i) {
      std::string run_id = "run-" + std::to_string(i);
      auto run = store->GetRun(run_id);
      ASSERT_TRUE(run.has_value()) << run_id << ": " << run.error().ToString();
      auto step = store->GetStep(run_id, "train");
      ASSERT_TRUE(step.has_value()) << run_id;
      ASSERT_EQ(step->outputs.size(), 1u);
      auto executions = store->ListExecutions(run_id);
      ASSERT_EQ(executions->size(), 1u);
      EXPECT_EQ((*executions)[0].outcome, "Succeeded");
      EXPECT_EQ((*executions)[0].snapshot["i"], i);
    }
    // The store is writable again (a resumed run can continue).
    EXPECT_TRUE(store->CreateRun(MakeRun("after-crash")).ok());
  }
}

// Writes a run of kBatchSteps cache hits per iteration, each as one
// Store::Write, and reports each committed iteration on `report_fd`.
constexpr int kBatchSteps = 50;
[[noreturn]] void BatchWriterChild(const std::string& dir, int report_fd) {
  auto store = OpenStore(dir);
  if (!store) ::_exit(3);
  for (int i = 0;; ++i) {
    std::string run_id = "run-" + std::to_string(i);
    if (!(*store)->CreateRun(MakeRun(run_id)).ok()) ::_exit(4);
    StoreBatch batch = CachedBatch(run_id, 0, kBatchSteps);
    for (auto& e : batch.executions) e.record.snapshot["pad"] = std::string(512, 'x');
    if (!(*store)->Write(batch).ok()) ::_exit(5);
    if (::write(report_fd, &i, sizeof i) != sizeof i) ::_exit(8);
  }
}

// kill -9 while batches of cache hits are written: the store is sound, every
// reported batch is there whole, and any run holds all of its batch or none
// of it (never steps without their executions).
TEST_P(StoreSuite, KillNineDuringBatchWritesLeavesWholeBatches) {
  std::mt19937 rng(std::random_device{}());
  for (int round = 0; round < 5; ++round) {
    const std::string location = NewLocation();
    { Open(location); }
    int committed = -1;
    ASSERT_NO_FATAL_FAILURE(KillWriterAfter(location, BatchWriterChild,
                                            std::uniform_int_distribution<int>(1, 40)(rng), &committed));

    auto store = Open(location);
    ASSERT_TRUE(store);
    ExpectSound(*store);
    for (int i = 0; i <= committed + 2; ++i) {
      const std::string run_id = "run-" + std::to_string(i);
      const size_t steps = store->ListSteps(run_id)->size();
      const size_t executions = store->ListExecutions(run_id)->size();
      if (i <= committed) EXPECT_EQ(steps, static_cast<size_t>(kBatchSteps)) << run_id;
      EXPECT_TRUE(steps == 0 || steps == static_cast<size_t>(kBatchSteps)) << run_id << ": " << steps;
      EXPECT_EQ(executions, steps) << run_id;
    }
  }
}

// Another process (`sluice status` in a second terminal) reads while a run
// writes: every iteration the writer reported as committed is visible.
TEST_P(StoreSuite, ReaderProcessSeesWhatAWriterProcessCommitted) {
  auto reader = Open();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    WriterChild(location_, fds[1]);
  }
  ::close(fds[1]);
  for (int got = 0; got < 100; ++got) {
    int i;
    ASSERT_EQ(::read(fds[0], &i, sizeof i), static_cast<ssize_t>(sizeof i));
    auto step = reader->GetStep("run-" + std::to_string(i), "train");
    ASSERT_TRUE(step.has_value()) << step.error().ToString();
    EXPECT_EQ(step->phase, NodePhase::kSucceeded);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ::close(fds[0]);
}

}  // namespace
}  // namespace sluice
