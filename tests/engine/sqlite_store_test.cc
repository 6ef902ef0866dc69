// What only SqliteStore does, on real SQLite files in a temporary
// directory: its file, its migrations, its integrity check. The Store
// contract both backends keep is tests/engine/store_test.cc.

#include "engine/store/sqlite_store.h"
#include "engine/store/open_store.h"
#include "tests/engine/fake_store.h"
#include "tests/engine/store_test_records.h"

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

using namespace sluice::testing;  // NOLINT: the records every test writes

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
TEST(StoreTest, ByDefaultAStoreKeepsNoAuditLog) {
  testing::FakeStore store;
  EXPECT_EQ(store.AppendAudit({}).ToString(), "FAILED_PRECONDITION: this store keeps no audit log");
  EXPECT_FALSE(store.ListAudit({}).has_value());
}

}  // namespace
}  // namespace sluice
