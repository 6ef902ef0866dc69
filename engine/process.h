#pragma once
// Starting programs and watching processes: the one place that calls
// posix_spawn and the pidfd system calls. Programs get argv as separate
// elements, never a shell string.

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/status.h"

namespace sluice {

// This process's environment as a map (what `environ` holds).
std::map<std::string, std::string> CurrentEnvironment();

// How SpawnProcess starts a program.
struct SpawnOptions {
  // The program: a path (relative ones to our working directory), or with
  // `search_path` a name without '/' looked up in our PATH as execvp does.
  std::string program;
  bool search_path = false;
  std::vector<std::string> argv;  // argv[0] included
  // The child's whole environment; nullopt: ours.
  std::optional<std::map<std::string, std::string>> env;
  std::string workdir;  // "" = ours; a failed chdir fails the spawn
  // The child's descriptors, set up in this order before exec:
  // {child fd, open flags} opened on /dev/null, then {child fd, our fd}
  // duplicated. Our descriptors stay ours (the caller closes them).
  std::vector<std::pair<int, int>> dev_null;
  std::vector<std::pair<int, int>> dup;
  // >= 0: every descriptor of the child from this one up is closed, whether
  // or not it was close-on-exec. -1: those without close-on-exec are
  // inherited.
  int close_from = -1;
  enum class Group {
    kOurs,        // our process group and session
    kNewGroup,    // a process group of its own (id = its pid), our session
    kNewSession,  // a session (and group) of its own: setsid
  };
  Group group = Group::kOurs;
  // Starts with no blocked signal (else: our thread's mask).
  bool clear_signal_mask = false;
  // Signals set back to their default action (else inherited: an ignored
  // signal stays ignored); `all_signals_default` sets every one back.
  std::vector<int> default_signals;
  bool all_signals_default = false;
};

// Starts `options.program` and returns once it has been executed (or has
// failed to be): 0 and its pid in `*pid`, or the errno of what failed
// (creating the process, the chdir, the exec; ENOENT for a program not
// found). Thread-safe: nothing of this process is copied (posix_spawn).
int SpawnProcess(const SpawnOptions& options, pid_t* pid);

// A pidfd for `pid` (pidfd_open(2), close-on-exec), or -1 with errno set:
// ESRCH when no such process, ENOSYS before Linux 5.3. The caller closes it.
int PidfdOpen(pid_t pid);

// Sends `sig` to the process behind `pidfd` (pidfd_send_signal(2)), which
// cannot reach another process that reused the pid. 0, or -1 with errno.
int PidfdSendSignal(int pidfd, int sig);

// Waits up to `timeout` for the process behind `pidfd` to exit (a poll,
// resumed after signals for the time left). True when it exited.
bool WaitForPidfd(int pidfd, std::chrono::milliseconds timeout);

// The result of running a program to completion.
struct ProgramOutput {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;     // its stdout (and its stderr with `with_stderr`)
};

// How RunProgram runs a program.
struct RunProgramOptions {
  std::string cwd;                               // "" = ours
  bool with_stderr = false;                      // stderr into `out` too; else discarded
  std::map<std::string, std::string> extra_env;  // set on top of our environment
};

// Runs argv[0] (looked up on PATH) with `argv` and stdin from /dev/null, and
// collects its output. kNotFound when the program cannot be started (or the
// process not created); kInternal when no pipe can be made. Blocks until it
// exits.
Result<ProgramOutput> RunProgram(const std::vector<std::string>& argv, const RunProgramOptions& options);
// The same in `cwd` (when not empty), with stdout only.
Result<ProgramOutput> RunProgram(const std::vector<std::string>& argv, const std::string& cwd = "");

}  // namespace sluice
