#pragma once
// Running a program (the sluice binary, python3) to its end with a bound, for
// the end-to-end tests of the serving operators.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include "serving_test_util.h"

namespace sluice::serving::testing {

// How a program ended and what it wrote.
struct Ran {
  int exit_code = -1;  // -1: killed at the bound, or not exited normally
  std::string out;
  std::string err;
};

// Runs `argv` in `cwd` with stdout/stderr to files and waits for it on a
// pidfd, at most `bound`; a process still running then is killed (exit -1).
inline Ran RunBounded(const std::vector<std::string>& argv, const std::string& cwd,
                      std::chrono::seconds bound) {
  static int counter = 0;
  std::string out_path = cwd + "/.out." + std::to_string(counter++);
  std::string err_path = out_path + ".err";
  std::vector<char*> cargv;
  std::vector<std::string> copy = argv;
  for (auto& a : copy) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(err, 2);
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  Ran ran;
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  bool exited = true;
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int ready;
    do {
      ready = ::poll(&p, 1, static_cast<int>(bound.count() * 1000));
    } while (ready < 0 && errno == EINTR);
    exited = ready == 1;
    ::close(pidfd);
  }
  if (!exited) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (exited && WIFEXITED(status)) ran.exit_code = WEXITSTATUS(status);
  ran.out = ReadFile(out_path);
  ran.err = ReadFile(err_path);
  return ran;
}

// The run id from `sluice run`'s line "sluice: run <id> of <pipeline> (...)";
// "" when there is none.
inline std::string RunId(const Ran& ran) {
  std::smatch m;
  static const std::regex kLine(R"(sluice: run (\S+) of )");
  std::string all = ran.err + ran.out;
  return std::regex_search(all, m, kLine) ? m[1].str() : std::string();
}

}  // namespace sluice::serving::testing
