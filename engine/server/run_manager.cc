#include "engine/server/run_manager.h"

#include <signal.h>
#include <cerrno>
#include <unistd.h>

#include <cstdio>
#include <memory>


#include "engine/store/provenance.h"
#include "engine/run_id.h"
#include "engine/secret_mask.h"
#include "engine/server/metrics.h"
#include "engine/server/retention.h"

namespace sluice::server {
namespace {

bool ProcessAlive(int pid) {
  if (pid <= 0) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

// Live step metrics: durations and cache hits as each instance ends, and the
// run's ready-but-waiting instances added into the ready-queue gauge (all
// runs share it; `waiting` holds this run's part).
void ObserveSteps(ServerMetrics* metrics, const std::string& pipeline,
                  std::shared_ptr<int> waiting, StepObserver* observer) {
  observer->on_step_finished = [metrics, pipeline](const StepRecord& step, const StepSpec& spec) {
    if (step.phase == NodePhase::kCached) {
      metrics->cache_hits->Inc({{"pipeline", pipeline}});
      return;
    }
    if (!step.started_at || !step.finished_at) return;  // never started: skipped, omitted
    metrics->step_duration->Observe(
        {{"pipeline", pipeline}, {"step", step.step}, {"operator", spec.type}},
        std::chrono::duration<double>(*step.finished_at - *step.started_at).count());
  };
  observer->on_ready_waiting = [metrics, waiting](int n) {
    metrics->ready_queue->Inc({}, n - *waiting);
    *waiting = n;
  };
}

}  // namespace

SpecPtr PrepareRun(const SpecPtr& spec, const RunPreparer& prepare, RunOptions& options) {
  if (!prepare) return spec;
  auto copy = std::make_shared<PipelineSpec>(*spec);
  prepare(*copy, options);
  return copy;
}

RunManager::RunManager(RunManagerOptions options, Store* store, PipelineRegistry* registry,
                       RunFactory factory, ServerMetrics* metrics)
    : options_(std::move(options)),
      store_(store),
      registry_(registry),
      factory_(std::move(factory)),
      metrics_(metrics) {
  int n = std::max(1, options_.max_concurrent);
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { Worker(); });
}

RunManager::~RunManager() { Shutdown(); }

Result<std::string> RunManager::Submit(SubmitRequest request) {
  if (!factory_)
    return Error(Status::Unavailable(
        "this sluice build has no Runner (engine/run/runner.cc); it cannot start runs"));
  if (!request.run_id.empty())
    if (Status s = ValidateRunId(request.run_id); !s.ok()) return Error(s);
  SpecPtr spec = request.spec ? request.spec : registry_->Find(request.pipeline);
  if (!spec)
    return Error(Status::NotFound("no pipeline named '" + request.pipeline +
                                  "' with a valid version; GET /api/v1/pipelines lists them "
                                  "with their lint errors"));
  // Typed JSON params are given as text to the one binder the CLI uses.
  std::map<std::string, std::string> values = request.params;
  if (request.typed_params.is_object())
    for (const auto& [k, v] : request.typed_params.items())
      values[k] = v.is_string() ? v.get<std::string>() : v.dump();
  auto bound = dsl::BindParams(*spec, values);
  if (!bound) return Error(bound.error());

  // A resume (without rerun_from) continues the same run, under its id; a
  // rerun is a new run (the Runner's semantics).
  const bool same_run = !request.resume_run_id.empty() && request.rerun_from.empty();
  std::string run_id = same_run                   ? request.resume_run_id
                       : request.run_id.empty()   ? NewRunId(spec->name, std::chrono::system_clock::now())
                                                  : request.run_id;
  if (same_run && IsActive(run_id))
    return Error(Status::FailedPrecondition("run " + run_id + " is already running here"));
  if (!same_run && !request.run_id.empty()) {
    if (IsActive(run_id)) return Error(Status::AlreadyExists("run " + run_id + " already exists"));
    auto existing = store_->GetRun(run_id);
    if (existing && existing->id == run_id)
      return Error(Status::AlreadyExists("run " + run_id + " already exists"));
  }

  Job job;
  job.run_id = run_id;
  job.trigger = request.trigger;
  job.options.run_id = run_id;
  job.options.params = *bound;
  job.options.parallelism = options_.parallelism;
  job.options.default_executor = request.executor.empty() ? options_.default_executor : request.executor;
  job.options.operator_commands = options_.operator_commands;
  job.options.state_dir = options_.state_dir;
  job.options.resume_run_id = request.resume_run_id;
  job.options.rerun_from = request.rerun_from;
  // A resume goes on as the run started: a --no-cache run takes no hits.
  if (same_run)
    if (auto old = store_->GetRun(run_id); old && old->id == run_id) job.options.no_cache = old->no_cache;
  job.spec = PrepareRun(spec, options_.prepare, job.options);
  job.queued.id = run_id;
  job.queued.pipeline = spec->name;
  job.queued.pipeline_file = spec->file;
  job.queued.pipeline_digest = spec->file_digest;
  job.queued.params = RedactSecretParams(*spec, *bound);
  job.queued.executor = !job.options.default_executor.empty() ? job.options.default_executor : spec->executor;
  job.queued.phase = RunPhase::kPending;
  job.queued.message = "queued (" + request.trigger + ")";
  job.queued.resumed_from = request.resume_run_id;
  job.queued.created_at = std::chrono::system_clock::now();
  job.queued.host = HostName();

  std::lock_guard lock(mu_);
  if (stopping_) return Error(Status::Unavailable("the server is shutting down; retry later"));
  run_pipeline_[run_id] = spec->name;
  if (request.trigger == "cron") scheduled_.insert(run_id);
  queue_.push_back(std::move(job));
  if (metrics_) metrics_->runs_queued->Set({}, static_cast<double>(queue_.size()));
  work_cv_.notify_one();
  return run_id;
}

std::optional<RunRecord> RunManager::Queued(const std::string& run_id) const {
  std::optional<RunRecord> starting;
  {
    std::lock_guard lock(mu_);
    for (const Job& j : queue_)
      if (j.run_id == run_id) return j.queued;
    auto it = starting_.find(run_id);
    if (it == starting_.end()) return std::nullopt;
    starting = it->second;
  }
  // Taken by a worker: the store's record, once the Runner has written it,
  // is the one to show. A resume's run is in the store from the start (its
  // earlier record), and shows as it was until the Runner updates it.
  auto stored = store_->GetRun(run_id);
  if (stored && stored->id == run_id) return std::nullopt;
  return starting;
}

std::vector<RunRecord> RunManager::QueuedRuns() const {
  std::lock_guard lock(mu_);
  std::vector<RunRecord> out;
  for (const Job& j : queue_) out.push_back(j.queued);
  return out;
}

bool RunManager::IsActive(const std::string& run_id) const {
  std::lock_guard lock(mu_);
  return run_pipeline_.count(run_id) > 0;
}

Status RunManager::Cancel(const std::string& run_id, std::string* how) {
  {
    std::lock_guard lock(mu_);
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->run_id != run_id) continue;
      RunRecord rec = it->queued;
      queue_.erase(it);
      run_pipeline_.erase(run_id);
      scheduled_.erase(run_id);
      if (metrics_) metrics_->runs_queued->Set({}, static_cast<double>(queue_.size()));
      rec.phase = RunPhase::kCancelled;
      rec.message = "cancelled while queued";
      rec.finished_at = std::chrono::system_clock::now();
      (void)store_->CreateRun(rec);
      idle_cv_.notify_all();
      if (how) *how = "removed from the queue";
      return Status::Ok();
    }
    if (auto it = running_.find(run_id); it != running_.end()) {
      it->second->Cancel();
      if (how) *how = "cancellation requested";
      return Status::Ok();
    }
    if (run_pipeline_.count(run_id)) {  // between dequeue and handle creation
      cancelled_before_start_.insert(run_id);
      if (how) *how = "cancellation requested";
      return Status::Ok();
    }
  }
  auto run = store_->GetRun(run_id);
  if (!run) return run.error();
  if (IsTerminal(run->phase))
    return Status::FailedPrecondition("run " + run->id + " has already ended (" +
                                      RunPhaseName(run->phase) + ")");
  if (run->host == HostName() && ProcessAlive(run->pid) && run->pid != ::getpid()) {
    if (::kill(run->pid, SIGTERM) != 0)
      return Status::FailedPrecondition("cannot signal process " + std::to_string(run->pid) +
                                        " driving run " + run->id);
    if (how) *how = "SIGTERM sent to sluice process " + std::to_string(run->pid);
    return Status::Ok();
  }
  return Status::FailedPrecondition("run " + run->id + " is driven by process " +
                                    std::to_string(run->pid) + " on host '" + run->host +
                                    "', which this server cannot signal");
}

void RunManager::Worker() {
  while (true) {
    Job job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      if (job.options.resume_run_id.empty() || !job.options.rerun_from.empty())
        starting_[job.run_id] = job.queued;
      if (metrics_) metrics_->runs_queued->Set({}, static_cast<double>(queue_.size()));
    }
    Execute(std::move(job));
  }
}

void RunManager::Execute(Job job) {
  const std::string pipeline = job.spec->name;
  // This run's share of the ready-queue gauge, given back when it ends.
  auto waiting = std::make_shared<int>(0);
  if (metrics_) {
    metrics_->runs_started->Inc({{"pipeline", pipeline}});
    metrics_->runs_active->Inc({}, 1);
    ObserveSteps(metrics_, pipeline, waiting, &job.options.observer);
  }
  std::unique_ptr<RunHandle> handle = factory_(job.spec, job.options);
  bool cancel_now = false;
  {
    std::lock_guard lock(mu_);
    running_[job.run_id] = handle.get();
    cancel_now = cancelled_before_start_.erase(job.run_id) > 0 || stopping_;
  }
  if (cancel_now) handle->Cancel();
  Result<RunSummary> summary = handle->Run();
  {
    std::lock_guard lock(mu_);
    running_.erase(job.run_id);
  }

  if (metrics_ && *waiting != 0) {  // the run ended early (an error)
    metrics_->ready_queue->Inc({}, -*waiting);
    *waiting = 0;
  }

  RunPhase phase = RunPhase::kError;
  if (summary) {
    phase = summary->run.phase;
  } else {
    // The run could not run at all: make that visible in the store.
    RunRecord rec = job.queued;
    rec.phase = RunPhase::kError;
    rec.message = summary.error().ToString();
    rec.finished_at = std::chrono::system_clock::now();
    auto existing = store_->GetRun(job.run_id);
    if (existing && existing->id == job.run_id) {
      existing->phase = RunPhase::kError;
      existing->message = rec.message;
      existing->finished_at = rec.finished_at;
      (void)store_->UpdateRun(*existing);
    } else {
      (void)store_->CreateRun(rec);
    }
  }
  // Should a resume ever continue under a new id, close the old record so
  // the next restart does not resume it again.
  if (!job.options.resume_run_id.empty() && job.trigger == "resume") {
    auto old = store_->GetRun(job.options.resume_run_id);
    if (old && old->id != job.run_id && !IsTerminal(old->phase)) {
      old->phase = RunPhase::kError;
      old->message = "interrupted (its sluice process died); continued as run " + job.run_id;
      old->finished_at = std::chrono::system_clock::now();
      (void)store_->UpdateRun(*old);
    }
  }
  if (metrics_) {
    metrics_->runs_active->Inc({}, -1);
    if (phase == RunPhase::kSucceeded) metrics_->runs_succeeded->Inc({{"pipeline", pipeline}});
    else metrics_->runs_failed->Inc({{"pipeline", pipeline}});
  }
  {
    std::lock_guard lock(mu_);
    starting_.erase(job.run_id);  // the store holds the run now
  }
  Prune(*job.spec);
  std::lock_guard lock(mu_);
  run_pipeline_.erase(job.run_id);
  scheduled_.erase(job.run_id);
  idle_cv_.notify_all();
}

void RunManager::Prune(const PipelineSpec& spec) {
  std::vector<HistoryPolicy> policies;
  if (auto p = ScheduleHistoryPolicy(spec)) policies.push_back(*p);
  if (options_.history_limit > 0) {
    HistoryPolicy all;
    all.pipeline = spec.name;
    all.keep_succeeded = all.keep_failed = options_.history_limit;
    policies.push_back(all);
  }
  for (const HistoryPolicy& policy : policies) {
    auto pruned = PruneHistory(store_, options_.state_dir, policy);
    if (!pruned) {
      std::fprintf(stderr, "sluice serve: %s\n", pruned.error().ToString().c_str());
      continue;
    }
    for (const std::string& id : pruned->deleted)
      std::fprintf(stderr, "sluice serve: deleted run %s (history limit of %s)\n", id.c_str(),
                   spec.name.c_str());
    if (metrics_ && !pruned->deleted.empty())
      metrics_->runs_deleted->Inc({{"pipeline", spec.name}}, static_cast<double>(pruned->deleted.size()));
  }
}

std::vector<std::string> RunManager::ResumeInterrupted(const std::function<bool(const RunRecord&)>& also) {
  std::vector<std::string> resumed;
  RunFilter filter;
  filter.phase = RunPhase::kRunning;
  filter.limit = 10000;
  auto runs = store_->ListRuns(filter);
  if (!runs) return resumed;
  const std::string host = HostName();
  for (const RunRecord& run : *runs) {
    if (IsActive(run.id)) continue;
    if (run.host == host) {
      if (run.pid == ::getpid() || ProcessAlive(run.pid)) continue;
    } else if (!also || !also(run)) {
      continue;
    }
    // The version that ran, not whatever the file says now.
    dsl::LoadResult loaded = dsl::LoadPipelineString(run.pipeline_yaml, run.pipeline_file);
    SpecPtr spec = loaded.spec ? std::make_shared<const PipelineSpec>(std::move(*loaded.spec))
                               : registry_->Find(run.pipeline);
    if (!spec) continue;
    // A secret param is recorded as "<redacted>": the server cannot give it
    // back, and running with the placeholder would be wrong. The run ends
    // with the reason instead of staying Running.
    std::string secrets;
    for (const auto& p : spec->params)
      if (p.secret && run.params.contains(p.name) && run.params[p.name] == "<redacted>")
        secrets += (secrets.empty() ? "" : ", ") + p.name;
    if (!secrets.empty()) {
      RunRecord failed = run;
      failed.phase = RunPhase::kError;
      failed.message = "the server restarted and cannot resume this run: its secret parameter(s) " + secrets +
                       " are not recorded; resume it with `sluice resume " + run.id + " -p NAME=VALUE`";
      failed.finished_at = std::chrono::system_clock::now();
      if (Status s = store_->UpdateRun(failed); !s.ok())
        std::fprintf(stderr, "sluice serve: %s\n", s.ToString().c_str());
      continue;
    }
    SubmitRequest req;
    req.pipeline = run.pipeline;
    req.spec = spec;
    req.typed_params = run.params;
    req.resume_run_id = run.id;
    req.trigger = "resume";
    req.executor = run.executor;
    auto id = Submit(std::move(req));
    if (id) resumed.push_back(*id);
  }
  return resumed;
}

bool RunManager::WaitIdle(Duration timeout) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [&] { return run_pipeline_.empty(); });
}

void RunManager::Shutdown() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
    for (auto& [id, handle] : running_) handle->Cancel();
    work_cv_.notify_all();
  }
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
}

std::vector<std::string> RunManager::ActiveScheduledRuns(const std::string& pipeline) {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const std::string& id : scheduled_)
    if (auto it = run_pipeline_.find(id); it != run_pipeline_.end() && it->second == pipeline)
      out.push_back(id);
  return out;
}

Status RunManager::Launch(const ScheduledRun& run) {
  SubmitRequest req;
  req.pipeline = run.pipeline;
  req.params = run.params;
  req.run_id = run.run_id;
  req.trigger = run.trigger;
  auto id = Submit(std::move(req));
  return id ? Status::Ok() : id.error();
}

}  // namespace sluice::server
