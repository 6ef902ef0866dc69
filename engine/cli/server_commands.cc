// `sluice serve`, `sluice submit` and `sluice backfill`: thin wrappers over
// sluice_server (engine/server/, docs/server.md, docs/ci.md).
#include "engine/cli/server_commands.h"

#include <iostream>

#include "engine/cli/output.h"
#include "engine/runner.h"
#include "engine/server/backfill.h"
#include "engine/server/client.h"
#include "engine/server/server.h"
#include "executors/local/local_executor.h"

namespace sluice::cli {
namespace {

// The executors a server or a backfill can run steps on.
Status LocalRegistry(ExecutorRegistry* registry) {
  LocalExecutorOptions local;
  local.parallelism = 0;  // the runner budgets slots itself
  return RegisterLocalExecutor(*registry, local);
}

}  // namespace

ServerCommands::ServerCommands(CLI::App* app, std::string* store) : store_(store) {
  serve_ = app->add_subcommand("serve", "Run pipelines on schedules and from the API, webhooks and web UI");
  serve_->add_option("--pipelines", serve_options_.pipelines_dir,
                     "Directory searched (recursively) for pipeline files, e.g. a Git checkout");
  serve_->add_option("--listen", serve_options_.listen, "host:port to listen on (default 127.0.0.1:8080)");
  serve_->add_option("--config", serve_options_.config_path,
                     "Server config (tokens, webhooks); without one every API call is refused (401)");
  serve_->add_option("--executor", serve_options_.executor, "Executor for every run (default: each pipeline's)");
  serve_->add_option("--max-runs", serve_options_.max_concurrent_runs, "Runs at once (default: the config's)");
  serve_->add_option("-j,--parallelism", serve_options_.run_parallelism, "Steps at once per run");
  serve_->add_option("--store", *store, "Store directory (default: .sluice in the current directory)");

  submit_ = app->add_subcommand("submit", "Trigger a run on a sluice server (for CI jobs)");
  submit_->add_option("PIPELINE", submit_options_.pipeline, "Pipeline name (metadata.name)")->required();
  submit_->add_option("--server", submit_options_.server, "Server URL, e.g. http://sluice:8080")->required();
  submit_->add_option("--token", submit_options_.token, "Bearer token (default: $SLUICE_TOKEN)");
  submit_->add_option("-p,--param", submit_params_, "Parameter value NAME=VALUE")->allow_extra_args(false);
  submit_->add_flag("--wait", submit_options_.wait, "Wait for the run to end; the exit code is its outcome");
  submit_->add_flag("--logs", submit_options_.follow_logs, "With --wait: print step logs as steps finish");
  submit_->add_option("--output", submit_options_.output, "text or json")->check(CLI::IsMember({"text", "json"}));
  submit_->add_option("--junit", submit_options_.junit_path, "With --wait: write a JUnit XML report of the steps");

  backfill_ = app->add_subcommand("backfill", "Create the runs of a schedule's past times");
  backfill_->add_option("FILE", backfill_options_.pipeline_file, "Pipeline file (with a schedule)")->required();
  backfill_->add_option("--from", backfill_options_.from, "First time, e.g. 2026-11-01")->required();
  backfill_->add_option("--to", backfill_options_.to, "Last time (inclusive)")->required();
  backfill_->add_option("--parallelism", backfill_options_.parallelism, "Runs at once (default 1)");
  backfill_->add_option("--max-runs", backfill_options_.max_runs, "Refuse more than this many times");
  backfill_->add_option("--executor", backfill_options_.executor, "Executor (default: the pipeline's)");
  backfill_->add_flag("--dry-run", backfill_options_.dry_run, "List the times and run ids only");
  backfill_->add_option("--output", backfill_options_.output, "text or json")->check(CLI::IsMember({"text", "json"}));
  backfill_->add_option("--store", *store, "Store directory (default: .sluice in the current directory)");
}

std::optional<int> ServerCommands::Dispatch() {
  if (*serve_) {
    serve_options_.state_dir = store_->empty() ? ".sluice" : *store_;
    ExecutorRegistry registry;
    if (Status st = LocalRegistry(&registry); !st.ok()) {
      PrintError(st.message());
      return kExitSystem;
    }
    return server::Serve(serve_options_, &registry);
  }
  if (*submit_) {
    auto values = ParseParamFlags(submit_params_);
    if (!values) {
      PrintError(values.error().message());
      return kExitUsage;
    }
    submit_options_.params = std::move(*values);
    return server::SubmitCommand(submit_options_, std::cout, std::cerr);
  }
  if (*backfill_) {
    backfill_options_.state_dir = store_->empty() ? ".sluice" : *store_;
    ExecutorRegistry registry;
    if (Status st = LocalRegistry(&registry); !st.ok()) {
      PrintError(st.message());
      return kExitSystem;
    }
    return server::BackfillCommand(backfill_options_, &registry, std::cout, std::cerr);
  }
  return std::nullopt;
}

}  // namespace sluice::cli
