// Test support: run a real program (usually the sluice binary) in a
// directory, bounded, with its stdout and stderr captured in files. End-to-end
// tests use it so that every one of them waits and reports the same way.

#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

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

// A program started in the background in `cwd`; argv[0] is looked up on PATH
// unless it is a path. stdout and stderr go to files under `cwd` (named
// .out.N and .out.N.err), so a test can read what it printed so far.
class Subprocess {
 public:
  Subprocess(std::vector<std::string> argv, const std::string& cwd) {
    out_path_ = cwd + "/.out." + std::to_string(::getpid()) + "." + std::to_string(counter_++);
    err_path_ = out_path_ + ".err";
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out, 1);
      ::dup2(err, 2);
      if (::chdir(cwd.c_str()) != 0) ::_exit(126);
      ::execvp(cargv[0], cargv.data());
      ::_exit(127);
    }
    name_ = argv.empty() ? "" : argv[0];
  }

  pid_t pid() const { return pid_; }

  // What it has written to stdout so far.
  std::string OutSoFar() const { return ReadFile(out_path_); }

  // Waits up to `bound` for the process to exit; after that kills it with
  // SIGKILL and records a test failure.
  Output Wait(std::chrono::seconds bound = std::chrono::seconds(120)) {
    Output o;
    const auto deadline = std::chrono::steady_clock::now() + bound;
    int status = 0;
    for (;;) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) break;
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        ADD_FAILURE() << name_ << " did not exit within " << bound.count() << " s";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    o.out = ReadFile(out_path_);
    o.err = ReadFile(err_path_);
    return o;
  }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  std::string name_;
  std::string out_path_, err_path_;
};

// Runs argv in `cwd` to completion (bounded) and returns how it ended.
inline Output RunProcess(std::vector<std::string> argv, const std::string& cwd,
                         std::chrono::seconds bound = std::chrono::seconds(120)) {
  return Subprocess(std::move(argv), cwd).Wait(bound);
}

}  // namespace sluice::testutil
