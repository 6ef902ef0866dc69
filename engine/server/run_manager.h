#pragma once
// RunManager: runs pipelines for the server on worker threads (one Runner per
// run, at most `max_concurrent` at once; the rest wait in a FIFO queue), and
// is the scheduler's ScheduleTarget.
//
// A run is visible from the moment Submit() returns: while queued, and after a
// worker takes it until the Runner has recorded it, it is held here
// (Queued()); from then on it is in the shared store, where the CLI (`sluice
// runs`, `logs`) sees it as well.

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/run/runner.h"
#include "engine/server/pipeline_registry.h"
#include "engine/server/scheduler.h"
#include "engine/store.h"

namespace sluice::server {

struct ServerMetrics;

// One executing run, as the manager drives it: the seam in front of Runner
// (tests substitute a fake that writes records to a real store).
class RunHandle {
 public:
  virtual ~RunHandle() = default;
  // Blocks until the run ends; see Runner::Run.
  virtual Result<RunSummary> Run() = 0;
  // Thread-safe cancellation request; see Runner::Cancel.
  virtual void Cancel() = 0;
};

// Makes the handle for one run. `spec` stays alive while the handle lives.
using RunFactory = std::function<std::unique_ptr<RunHandle>(SpecPtr spec, RunOptions options)>;

// Makes the executors of one run: `spec` is the version that runs and
// `executor` the run's default executor ("" = the pipeline's). Each run gets
// its own registry, as each `sluice run` process does: an executor's Wait()
// returns any of its tasks, task ids are numbered per run, and a run's
// Cancel() cancels every task of its executors. So the Kubernetes executor of
// a run is built for that run's pipeline (its `namespace:`). Errors are the
// executors' (e.g. no kubeconfig); the run is then recorded Error with them.
using ExecutorsFactory = std::function<Result<std::unique_ptr<ExecutorRegistry>>(
    const PipelineSpec& spec, const std::string& executor)>;

// The artifact store of one run of `spec` (borrowed; it must outlive the
// run). Errors (e.g. the pipeline's bucket cannot be reached) are the run's:
// it is then recorded Error with them.
using ArtifactStoreFor = std::function<Result<ArtifactStore*>(const PipelineSpec& spec)>;

// The real thing: a Runner over `store` and the artifact store `artifacts`
// picks for its pipeline (borrowed; they must outlive every handle), on
// executors from `executors`, made when the run starts and destroyed when it
// ends. Returns null when `executors` is empty; Submit then fails
// kUnavailable.
RunFactory RunnerFactory(Store* store, ArtifactStoreFor artifacts, ExecutorsFactory executors);
// As above, every run with the same artifact store.
RunFactory RunnerFactory(Store* store, ArtifactStore* artifacts, ExecutorsFactory executors);

// Adjusts one run's own copy of its pipeline and its options before the run
// is queued (RunManagerOptions::prepare).
using RunPreparer = std::function<void(PipelineSpec& spec, RunOptions& options)>;

// The pipeline one run uses: `spec` when `prepare` is empty, else a copy of
// it (other runs share `spec`) that `prepare` adjusted, with `options`.
SpecPtr PrepareRun(const SpecPtr& spec, const RunPreparer& prepare, RunOptions& options);

// A request to start a run.
struct SubmitRequest {
  std::string pipeline;                       // metadata.name
  std::map<std::string, std::string> params;  // as on the command line (-p k=v)
  Json typed_params;                          // or already typed (JSON API); merged over `params`
  std::string run_id;                         // "" = generate one (ignored for a resume)
  std::string resume_run_id;                  // resume (same run id) / rerun (new run) this run
  std::vector<std::string> rerun_from;        // with resume_run_id: these steps and downstream
  std::string trigger = "api";                // api | cron | webhook | resume | backfill
  std::string executor;                       // "" = the server's default (a resume: the run's)
  SpecPtr spec;                               // null = the registry's current version
};

struct RunManagerOptions {
  int max_concurrent = 4;
  std::string state_dir;         // store root, passed to the Runner
  std::string default_executor;  // "" = the pipeline's
  int parallelism = 0;           // per run; 0 = number of CPUs
  // Programs of the built-in operators by step type (RunOptions::
  // operator_commands), e.g. deploy -> {sluice-serving, deploy}.
  std::map<std::string, std::vector<std::string>> operator_commands;
  // Prepares each run before it is queued, as `sluice run` prepares its own
  // (`sluice serve` passes cli::PrepareRunForKubernetes: deploy steps as
  // host controllers, an all-Kubernetes run's budgets): called with a copy of
  // the (shared) spec, which the run then uses, and the run's options, set
  // but for the budgets. Empty = runs as loaded.
  RunPreparer prepare;
  // Retention, applied to a pipeline's runs each time one of its runs ends
  // here (engine/server/retention.h): its schedule's historyLimit over its
  // scheduled runs, and this limit (0 = none) over all its runs.
  int history_limit = 0;
};

class RunManager : public ScheduleTarget {
 public:
  // Borrows all (`metrics` may be null); starts max_concurrent workers.
  RunManager(RunManagerOptions options, Store* store, PipelineRegistry* registry,
             RunFactory factory, ServerMetrics* metrics);
  ~RunManager() override;  // Shutdown()

  // Queues a run and returns its id. Errors: kNotFound (no such pipeline, or
  // no good version), kInvalidArgument (params: dsl::BindParams' message),
  // kAlreadyExists (run_id taken), kInvalidArgument (run_id not a valid run
  // id: engine/run_id.h), kUnavailable (no Runner in this build, or
  // shutting down).
  Result<std::string> Submit(SubmitRequest request);

  // Cancels a queued or running run. A run driven by another sluice process
  // on this host (the CLI) gets SIGTERM, which that process handles by
  // cancelling cleanly. kNotFound; kFailedPrecondition when it has ended or
  // runs elsewhere.
  Status Cancel(const std::string& run_id, std::string* how = nullptr);

  // The record of a queued run (phase Pending) that is not in the store yet:
  // one waiting in the queue, or one a worker has taken whose Runner has not
  // recorded it yet. nullopt once the store has it.
  std::optional<RunRecord> Queued(const std::string& run_id) const;
  // All queued runs.
  std::vector<RunRecord> QueuedRuns() const;
  // True while the run is queued or executing here.
  bool IsActive(const std::string& run_id) const;

  // Resumes runs the store says are Running on this host but whose driving
  // process is gone (a crashed or restarted server, a killed CLI): each
  // continues under its own id, on the executor it ran with. Attempts of
  // local steps that were in flight died with that process: each is closed
  // as a system error ("Error", "lost: ...") and the step runs again as its
  // next attempt. Kubernetes attempts are left open: the executor adopts
  // their objects. `also` (may be null) picks Running runs of other hosts
  // to resume as well: those the previous leader drove. Returns the
  // resumed ids.
  std::vector<std::string> ResumeInterrupted(
      const std::function<bool(const RunRecord&)>& also = nullptr);

  // Blocks until nothing is queued or running, up to `timeout`; for tests
  // and graceful shutdown. True when idle.
  bool WaitIdle(Duration timeout);

  // Cancels everything, waits for the workers. Idempotent.
  void Shutdown();

  // ScheduleTarget.
  std::vector<std::string> ActiveScheduledRuns(const std::string& pipeline) override;
  Status Launch(const ScheduledRun& run) override;
  void Cancel(const std::string& run_id) override { (void)Cancel(run_id, nullptr); }

 private:
  struct Job {
    std::string run_id;
    SpecPtr spec;
    RunOptions options;
    RunRecord queued;  // what Queued() shows
    std::string trigger;
  };

  void Worker();
  void Execute(Job job);
  // Deletes the runs of `spec`'s pipeline beyond its retention limits.
  void Prune(const PipelineSpec& spec);

  RunManagerOptions options_;
  Store* store_;
  PipelineRegistry* registry_;
  RunFactory factory_;
  ServerMetrics* metrics_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<Job> queue_;
  // Runs taken from the queue that the store may not hold yet (Queued()).
  std::map<std::string, RunRecord> starting_;
  std::map<std::string, RunHandle*> running_;            // run id -> handle
  std::map<std::string, std::string> run_pipeline_;      // active run id -> pipeline
  std::set<std::string> scheduled_;                      // active ids from the scheduler
  std::set<std::string> cancelled_before_start_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace sluice::server
