#pragma once
// `sluice backfill PIPELINE --from --to [--parallelism N]`: runs for the past
// cron times of a pipeline's schedule, in this process, into the local store.

#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "engine/run/runner.h"
#include "engine/server/run_manager.h"

namespace sluice::server {

struct BackfillCommandOptions {
  std::string pipeline_file;  // the pipeline YAML
  std::string from, to;       // "2026-11-01", "2026-11-01T06:00:00Z" or with an offset; inclusive
  int parallelism = 1;        // runs at once
  int max_runs = 1000;
  std::string state_dir = ".sluice";
  std::string store;          // a postgres:// URL holding the records; "" = state_dir's SQLite store
  std::string executor;       // "" = the pipeline's
  std::string artifacts;           // --artifacts; "" = the pipeline's artifacts:, else the local store
  std::string artifacts_endpoint;  // --artifacts-endpoint; "" = the AWS settings'
  bool dry_run = false;       // list the times and run ids only
  std::string output = "text";  // text | json
  // Programs of the operator step types (RunOptions::operator_commands).
  std::map<std::string, std::vector<std::string>> operator_commands;
  // Prepares each run's own copy of the pipeline and its options, as `sluice
  // run` and `sluice serve` prepare theirs (RunPreparer). Empty = as loaded.
  RunPreparer prepare;
};

// Loads and lints the file, plans the cron times in [from, to]
// (PlanBackfill), skips those that already have a run (same deterministic
// id as the scheduler's, so backfill never duplicates a scheduled run) and
// runs the rest with at most `parallelism` Runners at once, each on its own
// executors from `executors` (ExecutorsFactory, run_manager.h). Prints one line
// per time (or one JSON array) to `out`, errors to `err`.
// Exit code: 0 all succeeded (or skipped as existing), 1 some run failed,
// 2 bad input (lint errors, bad dates, no schedule, too many times).
int BackfillCommand(const BackfillCommandOptions& options, ExecutorsFactory executors,
                    std::ostream& out, std::ostream& err);

}  // namespace sluice::server
