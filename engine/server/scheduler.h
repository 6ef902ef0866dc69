#pragma once
// The cron scheduler of `sluice serve`: turns each pipeline's `schedule:`
// section into runs, exactly once per cron time, across restarts.
//
// It is a step function: Tick() handles every cron time that is due at
// clock->Now() and returns what it decided; the server calls it from a loop
// that sleeps until NextWakeup() (or a reload). Tests drive it with a
// FakeClock and a fake ScheduleTarget.
//
// Exactly once: a scheduled run's id is derived from the pipeline and the
// cron time (ScheduledRunId), so launching the same time twice is refused by
// the store (kAlreadyExists) rather than running twice. Before launching,
// Tick() writes the state file with the new "last scheduled time" and the
// runs it is about to launch ("pending"); after each launch it drops that
// entry. A crash between the two leaves the run in "pending", and the next
// Open() launches it again (deduplicated by id). So a restart neither loses
// nor duplicates a scheduled run.
//
// Semantics of the schedule fields (engine/spec.h ScheduleSpec):
//  - cron: one or more expressions, in `timezone`; a time matched by several
//    expressions yields one run.
//  - catchup, for cron times that passed while the server was down (all due
//    times but the newest, plus the newest when it is older than the grace):
//      none    run the newest due time only if it is within the grace
//              (startingDeadline, or 60s when none is set); skip the rest.
//      latest  run the newest due time (subject to startingDeadline).
//      all     run the newest `catchupLimit` due times, oldest first (each
//              subject to startingDeadline).
//  - startingDeadline: a due time older than this at launch is skipped.
//  - concurrencyPolicy (as in Kubernetes CronJob / Argo CronWorkflow), over
//    this pipeline's scheduled runs that have not finished:
//      Allow   start regardless;  Forbid  skip this time;
//      Replace cancel them, then start.
//  - params: templates rendered with the `schedule` scope (ScheduleScope).
//  - historyLimit: recorded, not enforced (the Store has no delete yet).
// A pipeline seen for the first time starts from "now": no catch-up.

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/run/runner.h"
#include "engine/clock.h"
#include "engine/server/cron.h"
#include "engine/spec.h"
#include "engine/status.h"

namespace sluice::server {

struct ServerMetrics;

// A run the scheduler (or backfill) wants started.
struct ScheduledRun {
  std::string pipeline;
  std::string run_id;  // ScheduledRunId(pipeline, time)
  SysSeconds time{};   // the cron time it stands for
  std::map<std::string, std::string> params;  // rendered schedule params
  std::string trigger = "cron";               // "cron" | "backfill"
};

// "<pipeline>-cron-YYYYMMDD-HHMMSS" (UTC): deterministic, so one per time.
std::string ScheduledRunId(const std::string& pipeline, SysSeconds time);

// The expression scope for schedule params:
//   schedule.time      "2026-11-25T15:30:00Z" (UTC, RFC 3339)
//   schedule.date      "2026-11-25"  (local date in the schedule's timezone)
//   schedule.datetime  "2026-11-25T16:30:00+01:00" (local, with offset)
//   schedule.year/month/day/hour/minute  local, zero-padded strings
//   schedule.unix      seconds since the epoch (int)
//   schedule.timezone  "Europe/Amsterdam"
// plus `pipeline.name`. kInvalidArgument for an unknown time zone.
Result<Json> ScheduleScope(const std::string& pipeline, const std::string& timezone,
                           SysSeconds time);

// Renders `schedule.params` for `time`. Errors name the param and the
// template's location.
Result<std::map<std::string, std::string>> RenderScheduleParams(const std::string& pipeline,
                                                                const ScheduleSpec& schedule,
                                                                SysSeconds time);

// Parses every cron expression of `schedule` in its timezone. Errors carry
// the schedule's source location.
Result<std::vector<CronSchedule>> ParseSchedule(const ScheduleSpec& schedule);

// What the scheduler launches runs into (the server's run manager).
class ScheduleTarget {
 public:
  virtual ~ScheduleTarget() = default;
  // Ids of this pipeline's scheduled runs that are queued or running.
  virtual std::vector<std::string> ActiveScheduledRuns(const std::string& pipeline) = 0;
  // Starts (queues) the run. kAlreadyExists when a run with this id exists
  // (then nothing happens). Must make the run durable or visible before
  // returning OK.
  virtual Status Launch(const ScheduledRun& run) = 0;
  // Requests cancellation of a run (Replace).
  virtual void Cancel(const std::string& run_id) = 0;
};

// One decision of Tick(), for logs and tests.
struct ScheduleDecision {
  std::string pipeline;
  SysSeconds time{};
  // "launched", "duplicate", "skipped_deadline", "skipped_catchup",
  // "skipped_forbid", "error"
  std::string action;
  std::string run_id;
  std::string message;
};

class Scheduler {
 public:
  // Borrows all; `metrics` may be null. `state_path` is the JSON state file
  // (written atomically: temp file, fsync, rename).
  Scheduler(Clock* clock, ScheduleTarget* target, std::string state_path,
            ServerMetrics* metrics = nullptr);

  // Loads the state file (a missing file is an empty state) and launches runs
  // left pending by a crash. kInvalidArgument for a corrupt file.
  Status Open();

  // Adds or replaces a pipeline's schedule. kInvalidArgument (with the
  // location) when a cron expression or the timezone is invalid; the
  // previous schedule, if any, stays.
  Status SetSchedule(const std::string& pipeline, const ScheduleSpec& schedule);
  // Stops scheduling `pipeline` (its state is kept for when it comes back).
  void RemoveSchedule(const std::string& pipeline);
  // Names of the scheduled pipelines.
  std::vector<std::string> Pipelines() const;

  // Handles every cron time due at clock->Now(). Thread-safe.
  std::vector<ScheduleDecision> Tick();

  // The earliest next cron time over all schedules, after the last handled
  // one; nullopt when nothing is scheduled.
  std::optional<SysSeconds> NextWakeup() const;

  // Last handled cron time of a pipeline (for the API and tests).
  std::optional<SysSeconds> LastScheduled(const std::string& pipeline) const;

 private:
  struct Entry {
    ScheduleSpec spec;
    std::vector<CronSchedule> crons;
  };
  struct PendingLaunch {
    ScheduledRun run;
  };

  std::optional<SysSeconds> NextAfter(const Entry& entry, SysSeconds t) const;
  SysSeconds NowSeconds() const;
  Status SaveLocked();
  void LaunchLocked(const Entry& entry, ScheduledRun run, SysSeconds now,
                    std::vector<ScheduleDecision>* out);

  Clock* clock_;
  ScheduleTarget* target_;
  std::string state_path_;
  ServerMetrics* metrics_;

  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, SysSeconds> last_;     // persisted
  std::vector<ScheduledRun> pending_;          // persisted
};

// Backfill: runs for past cron times, e.g. `sluice backfill retrain --from
// 2026-11-01 --to 2026-11-07 --parallelism 2`.
struct BackfillOptions {
  SysSeconds from{};      // inclusive
  SysSeconds to{};        // inclusive
  int parallelism = 1;    // runs at once, >= 1
  int max_runs = 1000;    // refuse (kInvalidArgument) to plan more than this
};

// Every cron time of `spec.schedule` in [from, to], as ScheduledRuns with
// trigger "backfill" and rendered params. kInvalidArgument when the
// pipeline has no schedule, from > to, or more than max_runs times match.
Result<std::vector<ScheduledRun>> PlanBackfill(const PipelineSpec& spec,
                                               const BackfillOptions& options);

// The outcome of one backfilled run.
struct BackfillOutcome {
  ScheduledRun run;
  Status status;  // kAlreadyExists when the time already had a run
  RunPhase phase = RunPhase::kPending;
};

// Runs `runs` with at most `parallelism` at once, calling `run_one` (which
// blocks until its run ends) on worker threads. Outcomes in `runs` order.
std::vector<BackfillOutcome> RunBackfill(
    const std::vector<ScheduledRun>& runs, int parallelism,
    const std::function<Result<RunPhase>(const ScheduledRun&)>& run_one);

}  // namespace sluice::server
