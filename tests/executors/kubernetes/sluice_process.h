#pragma once
// Test helper: runs the `sluice` binary (SLUICE_BIN, set by CMake) as a real
// process whose stdout and stderr go to files, and waits for it on a pidfd
// with a bound (no sleeps, no polling). Shared by the end-to-end tests of
// the Kubernetes executor and of `sluice cancel` / `run --dry-run`.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace sluice::test_support {

// The whole content of `path` ("" when it cannot be read).
inline std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A `sluice` process whose stdout and stderr go to files. The destructor
// kills (SIGKILL) and reaps it if it is still running.
class SluiceProcess {
 public:
  // Starts SLUICE_BIN with `args`, stdin from /dev/null; `env` entries
  // replace or add to this process's environment.
  SluiceProcess(const std::vector<std::string>& args, const std::filesystem::path& out,
                const std::filesystem::path& err, const std::map<std::string, std::string>& env = {})
      : out_(out), err_(err) {
    std::vector<std::string> argv = {SLUICE_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string kv = *e;
      if (!env.count(kv.substr(0, kv.find('=')))) envs.push_back(kv);
    }
    for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
    std::vector<char*> cenv;
    for (auto& e : envs) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (posix_spawn(&pid_, cargv[0], &fa, nullptr, cargv.data(), cenv.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    if (pid_ > 0) pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  }
  ~SluiceProcess() {
    if (pid_ > 0 && exit_code_ == kRunning) {
      ::kill(pid_, SIGKILL);
      Wait(std::chrono::seconds(30));
    }
    if (pidfd_ >= 0) ::close(pidfd_);
  }
  SluiceProcess(const SluiceProcess&) = delete;
  SluiceProcess& operator=(const SluiceProcess&) = delete;

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

  // What it has written to stdout / stderr so far.
  std::string out() const { return ReadText(out_); }
  std::string err() const { return ReadText(err_); }

  static constexpr int kRunning = -1;

 private:
  std::filesystem::path out_, err_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int exit_code_ = kRunning;
};

// Checks `done` every 20 ms until it holds or `bound` passes, for state only
// readable by asking (e.g. `sluice status`). Returns whether it held.
inline bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds bound) {
  for (auto deadline = std::chrono::steady_clock::now() + bound;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace sluice::test_support
