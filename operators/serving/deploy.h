#pragma once
// The `deploy` operator, local side: starts a model server for a model
// artifact, waits until it is ready, puts it behind the service's canary
// proxy (replacing the current model, or beside it as a canary) and records
// the change. The runner runs it as `sluice-serving deploy --config FILE`;
// see docs/deploy.md for the config reference and the outputs.
//
// Invariant: a deploy that fails leaves the previous deployment exactly as it
// was — its processes, its proxy weights and its state file. The new server
// is stopped before the error is returned.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"
#include "engine/store.h"
#include "operators/serving/service_state.h"

namespace sluice::serving {

// Which run and step instance made a change (for DeploymentRecord). Taken
// from the config's "run" object, else from SLUICE_RUN_ID / SLUICE_INSTANCE.
struct RunContext {
  std::string run_id;
  std::string instance;
  int64_t execution_id = 0;
  // With object storage: the run's code stored as one directory artifact
  // ("sha256:..."), and the host directory it was packed from (the
  // pipeline's `{{ pipeline.dir }}`). The server's pod fetches the code and
  // finds it at /sluice/code, as the launcher's steps do.
  std::string code_archive;
  std::string code_dir;
};

// Everything the operators need from their surroundings.
struct ServingEnv {
  std::string state_dir;         // $SLUICE_STATE_DIR; services/ lives here
  std::string self_exe;          // the sluice-serving binary (starts the proxy)
  Store* store = nullptr;        // where DeploymentRecords go; null = nowhere
  std::string host = "127.0.0.1";  // address model servers bind and are reached on
  Duration stop_grace = std::chrono::seconds(5);  // SIGTERM -> SIGKILL for servers
};

enum class DeployMode { kReplace, kCanary };

// The `deploy:` config, parsed. See docs/deploy.md.
struct DeployConfig {
  std::string service;
  std::string executor = "local";  // "local" | "kubernetes"
  std::string model;               // path of the model artifact (file or directory)
  std::string model_digest;        // "sha256:..."; computed for a file when empty
  std::string version;             // default: run id, else the digest's first 12 hex
  std::vector<std::string> command;           // serve.command, with placeholders
  std::map<std::string, std::string> env;     // serve.env
  std::string workdir;                        // serve.workdir ("" = service dir)
  std::string image;                          // serve.image (Kubernetes)
  std::string readiness_path = "/healthz";
  Duration readiness_timeout = std::chrono::seconds(60);
  DeployMode mode = DeployMode::kReplace;
  double traffic = 10;               // canary share in percent (0 < t < 100)
  int proxy_port = 0;                // 0 = pick one on the first deploy, then keep it
  std::string proxy_bind = "127.0.0.1";
  RunContext run;
  Json kubernetes = Json::object();  // the `kubernetes:` section, verbatim
};

// Parses and checks a deploy config. kInvalidArgument names the field
// ("deploy.serve.command: ...") and says what to write.
Result<DeployConfig> ParseDeployConfig(const Json& config);

// What a deploy did; also written as output files (WriteDeployOutputs).
struct DeployResult {
  std::string service;
  std::string endpoint;       // the proxy URL clients use
  std::string candidate_url;  // the new server, directly
  std::string version;
  std::string model_digest;
  double traffic_percent = 100;  // the new model's share
  std::string mode;              // "replace" | "canary"
  std::string note;              // e.g. "no stable deployment: deployed at 100%"
  Json state = Json::object();   // the service state after the deploy
};

// Runs a local deploy (see the file comment). Errors:
//   kInvalidArgument     bad config (model missing, ...)
//   kDeadlineExceeded    the server did not become ready in time
//   kFailedPrecondition  the server exited before it was ready, the proxy's
//                        port is taken, ...
// Every message names the service and version and says what to do; for a
// server that failed, it includes the end of the server's log.
Result<DeployResult> DeployLocal(const DeployConfig& config, const ServingEnv& env);

// Writes the outputs into `out_dir`: one file per output param (`endpoint`,
// `candidate_url`, `version`, `model_digest`, `traffic_percent`, `service`,
// each holding the bare value) and `deploy.json` with all of it.
Status WriteDeployOutputs(const DeployResult& result, const std::string& out_dir);

// Sets the proxy's backends and weights from `state` (stable and candidate
// with their traffic_percent). Starts the proxy first when it is not running
// (on its recorded port; on `requested_port` or a free one the first time),
// updating `state.proxy`.
Status EnsureProxyAndApply(ServiceState& state, const ServingEnv& env, int requested_port,
                           const std::string& bind);

// Stops a service's servers and proxy and forgets its state. NotFound when it
// was never deployed.
Status Undeploy(const std::string& service, const ServingEnv& env);

// Records `record` in env.store (no-op without a store); `at` is set to now.
Status RecordDeployment(const ServingEnv& env, DeploymentRecord record);

// Waits until GET `url` + `path` answers 2xx, at most `timeout`. Fails early
// when `process` (if given) exits. The message says what was last seen
// ("connection refused", "HTTP 503").
Status WaitReady(const std::string& url, const std::string& path, Duration timeout,
                 const ProcessId* process);

// A duration in a config: text as the DSL writes it ("500ms", "30s", "10m",
// "1h30m"; engine/quantity.h's ParseDuration) or a JSON number of seconds.
// kInvalidArgument names `field`.
Result<Duration> ParseConfigDuration(const Json& value, const std::string& field);

// Substitutes {{model}}, {{port}}, {{host}}, {{version}}, {{service}} (spaces
// inside the braces allowed) and ${model}, ${port}, ... in `text`.
std::string SubstitutePlaceholders(const std::string& text,
                                   const std::map<std::string, std::string>& values);

}  // namespace sluice::serving
