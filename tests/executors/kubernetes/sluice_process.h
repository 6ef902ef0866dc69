#pragma once
// Test helper: runs the `sluice` binary (SLUICE_BIN, set by CMake) as a real
// process through tests/support/subprocess.h (output to files, a pidfd wait
// with a bound). Shared by the end-to-end tests of the Kubernetes executor,
// of `sluice serve` on the cluster and of `sluice cancel` / `run --dry-run`.

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/executors/kubernetes/live_cluster.h"  // WaitUntil
#include "tests/support/subprocess.h"

namespace sluice::test_support {

// The whole content of `path` ("" when it cannot be read).
inline std::string ReadText(const std::filesystem::path& path) { return testutil::ReadFile(path); }

// A `sluice` process whose stdout and stderr go to files: a
// testutil::Process (tests/support/subprocess.h) of SLUICE_BIN. The
// destructor kills (SIGKILL) and reaps it if it is still running.
class SluiceProcess : public testutil::Process {
 public:
  // Starts SLUICE_BIN with `args`, stdin from /dev/null; `env` entries
  // replace or add to this process's environment; `cwd` "" = this
  // process's.
  SluiceProcess(const std::vector<std::string>& args, const std::filesystem::path& out,
                const std::filesystem::path& err, const std::map<std::string, std::string>& env = {},
                const std::string& cwd = "")
      : testutil::Process(WithBinary(args), out, err, {cwd, env}), out_(out), err_(err) {}

  // What it has written to stdout / stderr so far.
  std::string out() const { return ReadText(out_); }
  std::string err() const { return ReadText(err_); }

 private:
  static std::vector<std::string> WithBinary(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SLUICE_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  std::filesystem::path out_, err_;
};

// The API token of the `sluice serve` tests, and its SHA-256 (`printf %s
// tok | sha256sum`) as the server's config stores it.
inline constexpr char kServeToken[] = "tok";
inline constexpr char kServeTokenSha256[] = "1a7674eb4ee78df7e1ac439a93c3fa8e3c945784d4dec9fd8e3011738b2f1d62";

// Waits (at most `bound`) until `server`, a `sluice serve --listen
// 127.0.0.1:0`, says on stderr where it listens. Its port, or 0 when it
// exited first or did not say so in time.
inline int WaitForListenPort(SluiceProcess& server, std::chrono::seconds bound) {
  const std::string marker = "listening on http://127.0.0.1:";
  int port = 0;
  WaitUntil(
      [&] {
        std::string err = server.err();
        auto at = err.find(marker);
        if (at == std::string::npos) return server.Wait(std::chrono::milliseconds(0)) != SluiceProcess::kRunning;
        auto end = err.find(' ', at + marker.size());
        if (end == std::string::npos) return false;
        port = std::stoi(err.substr(at + marker.size(), end - at - marker.size()));
        return true;
      },
      bound);
  return port;
}

}  // namespace sluice::test_support
