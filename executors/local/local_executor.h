#pragma once
// The local executor: runs each task as processes on this machine.
//
// Every process is started by sluice-supervise (see supervisor.h), one
// supervisor for all the steps of this executor (of the run), never through
// a shell, in its own process group, in the task's working directory, with
// stdin from /dev/null and stdout+stderr appended to the task's log file.
// The supervisor runs in a session of its own and outlives sluice: it
// records each process's pid before the program starts and its exit status
// when it ends, in files beside the log (<log without .log>.pid / .status /
// .lock).
//
// Adoption: Start() of an attempt that some earlier sluice process already
// started (the same log path: run, instance and attempt) never starts it
// again. An attempt its supervisor still watches (it holds the lock) is
// adopted (Wait() returns the result when it ends); one that has ended gives
// its recorded result at once; one whose supervisor ended without a status
// file (killed, or the machine restarted) gives kError with the reason,
// after killing the step's process group if it still runs. Only an attempt
// that never started is started.
//
// The environment is a minimal base plus an allow-list of the parent's variables plus Task::env:
//   PATH, HOME, LANG, TMPDIR   from the parent (or a safe default)
//   PYTHONUNBUFFERED=1
//   parent variables named in LocalExecutorOptions::env_allowlist
//     (default: VIRTUAL_ENV, PYTHONPATH, LD_LIBRARY_PATH, SLUICE_*, ... ;
//      SLUICE_SECRET_* is never passed on: a step gets a secret only through
//      Task::env)
//   SLUICE_RUN_ID, SLUICE_PIPELINE, SLUICE_STEP, SLUICE_INSTANCE, SLUICE_ATTEMPT
//   CUDA_VISIBLE_DEVICES   when LocalExecutorOptions::gpu_devices is set
//   Task::env (wins over all of the above)
// Values of variables named in Task::secret_env are never logged; in fact no
// environment value is logged.
//
// argv[0] without a '/' is looked up in the PATH of the task's environment;
// a relative path with a '/' is relative to the working directory.
//
// One supervisor serves all the steps this executor starts (it is started
// with the first one); it reports each start and each end over a socket, so
// Wait() returns as soon as any process has ended (and its status file is
// written) and never blocks on a particular one. Attempts adopted from an
// earlier sluice process are watched through their lock files, every 10ms.
//
// When a task's main process exits, whatever it left behind in its process
// group is killed (container semantics). Timeouts and Cancel() send SIGTERM to
// every process group of the task, then SIGKILL after the grace period (both
// through the supervisors). A timeout counts from the recorded start, also
// for an adopted attempt.
//
// tfjob and pytorchjob tasks start one process per replica with the
// training-operator's environment contract; see training_job.h for the config
// shape, the environment and the success rules. All replicas append to the
// task's log file, and the executor writes a "[sluice] ..." line there when a
// replica starts and when it ends.

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "engine/executor.h"
#include "engine/operator.h"
#include "engine/status.h"

namespace sluice {

namespace local {
struct AttemptFiles;
struct ControlMessage;
struct PidFile;
struct TaskPlan;
}  // namespace local

// The parent variables passed on by default. An entry ending in '*' matches a
// prefix.
std::vector<std::string> DefaultLocalEnvAllowlist();

struct LocalExecutorOptions {
  // Tasks that may run at once (CanRunMore); <= 0 means no limit. The engine
  // budgets cpu/memory/gpu itself.
  int parallelism = 1;
  // SIGTERM -> SIGKILL delay when a task times out, and when the rest of a
  // distributed task is stopped because its outcome is known.
  Duration kill_grace = std::chrono::seconds(5);
  // Parent environment variables passed to tasks (see the header comment).
  std::vector<std::string> env_allowlist = DefaultLocalEnvAllowlist();
  // GPU device ids ("0", "1", ...) to hand out. When non-empty, a task gets
  // CUDA_VISIBLE_DEVICES set to resources.gpu devices that no running task
  // holds (and "" when it asks for none), unless Task::env sets it. Empty:
  // CUDA_VISIBLE_DEVICES is left alone. The engine's gpu budget must not
  // exceed the number of ids; Start() fails with kUnavailable otherwise.
  std::vector<std::string> gpu_devices;
  // The sluice-supervise program; "" = the one beside this program, else the
  // one the build made, else on PATH. Start() fails with FailedPrecondition
  // when there is none.
  std::string supervisor_path;
  // The step types and their local plans; null = OperatorRegistry::Global().
  // Borrowed: it must outlive the executor.
  const OperatorRegistry* operators = nullptr;
};

class LocalExecutor : public Executor {
 public:
  explicit LocalExecutor(LocalExecutorOptions options);
  // Kills (SIGKILL) and reaps every process still running.
  ~LocalExecutor() override;

  LocalExecutor(const LocalExecutor&) = delete;
  LocalExecutor& operator=(const LocalExecutor&) = delete;

  // "local".
  std::string Name() const override;

  // True while fewer than options.parallelism tasks are running.
  bool CanRunMore() const override;

  // Spawns the task's process(es), or adopts them when this attempt was
  // started before (see the header comment). When task.log_masks is
  // non-empty, each process's supervisor writes its output to the log with
  // every mask replaced by "***" (a value split across reads included; see
  // supervisor.h), also while no sluice process runs. Errors (nothing is
  // left running):
  //   NotFound            argv[0] not found ("cannot start 'pythn3': No such
  //                       file or directory (is it installed and on PATH?)").
  //   FailedPrecondition  the working directory is missing, the log file
  //                       cannot be opened, the program is not executable,
  //                       sluice-supervise is missing.
  //   InvalidArgument     empty command, duplicate task id, bad tfjob/pytorchjob
  //                       config, unknown operator type.
  //   Unavailable         the system is out of processes/memory (retry).
  Status Start(const Task& task) override;

  // Returns the next finished task, waiting up to `timeout`; nullopt when
  // none finished in time or nothing is running. Enforces timeouts and
  // SIGKILL escalation while it waits.
  std::optional<TaskResult> Wait(Duration timeout) override;

  // SIGTERM to the task's process groups now, SIGKILL after `grace` (sent from
  // within Wait()). Unknown or finished ids are ignored. Thread-safe.
  void Cancel(TaskId id, Duration grace) override;

  // Cancel() for every running task. Thread-safe.
  void CancelAll(Duration grace) override;

  // Tasks started and not yet returned by Wait().
  size_t Running() const override;

  // True: see "Adoption" in the header comment.
  bool AdoptsStartedAttempts() const override { return true; }

 private:
  struct Process;
  struct RunningTask;

  // Builds the task of an attempt started by an earlier sluice process;
  // takes `log_fd` (the task's log, open for appending).
  // Starts one replica under its supervisor; "" or why it did not start.
  std::string StartReplica(const Task& task, const LocalProcess& r, const std::string& program,
                           const std::map<std::string, std::string>& env, int log_fd, int lock_fd,
                           const std::string& encoded_masks, Process* p, int* err);
  std::unique_ptr<RunningTask> Adopt(const Task& task, const std::string& who,
                                     const LocalPlan& plan,
                                     const std::vector<local::AttemptFiles>& files,
                                     const std::vector<bool>& supervised, int log_fd);
  // Records how `p` ended: `wait_status` as the supervisor reported it, or
  // else from its status file (`pf` = its pid file or null, to say why it
  // was lost when there is none).
  void Finish(RunningTask& t, Process& p, const local::PidFile* pf, std::optional<int> wait_status);
  // Signals the step of `p` through its supervisor.
  void Signal(Process& p, int sig);
  // Starts our supervisor unless it runs.
  Status EnsureSupervisor();
  // Closes our end of its socket and waits for it to exit (once its steps
  // have ended).
  void StopSupervisor();
  // It died (or cannot be reached): its steps that have no status file are
  // lost.
  void SupervisorGone();
  // Reads the supervisor's reports that are there and applies them; with
  // `until_id` != 0, stops at the start report of that request and returns
  // it in `*reply` (true). False when none is there (any more).
  bool ReadSupervisor(uint64_t until_id, local::ControlMessage* reply);
  // Applies one report.
  void Dispatch(const local::ControlMessage& m);
  void BeginStop(RunningTask& t, TaskOutcome outcome, std::string message, int sig,
                 Duration grace);
  // Finishes `p`, adopted, once its lock is released.
  void ReapAdopted(RunningTask& t, Process& p);
  std::optional<TaskResult> Evaluate(RunningTask& t);
  void ServiceTimers();
  std::map<std::string, std::string> BaseEnv(const Task& task) const;
  // The parent's variables a task gets (the allow-list, PATH, HOME, LANG,
  // TMPDIR), read again only when the environment changed; guarded by mu_.
  const std::map<std::string, std::string>& ParentEnv() const;

  LocalExecutorOptions options_;
  std::vector<bool> gpu_busy_;  // parallel to options_.gpu_devices; guarded by mu_
  std::string supervisor_;  // sluice-supervise; "" when not found
  int wake_fd_ = -1;  // eventfd: Cancel() wakes a waiting Wait()
  // ParentEnv()'s result and the environ entries it was read from.
  mutable std::map<std::string, std::string> parent_env_;
  mutable std::vector<const char*> parent_env_entries_;

  // Our supervisor: its pid and our end of its socket (-1 before the first
  // step, or once it is gone); guarded by mu_.
  pid_t sup_pid_ = -1;
  int sup_sock_ = -1;
  uint64_t last_request_ = 0;
  // Request id -> (task, replica index) of every process it runs for us.
  std::map<uint64_t, std::pair<TaskId, size_t>> requests_;
  RunningTask* starting_ = nullptr;  // the task Start() is starting

  mutable std::mutex mu_;
  std::map<TaskId, std::unique_ptr<RunningTask>> running_;  // guarded by mu_
  std::deque<TaskResult> finished_;                         // guarded by mu_
};

// A new local executor; the caller owns it.
ExecutorPtr NewLocalExecutor(const LocalExecutorOptions& options);


// Registers a new local executor as "local" in `registry` (the binary calls
// this explicitly; there is no static registration). Fails with kAlreadyExists
// when "local" is taken. Defined in register.cc.
Status RegisterLocalExecutor(ExecutorRegistry& registry,
                             const LocalExecutorOptions& options = LocalExecutorOptions());

}  // namespace sluice
