// sluice: the command-line entry point. Parses the command line with CLI11
// and dispatches to the commands in commands.h. Exit codes: output.h and
// docs/cli.md.

#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/cli/commands.h"
#include "engine/cli/output.h"
#include "engine/cli/tooling_commands.h"
#include "engine/cli/server_commands.h"
#include "engine/cli/provenance_commands.h"
#include "operators/builtin.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.0.0"
#endif

namespace {

using namespace sluice::cli;

constexpr const char* kStoreHelp =
    "Store directory (runs, logs, artifacts); default: .sluice in the current directory";

}  // namespace

int main(int argc, char** argv) {
  // The step types this program knows, before anything reads a pipeline.
  if (sluice::Status s = sluice::operators::RegisterBuiltinOperators(sluice::OperatorRegistry::Global()); !s.ok()) {
    std::cerr << "sluice: " << s.message() << "\n";
    return 1;
  }
  CLI::App app{"sluice: ML pipelines on your machine, with lineage and caching", "sluice"};
  app.set_version_flag("--version", SLUICE_VERSION);
  app.require_subcommand(1);
  std::string store;
  app.add_option("--store", store, kStoreHelp);
  app.footer(
      "Exit codes: 0 ok, 1 run failed / lint errors, 2 usage or invalid pipeline/params, "
      "3 system error, 130 cancelled. See docs/cli.md.");

  // lint
  LintOptions lint;
  auto* lint_cmd = app.add_subcommand("lint", "Validate pipeline files; report every problem");
  lint_cmd->add_option("FILE", lint.files, "Pipeline files")->required();
  AddOutputOption(lint_cmd, &lint.format, {"text", "json", "yaml"});

  // graph
  GraphOptions graph;
  auto* graph_cmd = app.add_subcommand("graph", "Print a pipeline's DAG as Graphviz DOT or Mermaid");
  graph_cmd->add_option("FILE", graph.file, "Pipeline file")->required();
  graph_cmd->add_option("--format", graph.format, "Output format (default dot)")
      ->check(CLI::IsMember({"dot", "mermaid"}));

  // run / resume / rerun share their options.
  RunCommandOptions run;
  auto add_run_options = [&](CLI::App* cmd) {
    cmd->add_option("-p,--param", run.params, "Parameter value NAME=VALUE (repeatable)")
        ->allow_extra_args(false)
        ->type_name("NAME=VALUE");
    cmd->add_option("-j,--parallelism", run.parallelism,
                    "Steps run at once (default: number of CPUs)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_flag("--keep-going", run.keep_going,
                  "After a step fails, go on with the steps that do not depend on it");
    cmd->add_option("--store", store, kStoreHelp);
    cmd->add_option("--executor", run.executor, "Executor for steps that name none (local, kubernetes)");
    cmd->add_flag("--no-cache", run.no_cache, "Run every step; do not reuse earlier outputs");
    cmd->add_option("--cpus", run.cpus, "CPU budget for local steps, e.g. 4 or 1500m (default: all)");
    cmd->add_option("--memory", run.memory, "Memory budget for local steps, e.g. 8Gi (default: all)");
    cmd->add_option("--gpus", run.gpus, "GPUs available to local steps (default 0)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_flag("-q,--quiet", run.quiet, "Do not stream step output; progress and summary only");
    cmd->add_option("--run-id", run.run_id, "Id for the new run (default: <pipeline>-<time>-<random>)");
    cmd->add_option("--junit", run.junit, "Write the steps as a JUnit XML report to FILE (for CI)");
    cmd->add_flag("--wait", run.wait, "Wait for the run to end (what a local run always does; for CI scripts)");
    cmd->add_option("--kubeconfig", run.kubeconfig, "Kubeconfig file for the kubernetes executor");
    cmd->add_option("--context", run.context, "Kubeconfig context (default: current-context)");
    cmd->add_option("-n,--namespace", run.namespace_,
                    "Kubernetes namespace (default: the pipeline's, then the context's)");
    cmd->add_option("--workspace-pvc", run.workspace_pvc,
                    "Kubernetes: RWX PersistentVolumeClaim mounted into every pod at /sluice (artifacts between pods)");
    cmd->add_option("--workspace-host-dir", run.workspace_host_dir,
                    "Kubernetes: where this host sees the --workspace-pvc volume (put --store under it)");
  };
  auto* run_cmd = app.add_subcommand("run", "Run a pipeline, with live progress and a summary");
  run_cmd->add_option("FILE", run.file, "Pipeline file")->required();
  add_run_options(run_cmd);
  run_cmd->add_flag("--dry-run", run.dry_run,
                    "Print the Kubernetes objects the run would create (with --executor kubernetes); run nothing");

  auto* resume_cmd = app.add_subcommand(
      "resume", "Continue a failed or interrupted run: keep succeeded steps, run the rest");
  resume_cmd->add_option("RUN", run.resume_run, "Run id, unique prefix, or latest")->required();
  resume_cmd->add_option("--file", run.file,
                         "Pipeline file (default: the run's file; its edits are recorded)");
  add_run_options(resume_cmd);

  auto* rerun_cmd = app.add_subcommand(
      "rerun", "Run a step and everything downstream again, reusing the upstream outputs");
  rerun_cmd->add_option("RUN", run.resume_run, "Run id, unique prefix, or latest")->required();
  rerun_cmd->add_option("--from", run.rerun_from, "Step to run again (repeatable)")
      ->required()
      ->allow_extra_args(false);
  rerun_cmd->add_option("--file", run.file, "Pipeline file (default: the run's file)");
  add_run_options(rerun_cmd);

  // cancel
  CancelOptions cancel;
  auto* cancel_cmd = app.add_subcommand(
      "cancel", "Cancel a running run: stop its steps, delete its Kubernetes objects");
  cancel_cmd->add_option("RUN", cancel.run, "Run id, unique prefix, or latest")->required();
  cancel_cmd->add_option("--store", store, kStoreHelp);
  cancel_cmd->add_option("--wait", cancel.wait,
                         "How long to wait for the run's sluice process to stop (default 60s; 0s: do not wait)");
  cancel_cmd->add_flag("--now", cancel.now,
                       "Stop at once: kill running steps and do not run the finally steps");
  cancel_cmd->add_option("--kubeconfig", cancel.kubeconfig,
                         "Kubeconfig file, to delete the objects of a run whose sluice process is gone");
  cancel_cmd->add_option("--context", cancel.context, "Kubeconfig context (default: current-context)");
  cancel_cmd->add_option("-n,--namespace", cancel.namespace_,
                         "Kubernetes namespace (default: the pipeline's, then the context's)");

  // status / show
  StatusOptions status;
  auto* status_cmd = app.add_subcommand("status", "Phase of a run and of each of its steps");
  status_cmd->add_option("RUN", status.run, "Run id, unique prefix, or latest")->required();
  status_cmd->add_option("--store", store, kStoreHelp);
  AddOutputOption(status_cmd, &status.format, {"text", "wide", "json", "yaml", "name"});
  auto* show_cmd = app.add_subcommand(
      "show", "A run in detail: params, steps, outputs, metrics, artifacts, cache hits");
  show_cmd->add_option("RUN", status.run, "Run id, unique prefix, or latest")->required();
  show_cmd->add_option("--store", store, kStoreHelp);
  AddOutputOption(show_cmd, &status.format, {"text", "json", "yaml", "name"});

  // logs
  LogsOptions logs;
  auto* logs_cmd = app.add_subcommand("logs", "Print a step's output (stdout and stderr)");
  logs_cmd->add_option("RUN", logs.run, "Run id, unique prefix, or latest")->required();
  logs_cmd->add_option("STEP", logs.step, "Step instance, e.g. prepare or train[1]")->required();
  logs_cmd->add_flag("-f,--follow", logs.follow, "Keep printing until the step ends");
  logs_cmd->add_option("--attempt", logs.attempt, "Attempt number (default: the latest)")
      ->check(CLI::PositiveNumber);
  logs_cmd->add_option("--store", store, kStoreHelp);

  // runs
  RunsOptions runs;
  auto* runs_cmd = app.add_subcommand("runs", "List runs, newest first");
  runs_cmd->add_option("--pipeline", runs.pipeline, "Only runs of this pipeline (metadata.name)");
  runs_cmd->add_option("--status", runs.status,
                       "Only runs in this phase (Running, Succeeded, Failed, Error, Cancelled)");
  runs_cmd->add_option("--since", runs.since, "Only runs created within this duration, e.g. 2h or 7d");
  runs_cmd->add_option("--limit", runs.limit, "At most this many runs (default 50)")
      ->check(CLI::NonNegativeNumber);
  AddOutputOption(runs_cmd, &runs.format, {"text", "wide", "json", "yaml", "name"});
  runs_cmd->add_option("--store", store, kStoreHelp);

  // compile
  CompileOptions compile;
  auto* compile_cmd = app.add_subcommand(
      "compile", "Compile a pipeline to Argo Workflows, or to the Kubernetes objects of a run");
  compile_cmd->add_option("FILE", compile.file, "Pipeline file")->required();
  compile_cmd->add_option("--target", compile.target, "argo (Workflow / WorkflowTemplate + CronWorkflow) "
                          "or manifests (Jobs, TFJobs, PyTorchJobs)")
      ->check(CLI::IsMember({"argo", "manifests"}));
  compile_cmd->add_option("--format", compile.format, "Output format (default yaml)")
      ->check(CLI::IsMember({"yaml", "json"}));
  compile_cmd->add_option("-o,--output", compile.output, "Write to FILE instead of stdout");
  compile_cmd->add_option("-p,--param", compile.params, "manifests: parameter value NAME=VALUE")
      ->allow_extra_args(false);
  compile_cmd->add_option("-n,--namespace", compile.namespace_, "Namespace of the objects");
  compile_cmd->add_option("--workspace-pvc", compile.workspace_pvc,
                          "RWX PersistentVolumeClaim shared by the steps' pods (default sluice-workspace)");
  compile_cmd->add_option("--source-dir", compile.source_dir,
                          "Where pods see the pipeline's directory, {{ pipeline.dir }} (default /sluice/src)");
  compile_cmd->add_option("--service-account", compile.service_account, "Service account of the pods");
  compile_cmd->add_option("--image", compile.image, "Image for steps that name none");
  compile_cmd->add_flag("--keep-going", compile.keep_going, "argo: run independent branches after a failure");
  compile_cmd->add_option("--exclude-step", compile.exclude_steps,
                          "Leave out step NAME (repeatable; e.g. deploy / traffic-validation steps); "
                          "the output lists it in annotation sluice.dev/excluded-steps")
      ->allow_extra_args(false);
  compile_cmd->add_option("--sluice-image", compile.sluice_image,
                          "argo: image with sluice-serving on its PATH, which runs the checks of "
                          "traffic-validation steps (default ghcr.io/sluice-dev/sluice:" SLUICE_VERSION ")");

  // import-run
  ImportRunOptions import_run;
  auto* import_cmd = app.add_subcommand(
      "import-run", "Read a finished Argo Workflow (from sluice compile --target argo) into the store as a run");
  import_cmd->add_option("WORKFLOW", import_run.workflow, "Workflow name")->required();
  import_cmd->add_option("-n,--namespace", import_run.namespace_, "Namespace of the Workflow (default: the context's)");
  import_cmd->add_option("--kubeconfig", import_run.kubeconfig, "Kubeconfig file");
  import_cmd->add_option("--context", import_run.context, "Kubeconfig context (default: current-context)");
  import_cmd->add_option("--from-file", import_run.from_file,
                         "Read the Workflow from FILE (kubectl get workflow NAME -o json) instead of the cluster");
  import_cmd->add_option("--store", import_run.store, kStoreHelp);
  import_cmd->add_option("--run-id", import_run.run_id, "Id of the imported run (default: the Workflow's name)");
  import_cmd->add_option("--file", import_run.file, "The pipeline file it was compiled from, recorded with the run");
  import_cmd->add_option("--workspace-host-dir", import_run.workspace_host_dir,
                         "Where this host sees the workspace volume: artifacts are digested into the store for lineage");
  import_cmd->add_option("--workspace-mount", import_run.workspace_mount,
                         "Where the pods mounted the workspace volume (default /sluice)");

  // lineage, export, plan, reproduce, checkout, diff; run --openlineage.
  ProvenanceCommands provenance(&app, &store);

  // serve, submit, backfill.
  ServerCommands server_commands(&app, &store);

  // schema, completion.
  ToolingCommands tooling(&app);

  // `sluice __complete WORD...` (the completion scripts' callback): its
  // words are a partial command line, never parsed as sluice's own options.
  if (argc >= 2 && std::string(argv[1]) == "__complete") {
    std::vector<std::string> words(argv + 2, argv + argc);
    if (words.empty()) words.emplace_back();
    for (const auto& candidate : CompletionCandidates(&app, words)) std::cout << candidate << "\n";
    return kExitOk;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  run.store = status.store = logs.store = runs.store = cancel.store = store;
  if (auto code = tooling.Dispatch()) return *code;
  if (*lint_cmd) return Lint(lint);
  if (*graph_cmd) return Graph(graph);
  if (*compile_cmd) return Compile(compile);
  if (*import_cmd) return ImportRun(import_run);
  if (auto code = server_commands.Dispatch()) return *code;
  if (auto code = provenance.Dispatch()) return *code;
  if (*run_cmd) return provenance.AfterRun(Run(run));
  if (*resume_cmd) return provenance.AfterRun(Resume(run));
  if (*rerun_cmd) return provenance.AfterRun(Rerun(run));
  if (*run_cmd) return Run(run);
  if (*resume_cmd) return Resume(run);
  if (*rerun_cmd) return Rerun(run);
  if (*cancel_cmd) return Cancel(cancel);
  if (*status_cmd) return ShowStatus(status);
  if (*show_cmd) return Show(status);
  if (*logs_cmd) return Logs(logs);
  if (*runs_cmd) return Runs(runs);
  return kExitUsage;
}
