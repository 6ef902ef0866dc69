#include "executors/local/local_executor.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "engine/secret_mask.h"
#include "executors/local/training_job.h"

extern char** environ;

namespace sluice {

namespace {

using SteadyClock = std::chrono::steady_clock;

std::string ErrnoText(int err) { return std::string(strerrordesc_np(err) ? strerrordesc_np(err) : "unknown error"); }

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

int PidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  errno = ENOSYS;
  return -1;
#endif
}

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

// posix_spawn of `path` in its own process group. Returns the pid or errno.
int Spawn(const std::string& path, const std::vector<std::string>& argv,
          const std::map<std::string, std::string>& env, const std::string& workdir,
          int log_fd, pid_t* pid) {
  std::vector<char*> c_argv;
  for (const auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  env_strings.reserve(env.size());
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> c_env;
  for (auto& e : env_strings) c_env.push_back(e.data());
  c_env.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, log_fd, STDERR_FILENO);
  posix_spawn_file_actions_addchdir_np(&actions, workdir.c_str());
  // Nothing of ours leaks into the task, whether or not it was O_CLOEXEC.
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t mask;
  sigemptyset(&mask);
  posix_spawnattr_setsigmask(&attr, &mask);
  sigset_t defaults;
  sigfillset(&defaults);
  posix_spawnattr_setsigdefault(&attr, &defaults);

  int rc = posix_spawn(pid, path.c_str(), &actions, &attr, c_argv.data(), c_env.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return rc;
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
  std::string name;  // "main", "worker-1"
  pid_t pid = -1;    // also the process group id
  int pidfd = -1;
  bool exited = false;
  bool accounted = false;  // looked at by Evaluate()
  bool lost = false;       // reaped by someone else: status unknown
  int wait_status = 0;
};

struct LocalExecutor::RunningTask {
  TaskId id = 0;
  std::string instance;
  bool distributed = false;
  int log_fd = -1;  // kept open for distributed tasks' "[sluice]" lines and masked output
  int out_fd = -1;  // read end of the output pipe when the log is masked
  std::unique_ptr<StreamMasker> masker;
  std::optional<SteadyClock::time_point> drain_until;  // set once every process exited
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
      killpg(p.pid, SIGKILL);
      int status;
      while (waitpid(p.pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (p.pidfd >= 0) close(p.pidfd);
    }
    if (t->log_fd >= 0) close(t->log_fd);
    if (t->out_fd >= 0) close(t->out_fd);
  }
  if (wake_fd_ >= 0) close(wake_fd_);
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
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view name = entry.substr(0, eq);
    if (name.substr(0, 14) == "SLUICE_SECRET_") continue;  // only via Task::env
    if (MatchesAllowlist(name, options_.env_allowlist)) {
      env[std::string(name)] = std::string(entry.substr(eq + 1));
    }
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

  Result<local::TaskPlan> plan = [&] {
    LoopbackPorts ports;
    return local::PlanTask(task, [&] { return ports.Next(); });
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

  // Resolve every program before starting anything, so that a typo in one
  // replica's command starts nothing.
  std::vector<std::map<std::string, std::string>> envs;
  std::vector<std::string> programs;
  for (const auto& r : plan->replicas) {
    std::map<std::string, std::string> env = base;
    for (const auto& [k, v] : r.env) env[k] = v;
    auto program = ResolveProgram(r.argv[0], env["PATH"], task.workdir);
    if (!program) return program.error();
    programs.push_back(*program);
    envs.push_back(std::move(env));
  }

  int log_fd = open(task.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return Status::FailedPrecondition("cannot open log file '" + task.log_path +
                                      "' for step '" + who + "': " + ErrnoText(errno));
  }

  // Masked output goes through a pipe that Wait() copies to the log.
  int out_pipe[2] = {-1, -1};
  if (!task.log_masks.empty() && pipe2(out_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    close(log_fd);
    return Status::Unavailable("cannot create the output pipe of step '" + who + "': " + ErrnoText(err));
  }
  const int child_out = out_pipe[1] >= 0 ? out_pipe[1] : log_fd;

  auto t = std::make_unique<RunningTask>();
  t->id = task.id;
  t->instance = who;
  t->distributed = plan->distributed;
  t->success_set = plan->success_set;
  t->timeout = task.timeout;
  for (size_t i = 0; i < plan->replicas.size(); ++i) {
    const auto& r = plan->replicas[i];
    pid_t pid = -1;
    int rc = Spawn(programs[i], r.argv, envs[i], task.workdir, child_out, &pid);
    if (rc != 0) {
      if (out_pipe[0] >= 0) {
        close(out_pipe[0]);
        close(out_pipe[1]);
      }
      for (auto& p : t->procs) {
        killpg(p.pid, SIGKILL);
        int status;
        while (waitpid(p.pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (p.pidfd >= 0) close(p.pidfd);
      }
      close(log_fd);
      std::string msg = "cannot start '" + r.argv[0] + "': " + ErrnoText(rc);
      if (rc == ENOEXEC) msg += " (a script needs a '#!' line)";
      if (rc == EAGAIN || rc == ENOMEM) return Status::Unavailable(msg);
      if (rc == ENOENT) return Status::NotFound(msg + " (is it installed and on PATH?)");
      return Status::FailedPrecondition(msg);
    }
    Process p;
    p.name = r.Name();
    p.pid = pid;
    if (have_pidfd_) {
      p.pidfd = PidfdOpen(pid);
      if (p.pidfd < 0) {
        spdlog::warn("local executor: pidfd_open failed ({}); polling waitpid instead",
                     ErrnoText(errno));
        have_pidfd_ = false;
      } else {
        fcntl(p.pidfd, F_SETFD, FD_CLOEXEC);
      }
    }
    if (t->distributed) WriteLine(log_fd, p.name + " started (pid " + std::to_string(pid) + ")");
    // The names only: values may be secrets.
    std::string names;
    for (const auto& [k, v] : r.env) names += (names.empty() ? "" : ",") + k;
    spdlog::debug("local: task {} ({}) {} started, pid {}, argv[0] {}, task env names [{}]",
                  task.id, who, p.name, pid, MaskValues(r.argv[0], task.log_masks, kLogMask), names);
    t->procs.push_back(std::move(p));
  }
  if (out_pipe[0] >= 0) {
    close(out_pipe[1]);  // the children hold it now
    fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
    t->out_fd = out_pipe[0];
    t->masker = std::make_unique<StreamMasker>(task.log_masks, std::string(kLogMask));
  }
  if (t->distributed || t->out_fd >= 0) {
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
    if (killpg(p.pid, sig) != 0 && errno != ESRCH) {
      spdlog::warn("local: cannot signal process group {} of {}: {}", p.pid, t.instance,
                   ErrnoText(errno));
    }
  }
  if (!any_alive) return;
  auto kill_at = SteadyClock::now() + grace;
  if (!t.kill_at || kill_at < *t.kill_at) t.kill_at = kill_at;
  if (sig == SIGKILL) t.sigkill_sent = true;
}

void LocalExecutor::Reap(RunningTask& t, Process& p) {
  if (p.exited) return;
  // Peek first (WNOWAIT): while the leader is an unreaped zombie its pid, and
  // so its process group id, cannot be reused, which makes the killpg below
  // safe. Whatever the process left running in its group goes with it.
  siginfo_t info{};
  int peek;
  do {
    peek = waitid(P_PID, static_cast<id_t>(p.pid), &info, WEXITED | WNOHANG | WNOWAIT);
  } while (peek < 0 && errno == EINTR);
  if (peek == 0 && info.si_pid == 0) return;  // still running
  if (peek == 0) killpg(p.pid, SIGKILL);
  int status = 0;
  pid_t r;
  do {
    r = waitpid(p.pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return;  // cannot happen after a successful peek
  p.exited = true;
  if (r < 0) {
    p.lost = true;  // someone else reaped it (ECHILD)
  } else {
    p.wait_status = status;
  }
  if (p.pidfd >= 0) {
    close(p.pidfd);
    p.pidfd = -1;
  }
  if (t.distributed) {
    WriteLine(t.log_fd, p.name + " " + (p.lost ? "was lost" : DescribeWaitStatus(status)));
  }
}

void LocalExecutor::Pump(RunningTask& t, bool final) {
  if (t.out_fd < 0) return;
  auto write_all = [&](const std::string& text) {
    for (size_t done = 0; done < text.size();) {
      ssize_t n = write(t.log_fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // a full disk loses log text, never the task
      done += static_cast<size_t>(n);
    }
  };
  char buf[65536];
  bool eof = false;
  // At most 1 MiB a call, so that a task that writes without pause cannot
  // keep Wait() from its other tasks.
  for (int chunks = 0; chunks < 16;) {
    ssize_t n = read(t.out_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) {
      write_all(t.masker->Write(std::string_view(buf, static_cast<size_t>(n))));
      ++chunks;
      continue;
    }
    eof = n == 0;
    break;  // EAGAIN: nothing more for now
  }
  if (eof || final) {
    write_all(t.masker->Finish());
    close(t.out_fd);
    t.out_fd = -1;
  }
}

std::optional<TaskResult> LocalExecutor::Evaluate(RunningTask& t) {
  for (auto& p : t.procs) {
    if (!p.exited || p.accounted) continue;
    p.accounted = true;
    if (t.outcome) continue;
    if (p.lost || !Succeeded(p.wait_status)) {
      std::string what = p.lost ? "was reaped by someone else; its exit status is unknown"
                                : DescribeWaitStatus(p.wait_status);
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
  if (t.out_fd >= 0) {
    // The rest of the output, up to the bound (a descendant that left the
    // process group may hold the pipe open).
    const auto now = SteadyClock::now();
    if (!t.drain_until) t.drain_until = now + kPipeDrainBound;
    Pump(t, /*final=*/now >= *t.drain_until);
    if (t.out_fd >= 0) return std::nullopt;
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
    result.external_id += (result.external_id.empty() ? "" : ",") + std::to_string(p.pid);
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
        if (!p.exited) killpg(p.pid, SIGKILL);
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
      if (t->drain_until) wake_at = std::min(wake_at, *t->drain_until);
      if (t->out_fd >= 0) {
        fds.push_back({t->out_fd, POLLIN, 0});
        owners.emplace_back(t.get(), nullptr);
      }
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
        if (owners[i - 1].second) Reap(*owners[i - 1].first, *owners[i - 1].second);
        else Pump(*owners[i - 1].first, /*final=*/false);
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
