#include "engine/plan.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include <unistd.h>

#include <gtest/gtest.h>

#include "dsl/dsl.h"
#include "engine/graph.h"
#include "tests/engine/test_pipeline.h"

namespace sluice {
namespace {

TimePoint T(int64_t ms) { return TimePoint{} + std::chrono::milliseconds(ms); }

// Drives a Plan built from pipeline YAML and prints what it does as text.
class Harness {
 public:
  explicit Harness(std::string_view yaml, PlanOptions options = {}) : Harness(testing::LoadSpec(yaml), options) {}
  // A spec loaded elsewhere (a pipeline with sub-pipeline files).
  explicit Harness(PipelineSpec spec, PlanOptions options = {}) : spec_(std::move(spec)) {
    auto g = PipelineGraph::Build(spec_);
    if (!g) {
      ADD_FAILURE() << g.error().ToString();
      spec_ = PipelineSpec{};
      g = PipelineGraph::Build(spec_);
    }
    graph_ = std::make_unique<PipelineGraph>(std::move(*g));
    plan_ = std::make_unique<Plan>(*graph_, options);
  }

  Plan& plan() { return *plan_; }

  // "a b" for kRun nodes; kExpand nodes print as "train(expand)"; a retry
  // attempt prints as "a#2".
  std::string Ready(int64_t ms = 0) {
    std::string out;
    for (const auto& n : plan_->Ready(T(ms))) {
      if (!out.empty()) out += " ";
      if (n.kind == ReadyNode::Kind::kExpand) {
        out += plan_->InstanceName(n.instance) + "(expand)";
      } else {
        out += plan_->InstanceName(n.instance);
        if (n.attempt > 1) out += "#" + std::to_string(n.attempt);
      }
    }
    return out;
  }

  void Finish(const std::string& instance, AttemptResult result, const std::string& message = "",
              int64_t ms = 0) {
    int i = plan_->FindInstance(instance);
    ASSERT_GE(i, 0) << instance;
    plan_->Finished(i, result, message, T(ms));
  }

  void Expand(const std::string& step, int n) { plan_->Expand(graph_->Find(step), n); }

  // "a=Succeeded | b=Omitted: upstream step 'a' failed | c=Running retry@1000: ..."
  std::string Changes() {
    std::string out;
    for (const auto& c : plan_->TakeChanges()) {
      if (!out.empty()) out += " | ";
      out += plan_->InstanceName(c.instance) + "=" + NodePhaseName(c.phase);
      if (c.kept) out += "(kept)";
      if (c.retry_at) out += " retry@" + std::to_string((*c.retry_at - TimePoint{}) / std::chrono::milliseconds(1));
      if (!c.message.empty()) out += ": " + c.message;
    }
    return out;
  }

 private:
  PipelineSpec spec_;
  std::unique_ptr<PipelineGraph> graph_;
  std::unique_ptr<Plan> plan_;
};

constexpr std::string_view kChain = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: chain}
steps:
  - name: a
    command: [/bin/true]
  - name: b
    depends: [a]
    command: [/bin/true]
  - name: c
    command: [echo, "{{ steps.b.phase }}"]
)";

TEST(PlanTest, ChainRunsInDependencyOrder) {
  Harness h(kChain, {.slots = 4});
  EXPECT_EQ(h.Ready(), "a");
  EXPECT_EQ(h.Ready(), "");
  EXPECT_FALSE(h.plan().Done());
  h.Finish("a", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Changes(), "a=Succeeded");
  EXPECT_EQ(h.Ready(), "b");
  h.Finish("b", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "c");
  h.Finish("c", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Changes(), "b=Succeeded | c=Succeeded");
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().Phase(), RunPhase::kSucceeded);
  EXPECT_EQ(h.plan().Attempts(h.plan().FindInstance("c")), 1);
}

constexpr std::string_view kFour = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: four}
steps:
  - {name: w, command: [/bin/true]}
  - {name: x, command: [/bin/true]}
  - {name: y, command: [/bin/true], priority: 5}
  - {name: z, command: [/bin/true], priority: -1}
  - {name: after, depends: [x], command: [/bin/true], priority: 10}
)";

TEST(PlanTest, PriorityThenFileOrderWithinSlots) {
  Harness h(kFour, {.slots = 2});
  EXPECT_EQ(h.Ready(), "y w");
  h.Finish("w", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "x");
  h.Finish("x", AttemptResult::kSucceeded);
  // `after` became ready and outranks z.
  EXPECT_EQ(h.Ready(), "after");
  h.Finish("y", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "z");
}

constexpr std::string_view kRetry = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: retry}
steps:
  - name: flaky
    command: [/bin/false]
    retries: {limit: 3, backoff: 1s, factor: 2, maxBackoff: 3s}
)";

TEST(PlanTest, RetriesWithExponentialBackoffAndCap) {
  Harness h(kRetry);
  EXPECT_EQ(h.Ready(0), "flaky");
  h.Finish("flaky", AttemptResult::kFailed, "exit code 1", 0);
  EXPECT_EQ(h.Changes(), "flaky=Running retry@1000: attempt 1 failed: exit code 1; retry 1 of 3 in 1s");
  EXPECT_EQ(h.plan().NextWakeup(), T(1000));
  EXPECT_EQ(h.Ready(999), "");
  EXPECT_EQ(h.Ready(1000), "flaky#2");
  h.Finish("flaky", AttemptResult::kError, "could not start", 1500);
  EXPECT_EQ(h.Changes(), "flaky=Running retry@3500: attempt 2 had an error: could not start; retry 2 of 3 in 2s");
  EXPECT_EQ(h.Ready(3500), "flaky#3");
  h.Finish("flaky", AttemptResult::kTimedOut, "timed out after 10s", 4000);
  // 1s * 2^2 = 4s, capped at maxBackoff 3s.
  EXPECT_EQ(h.Changes(), "flaky=Running retry@7000: attempt 3 timed out: timed out after 10s; retry 3 of 3 in 3s");
  EXPECT_EQ(h.Ready(7000), "flaky#4");
  h.Finish("flaky", AttemptResult::kFailed, "exit code 1", 7100);
  EXPECT_EQ(h.Changes(), "flaky=Failed: exit code 1");
  EXPECT_FALSE(h.plan().NextWakeup().has_value());
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().Phase(), RunPhase::kFailed);
  EXPECT_EQ(h.plan().PhaseMessage(), "step 'flaky' failed: exit code 1");
}

TEST(PlanTest, RetryOnErrorDoesNotRetryUserFailures) {
  Harness h(R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: retry}
steps:
  - name: a
    command: [/bin/false]
    retries: {limit: 2, backoff: 0s, retryOn: OnError}
  - name: b
    command: [/bin/false]
    retries: {limit: 2, backoff: 0s, retryOn: OnError}
)",
            {.slots = 2, .keep_going = true});
  EXPECT_EQ(h.Ready(), "a b");
  h.Finish("a", AttemptResult::kFailed, "exit code 3");
  h.Finish("b", AttemptResult::kTimedOut, "timed out after 1s");
  EXPECT_EQ(h.Changes(),
            "a=Failed: exit code 3 | b=Running retry@0: attempt 1 timed out: timed out after 1s; retry 1 of 2 in 0ms");
  EXPECT_EQ(h.Ready(), "b#2");
  h.Finish("b", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Changes(), "b=Succeeded");
  EXPECT_EQ(h.plan().Phase(), RunPhase::kFailed);
}

constexpr std::string_view kFailPolicy = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: policy}
steps:
  - {name: a, command: [/bin/false]}
  - {name: b, command: [/bin/true]}
  - {name: c, depends: [a], command: [/bin/true]}
  - {name: d, depends: [c], command: [/bin/true]}
  - {name: e, command: [/bin/true]}
finally:
  - {name: report, command: [echo, "{{ run.status }}"]}
)";

TEST(PlanTest, FailFastOmitsEverythingNotStartedAndStillRunsFinally) {
  Harness h(kFailPolicy, {.slots = 2});
  EXPECT_EQ(h.Ready(), "a b");
  h.Finish("a", AttemptResult::kFailed, "exit code 1");
  const std::string stop =
      "not started: the run stopped after the first failure (step 'a' failed: exit code 1); --keep-going "
      "runs independent steps";
  EXPECT_EQ(h.Changes(), "a=Failed: exit code 1 | c=Omitted: " + stop + " | d=Omitted: " + stop +
                             " | e=Omitted: " + stop);
  EXPECT_EQ(h.Ready(), "");
  EXPECT_EQ(h.plan().MainPhase(), RunPhase::kFailed);
  h.Finish("b", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Changes(), "b=Succeeded");
  EXPECT_EQ(h.Ready(), "report");
  h.Finish("report", AttemptResult::kSucceeded);
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().Phase(), RunPhase::kFailed);
}

TEST(PlanTest, KeepGoingOmitsOnlyDependentsOfTheFailure) {
  Harness h(kFailPolicy, {.slots = 2, .keep_going = true});
  EXPECT_EQ(h.Ready(), "a b");
  h.Finish("a", AttemptResult::kError, "lost the process");
  EXPECT_EQ(h.Changes(),
            "a=Error: lost the process | c=Omitted: upstream step 'a' had a system error | d=Omitted: upstream "
            "step 'c' was omitted");
  EXPECT_EQ(h.Ready(), "e");
  h.Finish("b", AttemptResult::kSucceeded);
  h.Finish("e", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "report");
  EXPECT_EQ(h.plan().MainPhase(), RunPhase::kError);
  h.Finish("report", AttemptResult::kFailed, "exit code 2");
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().Phase(), RunPhase::kFailed);
  EXPECT_EQ(h.plan().PhaseMessage(), "step 'a' had a system error: lost the process");
}

constexpr std::string_view kWhen = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: when}
params:
  go: {type: bool, default: false}
steps:
  - name: gate
    when: "{{ params.go }}"
    command: [/bin/true]
  - name: child
    depends: [gate]
    command: [/bin/true]
  - name: grandchild
    depends: [child]
    command: [/bin/true]
  - name: report
    depends: [gate]
    ifUpstreamSkipped: run
    command: [/bin/true]
)";

TEST(PlanTest, SkippedStepSkipsDependentsUnlessTheyOptIn) {
  Harness h(kWhen, {.slots = 4});
  EXPECT_EQ(h.Ready(), "gate");
  // The runner evaluated `when` to false.
  h.Finish("gate", AttemptResult::kSkipped, "when 'params.go' is false");
  EXPECT_EQ(h.Changes(),
            "gate=Skipped: when 'params.go' is false | child=Skipped: upstream step 'gate' was skipped | "
            "grandchild=Skipped: upstream step 'child' was skipped");
  EXPECT_EQ(h.Ready(), "report");
  h.Finish("report", AttemptResult::kSucceeded);
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().Phase(), RunPhase::kSucceeded);
}

constexpr std::string_view kForeach = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: fan}
params:
  models: {type: list, default: [a, b, c]}
steps:
  - name: prepare
    command: [/bin/true]
  - name: train
    foreach: "{{ params.models }}"
    parallelism: 2
    depends: [prepare]
    command: [echo, "{{ item }}"]
    outputs:
      params:
        - {name: acc, path: acc.txt}
  - name: select
    command: [echo, "{{ steps.train.outputs.params.acc }}"]
)";

TEST(PlanTest, ForeachFansOutUnderItsParallelismAndFansIn) {
  Harness h(kForeach, {.slots = 8});
  EXPECT_EQ(h.Ready(), "prepare");
  h.Finish("prepare", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "train(expand)");
  EXPECT_FALSE(h.plan().StepExpanded(1));
  h.Expand("train", 3);
  EXPECT_EQ(h.Ready(), "train[0] train[1]");
  h.Finish("train[1]", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "train[2]");
  h.Finish("train[2]", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "");  // select waits for every instance
  h.Finish("train[0]", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Changes(), "prepare=Succeeded | train[1]=Succeeded | train[2]=Succeeded | train[0]=Succeeded");
  EXPECT_EQ(h.plan().StepPhase(1), NodePhase::kSucceeded);
  EXPECT_EQ(h.Ready(), "select");
  std::string names;
  for (int i : h.plan().StepInstances(1)) names += h.plan().InstanceName(i) + " ";
  EXPECT_EQ(names, "train[0] train[1] train[2] ");
}

TEST(PlanTest, ForeachInstanceFailureOmitsTheFanInWithKeepGoing) {
  Harness h(kForeach, {.slots = 8, .keep_going = true});
  EXPECT_EQ(h.Ready(), "prepare");
  h.Finish("prepare", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "train(expand)");
  h.Expand("train", 3);
  EXPECT_EQ(h.Ready(), "train[0] train[1]");
  h.Changes();
  h.Finish("train[0]", AttemptResult::kFailed, "exit code 1");
  EXPECT_EQ(h.Changes(), "train[0]=Failed: exit code 1 | select=Omitted: upstream step 'train' failed");
  // The other instances still run.
  EXPECT_EQ(h.Ready(), "train[2]");
  h.Finish("train[1]", AttemptResult::kSucceeded);
  h.Finish("train[2]", AttemptResult::kSucceeded);
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().StepPhase(1), NodePhase::kFailed);
}

TEST(PlanTest, EmptyForeachSucceedsWithoutInstances) {
  Harness h(kForeach);
  EXPECT_EQ(h.Ready(), "prepare");
  h.Finish("prepare", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "train(expand)");
  h.Expand("train", 0);
  EXPECT_EQ(h.Changes(), "prepare=Succeeded | train=Succeeded: foreach over an empty list: no instances to run");
  EXPECT_EQ(h.Ready(), "select");
}

TEST(PlanTest, ForeachThatCannotBeExpandedIsAnError) {
  Harness h(kForeach);
  h.Ready();
  h.Finish("prepare", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "train(expand)");
  h.plan().FailExpansion(1, "pipeline.yaml:11:14: foreach must yield a list, got string \"x\"");
  EXPECT_EQ(h.Changes(),
            "prepare=Succeeded | train=Error: pipeline.yaml:11:14: foreach must yield a list, got string \"x\" | "
            "select=Omitted: not started: the run stopped after the first failure (step 'train' had a system "
            "error: pipeline.yaml:11:14: foreach must yield a list, got string \"x\"); --keep-going runs "
            "independent steps");
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().Phase(), RunPhase::kError);
}

constexpr std::string_view kResources = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: budget}
steps:
  - {name: big, command: [/bin/true], resources: {cpu: "1.5", memory: 1Gi}}
  - {name: mid, command: [/bin/true], resources: {cpu: "1"}}
  - {name: small, command: [/bin/true], resources: {cpu: 500m}}
  - {name: huge, command: [/bin/true], resources: {cpu: "4"}}
  - {name: gpu, command: [/bin/true], resources: {gpu: 1}}
)";

TEST(PlanTest, ResourceBudgetsBackfillAndRejectWhatNeverFits) {
  Harness h(kResources, {.slots = 8, .cpu_millis = 2000, .memory_bytes = 4LL << 30, .keep_going = true});
  // big takes 1.5 CPUs; mid does not fit next to it, small does.
  EXPECT_EQ(h.Ready(), "big small");
  EXPECT_EQ(h.Changes(),
            "huge=Error: step 'huge' requests 4 CPUs but the run's CPU budget is 2; lower resources.cpu or raise "
            "--cpus | gpu=Error: step 'gpu' requests 1 GPU but the run has 0; lower resources.gpu or raise --gpus");
  h.Finish("small", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "");
  h.Finish("big", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "mid");
  h.Finish("mid", AttemptResult::kSucceeded);
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().Phase(), RunPhase::kError);
}

TEST(PlanTest, ReturnedInstanceRunsLaterWithTheSameAttempt) {
  Harness h(kChain);
  auto ready = h.plan().Ready(T(0));
  ASSERT_EQ(ready.size(), 1u);
  h.plan().Return(ready[0].instance);
  EXPECT_EQ(h.Ready(), "a");
  EXPECT_EQ(h.plan().Attempts(ready[0].instance), 1);
}

constexpr char kCancel[] = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: cancel}
steps:
  - {name: a, command: [sleep, "60"]}
  - name: b
    command: [/bin/false]
    retries: {limit: 1, backoff: 10s}
  - {name: c, depends: [a], command: [/bin/true]}
finally:
  - {name: report, command: [/bin/true]}
)";

TEST(PlanTest, CancelOmitsPendingCancelsBackoffWaitsForRunningThenRunsFinally) {
  Harness h(kCancel, {.slots = 2});
  EXPECT_EQ(h.Ready(), "a b");
  h.Finish("b", AttemptResult::kFailed, "exit code 1");
  h.Changes();
  h.plan().Cancel(Plan::CancelMode::kUser, "cancelled by SIGINT");
  EXPECT_EQ(h.Changes(), "b=Cancelled: cancelled by SIGINT | c=Omitted: cancelled by SIGINT");
  EXPECT_FALSE(h.plan().Done());
  EXPECT_EQ(h.Ready(20000), "");
  h.Finish("a", AttemptResult::kCancelled, "killed by SIGTERM");
  EXPECT_EQ(h.Changes(), "a=Cancelled: killed by SIGTERM");
  EXPECT_EQ(h.Ready(), "report");
  h.Finish("report", AttemptResult::kSucceeded);
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().Phase(), RunPhase::kCancelled);
  EXPECT_EQ(h.plan().MainPhase(), RunPhase::kCancelled);
  EXPECT_EQ(h.plan().PhaseMessage(), "cancelled by SIGINT");
}

TEST(PlanTest, TerminateOmitsFinallyStepsToo) {
  Harness h(kCancel, {.slots = 2});
  EXPECT_EQ(h.Ready(), "a b");
  h.Finish("b", AttemptResult::kFailed, "exit code 1");
  h.Changes();
  h.plan().Cancel(Plan::CancelMode::kUser, "cancelled by SIGINT");
  h.plan().Cancel(Plan::CancelMode::kTerminate, "cancelled by SIGINT");
  EXPECT_EQ(h.Changes(),
            "b=Cancelled: cancelled by SIGINT | c=Omitted: cancelled by SIGINT | report=Omitted: cancelled by SIGINT");
  EXPECT_EQ(h.Ready(20000), "");
  h.Finish("a", AttemptResult::kCancelled, "killed by SIGKILL");
  EXPECT_EQ(h.Changes(), "a=Cancelled: killed by SIGKILL");
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().Phase(), RunPhase::kCancelled);
}

TEST(PlanTest, RunTimeoutStillRunsFinallySteps) {
  Harness h(kFailPolicy, {.slots = 2});
  EXPECT_EQ(h.Ready(), "a b");
  h.plan().Cancel(Plan::CancelMode::kTimeout, "the run exceeded its timeout of 1h");
  EXPECT_EQ(h.Changes(),
            "c=Omitted: the run exceeded its timeout of 1h | d=Omitted: the run exceeded its timeout of 1h | "
            "e=Omitted: the run exceeded its timeout of 1h");
  h.Finish("a", AttemptResult::kCancelled, "killed");
  h.Finish("b", AttemptResult::kCancelled, "killed");
  EXPECT_EQ(h.Ready(), "report");
  h.Finish("report", AttemptResult::kSucceeded);
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().Phase(), RunPhase::kFailed);
}

TEST(PlanTest, SeedKeepsSucceededInstancesAndContinuesAttempts) {
  Harness h(kForeach, {.slots = 8});
  h.plan().Seed({{"prepare", NodePhase::kSucceeded, 1},
                 {"train[0]", NodePhase::kSucceeded, 1},
                 {"train[1]", NodePhase::kFailed, 2},
                 {"train[2]", NodePhase::kCached, 0}});
  EXPECT_EQ(h.Ready(), "train(expand)");
  EXPECT_EQ(h.Changes(), "prepare=Succeeded(kept)");
  h.Expand("train", 3);
  EXPECT_EQ(h.Changes(), "train[0]=Succeeded(kept) | train[2]=Cached(kept)");
  EXPECT_EQ(h.Ready(), "train[1]#3");
  h.Finish("train[1]", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "select");
}

// A pipeline whose step `g` runs chain.yaml (first -> second) over [a, b]
// with minSuccessRatio 0.5, loaded from files in a temporary directory.
PipelineSpec GroupSpec() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("sluice-plan-group-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "chain.yaml") << R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: chain}
params:
  x: {type: string}
steps:
  - name: first
    command: [echo, "{{ params.x }}"]
  - name: second
    depends: [first]
    command: [echo, second]
)";
  std::ofstream(dir / "pipeline.yaml") << R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: group}
steps:
  - name: g
    pipeline: chain.yaml
    foreach: [a, b]
    minSuccessRatio: 0.5
    with: {x: "{{ item }}"}
  - name: after
    depends: [g]
    command: [echo, after]
)";
  dsl::LoadResult r = dsl::LoadPipelineFile((dir / "pipeline.yaml").string());
  fs::remove_all(dir);
  EXPECT_TRUE(r.ok()) << dsl::FormatDiagnosticsText(r.diagnostics);
  return r.ok() ? std::move(*r.spec) : PipelineSpec{};
}

TEST(PlanTest, AGroupItemWaitsOnlyForItsOwnItemAndAFailedItemIsTolerated) {
  Harness h(GroupSpec(), {.slots = 4});
  EXPECT_EQ(h.Ready(), "g/first(expand)");
  h.Expand("g/first", 2);
  // Its item-wise downstream expands as soon as it has, not when it ends.
  EXPECT_EQ(h.Ready(), "g/second(expand) g[0]/first g[1]/first");
  h.Expand("g/second", 2);
  EXPECT_EQ(h.Ready(), "");
  h.Finish("g[0]/first", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "g[0]/second");
  h.Finish("g[1]/first", AttemptResult::kFailed, "exited with code 1");
  EXPECT_EQ(h.Ready(), "");
  h.Finish("g[0]/second", AttemptResult::kSucceeded);
  EXPECT_EQ(h.Ready(), "after");
  h.Finish("after", AttemptResult::kSucceeded);
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.Changes(),
            "g[0]/first=Succeeded | g[1]/first=Failed: exited with code 1 | "
            "g[1]/second=Omitted: upstream step 'g[1]/first' failed | g[0]/second=Succeeded | after=Succeeded");
  EXPECT_EQ(h.plan().Phase(), RunPhase::kSucceeded);
  EXPECT_EQ(h.plan().ToleratedMessage(),
            "1 of 2 items of step 'g/first' failed (g[1]/first); minSuccessRatio 0.5 met; "
            "1 of 2 items of step 'g/second' failed (g[1]/second); minSuccessRatio 0.5 met");
}

TEST(PlanTest, BelowMinSuccessRatioTheStepFailsAndTheRunStops) {
  Harness h(R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: ratio}
steps:
  - name: train
    foreach: [0, 1, 2]
    minSuccessRatio: 0.5
    command: [echo, "{{ item }}"]
  - name: pick
    depends: [train]
    command: [echo, pick]
)", {.slots = 4});
  EXPECT_EQ(h.Ready(), "train(expand)");
  h.Expand("train", 3);
  EXPECT_EQ(h.Ready(), "train[0] train[1] train[2]");
  h.Finish("train[0]", AttemptResult::kFailed, "exited with code 1");
  // A failed item does not stop the others.
  h.Finish("train[1]", AttemptResult::kSucceeded);
  h.Finish("train[2]", AttemptResult::kError, "lost");
  EXPECT_TRUE(h.plan().Done());
  EXPECT_EQ(h.plan().StepPhase(0), NodePhase::kFailed);
  EXPECT_EQ(h.plan().InstancePhase(h.plan().FindInstance("pick")), NodePhase::kOmitted);
  EXPECT_EQ(h.plan().Phase(), RunPhase::kFailed);
  EXPECT_EQ(h.plan().PhaseMessage(),
            "step 'train': 1 of 3 items succeeded, fewer than minSuccessRatio 0.5 needs (2); failed: train[0], "
            "train[2]");
}

}  // namespace
}  // namespace sluice
