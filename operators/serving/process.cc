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

#include "engine/process.h"

namespace sluice::serving {
namespace {

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
  std::map<std::string, std::string> env = CurrentEnvironment();
  for (const auto& [k, v] : options.env) env[k] = v;

  // The program is resolved here so a missing one is a clear error.
  std::string program = options.argv[0];
  if (program.find('/') == std::string::npos) {
    std::string path = env.count("PATH") ? env["PATH"] : "/usr/local/bin:/usr/bin:/bin";
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
  sluice::SpawnOptions spawn;
  spawn.program = program;
  spawn.argv = options.argv;
  spawn.env = std::move(env);
  spawn.workdir = options.workdir;
  spawn.dev_null = {{0, O_RDONLY}};
  spawn.dup = {{1, log_fd}, {2, log_fd}};
  spawn.close_from = 3;  // no descriptor of ours keeps a step's log pipe open
  spawn.group = sluice::SpawnOptions::Group::kNewSession;
  spawn.clear_signal_mask = true;
  spawn.default_signals = {SIGPIPE};
  pid_t pid = 0;
  int spawn_errno = SpawnProcess(spawn, &pid);
  close(log_fd);
  if (spawn_errno != 0) {
    return Error(Status::FailedPrecondition(
        "cannot start '" + options.argv[0] + "'" +
        (options.workdir.empty() ? std::string() : " in " + options.workdir) + ": " +
        std::strerror(spawn_errno)));
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
    bool exited = WaitForPidfd(fd, timeout);
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
