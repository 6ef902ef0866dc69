#pragma once
// The seam between the engine and the places where work runs.
//
// Shaped like ninja's CommandRunner: the scheduler Start()s tasks while
// CanRunMore(), then blocks in Wait() for the next one to finish. An executor
// never retries: retries are the scheduler's decision (Argo's rule).
//
// Thread-safety: an Executor is driven from one thread, except Cancel() and
// CancelAll(), which may be called from any thread (e.g. a signal watcher).

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"

namespace sluice {

using TaskId = uint64_t;

// One artifact a task moves through object storage: an input (digest and
// the host path the step reads it at) or a declared output (name, path
// relative to the working directory, type).
struct TaskArtifact {
  std::string name;
  std::string digest;  // "sha256:<hex>"; "" for an output
  std::string path;
  ArtifactType type = ArtifactType::kOther;
};

// A declared output parameter: its name and file, relative to the workdir.
struct TaskParamFile {
  std::string name;
  std::string path;
};

// What a task run by the launcher in a pod (engine/launch.h) moves through
// object storage, filled by the runner when its executor has no shared
// filesystem with the host. Empty (remote() false) for every other task.
struct TaskFiles {
  std::vector<TaskArtifact> inputs;
  std::vector<TaskArtifact> outputs;
  std::vector<TaskParamFile> params;
  std::string metrics_file;  // relative to the workdir; "" = none
  // The code directory artifact and the host directory it was packed from
  // (its `{{ pipeline.dir }}`).
  std::string code_digest;
  std::string code_dir;
  // The host's artifact store root (the CAS paths steps are given live under
  // it), mapped to the launcher's cache in the pod.
  std::string store_root;
  // The result object's name in the store (ArtifactStore::ReadObject).
  std::string result_key;
  bool remote() const { return !result_key.empty(); }
};

// One attempt of one step instance, fully resolved: no templates left.
struct Task {
  TaskId id = 0;
  std::string run_id;
  std::string pipeline;
  std::string step;       // step name as written, e.g. "train"
  std::string instance;   // instance name, e.g. "train[2]" (== step when no foreach)
  int attempt = 1;        // 1-based
  std::string operator_type = "container";

  std::vector<std::string> argv;               // passed to execve as-is, never to a shell
  std::map<std::string, std::string> env;      // resolved, added to a minimal base env
  std::vector<std::string> secret_env;         // names in `env` whose values are secrets
  // Where each secret env var comes from (name in `env` -> Kubernetes Secret
  // name/key), for executors that must not inline secret values: the
  // Kubernetes executor emits a secretKeyRef and refuses a secret_env name
  // that has no entry here.
  std::map<std::string, SecretRef> secret_refs;
  std::string workdir;                         // absolute; exists before Start()
  std::string log_path;                        // absolute; stdout+stderr go here
  // Secret values (and values derived from them) that the log must not hold:
  // an executor writes every occurrence as "***" (engine/secret_mask.h).
  std::vector<std::string> log_masks;
  std::string image;
  Resources resources;
  std::optional<Duration> timeout;
  // Kubernetes: a pod Pending this long fails the attempt (kError, with the
  // pod's reason and message); unset = no limit but `timeout`.
  std::optional<Duration> pending_timeout;
  Json config = Json::object();                // operator-specific (tfjob replicas, ...)
  TaskFiles files;                             // object-storage transfers; see TaskFiles
};

// How an attempt ended.
enum class TaskOutcome {
  kSucceeded,  // exit 0 (or the CR's Succeeded condition)
  kFailed,     // user failure: non-zero exit, Failed condition
  kError,      // system error: could not start, lost process/pod, executor failure
  kTimedOut,   // killed because the step's timeout passed
  kCancelled,  // killed because the run was cancelled
};

const char* TaskOutcomeName(TaskOutcome outcome);

struct TaskResult {
  TaskId id = 0;
  TaskOutcome outcome = TaskOutcome::kError;
  int exit_code = -1;     // -1 when there is none
  int signal = 0;         // terminating signal, 0 if none
  std::string message;    // why, for anything but kSucceeded
  std::chrono::system_clock::time_point started_at;
  std::chrono::system_clock::time_point finished_at;
  std::string external_id;  // e.g. pid or "namespace/job-name"
};

class Executor {
 public:
  virtual ~Executor() = default;

  // The name used in pipeline files and on the command line ("local", ...).
  virtual std::string Name() const = 0;

  // True when another task may be started now (slots/resources permitting).
  virtual bool CanRunMore() const = 0;

  // Starts `task` without blocking on its completion. A non-OK status means
  // the task did not start (reported by the engine as a system error).
  virtual Status Start(const Task& task) = 0;

  // Blocks up to `timeout` for any started task to finish, and returns its
  // result; nullopt when none finished in time (or none is running).
  virtual std::optional<TaskResult> Wait(Duration timeout) = 0;

  // Asks a running task to stop: SIGTERM (or delete), then SIGKILL after
  // `grace`. Its result is later returned by Wait() as kCancelled.
  virtual void Cancel(TaskId id, Duration grace) = 0;

  // Cancel() for every running task.
  virtual void CancelAll(Duration grace) = 0;

  // Number of tasks started and not yet returned by Wait().
  virtual size_t Running() const = 0;

  // True when Start() of an attempt that an earlier sluice process already
  // started (same run, instance and attempt) adopts it, or takes its
  // recorded result, instead of starting a second copy. On resume the
  // runner then continues such an attempt under its own number rather than
  // closing it as lost and starting the next one.
  virtual bool AdoptsStartedAttempts() const { return false; }
};

using ExecutorPtr = std::unique_ptr<Executor>;

// Executors by name ("local", "kubernetes"). Names register once.
class ExecutorRegistry {
 public:
  // Fails with kAlreadyExists when `name` is taken.
  Status Register(const std::string& name, ExecutorPtr executor);
  // nullptr when unknown.
  Executor* Find(const std::string& name) const;
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, ExecutorPtr> executors_;
};

}  // namespace sluice
