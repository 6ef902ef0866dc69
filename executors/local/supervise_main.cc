// sluice-supervise: runs one process of a local step and outlives the sluice
// process that started it (see executors/local/supervisor.h for the files it
// writes and the signals it understands).
//
//   sluice-supervise PID_FILE STATUS_FILE PROGRAM ARGV0 [ARG...]
//
// started by the local executor in a new session, with the step's
// environment, working directory, stdin (/dev/null) and stdout/stderr (the
// step's log), and two descriptors:
//   3  the write end of a pipe: one line, then EOF, once the step's program
//      runs ("ok <pid>"), could not be executed ("exec <errno>") or the
//      supervisor could not do its work ("error <text>");
//   4  the attempt's lock file, locked by the executor; the supervisor holds
//      the lock (shares the open file description) until it exits.
// PROGRAM is executed as is (no PATH search, no shell) with ARGV0 ARG... as
// its arguments. Exit status 0 once the status file is written, 1 when it
// could not be, 2 for a usage error.

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "executors/local/supervisor.h"

namespace {

using sluice::local::FormatPidFile;
using sluice::local::FormatStatusFile;
using sluice::local::PidFile;
using sluice::local::ProcessStartTicks;
using sluice::local::StatusFile;
using sluice::local::WriteFileAtomically;

constexpr int kReadyFd = 3;
constexpr int kLockFd = 4;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Reports to the executor; it may be gone (EPIPE with SIGPIPE ignored).
void Ready(const std::string& line) {
  std::string s = line + "\n";
  ssize_t ignored = write(kReadyFd, s.data(), s.size());
  (void)ignored;
  close(kReadyFd);
}

// The supervisor's own complaints go to the step's log, as "[sluice] ..." lines.
void Complain(const std::string& what) {
  std::string s = "[sluice] sluice-supervise: " + what + "\n";
  ssize_t ignored = write(STDERR_FILENO, s.data(), s.size());
  (void)ignored;
}

bool WriteStatus(const char* path, int wait_status, int exec_errno) {
  StatusFile f;
  f.wait_status = wait_status;
  f.exec_errno = exec_errno;
  f.finished_ns = NowNs();
  sluice::Status s = WriteFileAtomically(path, FormatStatusFile(f));
  if (!s.ok()) Complain(s.message());
  return s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: sluice-supervise PID_FILE STATUS_FILE PROGRAM ARGV0 [ARG...]\n");
    return 2;
  }
  const char* pid_path = argv[1];
  const char* status_path = argv[2];
  const char* program = argv[3];
  char** step_argv = argv + 4;
  // Neither descriptor reaches the step's program.
  fcntl(kReadyFd, F_SETFD, FD_CLOEXEC);
  fcntl(kLockFd, F_SETFD, FD_CLOEXEC);
  setsid();  // already done by the executor's posix_spawn; harmless when so
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);

  // Signals are taken synchronously with sigwaitinfo; blocked before the
  // fork so that an early exit of the step is not missed.
  sigset_t handled, previous;
  sigemptyset(&handled);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGUSR2}) sigaddset(&handled, sig);
  sigprocmask(SIG_BLOCK, &handled, &previous);

  int go[2], exec_error[2];
  if (pipe2(go, O_CLOEXEC) != 0 || pipe2(exec_error, O_CLOEXEC) != 0) {
    Ready(std::string("error cannot create a pipe: ") + strerror(errno));
    return 1;
  }
  pid_t child = fork();
  if (child < 0) {
    Ready(std::string("error cannot fork: ") + strerror(errno));
    return 1;
  }
  if (child == 0) {
    setpgid(0, 0);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    close(go[1]);
    close(exec_error[0]);
    // The program starts only once its pid file is on disk.
    char c;
    ssize_t n;
    do {
      n = read(go[0], &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(127);
    execv(program, step_argv);
    int err = errno;
    ssize_t ignored = write(exec_error[1], &err, sizeof(err));
    (void)ignored;
    _exit(127);
  }
  setpgid(child, child);  // also here: whichever runs first
  close(go[0]);
  close(exec_error[1]);

  PidFile pid_file;
  pid_file.boot_id = sluice::local::BootId();
  pid_file.supervisor.pid = getpid();
  pid_file.supervisor.start_ticks = ProcessStartTicks(getpid()).value_or(0);
  pid_file.step.pid = child;
  pid_file.step.start_ticks = ProcessStartTicks(child).value_or(0);
  pid_file.started_ns = NowNs();
  if (sluice::Status s = WriteFileAtomically(pid_path, FormatPidFile(pid_file), /*durable=*/false); !s.ok()) {
    kill(child, SIGKILL);
    int ignored;
    waitpid(child, &ignored, 0);
    Ready("error " + s.message());
    return 1;
  }
  ssize_t wrote = write(go[1], "g", 1);
  (void)wrote;
  close(go[1]);
  int exec_errno = 0;
  ssize_t n;
  do {
    n = read(exec_error[0], &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  close(exec_error[0]);
  if (n != static_cast<ssize_t>(sizeof(exec_errno))) exec_errno = 0;  // EOF: exec succeeded

  int wait_status = 0;
  if (exec_errno != 0) {
    while (waitpid(child, &wait_status, 0) < 0 && errno == EINTR) {
    }
    bool written = WriteStatus(status_path, wait_status, exec_errno);
    Ready("exec " + std::to_string(exec_errno));
    return written ? 0 : 1;
  }
  Ready("ok " + std::to_string(child));

  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&handled, &si);
    if (sig < 0) continue;
    if (sig == SIGCHLD) {
      // Peek first (WNOWAIT): until the step's main process is reaped its
      // pid, and so its process group id, cannot be reused, which makes the
      // killpg safe. Whatever it left running in its group goes with it.
      siginfo_t info{};
      if (waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
          info.si_pid != child) {
        continue;
      }
      killpg(child, SIGKILL);
      while (waitpid(child, &wait_status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    killpg(child, sig == SIGUSR2 ? SIGKILL : sig);
  }
  return WriteStatus(status_path, wait_status, 0) ? 0 : 1;
}
