// Lineage queries and OpenLineage events on a real SQLite store.
#include "engine/store/lineage.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>

#include "engine/store/openlineage.h"
#include "engine/store/sqlite_store.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

TimePoint T(int seconds) { return TimePoint(std::chrono::seconds(1795000000 + seconds)); }

ArtifactRecord Artifact(const std::string& hex_char, ArtifactType type, int64_t size) {
  ArtifactRecord a;
  a.digest = "sha256:" + std::string(64, hex_char[0]);
  a.uri = "file:///store/cas/" + a.digest.substr(7);
  a.type = type;
  a.size = size;
  return a;
}

class LineageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sluice-lineage-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    auto store = SqliteStore::Open(dir_.string());
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  // Records one finished execution of `instance` in `run` reading `inputs`
  // and writing `outputs`; returns its id.
  int64_t Exec(const std::string& run, const std::string& instance, int start,
               std::vector<ArtifactBinding> inputs, std::vector<ArtifactBinding> outputs,
               Json snapshot = Json::object(), const std::string& outcome = "Succeeded") {
    ExecutionRecord e;
    e.run_id = run;
    e.instance = instance;
    e.attempt = 1;
    e.outcome = "Running";
    e.started_at = T(start);
    e.snapshot = snapshot;
    auto id = store_->StartExecution(e);
    EXPECT_TRUE(id.has_value()) << id.error().ToString();
    e.id = *id;
    e.outcome = outcome;
    e.exit_code = 0;
    e.finished_at = T(start + 5);
    Status st = store_->FinishExecution(e, inputs, outputs);
    EXPECT_TRUE(st.ok()) << st.ToString();
    StepRecord step;
    step.run_id = run;
    step.instance = instance;
    step.step = instance.substr(0, instance.find('['));
    step.phase = outcome == "Cached" ? NodePhase::kCached : NodePhase::kSucceeded;
    step.attempts = 1;
    step.outputs = outputs;
    step.inputs = inputs;
    EXPECT_TRUE(store_->PutStep(step).ok());
    return *id;
  }

  void Run(const std::string& id, int start) {
    RunRecord r;
    r.id = id;
    r.pipeline = "retrain";
    r.pipeline_file = "/repo/examples/retrain/pipeline.yaml";
    r.pipeline_digest = "sha256:" + std::string(64, 'f');
    r.phase = RunPhase::kSucceeded;
    r.created_at = T(start);
    r.started_at = T(start);
    r.finished_at = T(start + 100);
    ASSERT_TRUE(store_->CreateRun(r).ok());
  }

  fs::path dir_;
  std::unique_ptr<SqliteStore> store_;
};

// prepare -> dataset -> train[0], train[1] -> models -> select -> best
TEST_F(LineageTest, UpstreamAndDownstream) {
  Run("run-1", 0);
  ArtifactRecord dataset = Artifact("a", ArtifactType::kDataset, 2048);
  ArtifactRecord m0 = Artifact("b", ArtifactType::kModel, 100);
  ArtifactRecord m1 = Artifact("c", ArtifactType::kModel, 200);
  ArtifactRecord best = Artifact("d", ArtifactType::kModel, 200);
  Json snap = {{"code_digest", "sha256:" + std::string(64, '1')},
               {"params", {{"seed", 42}}},
               {"git_commit", "0123456789abcdef0123"},
               {"git_dirty", true},
               {"pipeline_file", "examples/retrain/pipeline.yaml"}};
  Exec("run-1", "prepare", 0, {}, {{"dataset", dataset}}, snap);
  Exec("run-1", "train[0]", 10, {{"dataset", dataset}}, {{"model", m0}});
  Exec("run-1", "train[1]", 10, {{"dataset", dataset}}, {{"model", m1}});
  Exec("run-1", "select", 20, {{"models", m0}, {"models", m1}}, {{"best_model", best}});

  auto target = ResolveLineageTarget(store_.get(), "run-1/select/best_model");
  ASSERT_TRUE(target.has_value()) << target.error().ToString();
  EXPECT_EQ(target->digest, best.digest);

  auto up = QueryLineage(store_.get(), *target, {});
  ASSERT_TRUE(up.has_value()) << up.error().ToString();
  EXPECT_EQ(up->executions.size(), 4u);
  EXPECT_EQ(up->artifacts.size(), 4u);
  EXPECT_FALSE(up->truncated);
  std::string text = RenderLineageText(*up, false);
  EXPECT_EQ(text,
            "run-1/select/best_model sha256:dddddddddddd  (model, 200 B)\n"
            "└─ written by select  (run run-1, attempt 1, Succeeded, 2026-11-18T11:07:00Z)\n"
            "   ├─ models sha256:bbbbbbbbbbbb  (model, 100 B)\n"
            "   │  └─ written by train[0]  (run run-1, attempt 1, Succeeded, 2026-11-18T11:06:50Z)\n"
            "   │     └─ dataset sha256:aaaaaaaaaaaa  (dataset, 2.0 KiB)\n"
            "   │        └─ written by prepare  (run run-1, attempt 1, Succeeded, 2026-11-18T11:06:40Z)\n"
            "   │              code sha256:111111111111\n"
            "   │              params seed=42\n"
            "   │              pipeline examples/retrain/pipeline.yaml @ git 0123456789ab (uncommitted changes)\n"
            "   └─ models sha256:cccccccccccc  (model, 200 B)\n"
            "      └─ written by train[1]  (run run-1, attempt 1, Succeeded, 2026-11-18T11:06:50Z)\n"
            "         └─ dataset sha256:aaaaaaaaaaaa  (dataset, 2.0 KiB)  (shown above)\n");

  // Downstream from the dataset, addressed by digest prefix.
  auto data_target = ResolveLineageTarget(store_.get(), "aaaaaaaa");
  ASSERT_TRUE(data_target.has_value()) << data_target.error().ToString();
  LineageOptions down;
  down.downstream = true;
  auto graph = QueryLineage(store_.get(), *data_target, down);
  ASSERT_TRUE(graph.has_value());
  std::set<std::string> instances;
  for (const auto& [id, le] : graph->executions) instances.insert(le.execution.instance);
  EXPECT_EQ(instances, (std::set<std::string>{"train[0]", "train[1]", "select"}));
  EXPECT_EQ(graph->artifacts.count(best.digest), 1u);

  // JSON names every event.
  Json j = RenderLineageJson(*up);
  EXPECT_EQ(j["events"].size(), 8u);
  EXPECT_EQ(j["root"]["artifact"], best.digest);
  std::string dot = RenderLineageDot(*up);
  EXPECT_NE(dot.find("\"e4\" -> \"" + best.digest + "\" [label=\"best_model\"];"), std::string::npos)
      << dot;
}

TEST_F(LineageTest, UpstreamPrefersTheExecutionThatReallyRan) {
  Run("run-1", 0);
  Run("run-2", 1000);
  ArtifactRecord dataset = Artifact("a", ArtifactType::kDataset, 10);
  ArtifactRecord model = Artifact("b", ArtifactType::kModel, 10);
  Exec("run-1", "prepare", 0, {}, {{"dataset", dataset}});
  Exec("run-1", "train", 10, {{"dataset", dataset}}, {{"model", model}});
  // run-2 hit the cache for both steps: same bytes, recorded as Cached.
  Exec("run-2", "prepare", 1000, {}, {{"dataset", dataset}}, Json::object(), "Cached");
  Exec("run-2", "train", 1010, {{"dataset", dataset}}, {{"model", model}}, Json::object(), "Cached");

  auto target = ResolveLineageTarget(store_.get(), "sha256:bbbb");
  ASSERT_TRUE(target.has_value());
  auto graph = QueryLineage(store_.get(), *target, {});
  ASSERT_TRUE(graph.has_value());
  ASSERT_EQ(graph->executions.size(), 2u);
  for (const auto& [id, le] : graph->executions) {
    EXPECT_EQ(le.execution.run_id, "run-1");
    EXPECT_EQ(le.execution.outcome, "Succeeded");
  }
  // Addressed through run-2, its own (cached) execution is shown.
  auto via_run2 = ResolveLineageTarget(store_.get(), "run-2/train/model");
  ASSERT_TRUE(via_run2.has_value());
  auto graph2 = QueryLineage(store_.get(), *via_run2, {});
  ASSERT_TRUE(graph2.has_value());
  bool saw_cached = false;
  for (const auto& [id, le] : graph2->executions) saw_cached |= le.execution.outcome == "Cached";
  EXPECT_TRUE(saw_cached);
}

TEST_F(LineageTest, ResolveErrors) {
  Run("run-1", 0);
  Exec("run-1", "prepare", 0, {}, {{"dataset", Artifact("a", ArtifactType::kDataset, 1)}});
  auto missing_output = ResolveLineageTarget(store_.get(), "run-1/prepare/model");
  ASSERT_FALSE(missing_output.has_value());
  EXPECT_EQ(missing_output.error().message(),
            "step 'prepare' of run run-1 has no output artifact 'model' (it has: dataset)");
  auto nothing = ResolveLineageTarget(store_.get(), "zzzz");
  ASSERT_FALSE(nothing.has_value());
  EXPECT_EQ(nothing.error().code(), StatusCode::kNotFound);
  auto run = ResolveLineageTarget(store_.get(), "run-1");
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->kind, LineageTarget::Kind::kRun);
}

TEST_F(LineageTest, MaxNodesTruncates) {
  Run("run-1", 0);
  ArtifactRecord prev = Artifact("0", ArtifactType::kOther, 1);
  Exec("run-1", "s0", 0, {}, {{"out", prev}});
  for (int i = 1; i < 10; ++i) {
    ArtifactRecord next = prev;
    next.digest = "sha256:" + std::string(63, '0') + std::to_string(i);
    Exec("run-1", "s" + std::to_string(i), i, {{"in", prev}}, {{"out", next}});
    prev = next;
  }
  auto target = ResolveLineageTarget(store_.get(), "run-1/s9/out");
  ASSERT_TRUE(target.has_value());
  LineageOptions small;
  small.max_nodes = 6;
  auto graph = QueryLineage(store_.get(), *target, small);
  ASSERT_TRUE(graph.has_value());
  EXPECT_TRUE(graph->truncated);
  auto full = QueryLineage(store_.get(), *target, {});
  ASSERT_TRUE(full.has_value());
  EXPECT_FALSE(full->truncated);
  EXPECT_EQ(full->executions.size(), 10u);
}

TEST_F(LineageTest, OpenLineageEvents) {
  Run("run-1", 0);
  ArtifactRecord dataset = Artifact("a", ArtifactType::kDataset, 10);
  Exec("run-1", "prepare", 0, {}, {{"dataset", dataset}});
  Exec("run-1", "train", 10, {{"dataset", dataset}}, {}, Json::object(), "Failed");
  auto run = store_->GetRun("run-1");
  ASSERT_TRUE(run.has_value());
  run->phase = RunPhase::kFailed;
  run->message = "step 'train' failed";
  auto executions = store_->ListExecutions("run-1");
  ASSERT_TRUE(executions.has_value());
  std::vector<std::vector<ArtifactBinding>> ins, outs;
  for (const auto& e : *executions) {
    ins.push_back(*store_->InputsOf(e.id));
    outs.push_back(*store_->OutputsOf(e.id));
  }
  auto events = BuildOpenLineageEvents(*run, *executions, ins, outs, {});
  ASSERT_EQ(events.size(), 6u);
  std::vector<std::string> types;
  for (const auto& e : events) types.push_back(e["eventType"].get<std::string>() + ":" +
                                               e["job"]["name"].get<std::string>());
  EXPECT_EQ(types, (std::vector<std::string>{"START:retrain", "START:retrain.prepare",
                                             "COMPLETE:retrain.prepare", "START:retrain.train",
                                             "FAIL:retrain.train", "FAIL:retrain"}));
  const std::regex uuid("^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  for (const auto& e : events) EXPECT_TRUE(std::regex_match(e["run"]["runId"].get<std::string>(), uuid));
  EXPECT_EQ(events[2]["outputs"][0]["facets"]["version"]["datasetVersion"], dataset.digest);
  EXPECT_EQ(events[4]["inputs"][0]["facets"]["version"]["datasetVersion"], dataset.digest);
  EXPECT_EQ(events[4]["run"]["facets"]["parent"]["run"]["runId"], events[0]["run"]["runId"]);
  EXPECT_EQ(events[5]["run"]["facets"]["errorMessage"]["message"], "step 'train' failed");
  EXPECT_EQ(DeterministicUuid("x"), DeterministicUuid("x"));
}

}  // namespace
}  // namespace sluice
