// Test support: run a real program (usually the sluice binary) as a process
// whose stdout and stderr go to files, and wait for it on a pidfd with a
// bound (no sleeps, no polling). End-to-end tests use it so that every one of
// them starts, waits and reports the same way:
//   Process     the core: argv, output files, optional cwd and environment
//               overrides; Wait(bound) gives the exit code or kRunning.
//   Subprocess  a Process in a directory whose output goes to files there;
//               Wait() reads what it printed and fails the test on a timeout.
//   RunProcess  a Subprocess run to its end.

#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

extern char** environ;

namespace sluice::testutil {

// The whole content of `path`, or "" when it cannot be read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// How a finished process ended and what it printed.
struct Output {
  int exit_code = -1;  // exit status, or 128 + signal number
  std::string out;
  std::string err;
};

// A program started at construction, stdin from /dev/null, stdout and stderr
// into files (created or truncated). The destructor kills (SIGKILL) and reaps
// it if it is still running.
class Process {
 public:
  struct Options {
    std::string cwd;                         // "" = this process's
    std::map<std::string, std::string> env;  // replace or add to this process's environment
  };

  // argv[0] is looked up on PATH unless it is a path. A program that cannot
  // be started ends at once with exit code 127, as a shell reports it.
  Process(const std::vector<std::string>& argv, const std::string& out_path,
          const std::string& err_path, const Options& options = {}) {
    std::vector<std::string> args = argv;
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string kv = *e;
      if (!options.env.count(kv.substr(0, kv.find('=')))) envs.push_back(kv);
    }
    for (const auto& [k, v] : options.env) envs.push_back(k + "=" + v);
    std::vector<char*> cenv;
    for (auto& e : envs) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    // After the opens, so that relative output paths are this process's.
    if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, options.cwd.c_str());
    if (cargv[0] == nullptr ||
        posix_spawnp(&pid_, cargv[0], &fa, nullptr, cargv.data(), cenv.data()) != 0) {
      pid_ = -1;
      exit_code_ = 127;
    }
    posix_spawn_file_actions_destroy(&fa);
    if (pid_ > 0) pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  }
  ~Process() {
    if (pid_ > 0 && exit_code_ == kRunning) {
      ::kill(pid_, SIGKILL);
      Wait(std::chrono::seconds(30));
    }
    if (pidfd_ >= 0) ::close(pidfd_);
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // The process id; -1 when it could not be started.
  pid_t pid() const { return pid_; }

  // Waits up to `bound` for the process to exit. Returns its exit code,
  // 128 + the signal when a signal ended it, or kRunning.
  int Wait(std::chrono::milliseconds bound) {
    if (exit_code_ != kRunning || pid_ <= 0 || pidfd_ < 0) return exit_code_;
    pollfd p{pidfd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(bound.count())) <= 0) return kRunning;
    int status = 0;
    if (::waitpid(pid_, &status, 0) != pid_) return kRunning;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

  static constexpr int kRunning = -1;

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int exit_code_ = kRunning;
};

// A program started in the background in `cwd`; argv[0] is looked up on PATH
// unless it is a path. stdout and stderr go to files under `cwd` (named
// .out.N and .out.N.err), so a test can read what it printed so far.
class Subprocess {
 public:
  Subprocess(std::vector<std::string> argv, const std::string& cwd)
      : out_path_(cwd + "/.out." + std::to_string(::getpid()) + "." + std::to_string(counter_++)),
        err_path_(out_path_ + ".err"),
        name_(argv.empty() ? "" : argv[0]),
        process_(argv, out_path_, err_path_, {cwd, {}}) {}

  pid_t pid() const { return process_.pid(); }

  // What it has written to stdout so far.
  std::string OutSoFar() const { return ReadFile(out_path_); }
  // What it has written to stderr so far.
  std::string ErrSoFar() const { return ReadFile(err_path_); }

  // Waits up to `bound` for the process to exit; after that kills it with
  // SIGKILL and records a test failure.
  Output Wait(std::chrono::seconds bound = std::chrono::seconds(120)) {
    Output o;
    o.exit_code = process_.Wait(bound);
    if (o.exit_code == Process::kRunning) {
      ::kill(process_.pid(), SIGKILL);
      o.exit_code = process_.Wait(std::chrono::seconds(30));
      ADD_FAILURE() << name_ << " did not exit within " << bound.count() << " s";
    }
    o.out = ReadFile(out_path_);
    o.err = ReadFile(err_path_);
    return o;
  }

 private:
  static inline int counter_ = 0;
  std::string out_path_, err_path_;
  std::string name_;
  Process process_;
};

// Runs argv in `cwd` to completion (bounded) and returns how it ended.
inline Output RunProcess(std::vector<std::string> argv, const std::string& cwd,
                         std::chrono::seconds bound = std::chrono::seconds(120)) {
  return Subprocess(std::move(argv), cwd).Wait(bound);
}

}  // namespace sluice::testutil
