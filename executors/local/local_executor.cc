#include "executors/local/local_executor.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "engine/file_lock.h"
#include "engine/process.h"
#include "engine/text.h"
#include "executors/local/supervisor.h"
#include "engine/secret_mask.h"

namespace sluice {

namespace {

using SteadyClock = std::chrono::steady_clock;

// "500ms", "30s", "1h30m".
std::string FormatDuration(Duration d) {
  int64_t ms = d.count();
  if (ms % 1000 != 0) return std::to_string(ms) + "ms";
  int64_t s = ms / 1000;
  std::string out;
  if (s >= 3600) out += std::to_string(s / 3600) + "h";
  if (s % 3600 >= 60) out += std::to_string((s % 3600) / 60) + "m";
  if (s % 60 != 0 || out.empty()) out += std::to_string(s % 60) + "s";
  return out;
}

std::string SignalText(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return "signal " + std::to_string(sig) + (abbrev ? std::string(" (SIG") + abbrev + ")" : "");
}

// How a wait status ended, e.g. "exited with code 3", "killed by signal 9 (SIGKILL)".
std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by " + SignalText(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

bool Succeeded(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

bool MatchesAllowlist(std::string_view name, const std::vector<std::string>& allow) {
  for (const auto& a : allow) {
    if (!a.empty() && a.back() == '*') {
      if (name.substr(0, a.size() - 1) == std::string_view(a).substr(0, a.size() - 1)) return true;
    } else if (name == a) {
      return true;
    }
  }
  return false;
}

std::string Getenv(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : fallback;
}

// Finds the program execve should run for argv[0] `prog`, as execvp would but
// with the task's PATH and relative to the task's working directory.
Result<std::string> ResolveProgram(const std::string& prog, const std::string& path_env,
                                   const std::string& workdir) {
  auto relative_to_workdir = [&](const std::string& p) {
    return (!p.empty() && p[0] == '/') ? p : workdir + "/" + p;
  };
  auto check = [](const std::string& full) -> int {
    struct stat st;
    if (stat(full.c_str(), &st) != 0) return errno;
    if (S_ISDIR(st.st_mode)) return EISDIR;
    if (access(full.c_str(), X_OK) != 0) return errno;
    return 0;
  };
  auto fail = [&](int err, const std::string& hint) {
    std::string msg = "cannot start '" + prog + "': " + ErrnoText(err) + " (" + hint + ")";
    if (err == ENOENT) return Error(Status::NotFound(msg));
    return Error(Status::FailedPrecondition(msg));
  };
  if (prog.find('/') != std::string::npos) {
    std::string full = relative_to_workdir(prog);
    int err = check(full);
    if (err == 0) return full;
    if (err == EACCES) return fail(err, "is it executable? try chmod +x " + full);
    return fail(err, "looked for " + full);
  }
  int first_error = ENOENT;
  size_t start = 0;
  while (start <= path_env.size()) {
    size_t end = path_env.find(':', start);
    if (end == std::string::npos) end = path_env.size();
    std::string dir = path_env.substr(start, end - start);
    std::string full = relative_to_workdir(dir.empty() ? std::string(".") : dir) + "/" + prog;
    int err = check(full);
    if (err == 0) return full;
    if (err == EACCES && first_error == ENOENT) first_error = EACCES;
    start = end + 1;
  }
  if (first_error == EACCES) return fail(EACCES, "found on PATH but not executable");
  return fail(ENOENT, "is it installed and on PATH?");
}

// Reserves free loopback ports; they are released when the allocator dies,
// just before the replicas start and bind them.
class LoopbackPorts {
 public:
  ~LoopbackPorts() {
    for (int fd : fds_) close(fd);
  }
  Result<int> Next() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Error(Status::Unavailable("cannot create a socket: " + ErrnoText(errno)));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      int err = errno;
      close(fd);
      return Error(Status::Unavailable("cannot find a free loopback port: " + ErrnoText(err)));
    }
    fds_.push_back(fd);
    return static_cast<int>(ntohs(addr.sin_port));
  }

 private:
  std::vector<int> fds_;
};

// posix_spawn of the supervisor `supervisor`, in a session of its own, which
// runs `program` with `argv` (see supervise_main.cc for the descriptors 3, 4
// and, when `masks_fd` >= 0, 5 with --masks). Returns the supervisor's pid or
// errno.
int SpawnSupervised(const std::string& supervisor, const local::AttemptFiles& files,
                    const std::string& program, const std::vector<std::string>& argv,
                    const std::map<std::string, std::string>& env, const std::string& workdir,
                    int log_fd, int ready_fd, int lock_fd, int masks_fd, pid_t* pid) {
  SpawnOptions spawn;
  spawn.program = supervisor;
  spawn.argv = {supervisor};
  if (masks_fd >= 0) spawn.argv.push_back("--masks");
  spawn.argv.insert(spawn.argv.end(), {files.pid, files.status, program});
  spawn.argv.insert(spawn.argv.end(), argv.begin(), argv.end());
  spawn.env = env;
  spawn.workdir = workdir;
  spawn.dev_null = {{STDIN_FILENO, O_RDONLY}};
  spawn.dup = {{STDOUT_FILENO, log_fd}, {STDERR_FILENO, log_fd}, {3, ready_fd}, {4, lock_fd}};
  if (masks_fd >= 0) spawn.dup.push_back({5, masks_fd});
  // Nothing else of ours leaks into the task, whether or not it was O_CLOEXEC.
  spawn.close_from = masks_fd >= 0 ? 6 : 5;
  // A session of its own: a kill of sluice, or a signal to sluice's process
  // group (Ctrl-C in its terminal), does not reach the supervisor.
  spawn.group = SpawnOptions::Group::kNewSession;
  spawn.clear_signal_mask = true;
  spawn.all_signals_default = true;
  return SpawnProcess(spawn, pid);
}

// Hands the log masks to a supervisor started with --masks: writes them to
// `fd` (our end of its descriptor 5) and closes it. A supervisor that died
// meanwhile is seen by its report, not here.
void SendMasks(int fd, const std::string& encoded) {
  for (size_t done = 0; done < encoded.size();) {
    ssize_t n = send(fd, encoded.data() + done, encoded.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
}

// Reads the supervisor's one-line report from `fd` until EOF, waiting up to
// `timeout`; "" when it ended (or timed out) without one.
std::string ReadReport(int fd, std::chrono::milliseconds timeout) {
  std::string text;
  const auto end = SteadyClock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - SteadyClock::now());
    if (left.count() <= 0) return "";
    pollfd p{fd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "";
    char buf[256];
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    text.append(buf, static_cast<size_t>(r));
  }
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

// The sluice-supervise program: beside this program, then where the build
// put it, then on PATH; "" when none is executable.
std::string FindSupervisor() {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(self.parent_path() / "sluice-supervise");
#ifdef SLUICE_SUPERVISE_BUILD_PATH
  candidates.push_back(SLUICE_SUPERVISE_BUILD_PATH);
#endif
  std::string path = Getenv("PATH", "/usr/local/bin:/usr/bin:/bin");
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) candidates.push_back(fs::path(path.substr(start, end - start)) / "sluice-supervise");
    start = end + 1;
  }
  for (const auto& c : candidates) {
    if (access(c.c_str(), X_OK) == 0) return c.string();
  }
  return "";
}

// Sends `sig` to a process through its pidfd when there is one (safe against
// pid reuse), else by pid.
void SendSignal(pid_t pid, int pidfd, int sig) {
  if (pidfd >= 0 && PidfdSendSignal(pidfd, sig) == 0) return;
  kill(pid, sig);
}

// When an attempt's supervisor is gone without a status file, its step may
// still run (the supervisor alone was killed): stops the step's process
// group, so that no second copy can ever run beside it. Returns " and its
// step's process group was stopped" when there was one to stop.
std::string StopOrphanedStep(const local::PidFile& pf) {
  if (!local::IsAlive(pf.step, pf.boot_id)) return "";
  int fd = PidfdOpen(pf.step.pid);
  // Checked again with the pidfd open, so it names the same process.
  if (fd >= 0 && !local::IsAlive(pf.step, pf.boot_id)) {
    close(fd);
    return "";
  }
  killpg(pf.step.pid, SIGKILL);
  if (fd >= 0) {
    WaitForPidfd(fd, std::chrono::seconds(30));
    close(fd);
  }
  return "; its step (pid " + std::to_string(pf.step.pid) + ") was still running and was killed";
}

void WriteLine(int fd, const std::string& line) {
  if (fd < 0) return;
  std::string s = "[sluice] " + line + "\n";
  ssize_t ignored = write(fd, s.data(), s.size());
  (void)ignored;
}

}  // namespace

std::vector<std::string> DefaultLocalEnvAllowlist() {
  return {"VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PYTHONPATH", "PYTHONHOME",
          "PYENV_ROOT", "PYENV_VERSION", "LD_LIBRARY_PATH", "USER", "LOGNAME", "TZ",
          "LC_ALL", "LC_CTYPE", "CUDA_VISIBLE_DEVICES", "SSL_CERT_FILE", "SSL_CERT_DIR",
          "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
          "SLUICE_*"};
}

struct LocalExecutor::Process {
  std::string name;       // "main", "worker-1"
  pid_t pid = -1;         // its sluice-supervise process
  pid_t step_pid = -1;    // the step's main process, also its process group id
  int pidfd = -1;         // of the supervisor
  bool adopted = false;   // started by an earlier sluice process: not our child
  local::AttemptFiles files;
  bool exited = false;
  bool accounted = false;  // looked at by Evaluate()
  bool lost = false;       // how the step ended is unknown (or it never ran)
  std::string lost_reason;
  int wait_status = 0;
};

struct LocalExecutor::RunningTask {
  TaskId id = 0;
  std::string instance;
  bool distributed = false;
  int log_fd = -1;  // kept open for distributed tasks' "[sluice]" lines
  std::vector<size_t> gpus;  // indexes into options_.gpu_devices held by this task
  std::vector<Process> procs;
  std::vector<size_t> success_set;
  std::chrono::system_clock::time_point started_at;
  std::optional<Duration> timeout;
  std::optional<SteadyClock::time_point> deadline;

  // Set once the outcome is known; later exits do not change it.
  std::optional<TaskOutcome> outcome;
  std::string message;
  int exit_code = -1;
  int signal = 0;
  std::optional<SteadyClock::time_point> kill_at;
  bool sigkill_sent = false;
};

LocalExecutor::LocalExecutor(LocalExecutorOptions options)
    : options_(std::move(options)), gpu_busy_(options_.gpu_devices.size(), false) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  supervisor_ = options_.supervisor_path.empty() ? FindSupervisor() : options_.supervisor_path;
  // With SIGCHLD ignored the kernel reaps children itself and waitpid cannot
  // report their exit status.
  struct sigaction sa;
  if (sigaction(SIGCHLD, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN) {
    spdlog::warn("local executor: SIGCHLD was ignored; restoring the default so exits can be seen");
    signal(SIGCHLD, SIG_DFL);
  }
}

LocalExecutor::~LocalExecutor() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, t] : running_) {
    for (auto& p : t->procs) {
      if (p.exited) continue;
      Signal(p, SIGKILL);
      if (p.adopted) {
        if (p.pidfd >= 0) WaitForPidfd(p.pidfd, std::chrono::seconds(10));
      } else {
        int status;
        while (waitpid(p.pid, &status, 0) < 0 && errno == EINTR) {
        }
      }
      if (p.pidfd >= 0) close(p.pidfd);
    }
    if (t->log_fd >= 0) close(t->log_fd);
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

void LocalExecutor::Signal(Process& p, int sig) {
  // The supervisor forwards SIGTERM/SIGINT to the step's process group and
  // turns SIGUSR2 into a SIGKILL of it; a SIGKILL of the supervisor itself
  // would leave the step running and its status unrecorded.
  SendSignal(p.pid, p.pidfd, sig == SIGKILL ? SIGUSR2 : sig);
}

std::string LocalExecutor::Name() const { return "local"; }

bool LocalExecutor::CanRunMore() const {
  if (options_.parallelism <= 0) return true;
  return Running() < static_cast<size_t>(options_.parallelism);
}

size_t LocalExecutor::Running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_.size() + finished_.size();
}

std::map<std::string, std::string> LocalExecutor::BaseEnv(const Task& task) const {
  std::map<std::string, std::string> env;
  for (auto& [name, value] : CurrentEnvironment()) {
    if (name.starts_with("SLUICE_SECRET_")) continue;  // only via Task::env
    if (MatchesAllowlist(name, options_.env_allowlist)) env[name] = value;
  }
  env["PATH"] = Getenv("PATH", "/usr/local/bin:/usr/bin:/bin");
  env["HOME"] = Getenv("HOME", "/");
  env["LANG"] = Getenv("LANG", "C.UTF-8");
  env["TMPDIR"] = Getenv("TMPDIR", "/tmp");
  env["PYTHONUNBUFFERED"] = "1";
  env["SLUICE_RUN_ID"] = task.run_id;
  env["SLUICE_PIPELINE"] = task.pipeline;
  env["SLUICE_STEP"] = task.step;
  env["SLUICE_INSTANCE"] = task.instance.empty() ? task.step : task.instance;
  env["SLUICE_ATTEMPT"] = std::to_string(task.attempt);
  return env;
}

// Starts replica `r` of `task` under its own supervisor, which takes over
// `lock_fd`, and waits for the supervisor's report that the step runs. Fills
// p->pid and p->step_pid. Returns "" when it runs, else why it did not start
// (with its errno in *err when there is one).
std::string LocalExecutor::StartReplica(const Task& task, const LocalProcess& r, const std::string& program,
                                        const std::map<std::string, std::string>& env, int log_fd, int lock_fd,
                                        const std::string& encoded_masks, Process* p, int* err) {
  std::string failure;
  int ready[2];
  // A socket pair, so that a supervisor gone early is an EPIPE of the
  // send, not a SIGPIPE of sluice.
  int masks[2] = {-1, -1};
  if (pipe2(ready, O_CLOEXEC) != 0 ||
      (!task.log_masks.empty() && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, masks) != 0)) {
    *err = errno;
    failure = "cannot create a pipe: " + ErrnoText(*err);
  } else {
    int rc = SpawnSupervised(supervisor_, p->files, program, r.argv, env, task.workdir,
                             log_fd, ready[1], lock_fd, masks[1], &p->pid);
    close(ready[1]);
    if (masks[1] >= 0) close(masks[1]);
    if (masks[0] >= 0) {
      if (rc == 0) SendMasks(masks[0], encoded_masks);
      else close(masks[0]);
    }
    if (rc != 0) {
      *err = rc;
      failure = "cannot start " + supervisor_ + ": " + ErrnoText(rc);
    } else {
      std::string report = ReadReport(ready[0], std::chrono::seconds(60));
      if (report.rfind("ok ", 0) == 0) {
        p->step_pid = static_cast<pid_t>(std::atoi(report.c_str() + 3));
      } else if (report.rfind("exec ", 0) == 0) {
        *err = std::atoi(report.c_str() + 5);
        failure = "cannot start '" + r.argv[0] + "': " + ErrnoText(*err);
      } else {
        failure = "cannot start '" + r.argv[0] + "': " +
                  (report.rfind("error ", 0) == 0 ? report.substr(6)
                                                   : "sluice-supervise ended without starting it");
        if (report.empty()) kill(p->pid, SIGKILL);
      }
      if (!failure.empty()) {
        int status;
        while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
        }
      }
    }
    close(ready[0]);
  }
  return failure;
}

Status LocalExecutor::Start(const Task& task) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string who = task.instance.empty() ? task.step : task.instance;
  if (running_.count(task.id) != 0) {
    return Status::InvalidArgument("task id " + std::to_string(task.id) + " is already running");
  }
  struct stat st;
  if (task.workdir.empty() || stat(task.workdir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::FailedPrecondition("cannot start '" + who + "': working directory '" +
                                      task.workdir + "' does not exist");
  }

  Result<LocalPlan> plan = [&]() -> Result<LocalPlan> {
    auto op = LocalOperator(OperatorRegistry::OrGlobal(options_.operators), task.operator_type);
    if (!op) return Error(op.error());
    LoopbackPorts ports;
    return (*op)->PlanLocal(task, [&] { return ports.Next(); });
  }();
  if (!plan) return plan.error();

  // GPUs: pick free device ids now, mark them busy only once the task runs.
  std::map<std::string, std::string> base = BaseEnv(task);
  std::vector<size_t> gpus;
  if (!options_.gpu_devices.empty()) {
    for (size_t i = 0; i < gpu_busy_.size() && static_cast<int64_t>(gpus.size()) < task.resources.gpu; ++i) {
      if (!gpu_busy_[i]) gpus.push_back(i);
    }
    if (static_cast<int64_t>(gpus.size()) < task.resources.gpu) {
      return Status::Unavailable("cannot start '" + who + "': it needs " +
                                 std::to_string(task.resources.gpu) + " GPU(s) and " +
                                 std::to_string(gpus.size()) + " of " +
                                 std::to_string(gpu_busy_.size()) + " are free");
    }
    std::string visible;
    for (size_t i : gpus) visible += (visible.empty() ? "" : ",") + options_.gpu_devices[i];
    base["CUDA_VISIBLE_DEVICES"] = visible;
  }

  // Each replica's supervisor files; an attempt some earlier sluice process
  // started (its names are deterministic: run, instance, attempt) is
  // adopted, never started a second time.
  int log_fd = open(task.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return Status::FailedPrecondition("cannot open log file '" + task.log_path +
                                      "' for step '" + who + "': " + ErrnoText(errno));
  }
  std::vector<local::AttemptFiles> files;
  std::vector<int> lock_fds;
  auto close_locks = [&] {
    for (int fd : lock_fds) close(fd);
    lock_fds.clear();
  };
  bool started_before = false;
  std::vector<bool> supervised;  // a supervisor of this replica is alive
  for (const auto& r : plan->replicas) {
    files.push_back(local::AttemptFiles::For(task.log_path, plan->distributed ? r.Name() : ""));
    auto fd = OpenLockFile(files.back().lock);
    if (!fd) {
      close_locks();
      close(log_fd);
      return Status::FailedPrecondition("cannot start '" + who + "': " + fd.error().message());
    }
    lock_fds.push_back(*fd);
    auto taken = TryLockExclusive(*fd);
    if (!taken) {
      close_locks();
      close(log_fd);
      return Status::FailedPrecondition("cannot start '" + who + "': " + taken.error().message());
    }
    supervised.push_back(!*taken);
    struct stat pst;
    if (!*taken || stat(files.back().pid.c_str(), &pst) == 0) started_before = true;
  }
  if (started_before) {
    close_locks();
    auto t = Adopt(task, who, *plan, files, supervised, log_fd);
    for (size_t i : gpus) gpu_busy_[i] = true;
    t->gpus = std::move(gpus);
    running_[task.id] = std::move(t);
    return Status::Ok();
  }
  if (supervisor_.empty()) {
    close_locks();
    close(log_fd);
    return Status::FailedPrecondition(
        "cannot start '" + who + "': sluice-supervise, which runs local steps, was not found "
        "(looked beside this program and on PATH; install it beside sluice)");
  }

  // Resolve every program before starting anything, so that a typo in one
  // replica's command starts nothing.
  std::vector<std::map<std::string, std::string>> envs;
  std::vector<std::string> programs;
  for (const auto& r : plan->replicas) {
    std::map<std::string, std::string> env = base;
    for (const auto& [k, v] : r.env) env[k] = v;
    auto program = ResolveProgram(r.argv[0], env["PATH"], task.workdir);
    if (!program) {
      close_locks();
      close(log_fd);
      return program.error();
    }
    programs.push_back(*program);
    envs.push_back(std::move(env));
  }

  // Each supervisor masks the secret values in what its step writes.
  const std::string encoded_masks = task.log_masks.empty() ? "" : local::EncodeLogMasks(task.log_masks);

  auto t = std::make_unique<RunningTask>();
  t->id = task.id;
  t->instance = who;
  t->distributed = plan->distributed;
  t->success_set = plan->success_set;
  t->timeout = task.timeout;
  for (size_t i = 0; i < plan->replicas.size(); ++i) {
    const auto& r = plan->replicas[i];
    Process p;
    p.name = r.Name();
    p.files = files[i];
    int err = 0;  // the errno of a failed start, when there is one
    std::string failure = StartReplica(task, r, programs[i], envs[i], log_fd, lock_fds[i], encoded_masks, &p, &err);
    if (!failure.empty()) {
      for (auto& started : t->procs) {
        Signal(started, SIGKILL);
        int status;
        while (waitpid(started.pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (started.pidfd >= 0) close(started.pidfd);
      }
      close(log_fd);
      close_locks();
      if (err == ENOEXEC) failure += " (a script needs a '#!' line)";
      if (err == EAGAIN || err == ENOMEM) return Status::Unavailable(failure);
      if (err == ENOENT) return Status::NotFound(failure + " (is it installed and on PATH?)");
      return Status::FailedPrecondition(failure);
    }
    if (have_pidfd_) {
      p.pidfd = PidfdOpen(p.pid);
      if (p.pidfd < 0) {
        spdlog::warn("local executor: pidfd_open failed ({}); polling waitpid instead",
                     ErrnoText(errno));
        have_pidfd_ = false;
      } else {
        fcntl(p.pidfd, F_SETFD, FD_CLOEXEC);
      }
    }
    if (t->distributed) WriteLine(log_fd, p.name + " started (pid " + std::to_string(p.step_pid) + ")");
    // The names only: values may be secrets.
    std::string names;
    for (const auto& [k, v] : r.env) names += (names.empty() ? "" : ",") + k;
    spdlog::debug("local: task {} ({}) {} started, pid {} (supervisor {}), argv[0] {}, task env names [{}]",
                  task.id, who, p.name, p.step_pid, p.pid, MaskValues(r.argv[0], task.log_masks, kLogMask), names);
    t->procs.push_back(std::move(p));
  }
  // The supervisors hold the locks now.
  close_locks();
  if (t->distributed) {
    t->log_fd = log_fd;
  } else {
    close(log_fd);
  }
  for (size_t i : gpus) gpu_busy_[i] = true;
  t->gpus = std::move(gpus);
  t->started_at = std::chrono::system_clock::now();
  if (task.timeout) t->deadline = SteadyClock::now() + *task.timeout;
  running_[task.id] = std::move(t);
  return Status::Ok();
}

std::unique_ptr<LocalExecutor::RunningTask> LocalExecutor::Adopt(
    const Task& task, const std::string& who, const LocalPlan& plan,
    const std::vector<local::AttemptFiles>& files, const std::vector<bool>& supervised, int log_fd) {
  auto t = std::make_unique<RunningTask>();
  t->id = task.id;
  t->instance = who;
  t->distributed = plan.distributed;
  t->success_set = plan.success_set;
  t->timeout = task.timeout;
  if (t->distributed) {
    t->log_fd = log_fd;
  } else {
    close(log_fd);
  }
  std::optional<int64_t> started_ns;
  for (size_t i = 0; i < plan.replicas.size(); ++i) {
    Process p;
    p.name = plan.replicas[i].Name();
    p.files = files[i];
    p.adopted = true;
    auto pf = local::ReadPidFile(p.files.pid);
    // A live supervisor writes its pid file first thing; give it a moment.
    for (int k = 0; supervised[i] && !pf && k < 1000; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      auto held = IsLockHeld(p.files.lock);
      if (held && !*held) break;
      pf = local::ReadPidFile(p.files.pid);
    }
    if (pf && (!started_ns || pf->started_ns < *started_ns)) started_ns = pf->started_ns;
    if (pf) {
      p.pid = pf->supervisor.pid;
      p.step_pid = pf->step.pid;
      p.pidfd = PidfdOpen(p.pid);
      // Checked with the pidfd open, so that it names this very supervisor.
      if (local::IsAlive(pf->supervisor, pf->boot_id)) {
        if (p.pidfd >= 0) fcntl(p.pidfd, F_SETFD, FD_CLOEXEC);
        spdlog::info("local: adopting {} {} attempt {} (pid {}, supervisor pid {})", who, p.name,
                     task.attempt, p.step_pid, p.pid);
        if (t->distributed) WriteLine(t->log_fd, p.name + " adopted (pid " + std::to_string(p.step_pid) + ")");
        t->procs.push_back(std::move(p));
        continue;
      }
      if (p.pidfd >= 0) close(p.pidfd);
      p.pidfd = -1;
    }
    // The supervisor has ended: it left a status file, or nothing.
    Finish(*t, p, pf ? &*pf : nullptr);
    t->procs.push_back(std::move(p));
  }
  t->started_at = started_ns ? std::chrono::system_clock::time_point(std::chrono::duration_cast<
                                   std::chrono::system_clock::duration>(std::chrono::nanoseconds(*started_ns)))
                             : std::chrono::system_clock::now();
  if (task.timeout) {
    auto elapsed = std::chrono::system_clock::now() - t->started_at;
    t->deadline = SteadyClock::now() + (*task.timeout - std::chrono::duration_cast<Duration>(elapsed));
  }
  // Anything already known (ended while no sluice process watched) is
  // returned by the next Wait().
  uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof(one));
  (void)ignored;
  return t;
}

void LocalExecutor::Finish(RunningTask& t, Process& p, const local::PidFile* pf) {
  p.exited = true;
  if (p.pidfd >= 0) {
    close(p.pidfd);
    p.pidfd = -1;
  }
  auto status = local::ReadStatusFile(p.files.status);
  if (status && status->exec_errno == 0) {
    p.wait_status = status->wait_status;
  } else if (status) {
    p.lost = true;
    p.lost_reason = "lost: it could not be started: " + ErrnoText(status->exec_errno);
  } else {
    p.lost = true;
    if (!pf) {
      p.lost_reason = "lost: it never started (the sluice process starting it died first)";
    } else if (!pf->boot_id.empty() && pf->boot_id != local::BootId()) {
      p.lost_reason = "lost: the machine restarted while it ran, so how it ended is unknown";
    } else {
      p.lost_reason = "lost: its supervisor (pid " + std::to_string(pf->supervisor.pid) +
                      ") ended without recording how the step ended" + StopOrphanedStep(*pf);
    }
  }
  if (t.distributed) {
    WriteLine(t.log_fd, p.name + " " + (p.lost ? p.lost_reason : DescribeWaitStatus(p.wait_status)));
  }
}

void LocalExecutor::BeginStop(RunningTask& t, TaskOutcome outcome, std::string message,
                              int sig, Duration grace) {
  if (!t.outcome) {
    t.outcome = outcome;
    t.message = std::move(message);
  }
  bool any_alive = false;
  for (auto& p : t.procs) {
    if (p.exited) continue;
    any_alive = true;
    Signal(p, sig);
  }
  if (!any_alive) return;
  auto kill_at = SteadyClock::now() + grace;
  if (!t.kill_at || kill_at < *t.kill_at) t.kill_at = kill_at;
  if (sig == SIGKILL) t.sigkill_sent = true;
}

void LocalExecutor::Reap(RunningTask& t, Process& p) {
  if (p.exited) return;
  if (p.adopted) {
    // Not our child: its pidfd turned readable, or (without pidfds) it is
    // gone from /proc.
    if (p.pidfd >= 0) {
      pollfd fd{p.pidfd, POLLIN, 0};
      if (poll(&fd, 1, 0) <= 0) return;
    } else {
      auto pf = local::ReadPidFile(p.files.pid);
      if (pf && local::IsAlive(pf->supervisor, pf->boot_id)) return;
    }
  } else {
    int status = 0;
    pid_t r;
    do {
      r = waitpid(p.pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return;  // still running
  }
  auto pf = local::ReadPidFile(p.files.pid);
  Finish(t, p, pf ? &*pf : nullptr);
}

std::optional<TaskResult> LocalExecutor::Evaluate(RunningTask& t) {
  for (auto& p : t.procs) {
    if (!p.exited || p.accounted) continue;
    p.accounted = true;
    if (t.outcome) continue;
    if (p.lost || !Succeeded(p.wait_status)) {
      std::string what = p.lost ? p.lost_reason : DescribeWaitStatus(p.wait_status);
      if (t.distributed) what = p.name + " " + what;
      if (!p.lost && WIFEXITED(p.wait_status)) t.exit_code = WEXITSTATUS(p.wait_status);
      if (!p.lost && WIFSIGNALED(p.wait_status)) t.signal = WTERMSIG(p.wait_status);
      BeginStop(t, p.lost ? TaskOutcome::kError : TaskOutcome::kFailed, what, SIGTERM,
                options_.kill_grace);
    }
  }
  if (!t.outcome) {
    bool all_ok = std::all_of(t.success_set.begin(), t.success_set.end(), [&](size_t i) {
      return t.procs[i].exited && !t.procs[i].lost && Succeeded(t.procs[i].wait_status);
    });
    if (all_ok) {
      t.exit_code = 0;
      BeginStop(t, TaskOutcome::kSucceeded, "", SIGTERM, options_.kill_grace);
    }
  }
  if (!std::all_of(t.procs.begin(), t.procs.end(), [](const Process& p) { return p.exited; })) {
    return std::nullopt;
  }

  TaskResult result;
  result.id = t.id;
  result.outcome = t.outcome.value_or(TaskOutcome::kSucceeded);
  result.message = t.message;
  result.exit_code = t.exit_code;
  result.signal = t.signal;
  if (result.outcome == TaskOutcome::kTimedOut || result.outcome == TaskOutcome::kCancelled) {
    const Process& main = t.procs[t.success_set.empty() ? 0 : t.success_set[0]];
    if (!main.lost && WIFEXITED(main.wait_status)) result.exit_code = WEXITSTATUS(main.wait_status);
    if (!main.lost && WIFSIGNALED(main.wait_status)) result.signal = WTERMSIG(main.wait_status);
  }
  result.started_at = t.started_at;
  result.finished_at = std::chrono::system_clock::now();
  for (const auto& p : t.procs) {
    result.external_id += (result.external_id.empty() ? "" : ",") + std::to_string(p.step_pid);
  }
  if (t.log_fd >= 0) {
    close(t.log_fd);
    t.log_fd = -1;
  }
  spdlog::debug("local: task {} ({}) finished: {}", t.id, t.instance,
                result.message.empty() ? std::string("ok") : result.message);
  return result;
}

void LocalExecutor::ServiceTimers() {
  auto now = SteadyClock::now();
  for (auto& [id, t] : running_) {
    if (!t->outcome && t->deadline && now >= *t->deadline) {
      BeginStop(*t, TaskOutcome::kTimedOut,
                "timed out after " + FormatDuration(*t->timeout) + "; stopped its process group",
                SIGTERM, options_.kill_grace);
    }
    if (t->kill_at && !t->sigkill_sent && now >= *t->kill_at) {
      for (auto& p : t->procs) {
        if (!p.exited) Signal(p, SIGKILL);
      }
      t->sigkill_sent = true;
    }
  }
}

std::optional<TaskResult> LocalExecutor::Wait(Duration timeout) {
  // Clamped so that Duration::max() ("forever") does not overflow the clock.
  const auto end = SteadyClock::now() + std::clamp<Duration>(timeout, Duration(0), std::chrono::hours(24 * 365));
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!finished_.empty()) {
      TaskResult r = std::move(finished_.front());
      finished_.pop_front();
      return r;
    }
    if (running_.empty()) return std::nullopt;
    ServiceTimers();

    std::vector<pollfd> fds;
    std::vector<std::pair<RunningTask*, Process*>> owners;
    fds.push_back({wake_fd_, POLLIN, 0});
    auto wake_at = end;
    for (auto& [id, t] : running_) {
      if (!t->outcome && t->deadline) wake_at = std::min(wake_at, *t->deadline);
      if (t->kill_at && !t->sigkill_sent) wake_at = std::min(wake_at, *t->kill_at);
      for (auto& p : t->procs) {
        if (p.exited || p.pidfd < 0) continue;
        fds.push_back({p.pidfd, POLLIN, 0});
        owners.emplace_back(t.get(), &p);
      }
    }
    auto now = SteadyClock::now();
    int64_t ms = 0;
    if (wake_at > now) {
      ms = std::chrono::ceil<std::chrono::milliseconds>(wake_at - now).count();
    }
    if (!have_pidfd_) ms = std::min<int64_t>(ms, 10);
    ms = std::min<int64_t>(ms, 1 << 30);

    // Only this thread erases tasks or closes pidfds, so `owners` stays valid
    // while Cancel() runs on another thread.
    lock.unlock();
    int n = poll(fds.data(), fds.size(), static_cast<int>(ms));
    lock.lock();
    if (n > 0) {
      if (fds[0].revents != 0) {
        uint64_t drained;
        ssize_t ignored = read(wake_fd_, &drained, sizeof(drained));
        (void)ignored;
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        Reap(*owners[i - 1].first, *owners[i - 1].second);
      }
    }
    if (!have_pidfd_) {
      for (auto& [id, t] : running_) {
        for (auto& p : t->procs) Reap(*t, p);
      }
    }
    for (auto it = running_.begin(); it != running_.end();) {
      if (auto result = Evaluate(*it->second)) {
        for (size_t i : it->second->gpus) gpu_busy_[i] = false;
        finished_.push_back(std::move(*result));
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
    if (finished_.empty() && SteadyClock::now() >= end) {
      ServiceTimers();
      return std::nullopt;
    }
  }
}

void LocalExecutor::Cancel(TaskId id, Duration grace) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = running_.find(id);
  if (it == running_.end()) return;
  BeginStop(*it->second, TaskOutcome::kCancelled, "cancelled", SIGTERM, grace);
  uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

void LocalExecutor::CancelAll(Duration grace) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, t] : running_) {
    BeginStop(*t, TaskOutcome::kCancelled, "cancelled", SIGTERM, grace);
  }
  uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

ExecutorPtr NewLocalExecutor(const LocalExecutorOptions& options) {
  return std::make_unique<LocalExecutor>(options);
}

}  // namespace sluice
