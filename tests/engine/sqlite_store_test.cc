// SqliteStore on real SQLite files in a temporary directory.

#include "engine/store/sqlite_store.h"
#include "engine/store/open_store.h"
#include "tests/engine/fake_store.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <gtest/gtest.h>

namespace sluice {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sluice-store-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A time with millisecond precision, as the store keeps it.
TimePoint At(int64_t ms) { return TimePoint(milliseconds(ms)); }

RunRecord MakeRun(const std::string& id, const std::string& pipeline = "retrain",
                  int64_t created_ms = 1764080000000) {
  RunRecord run;
  run.id = id;
  run.pipeline = pipeline;
  run.pipeline_file = "/home/ana/retrain/pipeline.yaml";
  run.pipeline_digest = "d1gest";
  run.pipeline_yaml = "apiVersion: sluice.dev/v1\nkind: Pipeline\n";
  run.git_commit = "0123abcd";
  run.git_dirty = true;
  run.params = {{"seed", 42}, {"models", {"logreg", "rf"}}};
  run.executor = "local";
  run.phase = RunPhase::kRunning;
  run.created_at = At(created_ms);
  run.started_at = At(created_ms + 5);
  run.host = "ana-laptop";
  run.pid = 4242;
  return run;
}

ArtifactRecord MakeArtifact(const std::string& hex, ArtifactType type) {
  ArtifactRecord a;
  a.digest = "sha256:" + hex;
  a.uri = "file:///store/cas/sha256/" + hex.substr(0, 2) + "/" + hex;
  a.type = type;
  a.size = 1234;
  a.properties = {{"rows", 569}};
  return a;
}

StepRecord MakeStep(const std::string& run_id, const std::string& instance) {
  StepRecord s;
  s.run_id = run_id;
  s.instance = instance;
  s.step = instance.substr(0, instance.find('['));
  s.phase = NodePhase::kSucceeded;
  s.attempts = 1;
  s.exit_code = 0;
  s.log_path = "/store/runs/" + run_id + "/" + instance + "/1.log";
  return s;
}

SqliteStorePtr OpenOrDie(const std::string& dir) {
  auto store = SqliteStore::Open(dir);
  EXPECT_TRUE(store.has_value()) << store.error().ToString();
  return store ? std::move(*store) : nullptr;
}

TEST(SqliteStoreTest, MigratesAnEmptyDirectoryToTheCurrentSchema) {
  TempDir dir;
  auto store = OpenOrDie(dir.path() + "/.sluice");
  ASSERT_TRUE(store);
  EXPECT_EQ(store->path(), dir.path() + "/.sluice/sluice.db");
  EXPECT_EQ(store->SchemaVersion().value(), SqliteStore::kSchemaVersion);
  EXPECT_EQ(store->IntegrityCheck().value(), "ok");
  auto runs = store->ListRuns({});
  ASSERT_TRUE(runs.has_value());
  EXPECT_TRUE(runs->empty());
}

TEST(SqliteStoreTest, MigratesAnEmptyExistingFile) {
  TempDir dir;
  { std::ofstream(dir.path() + "/sluice.db"); }  // zero bytes: a valid empty database
  auto store = OpenOrDie(dir.path());
  ASSERT_TRUE(store);
  EXPECT_EQ(store->SchemaVersion().value(), SqliteStore::kSchemaVersion);
}

TEST(SqliteStoreTest, RefusesAnEmptyDatabaseBesideAnEarlierStoresRunsAndArtifacts) {
  TempDir dir;
  fs::create_directories(dir.path() + "/runs/r1/logs");
  fs::create_directories(dir.path() + "/cas/sha256/ab");
  { std::ofstream(dir.path() + "/sluice.db"); }  // truncated to zero bytes
  for (bool create : {true, false}) {
    SqliteStoreOptions options;
    options.create_if_missing = create;
    auto store = SqliteStore::Open(dir.path(), options);
    ASSERT_FALSE(store.has_value());
    EXPECT_EQ(store.error().ToString(),
              "FAILED_PRECONDITION: store " + dir.path() + "/sluice.db is empty (0 bytes), but " + dir.path() +
                  " holds runs/ and cas/ of an earlier store: its database was truncated or replaced. Restore "
                  "sluice.db (with sluice.db-wal, if there is one) from a backup; to start a new store instead, "
                  "move runs/ and cas/ out of " + dir.path() + " first");
  }
  EXPECT_EQ(fs::file_size(dir.path() + "/sluice.db"), 0u);  // left as it was
}

TEST(SqliteStoreTest, ReopeningKeepsDataAndDoesNotMigrateAgain) {
  TempDir dir;
  {
    auto store = OpenOrDie(dir.path());
    ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  }
  auto store = OpenOrDie(dir.path());
  ASSERT_TRUE(store);
  auto run = store->GetRun("r1");
  ASSERT_TRUE(run.has_value()) << run.error().ToString();
  EXPECT_EQ(run->pipeline, "retrain");
  EXPECT_EQ(store->SchemaVersion().value(), SqliteStore::kSchemaVersion);
}

TEST(SqliteStoreTest, MissingStoreIsNotFoundWhenNotCreating) {
  TempDir dir;
  SqliteStoreOptions options;
  options.create_if_missing = false;
  auto store = SqliteStore::Open(dir.path() + "/nowhere", options);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), StatusCode::kNotFound);
  EXPECT_EQ(store.error().message(),
            "no sluice store at " + dir.path() +
                "/nowhere (run a pipeline there first, or point --store at an existing store)");
  EXPECT_FALSE(fs::exists(dir.path() + "/nowhere"));
}

void ExecRaw(const std::string& db_path, const char* sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_close(db);
}

// The first row `sql` yields, each column as text (NULL as ""); empty when
// there is none. Reads the file past the store, as another tool would.
std::vector<std::string> RowRaw(const std::string& db_path, const char* sql) {
  std::vector<std::string> row;
  sqlite3* db = nullptr;
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  if (s && sqlite3_step(s) == SQLITE_ROW) {
    for (int i = 0; i < sqlite3_column_count(s); ++i) {
      const unsigned char* t = sqlite3_column_text(s, i);
      row.push_back(t ? reinterpret_cast<const char*>(t) : "");
    }
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return row;
}

TEST(SqliteStoreTest, RefusesAStoreFromANewerSluice) {
  TempDir dir;
  { OpenOrDie(dir.path()); }
  ExecRaw(dir.path() + "/sluice.db", "PRAGMA user_version=99");
  auto store = SqliteStore::Open(dir.path());
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.error().message(),
            "opening store " + dir.path() +
                "/sluice.db: the store's schema version is 99 but this sluice knows up to " +
                std::to_string(SqliteStore::kSchemaVersion) + "; "
                "use a newer sluice, or another --store");
}

TEST(SqliteStoreTest, RefusesADatabaseThatIsNotAStore) {
  TempDir dir;
  ExecRaw(dir.path() + "/sluice.db", "CREATE TABLE other(x)");
  auto store = SqliteStore::Open(dir.path());
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(store.error().message().find("is not a sluice store"), std::string::npos);
}

TEST(SqliteStoreTest, RunRoundTripsEveryField) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, DuplicateRunIsAlreadyExists) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  Status st = store->CreateRun(MakeRun("r1"));
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(st.message(), "run r1 already exists");
}

TEST(SqliteStoreTest, UpdatingAnUnknownRunIsNotFound) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
  EXPECT_EQ(store->UpdateRun(MakeRun("ghost")).code(), StatusCode::kNotFound);
}

TEST(SqliteStoreTest, PipelineVersionIsKeptOncePerDigest) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  ASSERT_TRUE(store->CreateRun(MakeRun("r2")).ok());
  RunRecord edited = MakeRun("r3");
  edited.pipeline_digest = "other";
  edited.pipeline_yaml = "edited";
  ASSERT_TRUE(store->CreateRun(edited).ok());
  auto v = store->GetPipelineVersion("d1gest");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->pipeline, "retrain");
  EXPECT_EQ(v->yaml, "apiVersion: sluice.dev/v1\nkind: Pipeline\n");
  EXPECT_EQ(store->GetRun("r3")->pipeline_yaml, "edited");
  EXPECT_EQ(store->GetPipelineVersion("nope").error().code(), StatusCode::kNotFound);
}

TEST(SqliteStoreTest, RunLookupByUniquePrefix) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, ListRunsFiltersByPipelinePhaseAndTime) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, StepRoundTripsAndIsReplacedAsAWhole) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, ArtifactBindingsRoundTripWithAndWithoutEscapesOrProperties) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, StepOfAnUnknownRunIsNotFound) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
  Status st = store->PutStep(MakeStep("ghost", "prepare"));
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_EQ(st.message(), "no run ghost for step prepare");
}

TEST(SqliteStoreTest, ListStepsOrdersStartedStepsByStartThenPendingOnes) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, ExecutionsRecordAttemptsSnapshotsAndLineageEvents) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, ArtifactPrefixMustBeUnique) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, FinishingAnUnknownExecutionIsNotFound) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
  ExecutionRecord e;
  e.id = 77;
  e.outcome = "Succeeded";
  EXPECT_EQ(store->FinishExecution(e, {}, {}).code(), StatusCode::kNotFound);
}

// A batch of cache hits as the Runner writes it: new executions (id 0) with
// their events, a started execution finished, and the step records.
StoreBatch CachedBatch(const std::string& run_id, int first, int count, int64_t started_id = 0) {
  StoreBatch batch;
  for (int i = first; i < first + count; ++i) {
    const std::string instance = "s" + std::to_string(i);
    ArtifactRecord out = MakeArtifact(std::string(58, 'e') + std::to_string(100000 + i), ArtifactType::kOther);
    StoreBatch::Execution e;
    e.record.run_id = run_id;
    e.record.instance = instance;
    e.record.outcome = "Cached";
    e.record.cache_key = "key-" + std::to_string(i);
    e.record.started_at = At(i);
    e.record.finished_at = At(i);
    e.record.snapshot = {{"i", i}, {"cached_from", "old/" + instance}};
    e.outputs = {{"out", out}};
    batch.executions.push_back(std::move(e));
    StepRecord s = MakeStep(run_id, instance);
    s.phase = NodePhase::kCached;
    s.cached_from = "old/" + instance;
    s.outputs = {{"out", out}};
    batch.steps.push_back(std::move(s));
  }
  if (started_id != 0) {
    StoreBatch::Execution done;
    done.record.id = started_id;
    done.record.run_id = run_id;
    done.record.instance = "ran";
    done.record.outcome = "Succeeded";
    done.record.exit_code = 0;
    done.record.started_at = At(1);
    done.record.finished_at = At(2);
    batch.executions.push_back(std::move(done));
  }
  return batch;
}

TEST(SqliteStoreTest, WriteRecordsABatchOfCacheHitsAndFinishes) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, AFailingWriteLeavesNoneOfItsBatch) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  // The last record finishes an execution that does not exist.
  StoreBatch batch = CachedBatch("r1", 0, 3, /*started_id=*/999);
  EXPECT_EQ(store->Write(batch).code(), StatusCode::kNotFound);
  EXPECT_TRUE(store->ListSteps("r1")->empty());
  EXPECT_TRUE(store->ListExecutions("r1")->empty());
  EXPECT_EQ(store->IntegrityCheck().value(), "ok");
  // And the connection is usable afterwards.
  EXPECT_TRUE(store->Write(CachedBatch("r1", 0, 3)).ok());
  EXPECT_EQ(store->ListSteps("r1")->size(), 3u);
}

TEST(SqliteStoreTest, FindCachedReturnsTheLatestSuccessWithinMaxAge) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

// The execution that ran `train` in run `run_id` (cache key K), finished
// and recorded as the step's Succeeded record. Returns its id.
int64_t RecordRanTrain(SqliteStore& store, const std::string& run_id, const ArtifactRecord& model) {
  EXPECT_TRUE(store.CreateRun(MakeRun(run_id)).ok());
  ExecutionRecord e;
  e.run_id = run_id;
  e.instance = "train";
  e.cache_key = "K";
  e.started_at = At(10);
  e.snapshot = {{"step", "train"},
                {"instance", "train"},
                {"workdir", "/store/runs/" + run_id + "/steps/train"},
                {"code_digest", "sha256:c0de"},
                {"params", {{"seed", 1}}}};
  auto id = store.StartExecution(e);
  EXPECT_TRUE(id.has_value());
  e.id = *id;
  e.outcome = "Succeeded";
  e.exit_code = 0;
  e.finished_at = At(20);
  e.snapshot["outputs"] = {{"model", model.digest}};
  e.snapshot["exit_code"] = 0;
  EXPECT_TRUE(store.FinishExecution(e, {}, {{"model", model}}).ok());
  StepRecord step = MakeStep(run_id, "train");
  step.cache_key = "K";
  step.finished_at = At(20);
  step.outputs = {{"model", model}};
  step.output_params = {{"auc", "0.97"}};
  EXPECT_TRUE(store.PutStep(step).ok());
  return e.id;
}

// A batch of one cache hit of `train` in `run_id` with a light snapshot
// on top of execution `base`.
StoreBatch LightHit(const std::string& run_id, const Json& snapshot, int64_t base) {
  StoreBatch batch;
  StoreBatch::Execution hit;
  hit.record.run_id = run_id;
  hit.record.instance = "train";
  hit.record.outcome = "Cached";
  hit.record.cache_key = "K";
  hit.record.started_at = At(30);
  hit.record.finished_at = At(30);
  hit.record.snapshot = snapshot;
  hit.record.snapshot_base = base;
  batch.executions.push_back(std::move(hit));
  return batch;
}

TEST(SqliteStoreTest, FindCacheHitNamesTheExecutionThatProducedTheOutputs) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, ALightSnapshotIsStoredAsWrittenAndReadBackMerged) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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
  auto row = RowRaw(dir.path() + "/sluice.db", "SELECT snapshot, snapshot_base FROM executions WHERE run_id = 'r2'");
  ASSERT_EQ(row.size(), 2u);
  EXPECT_EQ(Json::parse(row[0]), hit.record.snapshot);
  EXPECT_EQ(row[1], std::to_string(ran));
}

TEST(SqliteStoreTest, ASnapshotGivenAsTextIsStoredAsWritten) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

  EXPECT_EQ(RowRaw(dir.path() + "/sluice.db", "SELECT snapshot FROM executions WHERE run_id = 'r2'"),
            std::vector<std::string>{text});
}

TEST(SqliteStoreTest, FindCacheHitSeesWhatIsCommittedAfterItsFirstLookup) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

TEST(SqliteStoreTest, MigratesAVersion1StoreKeepingItsRecords) {
  TempDir dir;
  const ArtifactRecord model = MakeArtifact(std::string(64, 'a'), ArtifactType::kModel);
  int64_t ran = 0;
  {
    auto store = OpenOrDie(dir.path());
    ran = RecordRanTrain(*store, "r1", model);
  }
  // What a version-1 store (before light snapshots) looks like.
  ExecRaw(dir.path() + "/sluice.db",
          "ALTER TABLE executions DROP COLUMN snapshot_base; ALTER TABLE runs DROP COLUMN no_cache; "
          "ALTER TABLE runs DROP COLUMN artifacts; DROP TABLE audit_log; PRAGMA user_version=1");
  auto store = OpenOrDie(dir.path());
  ASSERT_TRUE(store);
  EXPECT_EQ(store->SchemaVersion().value(), SqliteStore::kSchemaVersion);
  EXPECT_EQ(store->IntegrityCheck().value(), "ok");
  auto e = store->GetExecution(ran);
  ASSERT_TRUE(e.has_value()) << e.error().ToString();
  EXPECT_EQ(e->snapshot_base, 0);
  // The audit log is new in version 5: there, and empty.
  EXPECT_TRUE(store->ListAudit({}).value().empty());
  EXPECT_EQ(e->snapshot["code_digest"], "sha256:c0de");
  auto hit = store->FindCacheHit("K", std::nullopt);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->execution_id, ran);
  // A light snapshot can be recorded on the migrated file.
  ASSERT_TRUE(store->CreateRun(MakeRun("r2")).ok());
  ASSERT_TRUE(store->Write(LightHit("r2", {{"cached_from", "r1/train"}}, ran)).ok());
  EXPECT_EQ((*store->ListExecutions("r2"))[0].snapshot["code_digest"], "sha256:c0de");
}

TEST(SqliteStoreTest, DeploymentsAreListedNewestFirst) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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

// A second connection (as `sluice status` has) reads while the first writes.
TEST(SqliteStoreTest, ReaderConnectionSeesCommittedStateWhileAWriterRuns) {
  TempDir dir;
  auto writer = OpenOrDie(dir.path());
  auto reader = OpenOrDie(dir.path());
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
TEST(SqliteStoreTest, OneStoreIsSafeToShareBetweenThreads) {
  TempDir dir;
  auto store = OpenOrDie(dir.path());
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
  auto store = SqliteStore::Open(dir);
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
TEST(SqliteStoreTest, KillNineDuringWritesLeavesAConsistentStore) {
  std::mt19937 rng(std::random_device{}());
  for (int round = 0; round < 5; ++round) {
    TempDir dir;
    { OpenOrDie(dir.path()); }
    // Let it commit a random number of iterations, then kill it wherever it is.
    int committed = -1;
    ASSERT_NO_FATAL_FAILURE(KillWriterAfter(dir.path(), WriterChild,
                                            std::uniform_int_distribution<int>(1, 150)(rng), &committed));

    auto store = OpenOrDie(dir.path());
    ASSERT_TRUE(store);
    EXPECT_EQ(store->IntegrityCheck().value(), "ok");
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
  auto store = SqliteStore::Open(dir);
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
TEST(SqliteStoreTest, KillNineDuringBatchWritesLeavesWholeBatches) {
  std::mt19937 rng(std::random_device{}());
  for (int round = 0; round < 5; ++round) {
    TempDir dir;
    { OpenOrDie(dir.path()); }
    int committed = -1;
    ASSERT_NO_FATAL_FAILURE(KillWriterAfter(dir.path(), BatchWriterChild,
                                            std::uniform_int_distribution<int>(1, 40)(rng), &committed));

    auto store = OpenOrDie(dir.path());
    ASSERT_TRUE(store);
    EXPECT_EQ(store->IntegrityCheck().value(), "ok");
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
TEST(SqliteStoreTest, ReaderProcessSeesWhatAWriterProcessCommitted) {
  TempDir dir;
  auto reader = OpenOrDie(dir.path());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    WriterChild(dir.path(), fds[1]);
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

// OpenStore gives callers the SQLite store behind the Store interface, with
// the same errors and the same file as SqliteStore::Open.
TEST(OpenStoreTest, OpensTheSqliteStoreBehindTheStoreInterface) {
  TempDir dir;
  const std::string state = dir.path() + "/.sluice";
  StoreOptions existing;
  existing.create_if_missing = false;
  auto missing = OpenStore(state, existing);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().ToString(),
            "NOT_FOUND: no sluice store at " + state +
                " (run a pipeline there first, or point --store at an existing store)");
  EXPECT_FALSE(fs::exists(state));

  {
    auto created = OpenStore(state);
    ASSERT_TRUE(created.has_value()) << created.error().ToString();
    Store& store = **created;
    ASSERT_TRUE(store.CreateRun(MakeRun("r1")).ok());
    StepRecord step = MakeStep("r1", "train");
    step.outputs = {{"model", MakeArtifact("bb22", ArtifactType::kModel)},
                    {"metrics", MakeArtifact("aa11", ArtifactType::kMetrics)}};
    ASSERT_TRUE(store.PutStep(step).ok());
  }
  EXPECT_TRUE(fs::exists(state + "/sluice.db"));
  auto reopened = OpenStore(state, existing);
  ASSERT_TRUE(reopened.has_value()) << reopened.error().ToString();
  EXPECT_EQ((*reopened)->GetRun("r1").value().pipeline, "retrain");
  EXPECT_EQ((*reopened)->ArtifactDigests().value(), (std::vector<std::string>{"sha256:aa11", "sha256:bb22"}));
}

// A Store that keeps no artifact records cannot say which bytes `sluice gc`
// must keep.
TEST(StoreTest, ByDefaultAStoreCannotListItsArtifacts) {
  testing::FakeStore store;
  auto digests = store.ArtifactDigests();
  ASSERT_FALSE(digests.has_value());
  EXPECT_EQ(digests.error().ToString(), "FAILED_PRECONDITION: this store cannot list its artifacts");
}

// The audit log keeps what it is given, newest first, survives a reopen and
// the deletion of the run it names; limit and since select from it.
TEST(SqliteStoreTest, AuditLogAppendsAndListsNewestFirst) {
  TempDir dir;
  const TimePoint t0 = TimePoint(std::chrono::milliseconds(1796000000000));
  {
    auto store = OpenOrDie(dir.path());
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
  auto store = OpenOrDie(dir.path());
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

TEST(StoreTest, ByDefaultAStoreKeepsNoAuditLog) {
  testing::FakeStore store;
  EXPECT_EQ(store.AppendAudit({}).ToString(), "FAILED_PRECONDITION: this store keeps no audit log");
  EXPECT_FALSE(store.ListAudit({}).has_value());
}

}  // namespace
}  // namespace sluice
