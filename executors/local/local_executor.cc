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
  uint64_t request = 0;   // its id in the requests to our supervisor
  pid_t step_pid = -1;    // the step's main process, also its process group id
  // Started by an earlier sluice process, under another supervisor: watched
  // through its lock file and signalled through SignalStep.
  bool adopted = false;
  std::optional<local::PidFile> pid_file;  // adopted ones
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
      if (!p.exited) Signal(p, SIGKILL);
    }
  }
  // Ours end once their steps are killed; adopted ones release their lock
  // once their status is written.
  StopSupervisor();
  for (auto& [id, t] : running_) {
    for (auto& p : t->procs) {
      if (p.exited || !p.adopted) continue;
      for (int k = 0; k < 1000; ++k) {
        auto held = IsLockHeld(p.files.lock);
        if (!held || !*held) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    if (t->log_fd >= 0) close(t->log_fd);
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

void LocalExecutor::StopSupervisor() {
  if (sup_sock_ >= 0) close(sup_sock_);
  sup_sock_ = -1;
  if (sup_pid_ > 0) {
    int status;
    while (waitpid(sup_pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  sup_pid_ = -1;
}

Status LocalExecutor::EnsureSupervisor() {
  if (sup_sock_ >= 0) return Status::Ok();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return Status::Unavailable("cannot create a socket for sluice-supervise: " + ErrnoText(errno));
  }
  SpawnOptions spawn;
  spawn.program = supervisor_;
  spawn.argv = {supervisor_, "--serve"};
  spawn.env = std::map<std::string, std::string>();  // each step brings its own
  spawn.workdir = "/";
  spawn.dev_null = {{STDIN_FILENO, O_RDONLY}, {STDOUT_FILENO, O_WRONLY}, {STDERR_FILENO, O_WRONLY}};
  spawn.dup = {{3, sv[1]}};
  spawn.close_from = 4;  // nothing else of ours reaches it or the steps
  // A session of its own: a kill of sluice, or a signal to sluice's process
  // group (Ctrl-C in its terminal), does not reach the supervisor.
  spawn.group = SpawnOptions::Group::kNewSession;
  spawn.clear_signal_mask = true;
  spawn.all_signals_default = true;
  int rc = SpawnProcess(spawn, &sup_pid_);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    sup_pid_ = -1;
    std::string what = "cannot start " + supervisor_ + ": " + ErrnoText(rc);
    return (rc == EAGAIN || rc == ENOMEM) ? Status::Unavailable(what) : Status::FailedPrecondition(what);
  }
  sup_sock_ = sv[0];
  return Status::Ok();
}

void LocalExecutor::SupervisorGone() {
  StopSupervisor();
  // What it recorded stands; the rest is lost.
  for (auto& [id, t] : running_) {
    for (auto& p : t->procs) {
      if (p.exited || p.adopted) continue;
      auto pf = local::ReadPidFile(p.files.pid);
      Finish(*t, p, pf ? &*pf : nullptr, std::nullopt);
    }
  }
}

void LocalExecutor::Dispatch(const local::ControlMessage& m) {
  auto it = requests_.find(m.id);
  if (it == requests_.end()) return;
  const TaskId id = it->second.first;
  requests_.erase(it);
  auto found = running_.find(id);
  RunningTask* t = found != running_.end() ? found->second.get()
                                           : (starting_ != nullptr && starting_->id == id ? starting_ : nullptr);
  if (t == nullptr) return;
  for (auto& p : t->procs) {
    if (p.request != m.id || p.exited) continue;
    if (m.kind == 'D') {
      Finish(*t, p, nullptr, static_cast<int>(m.value));
    } else {
      auto pf = local::ReadPidFile(p.files.pid);
      Finish(*t, p, pf ? &*pf : nullptr, std::nullopt);
    }
  }
}

bool LocalExecutor::ReadSupervisor(uint64_t until_id, local::ControlMessage* reply) {
  std::string bytes;
  std::vector<int> fds;
  for (;;) {
    int got = local::RecvMessage(sup_sock_, &bytes, &fds);
    for (int fd : fds) close(fd);
    if (got < 0 && errno == EAGAIN) return false;
    if (got <= 0) {
      SupervisorGone();
      return false;
    }
    auto m = local::DecodeControlMessage(bytes);
    if (!m) continue;
    if (until_id != 0 && m->id == until_id && m->kind != 'D') {
      *reply = *m;
      return true;
    }
    Dispatch(*m);
  }
}

void LocalExecutor::Signal(Process& p, int sig) {
  if (p.exited) return;
  if (p.adopted) {
    // Its supervisor forwards the signal to the step's process group.
    if (p.pid_file) local::SignalStep(*p.pid_file, sig);
    return;
  }
  if (sup_sock_ < 0) return;
  local::ControlMessage m{'K', p.request, sig, ""};
  local::SendMessage(sup_sock_, local::EncodeControlMessage(m));
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

const std::map<std::string, std::string>& LocalExecutor::ParentEnv() const {
  // setenv and unsetenv change which strings environ points at, never a
  // string's bytes, so the same pointers mean the same environment (only a
  // putenv() buffer that its owner rewrites in place would go unseen).
  std::vector<const char*> entries;
  for (char** e = environ; e && *e; ++e) entries.push_back(*e);
  if (entries == parent_env_entries_) return parent_env_;
  parent_env_.clear();
  for (auto& [name, value] : CurrentEnvironment()) {
    if (name.starts_with("SLUICE_SECRET_")) continue;  // only via Task::env
    if (MatchesAllowlist(name, options_.env_allowlist)) parent_env_[name] = value;
  }
  parent_env_["PATH"] = Getenv("PATH", "/usr/local/bin:/usr/bin:/bin");
  parent_env_["HOME"] = Getenv("HOME", "/");
  parent_env_["LANG"] = Getenv("LANG", "C.UTF-8");
  parent_env_["TMPDIR"] = Getenv("TMPDIR", "/tmp");
  parent_env_entries_ = std::move(entries);
  return parent_env_;
}

std::map<std::string, std::string> LocalExecutor::BaseEnv(const Task& task) const {
  std::map<std::string, std::string> env = ParentEnv();
  env["PYTHONUNBUFFERED"] = "1";
  env["SLUICE_RUN_ID"] = task.run_id;
  env["SLUICE_PIPELINE"] = task.pipeline;
  env["SLUICE_STEP"] = task.step;
  env["SLUICE_INSTANCE"] = task.instance.empty() ? task.step : task.instance;
  env["SLUICE_ATTEMPT"] = std::to_string(task.attempt);
  return env;
}

// Asks the supervisor to start replica `r` of `task`, handing it `log_fd`
// and `lock_fd` (our descriptors stay ours), and waits for its report that
// the step runs. Fills p->request and p->step_pid. Returns "" when it runs,
// else why it did not start (with its errno in *err when there is one).
std::string LocalExecutor::StartReplica(const Task& task, const LocalProcess& r, const std::string& program,
                                        const std::map<std::string, std::string>& env, int log_fd, int lock_fd,
                                        const std::string& encoded_masks, Process* p, int* err) {
  local::StartRequest req;
  req.id = ++last_request_;
  req.pid_path = p->files.pid;
  req.status_path = p->files.status;
  req.program = program;
  req.workdir = task.workdir;
  req.argv = r.argv;
  req.env.reserve(env.size());
  for (const auto& [k, v] : env) req.env.push_back(k + "=" + v);
  req.masks = encoded_masks;
  const std::string encoded = local::EncodeStartRequest(req);
  // A supervisor that died since the last step is replaced, once.
  for (int tries = 0;; ++tries) {
    if (Status s = EnsureSupervisor(); !s.ok()) {
      *err = s.code() == StatusCode::kUnavailable ? EAGAIN : 0;
      return s.message();
    }
    int rc = local::SendMessage(sup_sock_, encoded, {log_fd, lock_fd});
    if (rc == 0) break;
    SupervisorGone();
    if (tries > 0 || (rc != EPIPE && rc != ECONNRESET)) {
      *err = rc;
      return "cannot hand the step to sluice-supervise: " + ErrnoText(rc);
    }
  }
  p->request = req.id;
  local::ControlMessage reply;
  const auto end = SteadyClock::now() + std::chrono::seconds(60);
  while (!ReadSupervisor(req.id, &reply)) {
    if (sup_sock_ < 0) return "cannot start '" + r.argv[0] + "': sluice-supervise ended without starting it";
    auto left = std::chrono::ceil<std::chrono::milliseconds>(end - SteadyClock::now()).count();
    if (left <= 0) return "cannot start '" + r.argv[0] + "': sluice-supervise did not report within 60s";
    pollfd pfd{sup_sock_, POLLIN, 0};
    poll(&pfd, 1, static_cast<int>(left));
  }
  if (reply.kind == 'O') {
    p->step_pid = static_cast<pid_t>(reply.value);
    return "";
  }
  if (reply.kind == 'X') {
    *err = static_cast<int>(reply.value);
    return "cannot start '" + r.argv[0] + "': " + ErrnoText(*err);
  }
  return "cannot start '" + r.argv[0] + "': " + reply.text;
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
  starting_ = t.get();  // its replicas may end while the next ones start
  struct Unset {
    RunningTask*& p;
    ~Unset() { p = nullptr; }
  } unset{starting_};
  for (size_t i = 0; i < plan->replicas.size(); ++i) {
    const auto& r = plan->replicas[i];
    Process p;
    p.name = r.Name();
    p.files = files[i];
    int err = 0;  // the errno of a failed start, when there is one
    std::string failure = StartReplica(task, r, programs[i], envs[i], log_fd, lock_fds[i], encoded_masks, &p, &err);
    if (!failure.empty()) {
      // The replicas already started are killed; their ends are reported
      // by the supervisor and dropped with the request ids.
      for (auto& started : t->procs) {
        Signal(started, SIGKILL);
        requests_.erase(started.request);
        // A supervisor that died meanwhile left them running.
        if (sup_sock_ < 0) {
          if (auto pf = local::ReadPidFile(started.files.pid)) StopOrphanedStep(*pf);
        }
      }
      requests_.erase(p.request);
      close(log_fd);
      close_locks();
      if (err == ENOEXEC) failure += " (a script needs a '#!' line)";
      if (err == EAGAIN || err == ENOMEM) return Status::Unavailable(failure);
      if (err == ENOENT) return Status::NotFound(failure + " (is it installed and on PATH?)");
      return Status::FailedPrecondition(failure);
    }
    requests_[p.request] = {task.id, i};
    if (t->distributed) WriteLine(log_fd, p.name + " started (pid " + std::to_string(p.step_pid) + ")");
    // The names only: values may be secrets.
    std::string names;
    for (const auto& [k, v] : r.env) names += (names.empty() ? "" : ",") + k;
    spdlog::debug("local: task {} ({}) {} started, pid {} (supervisor {}), argv[0] {}, task env names [{}]",
                  task.id, who, p.name, p.step_pid, sup_pid_, MaskValues(r.argv[0], task.log_masks, kLogMask), names);
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
      p.step_pid = pf->step.pid;
      p.pid_file = *pf;
    }
    // Its supervisor still watches it: it holds the lock until the status
    // file is written (it may watch other steps after that).
    auto held = IsLockHeld(p.files.lock);
    if (pf && held && *held) {
      spdlog::info("local: adopting {} {} attempt {} (pid {}, supervisor pid {})", who, p.name,
                   task.attempt, p.step_pid, pf->supervisor.pid);
      if (t->distributed) WriteLine(t->log_fd, p.name + " adopted (pid " + std::to_string(p.step_pid) + ")");
      t->procs.push_back(std::move(p));
      continue;
    }
    // It has ended: it left a status file, or nothing.
    Finish(*t, p, pf ? &*pf : nullptr, std::nullopt);
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

void LocalExecutor::Finish(RunningTask& t, Process& p, const local::PidFile* pf,
                           std::optional<int> wait_status) {
  p.exited = true;
  auto status = wait_status ? Result<local::StatusFile>(local::StatusFile{*wait_status, 0, 0})
                            : local::ReadStatusFile(p.files.status);
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

void LocalExecutor::ReapAdopted(RunningTask& t, Process& p) {
  if (p.exited || !p.adopted) return;
  // Released once the status is written, or when its supervisor died.
  auto held = IsLockHeld(p.files.lock);
  if (!held || *held) return;
  Finish(t, p, p.pid_file ? &*p.pid_file : nullptr, std::nullopt);
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

    auto wake_at = end;
    bool adopted = false;  // watched by polling their lock files
    for (auto& [id, t] : running_) {
      if (!t->outcome && t->deadline) wake_at = std::min(wake_at, *t->deadline);
      if (t->kill_at && !t->sigkill_sent) wake_at = std::min(wake_at, *t->kill_at);
      for (auto& p : t->procs) adopted = adopted || (p.adopted && !p.exited);
    }
    auto now = SteadyClock::now();
    int64_t ms = 0;
    if (wake_at > now) {
      ms = std::chrono::ceil<std::chrono::milliseconds>(wake_at - now).count();
    }
    if (adopted) ms = std::min<int64_t>(ms, 10);
    ms = std::min<int64_t>(ms, 1 << 30);

    // Only Start() and Wait(), on the driving thread, read the supervisor's
    // reports; Cancel() on another thread only sends.
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {sup_sock_, POLLIN, 0}};
    const nfds_t nfds = sup_sock_ >= 0 ? 2 : 1;
    lock.unlock();
    int n = poll(fds, nfds, static_cast<int>(ms));
    lock.lock();
    if (n > 0 && fds[0].revents != 0) {
      uint64_t drained;
      ssize_t ignored = read(wake_fd_, &drained, sizeof(drained));
      (void)ignored;
    }
    if (sup_sock_ >= 0) {
      local::ControlMessage unused;
      ReadSupervisor(0, &unused);
    }
    if (adopted) {
      for (auto& [id, t] : running_) {
        for (auto& p : t->procs) ReapAdopted(*t, p);
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
