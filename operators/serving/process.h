#pragma once
// Detached processes for the serving operators: model servers and the canary
// proxy outlive the step (and the sluice run) that starts them, so they run
// in their own session (setsid), with stdin from /dev/null, stdout+stderr to
// their own log file and no inherited descriptors (a step's log pipe never
// stays open because of them). They are found again through the pid and the
// kernel start time recorded in the service state; the start time guards
// against signalling a recycled pid.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"

namespace sluice::serving {

// Identity of a process: pid plus its start time (field 22 of
// /proc/<pid>/stat, clock ticks since boot).
struct ProcessId {
  int pid = 0;
  int64_t start_time = 0;
};

struct SpawnOptions {
  std::vector<std::string> argv;               // argv[0] is looked up in PATH
  std::map<std::string, std::string> env;      // added to (and overriding) ours
  std::string workdir;                         // "" = the current directory
  std::string log_path;                        // stdout+stderr, appended; created 0644
};

// Starts `options.argv` detached (new session, own process group whose id is
// its pid). Returns once exec has succeeded. Errors: kInvalidArgument (empty
// argv), kNotFound (program not found, with the name), kFailedPrecondition
// (log file or workdir unusable, or the process could not be created).
Result<ProcessId> SpawnDetached(const SpawnOptions& options);

// True when `id` names a live (not zombie) process with the recorded start time.
bool IsAlive(const ProcessId& id);

// If `id` exited and is our child, reaps it and describes how it ended
// ("exited with code 1", "killed by signal 9"); nullopt while it runs.
std::optional<std::string> ExitDescription(const ProcessId& id);

// Stops the process group of `id`: SIGTERM, then SIGKILL when it has not
// exited after `grace`; waits (bounded) for the exit and reaps our own
// children. A process that is already gone (or whose pid was recycled) is OK.
Status StopProcess(const ProcessId& id, Duration grace);

// Blocks until `id` exits or `timeout` passes (pidfd poll, an event wait).
// True when it exited.
bool WaitForExit(const ProcessId& id, Duration timeout);

// True when a process in the process group led by `id` (the group a
// detached process starts) has a listening TCP socket on `port`
// (/proc/net/tcp{,6} inodes matched against the group's descriptors). Guards
// against a foreign server that took the port between FindFreePort and bind.
bool GroupListensOn(const ProcessId& id, int port);

// A TCP port that was free on `host` a moment ago (bind to port 0).
Result<int> FindFreePort(const std::string& host);

// The start time of `pid` from /proc, or nullopt when it does not exist.
std::optional<int64_t> ProcessStartTime(int pid);

// The last `max_lines` lines of a text file ("" when unreadable).
std::string TailFile(const std::string& path, int max_lines);

}  // namespace sluice::serving
