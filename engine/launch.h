#pragma once
// The contract between the host and sluice-launcher (engine/launcher/), the
// program that runs a step inside a pod when artifacts move through object
// storage instead of a shared volume (the pattern of Argo's emissary and
// KFP's launcher; docs/kubernetes.md).
//
// The host (operators/kubernetes) writes a LaunchSpec as JSON into the main
// container's env SLUICE_LAUNCH, with every path already rewritten to the
// pod's:
//   {"step": "train[1]",
//    "store": {"url": "s3://bucket/prefix", "endpoint": "...", "region": "...",
//              "cache": "/sluice/store"},
//    "inputs": [{"name": "data", "digest": "sha256:...", "path": "/sluice/store/cas/..."}],
//    "code": {"digest": "sha256:...", "dir": "/sluice/code"},
//    "workdir": "/sluice/work", "argv": ["python3", "..."],
//    "outputs": {"artifacts": [{"name": "model", "path": "model", "type": "model"}],
//                "params": [{"name": "rows", "path": "data/rows.txt"}],
//                "metrics": "metrics.json"},
//    "result": "results/<run>/<instance>/attempt-1.json",
//    "termination_log": "/dev/termination-log"}
// The launcher answers with a LaunchResult, stored as the object `result`
// (ArtifactStore::ReadObject reads it) and, when it fits, as the container's
// termination message.
//
// Pure data and JSON; no I/O.

#include <cstdint>
#include <map>
#include <functional>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/spec.h"
#include "engine/status.h"

namespace sluice {

// The largest termination message Kubernetes keeps.
inline constexpr size_t kTerminationMessageLimit = 4096;

// What the launcher does in the pod; see the file comment for the JSON.
struct LaunchSpec {
  std::string step;  // the instance name, for messages
  std::string store_url;
  std::string store_endpoint;  // "" = the environment's
  std::string store_region;    // "" = the environment's
  std::string cache_dir;       // the launcher's artifact cache (FileArtifactStore root)
  std::vector<TaskArtifact> inputs;  // digest + pod path
  std::string code_digest, code_dir;
  std::string workdir;
  std::vector<std::string> argv;
  std::vector<TaskArtifact> outputs;  // name, path relative to workdir, type
  std::vector<TaskParamFile> params;
  std::string metrics_file;
  std::string result_key;
  std::string termination_log = "/dev/termination-log";
  // Which of a distributed step's pods reports (stores the outputs and the
  // result); the others run the step and exit with its code. "" = this pod
  // (a step of one pod); "pytorch-rank0" = the pod whose $RANK is 0 (the
  // training-operator's Master); "tf-chief" = the pod whose $TF_CONFIG task
  // is the chief (or master), else worker 0 of a cluster without either.
  std::string reporter;
};

// True when the pod with environment `getenv` reports for `spec` (see
// LaunchSpec::reporter).
bool LaunchReports(const LaunchSpec& spec, const std::function<const char*(const char*)>& getenv);

Json LaunchSpecToJson(const LaunchSpec& spec);
// Errors: kInvalidArgument naming the missing or malformed field.
Result<LaunchSpec> LaunchSpecFromJson(const std::string& text);

// One output artifact as the launcher stored it.
struct LaunchOutput {
  std::string digest;  // "sha256:<hex>"
  ArtifactType type = ArtifactType::kOther;
  int64_t size = 0;
  bool is_directory = false;
};

// What the launcher reports: the step's exit code, and on success its
// outputs; `error` says why a step that exited 0 still failed (a declared
// output missing, an upload failing).
struct LaunchResult {
  int exit_code = -1;
  std::map<std::string, LaunchOutput> outputs;
  Json params = Json::object();
  Json metrics = Json::object();
  std::string error;
};

Json LaunchResultToJson(const LaunchResult& result);
// Errors: kInvalidArgument for text that is not a launcher result.
Result<LaunchResult> LaunchResultFromJson(const std::string& text);

// The artifact type named `name` ("dataset", "model", "metrics", "other");
// kOther for any other text.
ArtifactType ArtifactTypeFromName(const std::string& name);

}  // namespace sluice
