#pragma once
// The server-side subcommands of `sluice`: serve, submit, backfill, and the
// retention commands `runs delete` and `gc` (engine/server/retention.h).

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/cli/kubernetes_options.h"
#include "engine/server/backfill.h"
#include "engine/server/client.h"
#include "engine/server/retention.h"
#include "engine/server/server.h"

namespace sluice::cli {

class ServerCommands {
 public:
  // Adds the subcommands to `app` (`delete` under its `runs` subcommand,
  // which must exist already). `store` (the global --store) is borrowed and
  // read at Dispatch().
  ServerCommands(CLI::App* app, std::string* store);

  // After parsing: runs the chosen subcommand and returns its exit code, or
  // nullopt when none of these was chosen.
  std::optional<int> Dispatch();

 private:
  // serve: checks the Kubernetes settings once at start (see the .cc).
  Status CheckKubernetes();
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
  server::SubmitOptions submit_options_;
  std::vector<std::string> submit_params_;
  std::string submit_timeout_;  // submit --timeout, as text ("2h"); "" = none
  server::BackfillCommandOptions backfill_options_;
};

}  // namespace sluice::cli
