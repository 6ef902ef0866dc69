#pragma once
// The files through which a local step's supervisor (sluice-supervise)
// reports to whichever sluice process drives the run, and the process
// identity checks that make those reports safe against pid reuse.
//
// Every attempt of a local step runs under its own sluice-supervise process,
// in a session of its own, so that it outlives a `kill -9` of sluice. For an
// attempt whose log is <base>.log (one per replica for tfjob/pytorchjob:
// <base>.<replica>.*) the supervisor keeps:
//
//   <base>.lock    an open file description with an exclusive OFD lock, held
//                  by the supervisor for its whole life (and handed to it by
//                  the executor, which took it first). A lock nobody holds
//                  means no supervisor of this attempt is alive; the lock is
//                  released by the kernel however the supervisor ends.
//   <base>.pid     written (atomically) before the step's program starts:
//                  the boot id, the supervisor's and the step's pid with
//                  their start times, and the wall-clock start. Its absence
//                  means the step never started. Not fsync'ed: it only has
//                  to outlive sluice, not the machine (after a restart the
//                  boot id differs and the attempt is lost either way; a pid
//                  file lost with the restart reads as "never started", and
//                  nothing runs it any more).
//   <base>.status  written (atomically: tmp + rename) when the step has
//                  ended: its wait status, or the errno of a failed exec.
//                  Not fsync'ed either (two journal commits a step): a
//                  status file missing or torn after a machine crash reads
//                  as "lost" (the boot id differs), as when the crash came
//                  while the step ran.
//
// The step's stdout/stderr are the supervisor's own (the log file, opened
// with O_APPEND by the executor), so the log keeps being written while no
// sluice process is alive. For a step with secret values to mask they are a
// pipe instead, which the supervisor copies to the log with every value
// replaced by "***" (the values reach it through an inherited descriptor,
// never argv or the environment); the pipe is drained (for at most two
// seconds after the step's process group is gone, as a descendant that left
// the group may hold it open) before the status file is written.
//
// Signals the supervisor understands: SIGTERM and SIGINT are forwarded to the
// step's process group; SIGUSR2 sends SIGKILL to the step's process group.
// When the step's main process exits, whatever it left in its process group
// is killed (container semantics), then the status file is written.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace sluice::local {

// A process as it was when it started: pid reuse gives another process the
// same pid but never the same start time within one boot.
struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_ticks = 0;  // field 22 of /proc/PID/stat (clock ticks since boot)
};

// The start time of process `pid`. NotFound when there is no such process
// (or it is a zombie: it has ended and only waits to be reaped); Internal
// when /proc/PID/stat cannot be parsed.
Result<uint64_t> ProcessStartTicks(pid_t pid);

// This boot's id (/proc/sys/kernel/random/boot_id), "" when unreadable.
std::string BootId();

// True when `who` still runs: same boot as `boot_id` (when both are known),
// a live process with that pid and the same start time.
bool IsAlive(const ProcessIdentity& who, const std::string& boot_id);

// The paths of one attempt's (and one replica's) supervisor files.
struct AttemptFiles {
  std::string lock;
  std::string pid;
  std::string status;

  // For the log file `log_path` ("<base>.log"; any other name is used whole
  // as <base>) and `replica` ("" for a single process).
  static AttemptFiles For(const std::string& log_path, const std::string& replica);
};

// <base>.pid.
struct PidFile {
  std::string boot_id;
  ProcessIdentity supervisor;
  ProcessIdentity step;
  int64_t started_ns = 0;  // wall clock (Unix epoch), just before the exec
};

// <base>.status.
struct StatusFile {
  int wait_status = 0;  // as from waitpid(); meaningful when exec_errno == 0
  int exec_errno = 0;   // non-zero: the step's program could not be executed
  int64_t finished_ns = 0;
};

// Writes `text` to `path` so that readers see either nothing or all of it
// (`path`.tmp, then rename), whoever is killed when. `durable` adds an fsync
// of the file before the rename and of the directory after it, so that the
// file also survives a power loss. Errors: Internal with the path and errno
// text.
Status WriteFileAtomically(const std::string& path, const std::string& text, bool durable = true);

// Text forms of the two files (a first line "sluice-supervise 1", then one
// "key value" per line).
std::string FormatPidFile(const PidFile& f);
std::string FormatStatusFile(const StatusFile& f);

// Signals the live supervisors of one attempt (the one whose log is
// `log_path`, every replica of it): SIGTERM or SIGINT is forwarded to the
// step's process group, SIGUSR2 kills it. For `sluice cancel` of a run
// whose driver is gone. Returns how many supervisors were signalled.
int SignalSupervisors(const std::string& log_path, int sig);

// The secret values a supervisor masks in the log, as the executor sends
// them (on descriptor 5 with --masks): their count, then each value as its
// length and its bytes (counts and lengths 4-byte big-endian). The count
// makes a transfer cut short (the executor died while sending) an error,
// never a shorter list that would leave a secret unmasked.
std::string EncodeLogMasks(const std::vector<std::string>& masks);
// The inverse; InvalidArgument when `encoded` is cut short or has bytes
// after the last value.
Result<std::vector<std::string>> DecodeLogMasks(std::string_view encoded);

// Reads the files. NotFound when the file does not exist; Internal when it
// exists but is not a complete file of that kind.
Result<PidFile> ReadPidFile(const std::string& path);
Result<StatusFile> ReadStatusFile(const std::string& path);

}  // namespace sluice::local
