// `sluice serve`, `submit`, `backfill`, `runs delete` and `gc`: thin wrappers
// over sluice_server (engine/server/, docs/server.md, docs/ci.md, docs/cli.md).
#include "engine/cli/server_commands.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <vector>

#include <CLI/CLI.hpp>

#include "dsl/quantity.h"
#include "engine/cli/commands.h"
#include "engine/cli/kubernetes_options.h"
#include "engine/cli/leader_election.h"
#include "engine/cli/output.h"
#include "engine/run/runner.h"
#include "engine/server/backfill.h"
#include "engine/server/retention.h"
#include "engine/server/client.h"
#include "engine/server/server.h"
#include "executors/local/local_executor.h"
#include "executors/kubernetes/kubernetes_executor.h"

namespace sluice::cli {
namespace {

// Each run's executors, for a server or a backfill: the local executor, and
// the Kubernetes executor when a step of the run goes there, built for that
// run's pipeline by KubernetesOptionsFor, as `sluice run` builds it.
server::ExecutorsFactory RunExecutors(const KubernetesFlags& flags) {
  return [flags](const PipelineSpec& spec,
                 const std::string& executor) -> Result<std::unique_ptr<ExecutorRegistry>> {
    auto registry = std::make_unique<ExecutorRegistry>();
    LocalExecutorOptions local;
    local.parallelism = 0;  // the runner budgets slots itself
    if (Status st = RegisterLocalExecutor(*registry, local); !st.ok()) return Error(st);
    if (NeedsKubernetes(spec, executor)) {
      auto k8s = KubernetesOptionsFor(flags, &spec);
      if (!k8s) return Error(k8s.error());
      if (Status st = RegisterKubernetesExecutor(*registry, *k8s); !st.ok())
        return Error(st.WithContext("kubernetes executor"));
    }
    return registry;
  };
}

// Each run is prepared as `sluice run` prepares it: deploy and
// traffic-validation steps bound for the cluster run here as its controllers,
// an all-Kubernetes run is not bounded by this host's budgets (serve and
// backfill have no --cpus/--memory/--gpus; -j is kept when given).
server::RunPreparer RunPreparerFor(const KubernetesFlags& flags, bool parallelism_given) {
  HostLimitFlags given;
  given.parallelism = parallelism_given;
  return [flags, given](PipelineSpec& spec, RunOptions& options) {
    PrepareRunForKubernetes(spec, flags, given, options);
  };
}

// The subcommands and their options, registered on the app by the constructor.
class ServerCommands {
 public:
  // Adds the subcommands to `app` (`delete` under its `runs` subcommand,
  // which must exist already). `store` (the global --store) is borrowed and
  // read at Dispatch().
  ServerCommands(CLI::App* app, std::string* store);

  // After parsing: runs the chosen subcommand and returns its exit code, or
  // nullopt when none of these was chosen.
  std::optional<int> DispatchChosen();

 private:
  // serve: checks the Kubernetes settings once at start (see the .cc).
  Status CheckKubernetes();
  // serve: --leader-election and the Lease flags into serve_options_.
  Status SetUpLeaderElection();
  int DeleteRuns();
  int CollectGarbage();

  std::string* store_;
  CLI::App* serve_ = nullptr;
  CLI::App* submit_ = nullptr;
  CLI::App* backfill_ = nullptr;
  CLI::App* runs_delete_ = nullptr;  // under `runs`; null when main has no `runs`
  CLI::App* gc_ = nullptr;
  std::vector<std::string> delete_runs_;
  server::GcOptions gc_options_;
  std::string gc_grace_ = "1h";
  server::ServerOptions serve_options_;
  KubernetesFlags serve_k8s_;  // --kubeconfig, --context, --namespace, --workspace-*
  std::string leader_election_;  // --leader-election [postgres|kubernetes]
  LeaseElectionOptions lease_;
  std::string lease_duration_ = "15s", renew_deadline_ = "10s", retry_period_ = "2s";
  server::SubmitOptions submit_options_;
  std::vector<std::string> submit_params_;
  std::string submit_timeout_;  // submit --timeout, as text ("2h"); "" = none
  server::BackfillCommandOptions backfill_options_;
};

ServerCommands::ServerCommands(CLI::App* app, std::string* store) : store_(store) {
  serve_ = app->add_subcommand("serve", "Run pipelines on schedules and from the API, webhooks and web UI");
  serve_->add_option("--pipelines", serve_options_.pipelines_dir,
                     "Directory searched (recursively) for pipeline files, e.g. a Git checkout");
  serve_->add_option("--listen", serve_options_.listen, "host:port to listen on (default: the config's listen:, else 127.0.0.1:8080)");
  serve_->add_option("--config", serve_options_.config_path,
                     "Server config (tokens, webhooks); without one every API call is refused (401)");
  serve_->add_option("--executor", serve_options_.executor, "Executor for every run (default: each pipeline's)");
  serve_->add_option("--max-runs", serve_options_.max_concurrent_runs, "Runs at once (default: the config's)");
  serve_->add_option("-j,--parallelism", serve_options_.run_parallelism, "Steps at once per run");
  serve_->add_option("--store", *store, kStoreFlagHelp);
  serve_->add_option("--leader-election", leader_election_,
                     "Replicas sharing a postgres:// store elect one leader, which fires schedules and resumes "
                     "interrupted runs: postgres (the default: the store's advisory lock) or kubernetes (a Lease; "
                     "standbys refuse writes with 503)")
      ->expected(0, 1);
  serve_->add_option("--lease-name", lease_.name, "With --leader-election kubernetes: the Lease (default sluice-leader)");
  serve_->add_option("--lease-namespace", lease_.namespace_,
                     "The Lease's namespace (default: --namespace, else the kubeconfig's; in a pod its own)");
  serve_->add_option("--leader-identity", lease_.identity, "This replica's holderIdentity (default: $POD_NAME, else HOST_PID)");
  serve_->add_option("--lease-duration", lease_duration_, "How long a Lease not renewed stays held (default 15s)");
  serve_->add_option("--renew-deadline", renew_deadline_, "The leader stops leading when it could not renew for this long (default 10s)");
  serve_->add_option("--retry-period", retry_period_, "How often to try to acquire or renew (default 2s)");
  serve_->add_option("--advertise-host", serve_options_.advertise_host,
                     "With --leader-election kubernetes: the address other replicas forward writes to this one at "
                     "(default: $POD_IP, else the listen host)");
  serve_->add_option("--kubeconfig", serve_k8s_.kubeconfig, "Kubeconfig for the Kubernetes executor (default: $KUBECONFIG, ~/.kube/config, in-cluster)");
  serve_->add_option("--context", serve_k8s_.context, "Kubeconfig context (default: current-context)");
  serve_->add_option("-n,--namespace", serve_k8s_.namespace_, "Namespace for Kubernetes steps (default: the pipeline's, then the context's)");
  serve_->add_option("--workspace-pvc", serve_k8s_.workspace_pvc, "ReadWriteMany claim mounted into every pod as the shared workspace");
  serve_->add_option("--workspace-host-dir", serve_k8s_.workspace_host_dir, "Where this host sees the --workspace-pvc volume (the store must be under it)");
  serve_->add_option("--artifacts", serve_options_.artifacts,
                     "Keep every run's artifact bytes in an S3-compatible bucket, s3://BUCKET/PREFIX (default: the "
                     "pipeline's artifacts:, else the config's, else the local store)");
  serve_->add_option("--artifacts-endpoint", serve_options_.artifacts_endpoint, kArtifactsEndpointFlagHelp);

  submit_ = app->add_subcommand("submit", "Trigger a run on a sluice server (for CI jobs)");
  submit_->add_option("PIPELINE", submit_options_.pipeline, "Pipeline name (metadata.name)")->required();
  submit_->add_option("--server", submit_options_.server, "Server URL, e.g. http://sluice:8080")->required();
  submit_->add_option("--token", submit_options_.token, "Bearer token (default: $SLUICE_TOKEN)");
  submit_->add_option("-p,--param", submit_params_, "Parameter value NAME=VALUE")->allow_extra_args(false);
  submit_->add_flag("--wait", submit_options_.wait, "Wait for the run to end; the exit code is its outcome");
  submit_->add_flag("--logs", submit_options_.follow_logs, "With --wait: print step logs as steps finish");
  AddOutputOption(submit_, &submit_options_.output, {"text", "json"});
  submit_->add_option("--junit", submit_options_.junit_path, "With --wait: write a JUnit XML report of the steps");
  submit_->add_option("--timeout", submit_timeout_,
                      "With --wait: give up waiting after this long, e.g. 2h (exit 124; the run goes on)");
  submit_->add_flag("--cancel-on-timeout", submit_options_.cancel_on_timeout,
                    "With --timeout: cancel the run when the timeout passes");

  backfill_ = app->add_subcommand("backfill", "Create the runs of a schedule's past times");
  backfill_->add_option("FILE", backfill_options_.pipeline_file, "Pipeline file (with a schedule)")->required();
  backfill_->add_option("--from", backfill_options_.from, "First time, e.g. 2026-11-01")->required();
  backfill_->add_option("--to", backfill_options_.to, "Last time (inclusive)")->required();
  backfill_->add_option("--parallelism", backfill_options_.parallelism, "Runs at once (default 1)");
  backfill_->add_option("--max-runs", backfill_options_.max_runs, "Refuse more than this many times");
  backfill_->add_option("--executor", backfill_options_.executor, "Executor (default: the pipeline's)");
  backfill_->add_flag("--dry-run", backfill_options_.dry_run, "List the times and run ids only");
  AddOutputOption(backfill_, &backfill_options_.output, {"text", "json"});
  backfill_->add_option("--store", *store, kStoreFlagHelp);
  backfill_->add_option("--artifacts", backfill_options_.artifacts, kArtifactsFlagHelp);
  backfill_->add_option("--artifacts-endpoint", backfill_options_.artifacts_endpoint, kArtifactsEndpointFlagHelp);

  CLI::App* runs = nullptr;
  for (CLI::App* sub : app->get_subcommands([](CLI::App* a) { return a->get_name() == "runs"; }))
    runs = sub;
  if (runs != nullptr) {
    runs_delete_ = runs->add_subcommand("delete", "Delete finished runs: records, logs, step directories");
    runs_delete_->add_option("RUN", delete_runs_, "Run ids (or unique prefixes)")->required();
    runs_delete_->add_option("--store", *store, kStoreFlagHelp);
  }
  gc_ = app->add_subcommand("gc", "Remove stored artifact bytes that no run records any more");
  gc_->add_flag("--dry-run", gc_options_.dry_run, "Only count what would be removed");
  gc_->add_option("--grace", gc_grace_, "Keep bytes stored more recently than this (default 1h)");
  gc_->add_option("--store", *store, kStoreFlagHelp);
}

Status ServerCommands::CheckKubernetes() {
  // Asked for explicitly: a failure is an error. Otherwise the executor is
  // there when a kubeconfig (or the in-cluster config) is, and runs that
  // need it fail with the executor's message when it is not.
  const bool asked = !serve_k8s_.kubeconfig.empty() || !serve_k8s_.context.empty() ||
                     !serve_k8s_.workspace_pvc.empty() || !serve_k8s_.workspace_host_dir.empty() ||
                     serve_options_.executor == "kubernetes";
  // Each run builds its own executor (RunExecutors); this reads the same
  // kubeconfig once, so that a bad one is reported at start.
  auto k8s = KubernetesOptionsFor(serve_k8s_, nullptr);
  if (!k8s) return k8s.error();
  auto executor = NewKubernetesExecutor(*k8s);
  if (!executor && asked) return executor.error().WithContext("kubernetes executor");
  if (!executor) {
    std::cerr << "sluice serve: no Kubernetes executor (" << executor.error().message()
              << "); steps on Kubernetes will fail until a kubeconfig is given\n";
  }
  std::error_code ec;
  std::string state_dir = std::filesystem::absolute(serve_options_.state_dir, ec).lexically_normal().string();
  while (state_dir.size() > 1 && state_dir.back() == '/') state_dir.pop_back();
  if (std::string warning = WorkspaceWarning(*k8s, state_dir); !warning.empty())
    std::cerr << "sluice serve: warning: " << warning << "\n";
  return Status::Ok();
}

Status ServerCommands::SetUpLeaderElection() {
  if (serve_->count("--leader-election") == 0) return Status::Ok();
  const std::string mode = leader_election_.empty() ? "postgres" : leader_election_;
  if (mode != "postgres" && mode != "kubernetes")
    return Status::InvalidArgument("--leader-election must be postgres or kubernetes, not '" + mode + "'");
  std::pair<std::string*, std::chrono::milliseconds*> durations[] = {
      {&lease_duration_, &lease_.lease_duration},
      {&renew_deadline_, &lease_.renew_deadline},
      {&retry_period_, &lease_.retry_period}};
  for (auto& [text, value] : durations) {
    auto parsed = dsl::ParseDuration(*text);
    if (!parsed) return Status::InvalidArgument("'" + *text + "' is not a duration like 15s or 500ms");
    *value = std::chrono::duration_cast<std::chrono::milliseconds>(*parsed);
  }
  serve_options_.leader_retry = lease_.retry_period;
  serve_options_.leader_election = true;
  if (mode == "postgres") return Status::Ok();
  KubernetesFlags lease_flags = serve_k8s_;
  if (!lease_.namespace_.empty()) lease_flags.namespace_ = lease_.namespace_;
  auto elector = NewLeaseElector(lease_flags, lease_);
  if (!elector) return elector.error();
  serve_options_.elector = std::move(*elector);
  serve_options_.standby_refuses_writes = true;
  if (const char* ip = std::getenv("POD_IP"); serve_options_.advertise_host.empty() && ip != nullptr)
    serve_options_.advertise_host = ip;
  // As client-go's users do: a leader that lost the Lease exits at once,
  // leaving its runs (their pods go on) for the new leader to adopt, rather
  // than driving them alongside it. Its Deployment restarts it as a standby.
  serve_options_.on_leadership_lost = [] {
    std::fprintf(stderr, "sluice serve: lost the Lease; exiting so that the new leader adopts the runs\n");
    std::_Exit(1);
  };
  return Status::Ok();
}

int ServerCommands::DeleteRuns() {
  auto store = OpenExisting(*store_);
  if (!store) {
    PrintError(store.error().message());
    return ExitCodeFor(store.error());
  }
  const std::string state_dir = ResolveStateDir(*store_);
  int code = kExitOk;
  for (const std::string& name : delete_runs_) {
    auto run = FindRun(**store, name);
    Status st = run ? server::DeleteRunAndFiles(store->get(), state_dir, run->id) : run.error();
    if (!st.ok()) {
      PrintError(st.message());
      // Refused (not ended, still referenced): 1; unknown run: 2; store: 3.
      if (code == kExitOk)
        code = st.code() == StatusCode::kFailedPrecondition ? kExitFailed : ExitCodeFor(st);
      continue;
    }
    std::cout << "deleted run " << run->id << "\n";
  }
  return code;
}

int ServerCommands::CollectGarbage() {
  auto grace = dsl::ParseDuration(gc_grace_);
  if (!grace) {
    PrintError("--grace '" + gc_grace_ + "' is not a duration like 30m, 1h or 0s");
    return kExitUsage;
  }
  gc_options_.grace = *grace;
  auto store = OpenExisting(*store_);
  if (!store) {
    PrintError(store.error().message());
    return ExitCodeFor(store.error());
  }
  auto result = server::CollectGarbage(store->get(), ResolveStateDir(*store_), gc_options_);
  if (!result) {
    PrintError(result.error().message());
    return result.error().code() == StatusCode::kFailedPrecondition ? kExitFailed
                                                                     : ExitCodeFor(result.error());
  }
  std::cout << (gc_options_.dry_run ? "would remove " : "removed ") << result->removed
            << " artifact" << (result->removed == 1 ? "" : "s") << " (" << result->removed_bytes
            << " bytes) and " << result->temp_removed << " partial cop"
            << (result->temp_removed == 1 ? "y" : "ies") << "; kept " << result->kept << "\n";
  return kExitOk;
}

std::optional<int> ServerCommands::DispatchChosen() {
  if (*serve_) {
    serve_options_.state_dir = store_->empty() || IsPostgresUrl(*store_) ? ".sluice" : *store_;
    if (IsPostgresUrl(*store_)) serve_options_.store = *store_;
    if (Status st = CheckKubernetes(); !st.ok()) {
      PrintError(st.message());
      return kExitUsage;
    }
    if (Status st = SetUpLeaderElection(); !st.ok()) {
      PrintError(st.message());
      return kExitUsage;
    }
    serve_options_.operator_commands = OperatorCommands();
    serve_options_.prepare_run = RunPreparerFor(serve_k8s_, serve_options_.run_parallelism > 0);
    return server::Serve(serve_options_, RunExecutors(serve_k8s_));
  }
  if (*submit_) {
    auto values = ParseParamFlags(submit_params_);
    if (!values) {
      PrintError(values.error().message());
      return kExitUsage;
    }
    submit_options_.params = std::move(*values);
    if (!submit_timeout_.empty()) {
      auto timeout = dsl::ParseDuration(submit_timeout_);
      if (!timeout) {
        PrintError("--timeout '" + submit_timeout_ + "' is not a duration like 30m, 2h or 90s");
        return kExitUsage;
      }
      submit_options_.timeout = *timeout;
    }
    if (submit_options_.cancel_on_timeout && !submit_options_.timeout) {
      PrintError("--cancel-on-timeout needs --timeout");
      return kExitUsage;
    }
    if (submit_options_.timeout && !submit_options_.wait) {
      PrintError("--timeout needs --wait");
      return kExitUsage;
    }
    return server::SubmitCommand(submit_options_, std::cout, std::cerr);
  }
  if (*backfill_) {
    backfill_options_.state_dir = store_->empty() || IsPostgresUrl(*store_) ? ".sluice" : *store_;
    if (IsPostgresUrl(*store_)) backfill_options_.store = *store_;
    backfill_options_.operator_commands = OperatorCommands();
    backfill_options_.prepare = RunPreparerFor(KubernetesFlags{}, false);
    return server::BackfillCommand(backfill_options_, RunExecutors(KubernetesFlags{}), std::cout,
                                   std::cerr);
  }
  if (runs_delete_ && *runs_delete_) return DeleteRuns();
  if (*gc_) return CollectGarbage();
  return std::nullopt;
}

}  // namespace

Dispatch RegisterServerCommands(CLI::App& app, std::string& store) {
  auto commands = std::make_shared<ServerCommands>(&app, &store);
  return [commands] { return commands->DispatchChosen(); };
}

}  // namespace sluice::cli
