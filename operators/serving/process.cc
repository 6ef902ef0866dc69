#include "operators/serving/process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <filesystem>
#include <set>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace sluice::serving {
namespace {

int PidfdOpen(int pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  errno = ENOSYS;
  return -1;
#endif
}

// Reads /proc/<pid>/stat; returns the state letter and start time.
bool ReadStat(int pid, char* state, int64_t* start_time) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return false;
  std::string line;
  std::getline(in, line);
  // The command name (field 2) may contain spaces and ')'; fields resume
  // after the last ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  // Field 3 is the state; field 22 is the start time.
  rest >> field;
  if (field.empty()) return false;
  *state = field[0];
  for (int i = 4; i <= 22; ++i) {
    if (!(rest >> field)) return false;
  }
  *start_time = std::stoll(field);
  return true;
}

}  // namespace

std::optional<int64_t> ProcessStartTime(int pid) {
  char state = 0;
  int64_t start = 0;
  if (pid <= 0 || !ReadStat(pid, &state, &start)) return std::nullopt;
  return start;
}

Result<ProcessId> SpawnDetached(const SpawnOptions& options) {
  if (options.argv.empty()) return Error(Status::InvalidArgument("empty command"));

  // Everything the child needs is built before fork: only async-signal-safe
  // calls happen between fork and exec.
  std::map<std::string, std::string> env_map;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env_map[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : options.env) env_map[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env_map) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = options.argv;
  std::vector<char*> argv;
  for (auto& s : argv_copy) argv.push_back(s.data());
  argv.push_back(nullptr);

  // The program is resolved in the parent so a missing one is a clear error.
  std::string program = options.argv[0];
  if (program.find('/') == std::string::npos) {
    std::string path = env_map.count("PATH") ? env_map["PATH"] : "/usr/local/bin:/usr/bin:/bin";
    std::string found;
    std::istringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      if (dir.empty()) dir = ".";
      std::string candidate = dir + "/" + program;
      if (access(candidate.c_str(), X_OK) == 0) {
        found = candidate;
        break;
      }
    }
    if (found.empty()) {
      return Error(Status::NotFound("cannot start '" + program +
                                    "': not found in PATH (is it installed?)"));
    }
    program = found;
  } else if (access(program.c_str(), X_OK) != 0) {
    return Error(Status::NotFound("cannot start '" + program + "': " + std::strerror(errno)));
  }

  int log_fd = open(options.log_path.empty() ? "/dev/null" : options.log_path.c_str(),
                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return Error(Status::FailedPrecondition("cannot open log file " + options.log_path + ": " +
                                            std::strerror(errno)));
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(log_fd);
    if (null_fd >= 0) close(null_fd);
    return Error(Status::Unavailable(std::string("pipe: ") + std::strerror(errno)));
  }
  const char* workdir = options.workdir.empty() ? nullptr : options.workdir.c_str();

  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(log_fd);
    close(null_fd);
    close(err_pipe[0]);
    close(err_pipe[1]);
    return Error(Status::Unavailable(std::string("fork: ") + std::strerror(e)));
  }
  if (pid == 0) {
    setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    // Mark every other inherited descriptor close-on-exec; the error pipe
    // already is, so it closes exactly when exec succeeds.
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) != 0)
#endif
    {
      long max_fd = sysconf(_SC_OPEN_MAX);
      if (max_fd < 0 || max_fd > 65536) max_fd = 65536;
      for (int fd = 3; fd < max_fd; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    int code = 0;
    if (workdir != nullptr && chdir(workdir) != 0) {
      code = errno;
    } else {
      execve(program.c_str(), argv.data(), envp.data());
      code = errno;
    }
    ssize_t ignored = write(err_pipe[1], &code, sizeof(code));
    (void)ignored;
    _exit(127);
  }
  close(err_pipe[1]);
  close(log_fd);
  close(null_fd);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(err_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (n == sizeof(child_errno)) {
    waitpid(pid, nullptr, 0);
    return Error(Status::FailedPrecondition("cannot start '" + options.argv[0] + "'" +
                                            (workdir ? " in " + options.workdir : std::string()) +
                                            ": " + std::strerror(child_errno)));
  }
  ProcessId id;
  id.pid = pid;
  id.start_time = ProcessStartTime(pid).value_or(0);
  return id;
}

bool IsAlive(const ProcessId& id) {
  char state = 0;
  int64_t start = 0;
  if (id.pid <= 0 || !ReadStat(id.pid, &state, &start)) return false;
  if (state == 'Z' || state == 'X') return false;
  return id.start_time == 0 || start == id.start_time;
}

std::optional<std::string> ExitDescription(const ProcessId& id) {
  int status = 0;
  pid_t r = waitpid(id.pid, &status, WNOHANG);
  if (r == id.pid) {
    if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    return "ended";
  }
  if (r == 0) return std::nullopt;  // our child, still running
  // Not our child: all we can tell is whether it is still there.
  if (!IsAlive(id)) return "exited";
  return std::nullopt;
}

bool WaitForExit(const ProcessId& id, Duration timeout) {
  if (!IsAlive(id)) return true;
  int fd = PidfdOpen(id.pid);
  if (fd >= 0) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool exited = false;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) left = std::chrono::milliseconds(0);
      struct pollfd p = {fd, POLLIN, 0};
      int r = poll(&p, 1, static_cast<int>(left.count()));
      if (r > 0) {
        exited = true;
        break;
      }
      if (r == 0 || errno != EINTR) break;
    }
    close(fd);
    return exited || !IsAlive(id);
  }
  // No pidfd support (Linux < 5.3): poll /proc.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!IsAlive(id)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return !IsAlive(id);
}

Status StopProcess(const ProcessId& id, Duration grace) {
  if (!IsAlive(id)) {
    waitpid(id.pid, nullptr, WNOHANG);
    return Status::Ok();
  }
  // The process leads its own group (setsid), so the group id is its pid.
  if (kill(-id.pid, SIGTERM) != 0) kill(id.pid, SIGTERM);
  if (!WaitForExit(id, grace)) {
    if (kill(-id.pid, SIGKILL) != 0) kill(id.pid, SIGKILL);
    if (!WaitForExit(id, std::chrono::seconds(5))) {
      return Status::Internal("process " + std::to_string(id.pid) +
                              " did not exit after SIGKILL");
    }
  } else {
    // Anything left in the group after the leader exited.
    kill(-id.pid, SIGKILL);
  }
  waitpid(id.pid, nullptr, WNOHANG);
  return Status::Ok();
}

bool GroupListensOn(const ProcessId& id, int port) {
  // Inodes of sockets listening (state 0A) on `port`.
  std::set<std::string> inodes;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string slot, local, remote, state, queues, timer, retr, uid, timeout, inode;
      if (!(f >> slot >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >>
            inode)) {
        continue;
      }
      size_t colon = local.rfind(':');
      if (state != "0A" || colon == std::string::npos) continue;
      if (std::stoi(local.substr(colon + 1), nullptr, 16) == port) inodes.insert(inode);
    }
  }
  if (inodes.empty()) return false;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream stat_file(entry.path() / "stat");
    std::string stat_line;
    std::getline(stat_file, stat_line);
    size_t close = stat_line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat_line.substr(close + 1));
    std::string state, ppid, pgrp;
    if (!(rest >> state >> ppid >> pgrp) || pgrp != std::to_string(id.pid)) continue;
    for (const auto& fd : std::filesystem::directory_iterator(entry.path() / "fd", ec)) {
      std::error_code link_ec;
      std::string target = std::filesystem::read_symlink(fd.path(), link_ec).string();
      // "socket:[12345]"
      if (target.rfind("socket:[", 0) == 0 &&
          inodes.count(target.substr(8, target.size() - 9)) > 0) {
        return true;
      }
    }
  }
  return false;
}

Result<int> FindFreePort(const std::string& host) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error(Status::Unavailable(std::string("socket: ") + std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (inet_pton(AF_INET, host == "0.0.0.0" || host.empty() ? "0.0.0.0" : host.c_str(),
                &addr.sin_addr) != 1) {
    close(fd);
    return Error(Status::InvalidArgument("not an IPv4 address: " + host));
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int e = errno;
    close(fd);
    return Error(Status::Unavailable("cannot bind " + host + ":0: " + std::strerror(e)));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

std::string TailFile(const std::string& path, int max_lines) {
  std::ifstream in(path);
  if (!in) return "";
  std::deque<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
    if (static_cast<int>(lines.size()) > max_lines) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

}  // namespace sluice::serving
