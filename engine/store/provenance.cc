#include "engine/store/provenance.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.0.0"
#endif

namespace sluice {

namespace {

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

}  // namespace

Result<ProgramOutput> RunProgram(const std::vector<std::string>& argv, const std::string& cwd) {
  if (argv.empty()) return Error(Status::InvalidArgument("empty argv"));
  // Everything the child touches is prepared before fork(): after it only
  // async-signal-safe calls are allowed (this process may have threads).
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int out_pipe[2];
  int err_pipe[2];  // reports an exec failure: CLOEXEC, so it closes on success
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Error(Status::Internal(std::strerror(errno)));
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return Error(Status::Internal(std::strerror(errno)));
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) ::close(fd);
    return Error(Status::Internal(std::string("fork: ") + std::strerror(err)));
  }
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 2);
    }
    ::dup2(out_pipe[1], 1);
    int err = 0;
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
      err = errno;
    } else {
      ::execvp(args[0], args.data());
      err = errno;
    }
    ssize_t ignored = ::write(err_pipe[1], &err, sizeof err);
    (void)ignored;
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
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
  int exec_errno = 0;
  ssize_t got;
  do {
    got = ::read(err_pipe[0], &exec_errno, sizeof exec_errno);
  } while (got < 0 && errno == EINTR);
  ::close(err_pipe[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    return Error(Status::NotFound("cannot run " + argv[0] + ": " + std::strerror(exec_errno)));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

GitState GitStateOf(const std::string& file) {
  GitState state;
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(file, ec);
  if (ec) return state;
  std::string dir = abs.parent_path().string();
  auto top = RunProgram({"git", "-C", dir, "rev-parse", "--is-inside-work-tree"});
  if (!top || top->exit_code != 0 || Trim(top->out) != "true") return state;
  state.in_repo = true;
  auto head = RunProgram({"git", "-C", dir, "rev-parse", "--verify", "--quiet", "HEAD"});
  if (head && head->exit_code == 0) state.commit = Trim(head->out);
  auto status = RunProgram({"git", "-C", dir, "status", "--porcelain", "--", abs.string()});
  // Untracked, modified or staged: anything listed differs from HEAD.
  state.dirty = !status || status->exit_code != 0 || !Trim(status->out).empty();
  if (state.commit.empty()) state.dirty = true;
  return state;
}

std::string PythonVersion() {
  static std::once_flag once;
  static std::string version;
  std::call_once(once, [] {
    auto out = RunProgram({"python3", "-c",
                           "import sys; print('.'.join(map(str, sys.version_info[:3])))"});
    if (out && out->exit_code == 0) version = Trim(out->out);
  });
  return version;
}

std::string SluiceVersion() { return SLUICE_VERSION; }

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

}  // namespace sluice
