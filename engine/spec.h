#pragma once
// The typed pipeline specification: what a pipeline file means, independent
// of YAML. dsl/ produces it (with source locations for every field a user can
// get wrong); the engine, operators and executors consume it.
//
// Values that may contain templates (`{{ params.x }}`) are held as Template and
// rendered by engine/expr.h at run time, once their inputs are known.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice {

using Json = nlohmann::json;
using Duration = std::chrono::milliseconds;

// Where something was written: "pipeline.yaml:12:7". line/column are 1-based;
// 0 means unknown.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;

  // "file:line:col", "file" when the position is unknown, "" when all empty.
  std::string ToString() const;
};

// A string as the user wrote it; may contain `{{ expression }}` parts.
struct Template {
  std::string text;
  SourceLocation loc;

  bool IsLiteral() const { return text.find("{{") == std::string::npos; }
};

enum class ParamType { kString, kInt, kNumber, kBool, kList };

// Returns "string", "int", "number", "bool" or "list".
const char* ParamTypeName(ParamType type);

// A pipeline-level parameter: `params: {epochs: {type: int, default: 3}}`.
struct ParamSpec {
  std::string name;
  ParamType type = ParamType::kString;
  std::optional<Json> default_value;  // already checked against `type`
  bool required = false;               // true when there is no default
  std::string description;
  bool secret = false;                 // value never logged or stored in lineage
  SourceLocation loc;
};

enum class ArtifactType { kDataset, kModel, kMetrics, kOther };

// Returns "dataset", "model", "metrics" or "other".
const char* ArtifactTypeName(ArtifactType type);

// A file (or directory) the step writes, collected after success.
struct ArtifactOutputSpec {
  std::string name;
  std::string path;  // relative to the step's working directory
  ArtifactType type = ArtifactType::kOther;
  SourceLocation loc;
};

// A small value the step writes to a file; its trimmed content is the value.
struct ParamOutputSpec {
  std::string name;
  std::string path;  // relative to the step's working directory
  SourceLocation loc;
};

// CPU in millicores, memory in bytes, whole GPUs. 0 means "not requested".
struct Resources {
  int64_t cpu_millis = 0;
  int64_t memory_bytes = 0;
  int64_t gpu = 0;
  // Kubernetes-only placement; ignored by the local executor.
  std::map<std::string, std::string> node_selector;
  std::vector<Json> tolerations;  // Kubernetes Toleration objects, verbatim
};

enum class RetryOn {
  kAlways,     // user failures (non-zero exit) and system errors
  kOnFailure,  // user failures only
  kOnError,    // system errors only (spawn failure, lost pod, executor error)
};

// Retries of one step. Attempt n>1 waits min(backoff * factor^(n-2), max_backoff).
struct RetryPolicy {
  int limit = 0;  // extra attempts after the first
  Duration backoff{0};
  double factor = 2.0;
  std::optional<Duration> max_backoff;
  RetryOn retry_on = RetryOn::kAlways;
  SourceLocation loc;
};

// `foreach:` fan-out. Exactly one of items / range / expression is set.
struct ForEachSpec {
  enum class Kind { kItems, kRange, kExpression };
  Kind kind = Kind::kItems;
  std::vector<Json> items;               // kItems: literal list
  int64_t range_start = 0, range_end = 0, range_step = 1;  // kRange: [start, end)
  Template expression;                   // kExpression: evaluates to a list
  int parallelism = 0;                   // 0 = unlimited
  // The fraction of the items that must succeed for the step to succeed
  // (0 < r <= 1), the failed items then being tolerated (`minSuccessRatio`);
  // nullopt: any failed item fails the step.
  std::optional<double> min_success_ratio;
  // The name of the step that ran the sub-pipeline this step came from with
  // `foreach` ("eval" for "eval/score"); "" when the step is in no such
  // group. Item i of a group member is named "<group>[i]/<rest>" and waits
  // only for item i of the members it needs.
  std::string group;
  SourceLocation loc;
};

// A Kubernetes Secret reference for an env var. Locally it is read from the
// host environment variable SLUICE_SECRET_<NAME>_<KEY> (upper-cased, '-'→'_').
struct SecretRef {
  std::string name;
  std::string key;
};

struct EnvVarSpec {
  std::string name;
  Template value;                   // unused when secret is set
  std::optional<SecretRef> secret;  // value never logged or stored
  SourceLocation loc;
};

// Per-step (and pipeline default) caching control.
struct CacheSpec {
  bool enabled = true;
  std::optional<Duration> max_age;
  std::vector<std::string> ignore_inputs;  // input names not hashed into the key
  std::vector<std::string> env_ignore;     // env var names not hashed
  SourceLocation loc;
};

// Conditions that change whether a step runs when an upstream did not succeed.
enum class UpstreamSkippedPolicy {
  kSkip,  // default: a skipped upstream skips this step too
  kRun,   // run anyway (e.g. a report step after an optional step)
};

// One node of the pipeline as written. A `foreach` step expands into several
// instances at run time (`train[0]`, `train[1]`, ...).
struct StepSpec {
  std::string name;
  std::string type = "container";  // operator name: container, tfjob, pytorchjob, deploy, traffic-validation
  SourceLocation loc;

  std::vector<Template> command;  // argv; never passed through a shell
  std::vector<EnvVarSpec> env;
  std::optional<Template> workdir;  // relative to the run's step directory; default: fresh dir
  std::string image;                // container image (Kubernetes)
  std::string executor;             // "" = pipeline default; "local" | "kubernetes"
  std::vector<std::string> code;    // files whose content forms the code digest
  // The component this step uses (`uses:`): its path relative to the
  // pipeline's directory, or for a component from Git the source with its
  // ref resolved ("git+<url>@<commit>#<path>"); and the SHA-256 of its
  // file. "" for a step written in full. The file is also one of `code`, so
  // it is part of the cache key.
  std::string component_file;
  std::string component_digest;

  std::vector<std::string> depends;  // explicit dependencies (step names)
  std::vector<SourceLocation> depends_loc;

  // Named input artifacts: name -> template referencing another step's output,
  // e.g. {"data": "{{ steps.prep.outputs.artifacts.dataset }}"}. The engine
  // passes them as paths in env SLUICE_INPUT_<NAME> and in templates.
  std::map<std::string, Template> inputs;

  std::optional<Template> when;  // expression; false → phase Skipped
  UpstreamSkippedPolicy upstream_skipped = UpstreamSkippedPolicy::kSkip;
  std::optional<ForEachSpec> foreach;

  RetryPolicy retries;
  std::optional<Duration> timeout;
  // Kubernetes: how long a pod of the step may stay Pending (unschedulable,
  // its image not pulled) before the attempt fails as a system error with
  // the pod's reason; unset = until the step's timeout.
  std::optional<Duration> pending_timeout;
  Resources resources;
  int priority = 0;  // higher runs first among ready steps
  CacheSpec cache;

  std::vector<ArtifactOutputSpec> output_artifacts;
  std::vector<ParamOutputSpec> output_params;
  std::optional<std::string> metrics_file;  // JSON object of numbers, relative to workdir

  // Operator-specific configuration (e.g. `tfjob:` replicas, `deploy:`),
  // converted from YAML to JSON verbatim; already validated by dsl/.
  Json config = Json::object();

  bool is_finally = false;  // an exit-handler step
};

// Schedule for periodic runs (used by `sluice serve`).
struct ScheduleSpec {
  std::vector<std::string> cron;
  std::string timezone = "UTC";
  std::string concurrency_policy = "Allow";  // Allow | Forbid | Replace
  std::optional<Duration> starting_deadline;
  std::string catchup = "none";  // none | latest | all
  int catchup_limit = 10;
  int history_limit = 10;
  std::map<std::string, Template> params;
  SourceLocation loc;
};

// A whole pipeline file.
struct PipelineSpec {
  std::string api_version;
  std::string kind;
  std::string name;
  std::string description;
  std::map<std::string, std::string> labels;
  std::string file;         // path it was read from
  std::string file_digest;  // sha256 hex of the file's bytes

  std::vector<ParamSpec> params;
  std::vector<StepSpec> steps;          // in file order
  std::vector<StepSpec> finally_steps;  // exit handlers, run after everything
  std::optional<Duration> timeout;      // whole run
  std::string executor = "local";
  std::string namespace_;               // Kubernetes namespace ("" = kubeconfig's)
  std::string artifacts;                // artifact store, "s3://bucket/prefix"; "" = the local store
  std::optional<ScheduleSpec> schedule;

  const StepSpec* FindStep(const std::string& name) const;
  const ParamSpec* FindParam(const std::string& name) const;
};

}  // namespace sluice
