#pragma once
// Retention: deleting finished runs (a schedule's historyLimit, the server's
// retention setting, `sluice runs delete`) and garbage-collecting the
// artifact bytes no run records any more (`sluice gc`).
//
// A run is deleted by Store::DeleteRun (its records, in one transaction),
// then its directory `<state_dir>/runs/<id>` (logs and step working
// directories). DeleteRun refuses runs that have not ended, runs whose
// outputs a cached step of another run reuses, and runs behind what a
// service serves now; pruning keeps those beyond the limit and says why.
//
// Artifact bytes are shared by content (two runs writing the same model
// store it once), so deleting a run never removes them; CollectGarbage does,
// for digests no artifact record names.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"
#include "engine/store.h"

namespace sluice::server {

// Deletes the run `run_id` (exact id) from `store`, then its directory under
// `state_dir`. Errors: Store::DeleteRun's; a directory that cannot be
// removed is kFailedPrecondition (the records are gone by then).
Status DeleteRunAndFiles(Store* store, const std::string& state_dir, const std::string& run_id);

// Which finished runs of a pipeline to keep. Argo CronWorkflow's
// successfulJobsHistoryLimit / failedJobsHistoryLimit: the newest
// `keep_succeeded` Succeeded runs and the newest `keep_failed` runs that
// ended Failed, Error or Cancelled are kept; older finished ones are deleted.
// Runs that have not ended are never touched and do not count.
struct HistoryPolicy {
  std::string pipeline;   // metadata.name
  std::string id_prefix;  // only runs whose id starts with this ("" = all runs of the pipeline)
  int keep_succeeded = 10;
  int keep_failed = 10;
};

// What PruneHistory did.
struct PruneResult {
  std::vector<std::string> deleted;                          // run ids, newest first
  std::vector<std::pair<std::string, std::string>> kept;     // over the limit but kept: id, why
};

// Applies `policy` to the runs in `store`. Runs DeleteRun refuses are kept
// (with its message in `kept`); other errors stop the pruning and are
// returned.
Result<PruneResult> PruneHistory(Store* store, const std::string& state_dir,
                                 const HistoryPolicy& policy);

// The history policy of a scheduled pipeline: its schedule's historyLimit
// for both outcomes, over the runs the scheduler and `sluice backfill`
// create (ids "<pipeline>-cron-..."), as a CronWorkflow's limits apply to the
// Workflows it created. nullopt when the pipeline has no schedule.
std::optional<HistoryPolicy> ScheduleHistoryPolicy(const PipelineSpec& spec);

struct GcOptions {
  bool dry_run = false;  // report only
  // Bytes stored more recently than this are kept: a run stores its outputs
  // just before it records them.
  Duration grace{std::chrono::hours(1)};
};

struct GcResult {
  int64_t removed = 0;        // artifacts (files or directories) removed
  int64_t removed_bytes = 0;  // their size
  int64_t kept = 0;           // artifacts still recorded (or within the grace period)
  int64_t temp_removed = 0;   // leftover partial copies under cas/tmp
};

// Removes from `<state_dir>/cas` every stored artifact whose digest no
// artifact record of `store` names, and stale partial copies. Refuses
// (kFailedPrecondition, naming them) while any run of the store is Pending
// or Running: such a run may have stored bytes it has not recorded yet.
Result<GcResult> CollectGarbage(Store* store, const std::string& state_dir,
                                const GcOptions& options);

}  // namespace sluice::server
