// Records and batches the store tests write (tests/engine/store_test.cc,
// tests/engine/sqlite_store_test.cc), a temporary directory, and a raw read
// of an SQLite file.

#pragma once

#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/store.h"
#include "tests/support/temp_dir.h"

namespace sluice::testing {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// A temporary directory named sluice-store-XXXXXX.
class TempDir : public testutil::TempDir {
 public:
  TempDir() : testutil::TempDir("sluice-store") {}
};

// The first row `sql` yields, each column as text (NULL as ""); empty when
// there is none. Reads the file past the store, as another tool would.
inline std::vector<std::string> RowRaw(const std::string& db_path, const char* sql) {
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

// A time with millisecond precision, as the store keeps it.
inline TimePoint At(int64_t ms) { return TimePoint(milliseconds(ms)); }

inline RunRecord MakeRun(const std::string& id, const std::string& pipeline = "retrain",
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

inline ArtifactRecord MakeArtifact(const std::string& hex, ArtifactType type) {
  ArtifactRecord a;
  a.digest = "sha256:" + hex;
  a.uri = "file:///store/cas/sha256/" + hex.substr(0, 2) + "/" + hex;
  a.type = type;
  a.size = 1234;
  a.properties = {{"rows", 569}};
  return a;
}

inline StepRecord MakeStep(const std::string& run_id, const std::string& instance) {
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


// A batch of cache hits as the Runner writes it: new executions (id 0) with
// their events, a started execution finished, and the step records.
inline StoreBatch CachedBatch(const std::string& run_id, int first, int count, int64_t started_id = 0) {
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

// The execution that ran `train` in run `run_id` (cache key K), finished
// and recorded as the step's Succeeded record. Returns its id.
inline int64_t RecordRanTrain(Store& store, const std::string& run_id, const ArtifactRecord& model) {
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
inline StoreBatch LightHit(const std::string& run_id, const Json& snapshot, int64_t base) {
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

}  // namespace sluice::testing
