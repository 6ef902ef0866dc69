#pragma once
// The protocol between the local executor and sluice-supervise, the process
// that starts and watches local steps and outlives the sluice process that
// drives the run; the files through which it reports, and the process
// identity checks that make those reports safe against pid reuse.
//
// One supervisor serves a whole run (one per LocalExecutor): the executor
// starts it once (`sluice-supervise --serve`, in a session of its own) and
// asks it over a socket pair to start each process of each step (a
// StartRequest, with the log and lock descriptors attached) or to signal one
// (a ControlMessage). The supervisor forks and executes the step, reports
// that it runs (or why not), and reports its end once the status file is
// written. When the executor is gone (its end of the socket closed: a
// `kill -9` of sluice), the supervisor goes on watching the steps it runs,
// records how each ends, and exits once the last one has ended.
//
// For an attempt whose log is <base>.log (one per replica for
// tfjob/pytorchjob: <base>.<replica>.*) the supervisor keeps:
//
//   <base>.lock    an open file description with an exclusive OFD lock, held
//                  from before the request is sent (the executor takes it
//                  and hands it over with the request) until the status file
//                  is written. A lock nobody holds means no supervisor
//                  watches this attempt any more: it has ended (there is a
//                  status file), it never started (there is no pid file), or
//                  its supervisor died (neither: the step is stopped and
//                  reported lost). The kernel releases it however the
//                  supervisor ends.
//   <base>.pid     written (by the step's own process, in one write) before
//                  the step's program starts: the boot id, the supervisor's
//                  and the step's pid with their start times, and the
//                  wall-clock start. Its absence means the step never
//                  started; while the lock is held it may be incomplete
//                  (it is being written), which readers treat as absent. Not fsync'ed: it only has
//                  to outlive sluice, not the machine (after a restart the
//                  boot id differs and the attempt is lost either way; a pid
//                  file lost with the restart reads as "never started", and
//                  nothing runs it any more).
//   <base>.status  written (in one write, before the lock is released: no
//                  reader looks at it while the lock is held) when the step
//                  has ended: its wait status, or the errno of a failed exec.
//                  Not fsync'ed either (two journal commits a step): a
//                  status file missing or torn after a machine crash reads
//                  as "lost" (the boot id differs), as when the crash came
//                  while the step ran.
//
// The step's stdout/stderr are its log file (opened with O_APPEND by the
// executor), so the log keeps being written while no sluice process is
// alive. For a step with secret values to mask they are a pipe instead,
// which the supervisor copies to the log with every value replaced by "***"
// (the values reach it inside the request, never argv or the environment);
// the pipe is drained (for at most two seconds after the step's process
// group is gone, as a descendant that left the group may hold it open)
// before the status file is written.
//
// Signals the supervisor understands: SIGTERM and SIGINT are forwarded to
// the process group of every step it runs, SIGUSR2 kills them all; a
// SignalStep() signal reaches one step only. When a step's main process
// exits, whatever it left in its process group is killed (container
// semantics), then the status file is written.
//
// `sluice-supervise [--masks] PID_FILE STATUS_FILE PROGRAM ARGV0 [ARG...]`
// runs a single step and exits (see supervise_main.cc); the executor does
// not use that form.

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

// Signals the step of one attempt (the one whose log is `log_path`, every
// replica of it) through its live supervisor: SIGTERM or SIGINT is forwarded
// to the step's process group, SIGKILL (or SIGUSR2) kills it. Attempts that
// have ended (a status file) are left alone. For `sluice cancel` of a run
// whose driver is gone. Returns how many steps were signalled.
int SignalSupervisors(const std::string& log_path, int sig);

// Asks the supervisor named in `pf` to send `sig` (SIGTERM, SIGINT or
// SIGKILL) to the process group of the step named in `pf`, and no other:
// a queued real-time signal (SIGRTMIN + kStepSignalOffset) that carries both. Checked
// against pid reuse (the supervisor's identity, through a pidfd). False when
// the supervisor is gone or the signal could not be sent.
bool SignalStep(const PidFile& pf, int sig);

// The real-time signal offset (from SIGRTMIN) of SignalStep; its value is
// (signal << 32) | step pid.
constexpr int kStepSignalOffset = 1;

// Messages on the socket between the executor and a serving supervisor
// (SOCK_SEQPACKET: one message per send). Each is a kind byte, then fields.

// Executor -> supervisor: start one process of a step. Attached
// descriptors: the log (appended to) and the attempt's lock (locked).
struct StartRequest {
  uint64_t id = 0;  // chosen by the executor; names the step in replies
  std::string pid_path;
  std::string status_path;
  std::string program;  // executed as is: no PATH search, no shell
  std::string workdir;
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "NAME=value"
  // EncodeLogMasks of the values to mask in the log; "" = no masking (the
  // step writes to the log directly).
  std::string masks;
};

// Every other message. Kinds and their fields:
//   'K' executor -> supervisor: send signal `value` to step `id` (SIGTERM,
//       SIGINT, or SIGKILL).
//   'O' supervisor -> executor: step `id` runs, as pid `value`.
//   'X' step `id` could not be executed: errno `value` (its status file is
//       written).
//   'E' step `id` was not started: `text` says why.
//   'D' step `id` has ended with wait status `value`; its status file is
//       written.
struct ControlMessage {
  char kind = 0;
  uint64_t id = 0;
  int64_t value = 0;
  std::string text;
};

std::string EncodeStartRequest(const StartRequest& r);
std::string EncodeControlMessage(const ControlMessage& m);
// The inverses; InvalidArgument for a message of another kind or cut short.
Result<StartRequest> DecodeStartRequest(std::string_view bytes);
Result<ControlMessage> DecodeControlMessage(std::string_view bytes);

// Sends one message with `fds` attached (SCM_RIGHTS), whatever its size (a
// message over 64 KiB travels in a memfd attached to it). Returns 0 or an
// errno (EPIPE: the peer is gone).
int SendMessage(int sock, std::string_view bytes, const std::vector<int>& fds = {});
// Receives one message and its descriptors (close-on-exec; the caller owns
// them). Returns 1 with a message, 0 at EOF (the peer is gone), -1 with
// errno set (EAGAIN on a non-blocking socket with nothing to read).
int RecvMessage(int sock, std::string* bytes, std::vector<int>* fds);

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
