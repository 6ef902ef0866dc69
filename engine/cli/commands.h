#pragma once
// The `sluice` subcommands. Each command file registers its subcommands on
// the CLI11 app with a Register...Commands function, which parses the
// command line into these option structs; main.cc calls the Dispatch it
// returned, which calls the matching function, whose return value is the
// process exit code (see output.h and docs/cli.md).

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
}  // namespace CLI

namespace sluice::cli {

// What every Register...Commands function (here, in provenance_commands.h,
// server_commands.h and tooling_commands.h) returns to main.cc: called once
// after app.parse(), it runs the group's chosen subcommand and returns its
// exit code, or nullopt when the command line chose another group's. It owns
// the option values that the group's options write into: keep it as long as
// the app.
using Dispatch = std::function<std::optional<int>()>;

// The help of the global --store and of the --store of the commands that
// read or write runs.
inline constexpr char kStoreFlagHelp[] =
    "Store directory (runs, logs, artifacts), or a postgres:// URL (records on the server, files in .sluice); "
    "default: .sluice in the current directory";

// The help of --artifacts and --artifacts-endpoint (run, resume, rerun,
// serve, backfill, compile).
inline constexpr char kArtifactsFlagHelp[] =
    "Keep artifact bytes in an S3-compatible bucket, s3://BUCKET/PREFIX (default: the pipeline's artifacts:, "
    "else the local store)";
inline constexpr char kArtifactsEndpointFlagHelp[] =
    "S3 endpoint URL (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, the AWS profile's endpoint_url, "
    "else AWS S3 in the region)";


struct LintOptions {
  std::vector<std::string> files;
  std::string format = "text";  // -o: text | json | yaml
};
// Validates every file; prints all diagnostics. 0 clean, 1 errors.
int Lint(const LintOptions& options);

struct GraphOptions {
  std::string file;
  std::string format = "dot";  // dot | mermaid
};
// Prints the DAG of a valid pipeline. 2 when the pipeline is invalid.
int Graph(const GraphOptions& options);

// Registers lint and graph on `app`.
Dispatch RegisterLintCommands(CLI::App& app);

// Registers run, resume and rerun on `app`, which share RunCommandOptions.
// `store` is main's --store value, which their --store options also set;
// it is read at dispatch and must outlive the Dispatch.
Dispatch RegisterRunCommands(CLI::App& app, std::string& store);

struct RunCommandOptions {
  std::string file;                       // run: the pipeline file
  std::vector<std::string> params;        // "-p name=value", in order
  int parallelism = 0;                    // -j; 0 = number of CPUs
  bool keep_going = false;
  std::string store;                      // --store (resolved in the command)
  std::string executor;                   // --executor; "" = the pipeline's
  bool no_cache = false;
  std::string cpus;                       // --cpus quantity ("2", "500m"); "" = all CPUs
  std::string memory;                     // --memory quantity ("8Gi"); "" = physical memory
  int gpus = -1;                          // --gpus; -1 = detect (0 when unknown)
  bool quiet = false;                     // no step log lines, only progress and summary
  std::string resume_run;                 // resume / rerun: the run to continue
  std::vector<std::string> rerun_from;    // rerun --from STEP
  std::string run_id;                     // --run-id (tests, reproducible names)
  std::string junit;                      // --junit FILE: the steps as a JUnit XML report
  bool wait = true;                       // --wait: local runs always wait (accepted for CI scripts)
  // Kubernetes executor (registered only when a step or --executor needs it).
  std::string kubeconfig;                 // --kubeconfig; "" = $KUBECONFIG, ~/.kube/config
  std::string context;                    // --context; "" = current-context
  std::string namespace_;                 // --namespace; "" = the pipeline's, then the context's
  bool dry_run = false;                   // run --dry-run: print the Kubernetes objects, run nothing
  // Artifacts between pods (docs/kubernetes.md): an RWX PersistentVolumeClaim
  // mounted into every pod, seen by this host at workspace_host_dir.
  std::string workspace_pvc;              // --workspace-pvc; "" = none
  std::string workspace_host_dir;         // --workspace-host-dir; "" = the host does not see it
  // Artifact bytes in an S3-compatible bucket (engine/store/s3_artifact_store.h).
  std::string artifacts;                  // --artifacts s3://bucket/prefix; "" = the local store
  std::string artifacts_endpoint;         // --artifacts-endpoint; "" = the AWS settings' (aws_config.h)
  // With --executor kubernetes and an s3:// --artifacts, steps run through
  // sluice-launcher from this image (docs/kubernetes.md).
  std::string launcher_image;             // --launcher-image; "" = ghcr.io/sluice-dev/sluice:<version>
};
// Runs (or resumes / re-runs) a pipeline, printing live progress and a
// summary table. 0 succeeded, 1 failed, 2 invalid pipeline/params,
// 3 system error, 130 cancelled.
int Run(const RunCommandOptions& options);
int Resume(const RunCommandOptions& options);
int Rerun(const RunCommandOptions& options);

// The sluice-serving program that runs deploy / traffic-validation steps:
// next to this sluice binary, in the build tree it was built in, or on PATH;
// "" when there is none (run_command.cc; `sluice serve` uses it too).
std::string FindServingBinary();

// The programs of the operator step types (RunOptions::operator_commands):
// deploy and traffic-validation through FindServingBinary(); empty when there
// is none. `sluice run`, `serve` and `backfill` all use it.
std::map<std::string, std::vector<std::string>> OperatorCommands();

struct CancelOptions {
  std::string run;          // run id, unique prefix, or latest
  std::string store;
  std::string wait = "60s";  // how long to wait for the driving process to stop; "0s" = don't
  bool now = false;          // --now: stop without running the finally steps
  // For a run whose driving process is gone, to delete its Kubernetes objects.
  std::string kubeconfig;
  std::string context;
  std::string namespace_;
};
// Cancels a running run (docs/cli.md): signals the sluice process driving
// it (SIGTERM: its finally steps still run; SIGUSR2 with --now: they do not)
// and waits for it to stop, or, when that process is gone, deletes the
// run's Kubernetes objects and records it Cancelled. 0 done, 2 the run has
// ended / is driven elsewhere, 3 the process did not stop in time or the
// cluster could not be reached.
int Cancel(const CancelOptions& options);

// Registers cancel on `app`; `store` as for RegisterRunCommands.
Dispatch RegisterCancelCommand(CLI::App& app, std::string& store);

struct StatusOptions {
  std::string run;
  std::string store;
  std::string format = "text";  // -o: text | wide (status) | json | yaml | name
};
// The run's phase and a table of its steps.
int ShowStatus(const StatusOptions& options);
// status plus params, outputs, metrics, artifacts and cache hits.
int Show(const StatusOptions& options);

struct LogsOptions {
  std::string run;
  std::string step;     // instance ("train[1]") or step name
  std::string store;
  bool follow = false;
  int attempt = 0;      // 0 = latest
};
// Prints a step's log; -f follows it until the step is terminal.
int Logs(const LogsOptions& options);

struct RunsOptions {
  std::string store;
  std::string pipeline;
  std::string status;  // run phase name, any case
  std::string since;   // duration ("1h", "2d")
  int limit = 50;
  std::string format = "text";  // -o: text | wide | json | yaml | name
};
// Lists runs, newest first.
int Runs(const RunsOptions& options);

struct AuditOptions {
  std::string store;
  std::string since;   // duration ("1h", "2d"); "" = all
  int limit = 50;      // newest N; 0 = all
  std::string format = "text";  // -o: text | json | yaml
};
// Lists the server's audit log (writes through `sluice serve`'s API),
// newest first. 0 ok, 2 bad flags, the store's exit code when it cannot be
// opened.
int Audit(const AuditOptions& options);

// Registers status, show, logs, runs and audit on `app`; `store` as for
// RegisterRunCommands.
Dispatch RegisterQueryCommands(CLI::App& app, std::string& store);

}  // namespace sluice::cli

namespace sluice::cli {

struct CompileOptions {
  std::string file;
  std::string target = "argo";        // argo | manifests
  std::string format = "yaml";        // yaml | json
  std::string output;                 // -o FILE; "" = stdout
  std::vector<std::string> params;    // manifests: -p name=value
  std::string namespace_;
  std::string workspace_pvc = "sluice-workspace";
  std::string source_dir = "/sluice/src";  // where pods see the pipeline's directory
  std::string service_account;
  std::string image;                  // image for steps without one
  bool keep_going = false;            // argo: DAG failFast false
  std::vector<std::string> exclude_steps;  // steps left out on purpose
  std::string sluice_image;  // argo: image with sluice-serving, for traffic-validation steps
  std::string artifacts;           // argo: s3://bucket/prefix; "" = the pipeline's artifacts:, else the workspace
  std::string artifacts_endpoint;  // argo: "" = the AWS settings' endpoint, else AWS S3 in the region
  std::string artifacts_secret = "sluice-s3";  // argo: Secret with the pods' S3 keys
};
// Compiles a pipeline to Argo Workflows objects, or to the Kubernetes
// objects of a run (the Kubernetes executor's dry run). 0 ok, 2 invalid
// pipeline or a feature the target cannot express (each named with its
// line), 3 I/O errors.
int Compile(const CompileOptions& options);

// Registers compile on `app`.
Dispatch RegisterCompileCommand(CLI::App& app);

struct ImportRunOptions {
  std::string workflow;            // the Workflow's name
  std::string namespace_;          // "" = the kubeconfig context's
  std::string kubeconfig;          // "" = $KUBECONFIG, ~/.kube/config
  std::string context;             // "" = current-context
  std::string from_file;           // read the Workflow from this JSON file instead
  std::string store;               // --store
  std::string run_id;              // "" = the Workflow's name
  std::string file;                // the pipeline file, recorded with the run
  std::string workspace_host_dir;  // where this host sees the workspace volume
  std::string workspace_mount = "/sluice";  // where the pods saw it
};
// Reads a finished Argo Workflow compiled by `sluice compile --target argo`
// into the store as a run (engine/compile/argo_import.h). 0 ok, 1 some
// artifact could not be digested, 2 not a sluice Workflow / not finished /
// already imported, 3 cluster or store errors.
int ImportRun(const ImportRunOptions& options);

// Registers import-run on `app`. Its --store is its own: the global --store
// does not reach it.
Dispatch RegisterImportCommand(CLI::App& app);

}  // namespace sluice::cli
