#include "engine/process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

extern char** environ;

namespace sluice {

std::map<std::string, std::string> CurrentEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

int SpawnProcess(const SpawnOptions& options, pid_t* pid) {
  // Everything the child sees is built here, before posix_spawn.
  std::vector<char*> argv;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  if (options.env) {
    env_strings.reserve(options.env->size());
    for (const auto& [k, v] : *options.env) env_strings.push_back(k + "=" + v);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  for (const auto& [fd, flags] : options.dev_null) posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", flags, 0);
  for (const auto& [child, ours] : options.dup) posix_spawn_file_actions_adddup2(&actions, ours, child);
  if (!options.workdir.empty()) posix_spawn_file_actions_addchdir_np(&actions, options.workdir.c_str());
  if (options.close_from >= 0) posix_spawn_file_actions_addclosefrom_np(&actions, options.close_from);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  short flags = 0;
  if (options.group == SpawnOptions::Group::kNewSession) flags |= POSIX_SPAWN_SETSID;
  if (options.group == SpawnOptions::Group::kNewGroup) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  if (options.clear_signal_mask) {
    flags |= POSIX_SPAWN_SETSIGMASK;
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
  }
  if (options.all_signals_default || !options.default_signals.empty()) {
    flags |= POSIX_SPAWN_SETSIGDEF;
    sigset_t defaults;
    sigemptyset(&defaults);
    if (options.all_signals_default) sigfillset(&defaults);
    for (int sig : options.default_signals) sigaddset(&defaults, sig);
    posix_spawnattr_setsigdefault(&attr, &defaults);
  }
  posix_spawnattr_setflags(&attr, flags);

  char** env = options.env ? envp.data() : environ;
  int rc = options.search_path
               ? posix_spawnp(pid, options.program.c_str(), &actions, &attr, argv.data(), env)
               : posix_spawn(pid, options.program.c_str(), &actions, &attr, argv.data(), env);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return rc;
}

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

bool WaitForPidfd(int pidfd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    left = std::clamp(left, std::chrono::milliseconds(0), std::chrono::milliseconds(INT_MAX));
    pollfd p{pidfd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n == 0 || errno != EINTR) return false;
  }
}

Result<ProgramOutput> RunProgram(const std::vector<std::string>& argv, const RunProgramOptions& options) {
  if (argv.empty()) return Error(Status::InvalidArgument("empty argv"));
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Error(Status::Internal(std::strerror(errno)));
  SpawnOptions spawn;
  spawn.program = argv[0];
  spawn.search_path = true;
  spawn.argv = argv;
  spawn.workdir = options.cwd;
  if (!options.extra_env.empty()) {
    auto env = CurrentEnvironment();
    for (const auto& [k, v] : options.extra_env) env[k] = v;
    spawn.env = std::move(env);
  }
  if (options.with_stderr) {
    spawn.dev_null = {{0, O_RDWR}};
    spawn.dup = {{1, out_pipe[1]}, {2, out_pipe[1]}};
  } else {
    spawn.dev_null = {{0, O_RDWR}, {2, O_RDWR}};
    spawn.dup = {{1, out_pipe[1]}};
  }
  pid_t pid = 0;
  int spawn_errno = SpawnProcess(spawn, &pid);
  ::close(out_pipe[1]);
  if (spawn_errno != 0) {
    ::close(out_pipe[0]);
    return Error(Status::NotFound("cannot run " + argv[0] + ": " + std::strerror(spawn_errno)));
  }
  ProgramOutput result;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(out_pipe[0], buf, sizeof buf);
    if (n > 0) {
      result.out.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(out_pipe[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

Result<ProgramOutput> RunProgram(const std::vector<std::string>& argv, const std::string& cwd) {
  RunProgramOptions options;
  options.cwd = cwd;
  return RunProgram(argv, options);
}

}  // namespace sluice
