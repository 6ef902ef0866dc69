// sluice-supervise: starts and watches the processes of local steps and
// outlives the sluice process that asked for them (see
// executors/local/supervisor.h for the protocol, the files it writes and the
// signals it understands).
//
//   sluice-supervise --serve
//
// serves a run: descriptor 3 is its end of a SOCK_SEQPACKET socket pair
// with the executor, which sends StartRequests (log and lock descriptors
// attached) and signal requests; every step gets the environment, working
// directory and arguments of its request, stdin /dev/null and stdout/stderr
// its log. It exits once the executor has closed its end and no step runs.
//
//   sluice-supervise [--masks] PID_FILE STATUS_FILE PROGRAM ARGV0 [ARG...]
//
// runs one step, with this program's environment, working directory and
// stdout/stderr (the log), and these descriptors:
//   3  the write end of a pipe: one line, then EOF, once the step's program
//      runs ("ok <pid>"), could not be executed ("exec <errno>") or the
//      supervisor could not do its work ("error <text>");
//   4  the attempt's lock file, locked by the caller; the supervisor holds
//      the lock (shares the open file description) until the status file is
//      written;
//   5  with --masks only: the secret values to mask in the log
//      (EncodeLogMasks), read to EOF before the step starts.
// Exit status 0 once the status file is written, 1 when it could not be, 2
// for a usage error.
//
// PROGRAM is executed as is (no PATH search, no shell). The step's program
// starts only once its pid file is on disk, so an attempt without a pid
// file never ran.

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sched.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/secret_mask.h"
#include "executors/local/supervisor.h"

extern char** environ;

namespace {

using sluice::local::ControlMessage;
using sluice::local::FormatPidFile;
using sluice::local::FormatStatusFile;
using sluice::local::PidFile;
using sluice::local::ProcessStartTicks;
using sluice::local::StartRequest;
using sluice::local::StatusFile;
using SteadyClock = std::chrono::steady_clock;

constexpr int kSocketFd = 3;  // --serve
constexpr int kReadyFd = 3;   // one step
constexpr int kLockFd = 4;
constexpr int kMasksFd = 5;

// How long a masked output pipe is still read once the step's process
// group is gone: a descendant that left the group may hold it open forever.
constexpr auto kDrainBound = std::chrono::seconds(2);

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Writes all of `text` to `fd`; a full disk loses log text, never the step.
void WriteAll(int fd, std::string_view text) {
  for (size_t done = 0; done < text.size();) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
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

// Copies a step's output pipe to its log, masked.
class MaskedOutput {
 public:
  MaskedOutput(int fd, int log_fd, std::vector<std::string> masks)
      : fd_(fd), log_fd_(log_fd), masker_(std::move(masks), std::string(sluice::kLogMask)) {}
  ~MaskedOutput() { Close(); }

  int fd() const { return fd_; }

  // Copies what can be read now, at most 1 MiB (so that a step that writes
  // without pause cannot keep signals and other steps waiting); closes the
  // pipe at EOF.
  void Pump() {
    char buf[65536];
    for (int chunks = 0; chunks < 16;) {
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) {
        ++chunks;
        WriteAll(log_fd_, masker_.Write(std::string_view(buf, static_cast<size_t>(n))));
        continue;
      }
      if (n == 0) Close();
      return;  // EAGAIN: nothing more for now
    }
  }

  // Writes what the masker held back and closes the pipe (idempotent).
  void Close() {
    if (fd_ < 0) return;
    WriteAll(log_fd_, masker_.Finish());
    close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  int log_fd_;  // borrowed
  sluice::StreamMasker masker_;
};

// One step's process, from its fork until its status file is written.
struct Step {
  uint64_t id = 0;
  pid_t pid = -1;  // also its process group id
  std::string status_path;
  int log_fd = -1;
  int lock_fd = -1;
  std::unique_ptr<MaskedOutput> output;
  bool reaped = false;
  int wait_status = 0;
  bool exec_failed = false;
  int exec_errno = 0;
  std::optional<SteadyClock::time_point> drain_until;
};

// Starts steps and watches them until each has ended and its status file is
// written; reports through `report` (a ControlMessage per event).
class Supervisor {
 public:
  using Report = std::function<void(const ControlMessage&)>;

  explicit Supervisor(Report report) : report_(std::move(report)) {}

  // Blocks the signals it handles and opens the signalfd; false (with
  // `*error`) when it cannot.
  bool Init(std::string* error) {
    sigemptyset(&handled_);
    for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGUSR2, SIGRTMIN + sluice::local::kStepSignalOffset}) {
      sigaddset(&handled_, sig);
    }
    sigprocmask(SIG_BLOCK, &handled_, nullptr);
    signal_fd_ = signalfd(-1, &handled_, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd_ < 0) {
      *error = std::string("cannot create a signalfd: ") + strerror(errno);
      return false;
    }
    return true;
  }

  // Starts the step of `r`; takes `log_fd` and `lock_fd` (and closes them
  // once its status file is written). Reports 'O', 'X' or 'E' (later, once
  // the exec has happened or failed).
  void Start(const StartRequest& r, int log_fd, int lock_fd, int inherited_out = -1);

  // A signal request from the executor: `sig` to step `id`.
  void SignalById(uint64_t id, int sig) {
    for (auto& [pid, s] : steps_) {
      if (s->id == id) Deliver(*s, sig);
    }
  }

  size_t Running() const { return steps_.size(); }
  int signal_fd() const { return signal_fd_; }

  // Adds the descriptors to watch (and the earliest drain deadline) to `fds`.
  void AddPollFds(std::vector<pollfd>* fds, std::optional<SteadyClock::time_point>* wake) {
    fds->push_back({signal_fd_, POLLIN, 0});
    for (auto& [pid, s] : steps_) {
      if (s->output && s->output->fd() >= 0) fds->push_back({s->output->fd(), POLLIN, 0});
      std::optional<SteadyClock::time_point> at = s->drain_until;
      if (s->reaped && (!s->output || s->output->fd() < 0)) at = SteadyClock::now();  // to finish now
      if (at && (!*wake || *at < **wake)) *wake = at;
    }
  }

  // Handles whatever is ready among the descriptors AddPollFds added (and
  // drain deadlines that have passed).
  void Service(const std::vector<pollfd>& fds) {
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      if (p.fd == signal_fd_) {
        ReadSignals();
        continue;
      }
      for (auto& [pid, s] : steps_) {
        if (s->output && p.fd == s->output->fd()) s->output->Pump();
      }
    }
    // Steps whose end is recorded leave.
    auto now = SteadyClock::now();
    for (auto it = steps_.begin(); it != steps_.end();) {
      Step& s = *it->second;
      bool drained = !s.output || s.output->fd() < 0 || (s.drain_until && now >= *s.drain_until);
      if (s.reaped && drained) {
        Finish(s);
        it = steps_.erase(it);
      } else {
        ++it;
      }
    }
  }

  bool all_status_written() const { return all_written_; }

 private:
  // Sends `sig` to the step's process group (SIGUSR2 meaning SIGKILL); once
  // the step is reaped its pid may be reused, so nothing is signalled, and
  // a kill only asks for no more draining.
  void Deliver(Step& s, int sig) {
    if (sig == SIGUSR2) sig = SIGKILL;
    if (s.reaped) {
      if (sig == SIGKILL) s.drain_until = SteadyClock::now();
      return;
    }
    killpg(s.pid, sig);
  }

  void ReadSignals() {
    signalfd_siginfo si;
    while (read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      const int sig = static_cast<int>(si.ssi_signo);
      if (sig == SIGCHLD) {
        ReapEnded();
      } else if (sig == SIGRTMIN + sluice::local::kStepSignalOffset) {
        // One step: (signal << 32) | its pid.
        const pid_t pid = static_cast<pid_t>(si.ssi_ptr & 0xffffffffu);
        const int target_sig = static_cast<int>(si.ssi_ptr >> 32);
        auto it = steps_.find(pid);
        if (it != steps_.end() && (target_sig == SIGTERM || target_sig == SIGINT || target_sig == SIGKILL)) {
          Deliver(*it->second, target_sig);
        }
      } else {
        for (auto& [pid, s] : steps_) Deliver(*s, sig);
      }
    }
  }

  // Reaps every step whose main process has ended, killing what it left
  // in its process group first.
  void ReapEnded() {
    for (auto& [pid, s] : steps_) {
      if (s->reaped) continue;
      // Peek first (WNOWAIT): until the step's main process is reaped its
      // pid, and so its process group id, cannot be reused, which makes the
      // killpg safe.
      siginfo_t info{};
      if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != pid) {
        continue;
      }
      killpg(pid, SIGKILL);
      while (waitpid(pid, &s->wait_status, 0) < 0 && errno == EINTR) {
      }
      s->reaped = true;
      if (s->output) s->drain_until = SteadyClock::now() + kDrainBound;
    }
  }

  // Writes the status file of an ended step, releases its lock and reports.
  void Finish(Step& s) {
    if (s.output) {
      if (s.output->fd() >= 0) s.output->Pump();
      s.output->Close();
    }
    StatusFile f;
    f.wait_status = s.wait_status;
    f.exec_errno = s.exec_errno;
    f.finished_ns = NowNs();
    // Written in place with one write: nobody reads it before the lock is
    // released below.
    const std::string text = FormatStatusFile(f);
    int fd = open(s.status_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      Complain(s.log_fd, "cannot write " + s.status_path + ": " + strerror(errno));
      all_written_ = false;
    }
    if (fd >= 0) close(fd);
    close(s.log_fd);
    close(s.lock_fd);  // the attempt is no longer watched
    if (s.exec_failed) {
      report_({'X', s.id, s.exec_errno, ""});
    } else {
      report_({'D', s.id, s.wait_status, ""});
    }
  }

  // The supervisor's complaints go to the step's log, as "[sluice] ..." lines.
  static void Complain(int log_fd, const std::string& what) {
    WriteAll(log_fd, "[sluice] sluice-supervise: " + what + "\n");
  }

  Report report_;
  sigset_t handled_;
  int signal_fd_ = -1;
  std::map<pid_t, std::unique_ptr<Step>> steps_;  // by the step's pid
  bool all_written_ = true;
  std::optional<uint64_t> self_ticks_;  // this process's start time
  std::string boot_id_;
};

// What the child of a step needs, all prepared before the clone: the child
// shares our memory until it has executed the program, so it only makes
// system calls and writes into these fields.
struct ChildArgs {
  const char* program;
  char** argv;
  char** envp;
  const char* workdir;  // null: ours
  int out_fd;           // its stdout/stderr; -1: ours
  const char* pid_path;
  const char* pid_head;  // the pid file up to its "step" line
  size_t pid_head_len;
  // Set by the child when it fails: which step failed and its errno.
  volatile int failed_at = 0;  // 1: the pid file, 2: setting up or the exec
  volatile int err = 0;
};

// Appends the decimal digits of `n` to `out` (no allocation: the child
// cannot allocate).
char* AppendDecimal(char* out, uint64_t n) {
  char digits[24];
  int k = 0;
  do {
    digits[k++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  while (k > 0) *out++ = digits[--k];
  return out;
}

// The child's own start time (field 22 of /proc/self/stat), 0 if unreadable.
uint64_t OwnStartTicks() {
  char buf[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  char* p = strrchr(buf, ')');
  if (p == nullptr) return 0;
  // Fields 3.. follow ") "; skip to the 22nd.
  for (int field = 2; field < 22 && *p != '\0'; ++p) {
    if (*p == ' ') ++field;
  }
  uint64_t ticks = 0;
  while (*p >= '0' && *p <= '9') ticks = ticks * 10 + static_cast<uint64_t>(*p++ - '0');
  return ticks;
}

// The step's child: its own process group, default signals, stdin
// /dev/null, its output; then its pid file (so that the program never runs
// without one), then the program.
int StepChild(void* arg) {
  auto* a = static_cast<ChildArgs*>(arg);
  auto fail = [a](int stage) {
    a->err = errno;
    a->failed_at = stage;
    _exit(127);
  };
  setpgid(0, 0);
  signal(SIGHUP, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0) fail(2);
  if (a->out_fd >= 0 && (dup2(a->out_fd, STDOUT_FILENO) < 0 || dup2(a->out_fd, STDERR_FILENO) < 0)) fail(2);
  if (a->workdir != nullptr && chdir(a->workdir) != 0) fail(2);
  char text[512];
  char* end = text;
  end = AppendDecimal(end, static_cast<uint64_t>(getpid()));
  *end++ = ' ';
  end = AppendDecimal(end, OwnStartTicks());
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  memcpy(end, "\nstarted_ns ", 12);
  end = AppendDecimal(end + 12, static_cast<uint64_t>(now.tv_sec) * 1000000000u + static_cast<uint64_t>(now.tv_nsec));
  *end++ = '\n';
  // One write: a reader sees an empty file or a partial one (incomplete, so
  // "not started yet") only while the attempt's lock is held.
  int fd = open(a->pid_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(1);
  iovec parts[2] = {{const_cast<char*>(a->pid_head), a->pid_head_len}, {text, static_cast<size_t>(end - text)}};
  if (writev(fd, parts, 2) != static_cast<ssize_t>(a->pid_head_len + static_cast<size_t>(end - text))) fail(1);
  close(fd);
  execve(a->program, a->argv, a->envp);
  fail(2);
  return 127;
}

void Supervisor::Start(const StartRequest& r, int log_fd, int lock_fd, int inherited_out) {
  auto fail = [&](const std::string& why) {
    Complain(log_fd, why);
    close(log_fd);
    close(lock_fd);
    report_({'E', r.id, 0, why});
  };
  auto s = std::make_unique<Step>();
  s->id = r.id;
  s->status_path = r.status_path;
  s->log_fd = log_fd;
  s->lock_fd = lock_fd;
  // With masks, the step writes into a pipe the supervisor reads.
  int out_pipe[2] = {-1, -1};
  if (!r.masks.empty()) {
    auto masks = sluice::local::DecodeLogMasks(r.masks);
    if (!masks) return fail(masks.error().message());
    if (pipe2(out_pipe, O_CLOEXEC) != 0) return fail(std::string("cannot create the output pipe: ") + strerror(errno));
    fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
    s->output = std::make_unique<MaskedOutput>(out_pipe[0], log_fd, std::move(*masks));
  }
  std::vector<char*> argv, envp;
  for (const auto& a : r.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : r.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  if (boot_id_.empty()) boot_id_ = sluice::local::BootId();
  if (!self_ticks_) self_ticks_ = ProcessStartTicks(getpid()).value_or(0);
  // The pid file as FormatPidFile writes it; the child adds its own pid,
  // start time and the wall-clock start.
  PidFile head;
  head.boot_id = boot_id_;
  head.supervisor = {getpid(), *self_ticks_};
  std::string pid_head = FormatPidFile(head);
  pid_head.resize(pid_head.find("\nstep ") + 6);

  ChildArgs args;
  args.program = r.program.c_str();
  args.argv = argv.data();
  args.envp = inherited_out >= 0 ? environ : envp.data();
  args.workdir = r.workdir.empty() ? nullptr : r.workdir.c_str();
  args.out_fd = out_pipe[1] >= 0 ? out_pipe[1] : (inherited_out >= 0 ? -1 : log_fd);
  args.pid_path = r.pid_path.c_str();
  args.pid_head = pid_head.data();
  args.pid_head_len = pid_head.size();
  // The child runs on a stack of its own, in our memory, while we wait
  // (CLONE_VFORK): no copy of our pages, as posix_spawn does.
  static std::vector<char> child_stack(256 * 1024);
  pid_t child = clone(StepChild, child_stack.data() + child_stack.size(), CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  int clone_errno = errno;
  if (out_pipe[1] >= 0) close(out_pipe[1]);  // the step holds it now
  if (child < 0) {
    s->output.reset();
    return fail(std::string("cannot start a process: ") + strerror(clone_errno));
  }
  s->pid = child;
  if (args.failed_at != 0) {
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (args.failed_at == 1) {
      // The program never ran, and no pid file claims it did.
      unlink(r.pid_path.c_str());
      s->output.reset();
      return fail("cannot write " + r.pid_path + ": " + strerror(args.err));
    }
    // It could not be executed: recorded like an ending, reported as 'X'.
    s->wait_status = status;
    s->reaped = true;
    s->exec_failed = true;
    s->exec_errno = args.err;
    s->output.reset();
    steps_[child] = std::move(s);
    return;
  }
  report_({'O', r.id, child, ""});
  steps_[child] = std::move(s);
}

}  // namespace

namespace {

// Waits for and handles events until `done` says so.
void Loop(Supervisor& sup, int sock, bool* sock_open, const std::function<bool()>& done) {
  std::string bytes;
  std::vector<int> fds;
  while (!done()) {
    std::vector<pollfd> polled;
    std::optional<SteadyClock::time_point> wake;
    sup.AddPollFds(&polled, &wake);
    if (*sock_open) polled.push_back({sock, POLLIN, 0});
    int timeout_ms = -1;
    if (wake) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*wake - SteadyClock::now());
      timeout_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    int ready = poll(polled.data(), polled.size(), timeout_ms);
    if (ready < 0 && errno != EINTR) return;
    if (*sock_open && polled.back().revents != 0) {
      polled.pop_back();
      // Every request that is there, in order.
      for (;;) {
        int got = sluice::local::RecvMessage(sock, &bytes, &fds);
        if (got < 0 && errno == EAGAIN) break;
        if (got <= 0) {
          *sock_open = false;  // the executor is gone; the steps go on
          break;
        }
        if (!bytes.empty() && bytes[0] == 'S') {
          auto r = sluice::local::DecodeStartRequest(bytes);
          if (r && fds.size() == 2) {
            sup.Start(*r, fds[0], fds[1]);
            continue;
          }
        } else if (auto m = sluice::local::DecodeControlMessage(bytes); m && m->kind == 'K') {
          sup.SignalById(m->id, static_cast<int>(m->value));
        }
        for (int fd : fds) close(fd);
      }
    } else if (*sock_open) {
      polled.pop_back();
    }
    sup.Service(polled);
  }
}

int Serve() {
  fcntl(kSocketFd, F_SETFD, FD_CLOEXEC);
  bool sock_open = true;
  Supervisor sup([&](const ControlMessage& m) {
    // A report to an executor that is gone is lost; the status file is not.
    if (sock_open) sluice::local::SendMessage(kSocketFd, sluice::local::EncodeControlMessage(m));
  });
  std::string error;
  if (!sup.Init(&error)) return 1;
  Loop(sup, kSocketFd, &sock_open, [&] { return !sock_open && sup.Running() == 0; });
  return sup.all_status_written() ? 0 : 1;
}

// The one-step form (see the top of this file).
int RunOne(bool masked, int argc, char** argv) {
  // Neither descriptor reaches the step's program.
  fcntl(kReadyFd, F_SETFD, FD_CLOEXEC);
  fcntl(kLockFd, F_SETFD, FD_CLOEXEC);
  bool reported = false;
  auto ready = [&](const std::string& line) {
    if (reported) return;
    reported = true;
    WriteAll(kReadyFd, line + "\n");
    close(kReadyFd);
  };
  bool ended = false;
  Supervisor sup([&](const ControlMessage& m) {
    switch (m.kind) {
      case 'O': ready("ok " + std::to_string(m.value)); break;
      case 'X': ready("exec " + std::to_string(m.value)); ended = true; break;
      case 'E': ready("error " + m.text); ended = true; break;
      default: ended = true; break;
    }
  });
  StartRequest r;
  r.pid_path = argv[1];
  r.status_path = argv[2];
  r.program = argv[3];
  for (int i = 4; i < argc; ++i) r.argv.push_back(argv[i]);
  if (masked) {
    std::string encoded;
    if (!ReadAll(kMasksFd, &encoded)) {
      ready(std::string("error cannot read the log masks: ") + strerror(errno));
      return 1;
    }
    r.masks = encoded;
  }
  std::string error;
  if (!sup.Init(&error)) {
    ready("error " + error);
    return 1;
  }
  int log_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 10);
  sup.Start(r, log_fd, kLockFd, STDOUT_FILENO);
  bool no_socket = false;
  Loop(sup, -1, &no_socket, [&] { return ended; });
  return reported && sup.all_status_written() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  setsid();  // already done by the executor's posix_spawn; harmless when so
  if (argc == 2 && std::string_view(argv[1]) == "--serve") return Serve();
  bool masked = argc > 1 && std::string_view(argv[1]) == "--masks";
  if (masked) {
    --argc;
    ++argv;
  }
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: sluice-supervise --serve\n"
                 "       sluice-supervise [--masks] PID_FILE STATUS_FILE PROGRAM ARGV0 [ARG...]\n");
    return 2;
  }
  return RunOne(masked, argc, argv);
}
