#include "engine/run/runner.h"

#include <unistd.h>

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "engine/store/artifact_store.h"
#include "engine/clock.h"
#include "engine/sha256.h"
#include "engine/task_note.h"
#include "tests/engine/fake_store.h"
#include "tests/engine/test_pipeline.h"

namespace fs = std::filesystem;

namespace sluice {
namespace {

// Runs no processes: a task "runs" for `duration` of fake time, calls
// `on_run` (which plays the step: writes its output files into the task's
// workdir) and ends with the next scripted outcome of its instance
// (success when none is scripted).
class FakeExecutor : public Executor, public TaskNoteSource {
  struct InFlight {
    Task task;
    TimePoint end;
    bool cancelled = false;
  };

 public:
  explicit FakeExecutor(FakeClock* clock) : clock_(clock) {}

  std::map<std::string, std::deque<TaskOutcome>> outcomes;  // instance -> outcome per attempt
  std::map<std::string, Duration> durations;                // instance -> run time (default 1s)
  std::function<void(const Task&)> on_run;
  std::function<void(const Task&)> on_start;
  // Called at the start of each Wait(); may add to `notes`.
  std::function<void()> on_wait;
  std::vector<TaskNote> notes;  // given by the next TakeNotes()
  std::vector<Task> started;
  int slots = 100;

  std::string Name() const override { return "local"; }
  bool CanRunMore() const override { return static_cast<int>(running_.size()) < slots; }
  Status Start(const Task& task) override {
    started.push_back(task);
    InFlight r;
    r.task = task;
    auto d = durations.find(task.instance);
    r.end = clock_->Now() + (d == durations.end() ? Duration(1000) : d->second);
    running_.push_back(r);
    if (on_start) on_start(task);
    return Status::Ok();
  }
  std::optional<TaskResult> Wait(Duration timeout) override {
    if (on_wait) on_wait();
    if (running_.empty() || !notes.empty()) return std::nullopt;
    auto it = std::min_element(running_.begin(), running_.end(),
                               [](const InFlight& a, const InFlight& b) { return a.end < b.end; });
    if (it->end > clock_->Now() + timeout) {
      clock_->Advance(timeout);
      return std::nullopt;
    }
    if (it->end > clock_->Now()) clock_->Advance(std::chrono::duration_cast<Duration>(it->end - clock_->Now()));
    InFlight r = *it;
    running_.erase(it);
    TaskResult res;
    res.id = r.task.id;
    res.started_at = r.end;
    res.finished_at = clock_->Now();
    if (r.cancelled) {
      res.outcome = TaskOutcome::kCancelled;
      res.message = "killed by SIGTERM";
      return res;
    }
    TaskOutcome o = TaskOutcome::kSucceeded;
    auto& q = outcomes[r.task.instance];
    if (!q.empty()) {
      o = q.front();
      q.pop_front();
    }
    res.outcome = o;
    res.exit_code = o == TaskOutcome::kSucceeded ? 0 : o == TaskOutcome::kFailed ? 1 : -1;
    if (o == TaskOutcome::kFailed) res.message = "exit code 1";
    if (o == TaskOutcome::kError) res.message = "lost the process";
    if (o == TaskOutcome::kSucceeded && on_run) on_run(r.task);
    return res;
  }
  void Cancel(TaskId id, Duration) override {
    for (auto& r : running_)
      if (r.task.id == id) {
        r.cancelled = true;
        r.end = clock_->Now();
      }
  }
  void CancelAll(Duration grace) override {
    for (auto& r : running_) Cancel(r.task.id, grace);
  }
  size_t Running() const override { return running_.size(); }
  std::vector<TaskNote> TakeNotes() override { return std::exchange(notes, {}); }

 private:
  FakeClock* clock_;
  std::vector<InFlight> running_;
};

void WriteFile(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("sluice-runner-test-" + std::to_string(getpid()) + "-" + std::to_string(rd()));
    fs::create_directories(dir_);
    artifacts_ = std::make_unique<FileArtifactStore>((dir_ / ".sluice").string());
    auto ex = std::make_unique<FakeExecutor>(&clock_);
    executor_ = ex.get();
    ASSERT_TRUE(registry_.Register("local", std::move(ex)).ok());
  }
  void TearDown() override {
    std::error_code ec;
    // CAS files are read-only; make them removable.
    for (auto it = fs::recursive_directory_iterator(dir_, ec); it != fs::recursive_directory_iterator(); ++it)
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  // Loads `yaml` as <dir>/pipeline.yaml (so pipeline.dir and code files work).
  void Load(std::string_view yaml) {
    WriteFile(dir_ / "pipeline.yaml", std::string(yaml));
    spec_ = testing::LoadSpec(yaml);
    spec_.file = (dir_ / "pipeline.yaml").string();
  }

  RunOptions Options() {
    RunOptions o;
    o.run_id = "run1";
    o.state_dir = (dir_ / ".sluice").string();
    o.parallelism = 2;
    o.cpu_budget_millis = 4000;
    o.clock = &clock_;
    for (const auto& p : spec_.params)
      if (p.default_value) o.params[p.name] = *p.default_value;
    o.on_event = [this](const RunEvent& e) {
      if (e.kind == RunEvent::Kind::kStepStarted) events_ += "start " + e.instance + "#" + std::to_string(e.attempt) + "\n";
      if (e.kind == RunEvent::Kind::kStepRetrying) events_ += "retry " + e.instance + ": " + e.message + "\n";
      if (e.kind == RunEvent::Kind::kStepFinished)
        events_ += std::string("end ") + e.instance + " " + NodePhaseName(e.phase) + "\n";
      if (e.kind == RunEvent::Kind::kRunFinished) events_ += "run " + e.message + "\n";
    };
    return o;
  }

  Result<RunSummary> RunIt(RunOptions o) {
    Runner runner(spec_, &store_, artifacts_.get(), &registry_, std::move(o));
    runner_ = &runner;
    auto r = runner.Run();
    runner_ = nullptr;
    return r;
  }

  static std::string Phases(const RunSummary& s) {
    std::string out;
    for (const auto& st : s.steps)
      out += (out.empty() ? "" : " ") + st.instance + "=" + NodePhaseName(st.phase) + "#" + std::to_string(st.attempts);
    return out;
  }

  const StepRecord& StepOf(const RunSummary& s, const std::string& instance) {
    for (const auto& st : s.steps)
      if (st.instance == instance) return st;
    static StepRecord none;
    ADD_FAILURE() << "no step " << instance;
    return none;
  }

  fs::path dir_;
  FakeClock clock_;
  testing::FakeStore store_;
  std::unique_ptr<FileArtifactStore> artifacts_;
  ExecutorRegistry registry_;
  FakeExecutor* executor_ = nullptr;
  PipelineSpec spec_;
  Runner* runner_ = nullptr;
  std::string events_;
};

constexpr std::string_view kRetrain = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: retrain}
params:
  models: {type: list, default: [logreg, forest]}
  threshold: {type: number, default: 0.9}
steps:
  - name: prepare
    command: [python3, "{{ pipeline.dir }}/prepare.py", --out, data]
    outputs:
      artifacts:
        - {name: dataset, path: data, type: dataset}
      params:
        - {name: rows, path: data/rows.txt}
  - name: train
    foreach: "{{ params.models }}"
    inputs:
      dataset: "{{ steps.prepare.outputs.artifacts.dataset }}"
    command: [train, --model, "{{ item }}", --index, "{{ item_index }}", --data, "{{ inputs.dataset }}"]
    outputs:
      artifacts:
        - {name: model, path: model.pkl, type: model}
      metrics: metrics.json
  - name: select
    inputs:
      models: "{{ steps.train.outputs.artifacts.model }}"
    command: [select, --accuracies, "{{ steps.train.outputs.metrics.accuracy }}", --rows, "{{ steps.prepare.outputs.params.rows }}"]
    outputs:
      metrics: best.json
  - name: register
    when: "{{ steps.select.outputs.metrics.accuracy > params.threshold }}"
    command: [register]
finally:
  - name: report
    command: [report, "{{ run.status }}", "{{ run.id }}"]
)";

// Plays the retrain steps: writes what each declares.
void PlayRetrain(const Task& t, double best) {
  fs::path w = t.workdir;
  if (t.step == "prepare") {
    WriteFile(w / "data" / "train.csv", "x,y\n1,0\n");
    WriteFile(w / "data" / "rows.txt", "  569\n");
  } else if (t.step == "train") {
    WriteFile(w / "model.pkl", "model " + t.argv[2]);
    WriteFile(w / "metrics.json", t.argv[2] == "logreg" ? R"({"accuracy": 0.8})" : R"({"accuracy": 0.95})");
  } else if (t.step == "select") {
    WriteFile(w / "best.json", "{\"accuracy\": " + std::to_string(best) + "}");
  }
}

TEST_F(RunnerTest, RunsAPipelineAndRecordsEveryPhaseChange) {
  Load(kRetrain);
  executor_->on_run = [](const Task& t) { PlayRetrain(t, 0.95); };
  auto s = RunIt(Options());
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->run.phase, RunPhase::kSucceeded) << s->run.message;
  EXPECT_EQ(Phases(*s),
            "prepare=Succeeded#1 train[0]=Succeeded#1 train[1]=Succeeded#1 select=Succeeded#1 "
            "register=Succeeded#1 report=Succeeded#1");
  EXPECT_EQ(store_.PhasesOf("prepare"), "Running#1 Succeeded#1");
  EXPECT_EQ(store_.PhasesOf("train[1]"), "Running#1 Succeeded#1");
  EXPECT_EQ(store_.PhasesOf("train"), "");  // the head of a foreach is never written
  EXPECT_EQ(store_.executions.size(), 6u);
  EXPECT_EQ(store_.runs["run1"].phase, RunPhase::kSucceeded);
  EXPECT_EQ(store_.runs["run1"].pipeline_file, (dir_ / "pipeline.yaml").string());

  // Rendered argv: pipeline.dir, item, item_index, inputs as CAS paths,
  // fan-in lists as JSON, trimmed output params.
  ASSERT_EQ(executor_->started.size(), 6u);
  const Task& prepare = executor_->started[0];
  EXPECT_EQ(prepare.argv, (std::vector<std::string>{"python3", dir_.string() + "/prepare.py", "--out", "data"}));
  EXPECT_EQ(prepare.workdir, (dir_ / ".sluice/runs/run1/steps/prepare").string());
  EXPECT_EQ(prepare.log_path, (dir_ / ".sluice/runs/run1/logs/prepare.attempt1.log").string());
  EXPECT_EQ(prepare.env.at("SLUICE_RUN_ID"), "run1");
  const StepRecord& prep = StepOf(*s, "prepare");
  ASSERT_EQ(prep.outputs.size(), 1u);
  EXPECT_EQ(prep.outputs[0].name, "dataset");
  EXPECT_TRUE(prep.outputs[0].artifact.is_directory);
  EXPECT_EQ(prep.output_params, (Json{{"rows", "569"}}));
  std::string dataset = *artifacts_->LocalPath(prep.outputs[0].artifact.digest);

  const Task& train1 = executor_->started[2];
  EXPECT_EQ(train1.instance, "train[1]");
  EXPECT_EQ(train1.argv, (std::vector<std::string>{"train", "--model", "forest", "--index", "1", "--data", dataset}));
  EXPECT_EQ(train1.env.at("SLUICE_INPUT_DATASET"), dataset);
  EXPECT_EQ(StepOf(*s, "train[1]").item, Json("forest"));
  EXPECT_EQ(StepOf(*s, "train[1]").inputs.size(), 1u);

  const Task& select = executor_->started[3];
  EXPECT_EQ(select.argv, (std::vector<std::string>{"select", "--accuracies", "[0.8,0.95]", "--rows", "569"}));
  Json models = Json::parse(select.env.at("SLUICE_INPUT_MODELS"));
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(ReadAll(models[1].get<std::string>()), "model forest");

  EXPECT_EQ(executor_->started[5].argv, (std::vector<std::string>{"report", "Succeeded", "run1"}));

  // The snapshot of an execution.
  const Json& snap = store_.executions[2].snapshot;
  EXPECT_EQ(snap["instance"], "train[1]");
  EXPECT_EQ(snap["inputs"]["dataset"], prep.outputs[0].artifact.digest);
  EXPECT_EQ(snap["item"], "forest");
  EXPECT_EQ(snap["outputs"]["model"], StepOf(*s, "train[1]").outputs[0].artifact.digest);
  EXPECT_EQ(snap["sluice_version"], SLUICE_VERSION);
  EXPECT_EQ(store_.executions[2].outcome, "Succeeded");
  EXPECT_EQ(store_.executions[2].cache_key.size(), 64u);
}

// An executor's note (a step waiting in a Kueue queue) becomes the running
// step's message; when the step leaves the queue its message is cleared and
// it starts then, so its duration is its run, not its wait.
TEST_F(RunnerTest, ExecutorNotesShowAQueuedStepThatStartsWhenItLeavesTheQueue) {
  Load(R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: queued}
steps:
  - name: train
    command: [train]
)");
  executor_->durations["train"] = Duration(60000);
  const TimePoint begin = clock_.Now();
  std::vector<std::string> messages;  // the step's record as each Wait() found it
  int waits = 0;
  executor_->on_wait = [&] {
    const auto& rec = store_.steps["run1"]["train"];
    messages.push_back(rec.message);
    ++waits;
    if (waits == 1) {
      executor_->notes.push_back({executor_->started[0].id, "queued in team-a (Kueue: pending admission, position 2)"});
    } else if (waits == 2) {
      clock_.Advance(Duration(5000));  // waited 5 s in the queue
      executor_->notes.push_back({executor_->started[0].id, ""});
    }
  };
  auto s = RunIt(Options());
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(Phases(*s), "train=Succeeded#1");
  ASSERT_GE(messages.size(), 3u);
  EXPECT_EQ(messages[0], "");
  EXPECT_EQ(messages[1], "queued in team-a (Kueue: pending admission, position 2)");
  EXPECT_EQ(messages[2], "");
  EXPECT_EQ(store_.PhasesOf("train"), "Running#1 Running#1 Running#1 Succeeded#1");
  const StepRecord& train = StepOf(*s, "train");
  ASSERT_TRUE(train.started_at && train.finished_at);
  EXPECT_EQ(*train.started_at - begin, Duration(5000));
}

TEST_F(RunnerTest, WhenFalseSkipsTheStep) {
  Load(kRetrain);
  executor_->on_run = [](const Task& t) { PlayRetrain(t, 0.5); };
  auto s = RunIt(Options());
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->run.phase, RunPhase::kSucceeded);
  EXPECT_EQ(StepOf(*s, "register").phase, NodePhase::kSkipped);
  EXPECT_EQ(StepOf(*s, "register").message,
            "when condition is false: {{ steps.select.outputs.metrics.accuracy > params.threshold }}");
  EXPECT_EQ(store_.PhasesOf("register"), "Skipped#0");
}

TEST_F(RunnerTest, MissingDeclaredOutputFailsTheStepAndOmitsItsDependents) {
  Load(kRetrain);
  executor_->on_run = [](const Task& t) {
    PlayRetrain(t, 0.95);
    if (t.instance == "train[1]") fs::remove(fs::path(t.workdir) / "model.pkl");
  };
  auto s = RunIt(Options());
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->run.phase, RunPhase::kFailed);
  EXPECT_EQ(StepOf(*s, "train[1]").message,
            "step 'train[1]' declared output artifact 'model' at model.pkl, but the file does not exist after the "
            "step succeeded");
  EXPECT_EQ(Phases(*s),
            "prepare=Succeeded#1 train[0]=Succeeded#1 train[1]=Failed#1 select=Omitted#0 register=Omitted#0 "
            "report=Succeeded#1");
  EXPECT_EQ(executor_->started.back().argv, (std::vector<std::string>{"report", "Failed", "run1"}));
  EXPECT_EQ(s->run.message,
            "step 'train[1]' failed: step 'train[1]' declared output artifact 'model' at model.pkl, but the file "
            "does not exist after the step succeeded");
}

TEST_F(RunnerTest, MetricsMustBeAJsonObjectOfNumbers) {
  Load(kRetrain);
  executor_->on_run = [](const Task& t) {
    PlayRetrain(t, 0.95);
    if (t.instance == "train[0]") WriteFile(fs::path(t.workdir) / "metrics.json", R"({"accuracy": "high"})");
  };
  auto s = RunIt(Options());
  ASSERT_TRUE(s);
  EXPECT_EQ(StepOf(*s, "train[0]").phase, NodePhase::kFailed);
  EXPECT_EQ(StepOf(*s, "train[0]").message,
            "step 'train[0]': metrics file metrics.json: 'accuracy' is a string, expected a number");
}

TEST_F(RunnerTest, RetriesAfterBackoffWithFreshLogsAndExecutions) {
  Load(R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: flaky}
steps:
  - name: flaky
    command: [flaky]
    retries: {limit: 2, backoff: 30s}
)");
  executor_->outcomes["flaky"] = {TaskOutcome::kFailed, TaskOutcome::kSucceeded};
  const TimePoint t0 = clock_.Now();
  auto s = RunIt(Options());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->run.phase, RunPhase::kSucceeded);
  EXPECT_EQ(store_.PhasesOf("flaky"), "Running#1 Running#1 Running#2 Succeeded#2");
  EXPECT_EQ(events_,
            "start flaky#1\nretry flaky: attempt 1 failed: exit code 1; retry 1 of 2 in 30s\nstart flaky#2\n"
            "end flaky Succeeded\nrun Succeeded\n");
  ASSERT_EQ(store_.executions.size(), 2u);
  EXPECT_EQ(store_.executions[0].outcome, "Failed");
  EXPECT_EQ(store_.executions[0].exit_code, 1);
  EXPECT_EQ(store_.executions[1].outcome, "Succeeded");
  EXPECT_EQ(executor_->started[1].log_path, (dir_ / ".sluice/runs/run1/logs/flaky.attempt2.log").string());
  // 1s attempt + 30s backoff + 1s attempt, all on the fake clock.
  EXPECT_EQ(clock_.Now() - t0, std::chrono::seconds(32));
}

constexpr std::string_view kOptional = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: optional}
params:
  enabled: {type: bool, default: false}
steps:
  - name: opt
    when: params.enabled
    command: [opt]
    outputs:
      params:
        - {name: value, path: value.txt}
  - name: use
    ifUpstreamSkipped: run
    command: [use, "{{ steps.opt.outputs.params.value }}"]
)";

TEST_F(RunnerTest, UnknownNameAtRunTimeIsAnErrorAtTheTemplate) {
  Load(kOptional);
  auto s = RunIt(Options());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->run.phase, RunPhase::kError);
  EXPECT_EQ(StepOf(*s, "opt").phase, NodePhase::kSkipped);
  const StepRecord& use = StepOf(*s, "use");
  EXPECT_EQ(use.phase, NodePhase::kError);
  EXPECT_EQ(use.message,
            "pipeline.yaml:16:21: step 'use': command: unknown name 'steps.opt.outputs.params.value' "
            "(steps.opt.outputs.params has: nothing)");
  EXPECT_TRUE(executor_->started.empty());
}

TEST_F(RunnerTest, ForeachOverANonListIsAnError) {
  Load(R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: fan}
steps:
  - name: count
    command: [count]
    outputs:
      params:
        - {name: n, path: n.txt}
  - name: each
    foreach: "{{ steps.count.outputs.params.n }}"
    command: [each, "{{ item }}"]
)");
  executor_->on_run = [](const Task& t) { WriteFile(fs::path(t.workdir) / "n.txt", "3\n"); };
  auto s = RunIt(Options());
  ASSERT_TRUE(s);
  EXPECT_EQ(Phases(*s), "count=Succeeded#1 each=Error#0");
  EXPECT_EQ(StepOf(*s, "each").message, "pipeline.yaml:12:15: step 'each': foreach must yield a list, got string \"3\"");
}

constexpr std::string_view kSecret = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: secret}
steps:
  - name: connect
    command: [connect]
    env:
      USER: alice
      PASSWORD: {secret: {name: db-main, key: password}}
)";

TEST_F(RunnerTest, SecretsComeFromTheHostAndAreNeverRecorded) {
  Load(kSecret);
  setenv("SLUICE_SECRET_DB_MAIN_PASSWORD", "hunter2", 1);
  auto s = RunIt(Options());
  unsetenv("SLUICE_SECRET_DB_MAIN_PASSWORD");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->run.phase, RunPhase::kSucceeded);
  ASSERT_EQ(executor_->started.size(), 1u);
  EXPECT_EQ(executor_->started[0].env.at("PASSWORD"), "hunter2");
  EXPECT_EQ(executor_->started[0].secret_env, std::vector<std::string>{"PASSWORD"});
  const Json& env = store_.executions[0].snapshot["env"];
  EXPECT_EQ(env["PASSWORD"], "<redacted>");
  EXPECT_EQ(env["USER"], "alice");
  EXPECT_EQ(store_.executions[0].snapshot.dump().find("hunter2"), std::string::npos);
}

TEST_F(RunnerTest, MissingSecretIsAnErrorThatSaysWhatToExport) {
  Load(kSecret);
  unsetenv("SLUICE_SECRET_DB_MAIN_PASSWORD");
  auto s = RunIt(Options());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->run.phase, RunPhase::kError);
  const std::string& msg = StepOf(*s, "connect").message;
  EXPECT_NE(msg.find("step 'connect': env PASSWORD: secret 'db-main' key 'password' is not set; export "
                     "SLUICE_SECRET_DB_MAIN_PASSWORD before running"),
            std::string::npos)
      << msg;
}

constexpr std::string_view kTwo = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: two}
steps:
  - {name: a, command: [a]}
  - {name: b, depends: [a], command: [b]}
finally:
  - {name: report, command: [report, "{{ run.status }}"]}
)";

TEST_F(RunnerTest, CancelStopsRunningStepsOmitsTheRestAndRunsFinally) {
  Load(kTwo);
  executor_->on_start = [this](const Task& t) {
    if (t.instance == "a") runner_->Cancel();
  };
  auto s = RunIt(Options());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->run.phase, RunPhase::kCancelled);
  EXPECT_EQ(Phases(*s), "a=Cancelled#1 b=Omitted#0 report=Succeeded#1");
  EXPECT_EQ(StepOf(*s, "a").message, "killed by SIGTERM");
  EXPECT_EQ(StepOf(*s, "b").message, "the run was cancelled");
  EXPECT_EQ(executor_->started[1].argv, (std::vector<std::string>{"report", "Cancelled"}));
  EXPECT_EQ(store_.executions[0].outcome, "Cancelled");
  EXPECT_EQ(store_.runs["run1"].phase, RunPhase::kCancelled);
}

TEST_F(RunnerTest, TerminateStopsEverythingWithoutFinally) {
  Load(kTwo);
  executor_->on_start = [this](const Task& t) {
    if (t.instance == "a") runner_->Terminate(Duration(0));
  };
  auto s = RunIt(Options());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->run.phase, RunPhase::kCancelled);
  EXPECT_EQ(Phases(*s), "a=Cancelled#1 b=Omitted#0 report=Omitted#0");
  EXPECT_EQ(StepOf(*s, "report").message, "the run was cancelled");
  EXPECT_EQ(executor_->started.size(), 1u);
}

// A cancel while a finally step runs leaves it running to its end.
TEST_F(RunnerTest, CancelWhileAFinallyStepRunsLetsItFinish) {
  Load(kTwo);
  executor_->on_start = [this](const Task& t) {
    if (t.instance == "report") runner_->Cancel();
  };
  auto s = RunIt(Options());
  ASSERT_TRUE(s);
  EXPECT_EQ(Phases(*s), "a=Succeeded#1 b=Succeeded#1 report=Succeeded#1");
  EXPECT_EQ(executor_->started[2].argv, (std::vector<std::string>{"report", "Succeeded"}));
}

TEST_F(RunnerTest, RunTimeoutCancelsStepsAndRunsFinally) {
  Load(R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: slow}
timeout: 5s
steps:
  - {name: slow, command: [sleep, "60"]}
finally:
  - {name: report, command: [report, "{{ run.status }}"]}
)");
  executor_->durations["slow"] = std::chrono::seconds(60);
  auto s = RunIt(Options());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->run.phase, RunPhase::kFailed);
  EXPECT_EQ(s->run.message, "the run exceeded its timeout of 5s");
  EXPECT_EQ(Phases(*s), "slow=Cancelled#1 report=Succeeded#1");
  EXPECT_EQ(executor_->started[1].argv, (std::vector<std::string>{"report", "Failed"}));
}

TEST_F(RunnerTest, SecondIdenticalRunIsCachedAndNoCacheRunsAgain) {
  Load(kRetrain);
  executor_->on_run = [](const Task& t) { PlayRetrain(t, 0.95); };
  ASSERT_TRUE(RunIt(Options()));
  ASSERT_EQ(executor_->started.size(), 6u);

  RunOptions o = Options();
  o.run_id = "run2";
  auto s = RunIt(o);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->run.phase, RunPhase::kSucceeded) << s->run.message;
  EXPECT_EQ(Phases(*s),
            "prepare=Cached#1 train[0]=Cached#1 train[1]=Cached#1 select=Cached#1 register=Succeeded#1 "
            "report=Succeeded#1");
  EXPECT_EQ(StepOf(*s, "train[1]").cached_from, "run1/train[1]");
  // Only the steps without outputs (run for their side effects) ran again.
  EXPECT_EQ(executor_->started.size(), 8u);
  EXPECT_EQ(executor_->started[6].instance, "register");
  EXPECT_EQ(store_.PhasesOf("train[0]"), "Running#1 Succeeded#1 Cached#1");
  EXPECT_EQ(store_.executions[6].outcome, "Cached");

  o.run_id = "run3";
  o.no_cache = true;
  auto s3 = RunIt(o);
  ASSERT_TRUE(s3);
  EXPECT_EQ(executor_->started.size(), 14u);
  EXPECT_EQ(StepOf(*s3, "prepare").phase, NodePhase::kSucceeded);
}

constexpr std::string_view kAwkward = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: awkward}
params:
  note: {type: string, default: "say \"hi\"\n\ttab \u0001 é \\ back"}
steps:
  - name: a
    command: [echo, "{{ params.note }}", "x\\y"]
    env:
      NOTE: "{{ params.note }}"
      PLAIN: plain
    workdir: sub
    outputs:
      params: [{name: p, path: p.txt}]
  - name: b
    foreach: [{k: "q\"1"}, {k: 2}]
    inputs:
      a: "{{ steps.a.outputs.params.p }}"
    command: [cat, "{{ item.k }}"]
    outputs:
      metrics: m.json
)";

// The key is written without building a Json tree (runner.cc): it must be
// the hash of the material the snapshot records, byte for byte, whatever
// the strings hold, so that plan/diff explain it and earlier stores still
// hit.
TEST_F(RunnerTest, CacheKeyIsTheHashOfTheRecordedKeyMaterial) {
  Load(kAwkward);
  executor_->on_run = [](const Task& t) {
    WriteFile(fs::path(t.workdir) / "p.txt", "v");
    WriteFile(fs::path(t.workdir) / "m.json", R"({"n": 1})");
  };
  auto s = RunIt(Options());
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->run.phase, RunPhase::kSucceeded) << s->run.message;
  ASSERT_EQ(store_.executions.size(), 3u);
  for (const auto& e : store_.executions) {
    const Json& material = e.snapshot["cache_key_material"];
    EXPECT_EQ(e.cache_key, Sha256Hex(material.dump())) << material.dump();
  }
  EXPECT_EQ(store_.executions[0].snapshot["cache_key_material"]["env"]["NOTE"],
            "say \"hi\"\n\ttab \x01 \xc3\xa9 \\ back");
  EXPECT_EQ(store_.executions[2].snapshot["cache_key_material"]["item"], Json({{"k", 2}}));

  RunOptions o = Options();
  o.run_id = "run2";
  auto again = RunIt(o);
  ASSERT_TRUE(again);
  EXPECT_EQ(Phases(*again), "a=Cached#1 b[0]=Cached#1 b[1]=Cached#1");
}

TEST_F(RunnerTest, ChangedInputContentMissesTheCache) {
  Load(kRetrain);
  int runs = 0;
  executor_->on_run = [&](const Task& t) {
    PlayRetrain(t, 0.95);
    if (t.step == "prepare" && runs == 1) WriteFile(fs::path(t.workdir) / "data" / "train.csv", "x,y\n1,1\n");
  };
  RunOptions o = Options();
  o.params["models"] = Json::array({"logreg"});
  ASSERT_TRUE(RunIt(o));
  runs = 1;
  o.run_id = "run2";
  o.no_cache = true;  // prepare runs again and writes different bytes
  ASSERT_TRUE(RunIt(o));
  o.run_id = "run3";
  o.no_cache = false;
  auto s = RunIt(o);
  ASSERT_TRUE(s);
  // prepare and everything after it hit the cache of run2, not run1.
  EXPECT_EQ(StepOf(*s, "train[0]").cached_from, "run2/train[0]");
}

TEST_F(RunnerTest, ResumeKeepsSucceededStepsAndContinuesAttempts) {
  Load(kTwo);
  executor_->outcomes["b"] = {TaskOutcome::kFailed};
  auto first = RunIt(Options());
  ASSERT_TRUE(first);
  EXPECT_EQ(Phases(*first), "a=Succeeded#1 b=Failed#1 report=Succeeded#1");

  RunOptions o = Options();
  o.run_id = "";
  o.resume_run_id = "run1";
  o.no_cache = true;
  auto s = RunIt(o);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->run.id, "run1");
  EXPECT_EQ(s->run.phase, RunPhase::kSucceeded);
  EXPECT_EQ(Phases(*s), "a=Succeeded#1 b=Succeeded#2 report=Succeeded#2");
  EXPECT_EQ(store_.PhasesOf("a"), "Running#1 Succeeded#1");
  EXPECT_EQ(store_.PhasesOf("b"), "Running#1 Failed#1 Running#2 Succeeded#2");
  EXPECT_EQ(executor_->started.back().log_path, (dir_ / ".sluice/runs/run1/logs/report.attempt2.log").string());
  EXPECT_EQ(executor_->started[3].instance, "b");
  EXPECT_EQ(executor_->started[3].attempt, 2);
}

TEST_F(RunnerTest, ResumeClosesTheAttemptALostProcessLeftRunning) {
  Load(kTwo);
  auto first = RunIt(Options());
  ASSERT_TRUE(first);
  // As a kill -9 during b leaves it: the step and its execution Running.
  StepRecord b = store_.steps.at("run1").at("b");
  b.phase = NodePhase::kRunning;
  b.finished_at.reset();
  ASSERT_TRUE(store_.PutStep(b).ok());
  for (auto& e : store_.executions) {
    if (e.instance != "b") continue;
    e.outcome = "Running";
    e.finished_at.reset();
  }
  RunRecord run = *store_.GetRun("run1");
  run.phase = RunPhase::kRunning;
  run.pid = 4242;
  ASSERT_TRUE(store_.UpdateRun(run).ok());

  RunOptions o = Options();
  o.run_id = "";
  o.resume_run_id = "run1";
  o.no_cache = true;
  auto s = RunIt(o);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->run.phase, RunPhase::kSucceeded);
  std::vector<std::string> b_rows;
  for (const auto& e : store_.executions) {
    if (e.instance != "b") continue;
    b_rows.push_back(std::to_string(e.attempt) + " " + e.outcome + " " + e.message);
    EXPECT_TRUE(e.finished_at.has_value());
  }
  EXPECT_EQ(b_rows, (std::vector<std::string>{
                        "1 Error lost: the sluice process driving it (pid 4242) died; the step runs again as attempt 2",
                        "2 Succeeded "}));
}

TEST_F(RunnerTest, ResumeAfterCancelExpandsTheForeachThatWasOmitted) {
  Load(kRetrain);
  executor_->on_run = [](const Task& t) { PlayRetrain(t, 0.95); };
  executor_->on_start = [this](const Task& t) {
    if (t.instance == "prepare") runner_->Cancel();
  };
  auto first = RunIt(Options());
  ASSERT_TRUE(first);
  EXPECT_EQ(Phases(*first), "prepare=Cancelled#1 train=Omitted#0 select=Omitted#0 register=Omitted#0 report=Succeeded#1");

  executor_->on_start = nullptr;
  RunOptions o = Options();
  o.resume_run_id = "run1";
  auto s = RunIt(o);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(Phases(*s),
            "prepare=Succeeded#2 train[0]=Succeeded#1 train[1]=Succeeded#1 select=Succeeded#1 "
            "register=Succeeded#1 report=Succeeded#2");  // report ran in the cancelled run too
  const StepRecord& head = store_.steps["run1"]["train"];
  EXPECT_EQ(head.phase, NodePhase::kSucceeded);
  EXPECT_EQ(head.message, "expanded on resume into 2 instances: train[0]..train[1]");
}

TEST_F(RunnerTest, RerunFromReusesUpstreamOutputsInANewRun) {
  Load(kRetrain);
  executor_->on_run = [](const Task& t) { PlayRetrain(t, 0.95); };
  ASSERT_TRUE(RunIt(Options()));

  RunOptions o = Options();
  o.run_id = "run2";
  o.resume_run_id = "run1";
  o.rerun_from = {"select"};
  o.no_cache = true;
  auto s = RunIt(o);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->run.resumed_from, "run1");
  EXPECT_EQ(StepOf(*s, "select").message, "");
  EXPECT_EQ(Phases(*s),
            "prepare=Cached#1 train[0]=Cached#1 train[1]=Cached#1 select=Succeeded#1 register=Succeeded#1 "
            "report=Succeeded#1");
  EXPECT_EQ(StepOf(*s, "train[0]").cached_from, "run1/train[0]");
  EXPECT_EQ(executor_->started.size(), 9u);
  EXPECT_EQ(executor_->started[6].instance, "select");
  EXPECT_EQ(executor_->started[6].argv[2], "[0.8,0.95]");
}

TEST_F(RunnerTest, UnknownExecutorFailsBeforeAnythingRuns) {
  Load(R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: k}
steps:
  - {name: a, command: [a], executor: kubernetes}
)");
  auto s = RunIt(Options());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(),
            "pipeline.yaml:6:5: step 'a' uses executor 'kubernetes', which is not available here (available: local)");
  EXPECT_TRUE(store_.runs.empty());
}

// A store write that fails mid-run (SQLITE_FULL on a full disk, injected at
// the store seam): nothing more starts, and the run ends Error with the
// cause instead of staying Running.
TEST_F(RunnerTest, AStoreThatCannotRecordEndsTheRunWithErrorAndTheCause) {
  Load(R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: diskfull}
steps:
  - name: a
    command: [python3, -c, "print(1)"]
  - name: b
    depends: [a]
    command: [python3, -c, "print(2)"]
  - name: c
    depends: [b]
    command: [python3, -c, "print(3)"]
)yaml");
  store_.fail_puts_after = 1;  // a's Running record, then nothing
  store_.put_failure = Status::FailedPrecondition("recording step: database or disk is full");
  auto r = RunIt(Options());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().ToString(),
            "FAILED_PRECONDITION: recording run run1: recording step: database or disk is full");
  EXPECT_EQ(store_.runs["run1"].phase, RunPhase::kError);
  EXPECT_EQ(store_.runs["run1"].message, "the store could not record the run: recording step: database or disk is full");
  std::string started;
  for (const auto& t : executor_->started) started += (started.empty() ? "" : " ") + t.instance;
  EXPECT_EQ(started.find("c"), std::string::npos) << started;
  EXPECT_NE(events_.find("run Error: the store could not record the run: recording step: database or disk is full\n"),
            std::string::npos)
      << events_;
}

// A resumed run's record holds "<redacted>" for a secret: the runner never
// passes the placeholder to a step as if it were the value.
TEST_F(RunnerTest, ASecretParamHoldingThePlaceholderIsRefused) {
  Load(R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: placeholder}
params:
  tok: {type: string, secret: true}
steps:
  - name: a
    command: [python3, -c, "print(1)", "{{ params.tok }}"]
)yaml");
  RunOptions o = Options();
  o.params["tok"] = "<redacted>";
  auto r = RunIt(std::move(o));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().ToString(),
            "FAILED_PRECONDITION: parameter 'tok' is a secret, which is not recorded with a run; give its value "
            "again (-p tok=VALUE)");
  EXPECT_TRUE(executor_->started.empty());
  EXPECT_TRUE(store_.runs.empty());
}

// What the executor is told to mask in the log: the secret, its base64
// forms, and each value derived from it; the argv it runs holds the values.
TEST_F(RunnerTest, TheLogMasksHoldTheSecretAndItsDerivedValues) {
  Load(R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: masks}
params:
  tok: {type: string, secret: true}
steps:
  - name: a
    command: [python3, -c, "print(1)", "--auth={{ upper(params.tok) }}:{{ params.tok }}"]
)yaml");
  RunOptions o = Options();
  o.params["tok"] = "abcdef";
  ASSERT_TRUE(RunIt(std::move(o)).has_value());
  ASSERT_EQ(executor_->started.size(), 1u);
  const Task& t = executor_->started[0];
  EXPECT_EQ(t.argv[3], "--auth=ABCDEF:abcdef");
  std::set<std::string> masks(t.log_masks.begin(), t.log_masks.end());
  EXPECT_EQ(masks, (std::set<std::string>{"abcdef", "YWJjZGVm", "FiY2RlZ", "hYmNkZW", "ABCDEF",
                                          "--auth=ABCDEF:abcdef"}));
}

}  // namespace
}  // namespace sluice
