#pragma once
// Plan: the scheduler as a step function (ninja's Plan), free of threads,
// clocks, processes and expressions, so it can be tested exhaustively.
//
// The plan owns the state of every step instance of one run. Its driver (the
// Runner, or a test) repeatedly:
//   1. calls Ready(now) and, for every ReadyNode:
//        kExpand: evaluates the foreach list and calls Expand(step, n) (or
//                 FailExpansion(step, message));
//        kRun:    evaluates `when` (false: Finished(i, kSkipped)), or starts
//                 attempt `attempt` of the instance (or Return()s it when the
//                 executor cannot take it now);
//   2. calls Finished(instance, result, message, now) when an attempt ends;
//   3. drains TakeChanges() to record phase changes the plan made;
//   4. sleeps at most until NextWakeup() (retry backoff) or the next finish;
// until Done().
//
// Instances: a step without foreach has one instance named like the step. A
// foreach step has a "head" instance (named like the step) until it is
// expanded into `name[0]` .. `name[n-1]`; the head then retires (it is never
// reported again). When a foreach step is omitted or skipped before its list
// is known, the head carries that phase; an empty list makes the head
// Succeeded. Instance ids are dense ints, stable for the run.
//
// Rules:
//   - A step is considered once all its upstream steps are terminal (a
//     foreach step is terminal when all its instances are: fan-in). Its
//     step-level phase aggregates its instances: any Failed -> Failed, else
//     any Error -> Error, else any Cancelled -> Cancelled, else any Omitted ->
//     Omitted, else all Skipped -> Skipped, else Succeeded.
//   - An upstream that Failed / Error / Cancelled / Omitted makes the step
//     Omitted (eagerly: as soon as one instance of the upstream fails for
//     good). An upstream Skipped makes it Skipped unless ifUpstreamSkipped:
//     run.
//   - Ready order: priority (higher first), then file order, then foreach
//     index. Starting is bounded by the slots, the step's foreach
//     parallelism and the cpu/memory/gpu budgets; a smaller ready step may
//     start past a bigger one that does not fit now. An instance that can
//     never fit the budget becomes Error with a message naming the budget.
//   - Retries: an attempt that Failed (user failure) or Error/TimedOut
//     (system error) is retried while attempts <= retries.limit and
//     retries.retryOn allows it, after min(backoff * factor^(n-1),
//     maxBackoff) for the n-th retry. While it waits the instance stays
//     Running. Cancelled attempts are never retried.
//   - Fail-fast (default): after the first main-step instance fails for
//     good, no step starts any more; everything not started becomes Omitted
//     (retries of already started instances go on). keep_going: only the
//     dependents of failed steps are Omitted.
//   - Finally steps start when every main step is terminal, whatever
//     happened (upstream phases are not propagated to them), in their own
//     dependency order among themselves.
//   - Cancel(kUser): no main step starts any more; never-started main
//     instances become Omitted, main instances waiting for a retry become
//     Cancelled, running ones become whatever their attempt reports
//     (normally Cancelled, once the executor confirms); the finally steps
//     still run, once the main steps are terminal. Cancel(kTimeout) does the
//     same (the run then ends Failed, not Cancelled). Cancel(kTerminate)
//     stops the finally steps as well: they are Omitted (or Cancelled while
//     waiting for a retry) unless they are running already.
//   - Resume: Seed() before the first Ready() keeps instances that Succeeded
//     or were Cached (phase unchanged, reported once as a change with
//     kept=true); other seeded instances run again and continue counting
//     attempts. Finally steps always run again.
//
//   - Foreach groups (engine/foreach_group.h): an edge between two steps of
//     one group is item-wise. The downstream step expands once the upstream
//     has expanded, and its item i waits only for item i of the upstream:
//     Omitted when that failed, Skipped when it was skipped (unless
//     ifUpstreamSkipped: run). Group items are named "eval[i]/score".
//   - minSuccessRatio r: failed (or omitted) items of the step do not stop
//     the run; when the step's items are terminal it is Succeeded if at
//     least r of them did not fail (the failures are then listed by
//     ToleratedMessage()), else Failed, which stops the run as a failure.
//
// Complexity: O(log N) per start/finish (indegree counters, an ordered ready
// set, a retry heap); the fail-fast stop and Cancel() are O(N) once.

#include <cstdint>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "engine/graph.h"
#include "engine/store.h"

namespace sluice {

// How one attempt of an instance ended, as told to Plan::Finished.
enum class AttemptResult {
  kSucceeded,
  kFailed,     // user failure (non-zero exit, missing declared output, ...)
  kError,      // system error
  kTimedOut,   // the step's timeout passed: counts as a system error
  kCancelled,  // stopped by a cancel
  kSkipped,    // `when` was false
  kCached,     // outputs reused from an earlier execution
};

// Budgets for starting instances. A budget <= 0 for cpu/memory means
// unlimited; gpu is an exact count (a step asking for a GPU never fits 0).
struct PlanOptions {
  int slots = 1;  // max instances running at once (>= 1)
  int64_t cpu_millis = 0;
  int64_t memory_bytes = 0;
  int64_t gpu = 0;
  bool keep_going = false;
};

// Something the driver should do now.
struct ReadyNode {
  enum class Kind { kRun, kExpand };
  Kind kind = Kind::kRun;
  int instance = -1;  // kRun: instance to start; kExpand: the step's head
  int step = -1;      // graph node
  int attempt = 0;    // kRun: 1-based number of the attempt to start
};

// A phase change the plan made (the driver records it). For a retry the
// phase stays kRunning and retry_at is set.
struct PlanChange {
  int instance = -1;
  NodePhase phase = NodePhase::kPending;
  std::string message;
  std::optional<TimePoint> retry_at;
  bool kept = false;  // a seeded instance kept from an earlier run
};

// An instance's state in an earlier run, for resume.
struct SeedInstance {
  std::string name;  // "train[1]" or "prepare"
  NodePhase phase = NodePhase::kPending;
  int attempts = 0;
};

class Plan {
 public:
  // kUser: `sluice cancel`, the first Ctrl-C; kTimeout: the run's timeout;
  // kTerminate: `sluice cancel --now`, a second Ctrl-C.
  enum class CancelMode { kUser, kTimeout, kTerminate };

  // `graph` is borrowed and must outlive the plan.
  Plan(const PipelineGraph& graph, PlanOptions options);

  // Resume: see the file comment. Must be called before the first Ready();
  // names that match no instance are ignored.
  void Seed(const std::vector<SeedInstance>& instances);

  // What to do now (see the file comment). kRun instances are Running from
  // here on and hold their slot and resources until Finished() or Return().
  std::vector<ReadyNode> Ready(TimePoint now);

  // Expands foreach step `step` (whose head was returned as kExpand) into
  // `n` instances.
  void Expand(int step, int n);
  // The foreach list of `step` could not be computed: the step fails with
  // `message` as a system error (Error) and no retries.
  void FailExpansion(int step, const std::string& message);

  // Attempt of `instance` ended. `message` says why for anything but
  // success. Ignored when the instance is not Running an attempt.
  // `retryable` false makes a failure final whatever the retry policy (for
  // deterministic errors such as a template naming an unknown value).
  void Finished(int instance, AttemptResult result, const std::string& message, TimePoint now,
                bool retryable = true);

  // Gives back a kRun instance that could not be started now (e.g. the
  // executor is full); it returns to the ready set with its attempt unused.
  void Return(int instance);

  // Stops the run; see the file comment.
  void Cancel(CancelMode mode, const std::string& reason);

  // Every instance is terminal (nothing running, nothing waiting).
  bool Done() const { return unfinished_ == 0; }
  // Earliest time a retry becomes due, if any instance waits for one.
  std::optional<TimePoint> NextWakeup();
  // Instances in the ready set: their upstreams are done, but no slot or
  // budget is free for them yet (what Ready() left behind). O(1).
  int ReadyWaiting() const { return static_cast<int>(ready_.size()); }
  // Phase changes since the last call, in the order they happened.
  std::vector<PlanChange> TakeChanges();

  // Phase of the whole run so far (final when Done()): Cancelled after
  // Cancel(kUser or kTerminate); Failed after Cancel(kTimeout) or when an instance Failed;
  // else Error when one had a system error; else Cancelled if one was
  // cancelled; else Succeeded. MainPhase() looks only at the main steps:
  // it is `run.status` for finally steps.
  RunPhase Phase() const;
  RunPhase MainPhase() const;
  // Why the run is not Succeeded: the first failure, or the cancel reason.
  const std::string& PhaseMessage() const { return phase_message_; }
  // For a run whose failed items were tolerated by minSuccessRatio: which
  // ("1 of 4 items of step 'train' failed (train[2]); minSuccessRatio 0.5
  // met"), one sentence per step joined by "; "; "" otherwise.
  const std::string& ToleratedMessage() const { return tolerated_message_; }

  // Instances.
  int num_instances() const { return static_cast<int>(instances_.size()); }
  const std::string& InstanceName(int i) const { return instances_[i].name; }
  int InstanceStep(int i) const { return instances_[i].step; }
  int InstanceIndex(int i) const { return instances_[i].index; }  // -1 unless foreach
  NodePhase InstancePhase(int i) const { return instances_[i].phase; }
  int Attempts(int i) const { return instances_[i].attempts; }
  // False for a retired foreach head.
  bool IsReported(int i) const { return !instances_[i].retired; }
  // Instance id by name, or -1.
  int FindInstance(const std::string& name) const;

  // Steps. StepInstances: the expanded instances in item order, or the
  // head alone while the step is not expanded (or when it has no foreach).
  const std::vector<int>& StepInstances(int step) const { return steps_[step].instances; }
  bool StepTerminal(int step) const { return steps_[step].terminal; }
  bool StepExpanded(int step) const { return steps_[step].expanded; }
  // Aggregated phase (see the file comment); kPending until terminal.
  NodePhase StepPhase(int step) const { return steps_[step].phase; }

  const PipelineGraph& graph() const { return graph_; }

 private:
  enum class State {
    kWaiting,    // upstreams not terminal yet
    kHeld,       // foreach instance held back by the step's parallelism
    kQueued,     // in the ready set
    kExpanding,  // head handed out as kExpand
    kRunning,    // attempt in flight
    kBackoff,    // waiting for a retry
    kTerminal,
  };
  struct Instance {
    std::string name;
    int step = -1;
    int index = -1;
    State state = State::kWaiting;
    NodePhase phase = NodePhase::kPending;
    int attempts = 0;       // total, including earlier runs
    int base_attempts = 0;  // attempts made before this run (resume)
    bool retired = false;
    TimePoint retry_at{};
    int waiting_items = 0;  // group items: upstream items not terminal yet
  };
  struct StepState {
    std::vector<int> instances;
    int head = -1;
    int unfinished_upstreams = 0;  // main: all upstreams; finally: finally upstreams
    bool upstream_failed = false;
    bool upstream_skipped = false;
    std::string upstream_reason;
    bool resolved = false;  // left kWaiting
    bool expanded = false;
    bool terminal = false;
    NodePhase phase = NodePhase::kPending;
    int unfinished_instances = 0;
    int running = 0;
    int released = 0;  // instances queued or running, for the parallelism cap
    size_t next_held = 0;
    std::vector<int> held;
    int priority = 0;
    int parallelism = 0;
    std::string group;                 // ForeachGroup()
    bool items_released = false;       // item-wise downstreams were told of the expansion
    std::optional<double> min_ratio;   // MinSuccessRatio()
    bool ratio_failed = false;         // too few items succeeded
  };
  using ReadyKey = std::tuple<int, int, int, int>;  // -priority, step, index, instance

  void Init();
  void Resolve(int step);
  void Queue(int instance);
  void ReleaseHeld(int step);
  void SetTerminal(int instance, NodePhase phase, const std::string& message, bool kept = false);
  void OnFinalFailure(int instance, const std::string& message);
  void OmitStep(int step, const std::string& message);
  void StopAll(const std::string& message);
  void ProcessTerminalSteps();
  void Take(int instance, bool take_resources);
  void Release(int instance);
  ReadyKey KeyOf(int instance) const;
  std::string NeverFits(int instance) const;
  bool ItemWise(int from, int to) const;
  void ReleaseItems(int step);
  void ItemFinished(int instance);
  NodePhase RatioPhase(int step, NodePhase agg);

  const PipelineGraph& graph_;
  PlanOptions options_;
  std::vector<Instance> instances_;
  std::vector<StepState> steps_;
  std::unordered_map<std::string, SeedInstance> seeds_;
  std::unordered_map<std::string, int> by_name_;
  bool initialized_ = false;

  std::set<ReadyKey> ready_;
  std::vector<int> expansions_;
  using RetryEntry = std::pair<TimePoint, int>;
  std::priority_queue<RetryEntry, std::vector<RetryEntry>, std::greater<RetryEntry>> retries_;
  std::vector<int> terminal_steps_;  // steps that just became terminal
  std::vector<PlanChange> changes_;

  int unfinished_ = 0;  // non-terminal, non-retired instances
  int main_unfinished_steps_ = 0;
  int running_ = 0;
  int64_t cpu_used_ = 0, memory_used_ = 0, gpu_used_ = 0;
  bool stopping_ = false;  // fail-fast stop
  std::optional<CancelMode> cancelled_;
  std::string phase_message_;
  std::string tolerated_message_;
  // Final failures: [0] main steps, [1] finally steps.
  int failed_[2] = {0, 0}, errors_[2] = {0, 0}, cancelled_count_[2] = {0, 0};
};

// Human spelling of resource quantities in messages: "0.5" CPUs, "512Mi".
std::string FormatCpu(int64_t millis);
std::string FormatBytes(int64_t bytes);
// "1.5s", "200ms", "2m", "1h30m".
std::string FormatDuration(Duration d);

}  // namespace sluice
