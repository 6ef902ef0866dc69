// sluice-supervise: runs one process of a local step and outlives the sluice
// process that started it (see executors/local/supervisor.h for the files it
// writes and the signals it understands).
//
//   sluice-supervise [--masks] PID_FILE STATUS_FILE PROGRAM ARGV0 [ARG...]
//
// started by the local executor in a new session, with the step's
// environment, working directory, stdin (/dev/null) and stdout/stderr (the
// step's log), and these descriptors:
//   3  the write end of a pipe: one line, then EOF, once the step's program
//      runs ("ok <pid>"), could not be executed ("exec <errno>") or the
//      supervisor could not do its work ("error <text>");
//   4  the attempt's lock file, locked by the executor; the supervisor holds
//      the lock (shares the open file description) until it exits;
//   5  with --masks only: the secret values to mask in the log
//      (EncodeLogMasks), read to EOF before the step starts. They never
//      travel in argv or the environment, which other users can read.
// With --masks the step's stdout/stderr are a pipe that the supervisor copies
// to the log with every value replaced by "***"; otherwise they are the log.
// PROGRAM is executed as is (no PATH search, no shell) with ARGV0 ARG... as
// its arguments. Exit status 0 once the status file is written, 1 when it
// could not be, 2 for a usage error.

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/secret_mask.h"
#include "executors/local/supervisor.h"

namespace {

using sluice::local::FormatPidFile;
using sluice::local::FormatStatusFile;
using sluice::local::PidFile;
using sluice::local::ProcessStartTicks;
using sluice::local::StatusFile;
using sluice::local::WriteFileAtomically;
using SteadyClock = std::chrono::steady_clock;

constexpr int kReadyFd = 3;
constexpr int kLockFd = 4;
constexpr int kMasksFd = 5;

// How long the masked output pipe is still read once the step's process
// group is gone: a descendant that left the group may hold it open forever.
constexpr auto kDrainBound = std::chrono::seconds(2);

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

// Writes all of `text` to the log (stdout); a full disk loses log text,
// never the step.
void WriteLog(std::string_view text) {
  for (size_t done = 0; done < text.size();) {
    ssize_t n = write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
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
  sluice::Status s = WriteFileAtomically(path, FormatStatusFile(f), /*durable=*/false);
  if (!s.ok()) Complain(s.message());
  return s.ok();
}

// Reads descriptor `fd` to EOF and closes it.
bool ReadAll(int fd, std::string* out) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return false;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return true;
}

// Copies the step's output pipe to the log, masked.
class MaskedOutput {
 public:
  MaskedOutput(int fd, std::vector<std::string> masks)
      : fd_(fd), masker_(std::move(masks), std::string(sluice::kLogMask)) {}
  ~MaskedOutput() { Close(); }

  int fd() const { return fd_; }

  // Copies what can be read now, at most 1 MiB (so that a step that writes
  // without pause cannot keep signals waiting); closes the pipe at EOF.
  void Pump() {
    char buf[65536];
    for (int chunks = 0; chunks < 16;) {
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) {
        ++chunks;
        WriteLog(masker_.Write(std::string_view(buf, static_cast<size_t>(n))));
        continue;
      }
      if (n == 0) Close();
      return;  // EAGAIN: nothing more for now
    }
  }

  // Writes what the masker held back and closes the pipe (idempotent).
  void Close() {
    if (fd_ < 0) return;
    WriteLog(masker_.Finish());
    close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  sluice::StreamMasker masker_;
};

}  // namespace

int main(int argc, char** argv) {
  bool masked = argc > 1 && std::string_view(argv[1]) == "--masks";
  if (masked) {
    --argc;
    ++argv;
  }
  if (argc < 5) {
    std::fprintf(stderr, "usage: sluice-supervise [--masks] PID_FILE STATUS_FILE PROGRAM ARGV0 [ARG...]\n");
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

  // With masks, the step writes into a pipe the supervisor reads.
  std::unique_ptr<MaskedOutput> output;
  int out_pipe[2] = {-1, -1};
  if (masked) {
    std::string encoded;
    if (!ReadAll(kMasksFd, &encoded)) {
      Ready(std::string("error cannot read the log masks: ") + strerror(errno));
      return 1;
    }
    auto masks = sluice::local::DecodeLogMasks(encoded);
    if (!masks) {
      Ready("error " + masks.error().message());
      return 1;
    }
    if (pipe2(out_pipe, O_CLOEXEC) != 0) {
      Ready(std::string("error cannot create the output pipe: ") + strerror(errno));
      return 1;
    }
    fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
    output = std::make_unique<MaskedOutput>(out_pipe[0], std::move(*masks));
  }

  // Signals are read from a signalfd; blocked before the fork so that an
  // early exit of the step is not missed.
  sigset_t handled, previous;
  sigemptyset(&handled);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGUSR2}) sigaddset(&handled, sig);
  sigprocmask(SIG_BLOCK, &handled, &previous);
  int signal_fd = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) {
    Ready(std::string("error cannot create a signalfd: ") + strerror(errno));
    return 1;
  }

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
    if (out_pipe[1] >= 0 &&
        (dup2(out_pipe[1], STDOUT_FILENO) < 0 || dup2(out_pipe[1], STDERR_FILENO) < 0)) {
      _exit(127);
    }
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
  if (out_pipe[1] >= 0) close(out_pipe[1]);  // the step holds it now

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
    output.reset();
    bool written = WriteStatus(status_path, wait_status, exec_errno);
    Ready("exec " + std::to_string(exec_errno));
    return written ? 0 : 1;
  }
  Ready("ok " + std::to_string(child));

  // Until the step's main process has ended: output and signals. After it:
  // the rest of the output, for at most kDrainBound.
  bool reaped = false;
  std::optional<SteadyClock::time_point> drain_until;
  for (;;) {
    if (reaped && (!output || output->fd() < 0)) break;
    int timeout_ms = -1;
    if (drain_until) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*drain_until - SteadyClock::now());
      if (left.count() <= 0) break;
      timeout_ms = static_cast<int>(left.count());
    }
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {output ? output->fd() : -1, POLLIN, 0}};
    int ready = poll(fds, 2, timeout_ms);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    if (fds[1].revents != 0) output->Pump();
    if (fds[0].revents == 0) continue;
    signalfd_siginfo si;
    while (read(signal_fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      const int sig = static_cast<int>(si.ssi_signo);
      if (reaped) {
        // The step's pid (and so its group id) may be reused now: nothing
        // is signalled any more. A kill asks for no more draining.
        if (sig == SIGUSR2) drain_until = SteadyClock::now();
        continue;
      }
      if (sig == SIGCHLD) {
        // Peek first (WNOWAIT): until the step's main process is reaped its
        // pid, and so its process group id, cannot be reused, which makes
        // the killpg safe. Whatever it left running in its group goes with
        // it.
        siginfo_t info{};
        if (waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
            info.si_pid != child) {
          continue;
        }
        killpg(child, SIGKILL);
        while (waitpid(child, &wait_status, 0) < 0 && errno == EINTR) {
        }
        reaped = true;
        drain_until = SteadyClock::now() + kDrainBound;
        continue;
      }
      killpg(child, sig == SIGUSR2 ? SIGKILL : sig);
    }
  }
  // Everything the step wrote is in the log before the status says it ended.
  if (output) {
    if (output->fd() >= 0) output->Pump();
    output->Close();
  }
  return WriteStatus(status_path, wait_status, 0) ? 0 : 1;
}
