#pragma once
// Runner: drives one run of a pipeline to completion.
//
// The planning logic lives in engine/plan.h (a step function: Ready(),
// Finished()); the Runner is the thin loop around it that renders templates,
// builds Tasks, starts them on executors, waits, collects outputs into the
// artifact store and records everything in the Store as it goes.
//
// Layout of a run under options.state_dir:
//   runs/<run_id>/steps/<instance>/             the step's working directory,
//                                               emptied before each attempt
//   runs/<run_id>/logs/<instance>.attempt<N>.log  stdout+stderr of attempt N
//
// Store writes: when an attempt starts, PutStep and StartExecution at once
// (so a resumed run finds it). Everything else that happened in one
// scheduling pass (finished attempts, cache hits as new Cached executions,
// changed step records: retry scheduled, terminal, omitted, skipped) is
// written together by one Store::Write, one transaction, after the pass's
// tasks have started (and every 1000 cache hits, and before a task starts
// if hits are waiting). Pending instances are not written: a step missing
// from ListSteps() has not been considered yet.
//
// Each step's task gets env SLUICE_RUN_ID and SLUICE_INPUT_<NAME> (input
// path, or a JSON list of paths for a fan-in), names upper-cased with '-'
// as '_'. Secrets come from the host's SLUICE_SECRET_<NAME>_<KEY>.
//
// Resume (options.resume_run_id, rerun_from empty): the SAME run continues.
// Its Succeeded/Cached instances are kept, everything else runs again with
// attempt numbers continuing (so logs of earlier attempts stay); the run
// record is updated to the current pipeline file (digest, yaml), and every
// execution snapshot records the pipeline digest it ran with.
// Rerun (resume_run_id + rerun_from): a NEW run (options.run_id or a fresh
// id) with resumed_from = the old run; the named steps and everything
// downstream of them run, every other instance that Succeeded there is
// recorded as Cached with cached_from "<old run>/<instance>" and its outputs.
//
// Caching: every attempt gets a cache key (CacheKey, engine/run/cache_key.h),
// the hex SHA-256 of the operator type, resolved argv, env (minus
// cache.envIgnore; secret values excluded), image, code digest, the params
// the step references, the input artifacts' content digests (minus
// cache.ignoreInputs), the foreach item and the declared outputs. The Task
// itself is rendered by TaskBuilder (engine/run/task_builder.h). With cache enabled and !no_cache, a Store::FindCached hit
// whose artifacts are still present makes the instance Cached. A step that
// declares no outputs (artifacts, params or metrics) runs for its side
// effects and is never a cache hit.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/clock.h"
#include "engine/executor.h"
#include "engine/operator.h"
#include "engine/spec.h"
#include "engine/status.h"
#include "engine/store.h"

namespace sluice {

// Something a user watching a run wants to know about (live progress).
struct RunEvent {
  enum class Kind { kRunStarted, kStepStarted, kStepRetrying, kStepFinished, kLogLine, kRunFinished };
  Kind kind = Kind::kStepStarted;
  std::string instance;  // empty for run-level events
  NodePhase phase = NodePhase::kPending;
  int attempt = 0;
  std::string message;   // log line text for kLogLine; reason otherwise
};

// Live per-step progress, for metrics (`sluice serve`). Optional; each
// callback is called on the runner's thread and must be quick (it runs
// between scheduling decisions) and must not call back into the Runner.
struct StepObserver {
  // An instance reached a terminal phase in this run: Succeeded, Failed,
  // Error, Cached (a cache hit, or kept by a rerun), Skipped, Omitted or
  // Cancelled. `step` is its final record (started_at/finished_at are set
  // when it started), `spec` the step it belongs to. Instances a same-run
  // resume keeps unchanged are not reported (they finished before).
  std::function<void(const StepRecord& step, const StepSpec& spec)> on_step_finished;
  // The number of instances ready to start (upstreams done) but waiting for
  // a slot or budget; called after each scheduling pass when it changed,
  // and with 0 when the run ends.
  std::function<void(int waiting)> on_ready_waiting;
};

struct RunOptions {
  std::string run_id;                  // "" = generate one
  Json params = Json::object();        // bound, typed (dsl::BindParams)
  int parallelism = 0;                 // max concurrent steps; 0 = number of CPUs
  bool keep_going = false;             // false: stop scheduling new steps on first failure
  int64_t cpu_budget_millis = 0;       // 0 = number of CPUs * 1000
  int64_t memory_budget_bytes = 0;     // 0 = physical memory
  int64_t gpu_budget = 0;              // local GPUs available
  bool no_cache = false;
  std::string default_executor;        // "" = pipeline's
  std::string state_dir;               // the store root, e.g. "/abs/.sluice"
  // Built-in operators that run as a program of their own, by step type:
  // e.g. {"deploy": {"/usr/bin/sluice-serving", "deploy"}}. Such a step's
  // argv is this prefix + ["--config", <its rendered config section as
  // JSON>, "--out", "."], with SLUICE_STATE_DIR set (docs/deploy.md).
  std::map<std::string, std::vector<std::string>> operator_commands;
  // Executors (by name) whose tasks run through sluice-launcher in a pod
  // with no filesystem shared with this host (engine/launch.h): each such
  // task gets its inputs' digests, its declared outputs and the code
  // directory artifact in Task::files, and its outputs are read from the
  // launcher's result object in the artifact store instead of from the
  // workdir. The pipeline's directory (without .git and the store) is stored
  // once per run as that code artifact; its digest is the snapshot's
  // `code_archive`. An output is fetched to this host only when a step that
  // runs here needs it.
  std::set<std::string> launcher_executors;
  // The step types; null = OperatorRegistry::Global(). Borrowed.
  const OperatorRegistry* operators = nullptr;
  Duration cancel_grace{5000};         // SIGTERM → SIGKILL
  // Resume/rerun: the run to continue and the instances to run again
  // (everything else that succeeded there is kept).
  std::string resume_run_id;
  std::vector<std::string> rerun_from;  // step names; these and their downstream re-run
  std::function<void(const RunEvent&)> on_event;  // called on the runner's thread
  StepObserver observer;                          // live metrics; see StepObserver
  // Time source; nullptr = the system clock. Borrowed (tests pass a FakeClock).
  Clock* clock = nullptr;
};

struct RunSummary {
  RunRecord run;
  std::vector<StepRecord> steps;
};

class Runner {
 public:
  // Borrows everything; all must outlive the Runner.
  Runner(const PipelineSpec& spec, Store* store, ArtifactStore* artifacts,
         ExecutorRegistry* executors, RunOptions options);

  // Runs to the end (or to cancellation). Returns the final records; a run
  // that failed is still an OK Result (look at run.phase). Errors are for
  // failures to run at all (store unusable, unknown executor, ...).
  Result<RunSummary> Run();

  // Thread-safe request to cancel (`sluice cancel`, the first Ctrl-C or
  // SIGTERM, the server's cancel): running main steps get SIGTERM, then
  // SIGKILL after options.cancel_grace, and are recorded Cancelled; main
  // steps not started yet are recorded Omitted; the finally steps still run
  // once the main steps have stopped, and see run.status == Cancelled. The
  // run then ends with phase Cancelled. Call it from a signal-watching
  // thread (not from inside a signal handler): it calls Executor::Cancel*
  // and wakes the run loop.
  void Cancel();

  // Cancel() without the finally steps (`sluice cancel --now`, a second
  // Ctrl-C): every running step, finally steps included, gets SIGTERM, then
  // SIGKILL after `grace`; steps not started yet are recorded Omitted. The
  // run ends with phase Cancelled. Same threading rules as Cancel().
  void Terminate(Duration grace);

 private:
  friend class RunLoop;

  const PipelineSpec& spec_;
  Store* store_;
  ArtifactStore* artifacts_;
  ExecutorRegistry* executors_;
  RunOptions options_;
  std::atomic<bool> cancel_requested_{false};
  std::atomic<bool> terminate_requested_{false};
  // Orders Cancel() against the start of the first finally step: a cancel
  // before it stops every task (all are main steps), one after it leaves
  // the tasks to the run loop, which stops only main steps.
  std::mutex cancel_mu_;
  bool finally_started_ = false;  // guarded by cancel_mu_
  SystemClock system_clock_;
  Clock* clock_;
};

}  // namespace sluice
