// The sluice-supervise file protocol (pid file, status file, atomic writes),
// the process identity check that guards against pid reuse, and the
// sluice-supervise program itself, run as a real process.

#include "executors/local/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "engine/file_lock.h"
#include "tests/support/subprocess.h"

#ifndef SLUICE_SUPERVISE_BIN
#error "SLUICE_SUPERVISE_BIN must name the sluice-supervise binary"
#endif

extern char** environ;

namespace sluice::local {
namespace {

namespace fs = std::filesystem;
using testutil::ReadFile;

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-supervise-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A child that waits, as the step of a supervisor would; killed and reaped
  // by the caller.
  static pid_t SleepingChild() {
    pid_t pid = fork();
    if (pid == 0) {
      ::pause();
      _exit(0);
    }
    return pid;
  }

  // Runs sluice-supervise with `argv` after PID_FILE STATUS_FILE, its report
  // pipe on fd 3 and a lock file on fd 4 (and, with `masks`, --masks and
  // the masks on fd 5); returns its pid and fills `report` once the report's
  // EOF came.
  pid_t StartSupervisor(const std::vector<std::string>& step, std::string* report,
                        const std::vector<std::string>* masks = nullptr) {
    const AttemptFiles files = AttemptFiles::For(dir_ + "/s.attempt1.log", "");
    std::vector<std::string> args = {SLUICE_SUPERVISE_BIN};
    if (masks) args.push_back("--masks");
    args.insert(args.end(), {files.pid, files.status});
    args.insert(args.end(), step.begin(), step.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int ready[2];
    EXPECT_EQ(pipe2(ready, O_CLOEXEC), 0);
    auto lock = OpenLockFile(files.lock);
    EXPECT_TRUE(lock.has_value());
    EXPECT_TRUE(TryLockExclusive(*lock).value());
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, (dir_ + "/s.attempt1.log").c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_adddup2(&fa, ready[1], 3);
    posix_spawn_file_actions_adddup2(&fa, *lock, 4);
    int masks_pipe[2] = {-1, -1};
    if (masks) {
      // Small enough to fit the pipe before the supervisor reads it.
      EXPECT_EQ(pipe2(masks_pipe, O_CLOEXEC), 0);
      const std::string encoded = EncodeLogMasks(*masks);
      EXPECT_EQ(write(masks_pipe[1], encoded.data(), encoded.size()), static_cast<ssize_t>(encoded.size()));
      close(masks_pipe[1]);
      posix_spawn_file_actions_adddup2(&fa, masks_pipe[0], 5);
    }
    pid_t pid = -1;
    EXPECT_EQ(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(ready[1]);
    close(*lock);
    if (masks_pipe[0] >= 0) close(masks_pipe[0]);
    char buf[256];
    ssize_t n;
    report->clear();
    while ((n = read(ready[0], buf, sizeof(buf))) > 0) report->append(buf, static_cast<size_t>(n));
    close(ready[0]);
    return pid;
  }

  // Sends `sig` to supervisor `sup`, waits for it to end and returns the
  // signal that its status file says ended the step (-1 without a status
  // file, 0 when the step was not killed by a signal).
  int SignalAndReadTermSig(pid_t sup, int sig) {
    kill(sup, sig);
    WaitExit(sup);
    auto st = ReadStatusFile(dir_ + "/s.attempt1.status");
    if (!st) return -1;
    return WIFSIGNALED(st->wait_status) ? WTERMSIG(st->wait_status) : 0;
  }

  static int WaitExit(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
  }

  std::string dir_;
};

TEST_F(SupervisorTest, FilesAreNamedAfterTheAttemptsLog) {
  AttemptFiles f = AttemptFiles::For("/s/runs/r/logs/train.attempt2.log", "");
  EXPECT_EQ(f.lock, "/s/runs/r/logs/train.attempt2.lock");
  EXPECT_EQ(f.pid, "/s/runs/r/logs/train.attempt2.pid");
  EXPECT_EQ(f.status, "/s/runs/r/logs/train.attempt2.status");
  EXPECT_EQ(AttemptFiles::For("/s/logs/t.attempt1.log", "worker-1").status,
            "/s/logs/t.attempt1.worker-1.status");
}

TEST_F(SupervisorTest, StatusFileRoundTripsThroughAnAtomicWrite) {
  const std::string path = dir_ + "/a.status";
  StatusFile f;
  f.wait_status = 3 << 8;  // exited with code 3
  f.finished_ns = 1700000000123456789;
  ASSERT_TRUE(WriteFileAtomically(path, FormatStatusFile(f)).ok());
  EXPECT_EQ(ReadFile(path),
            "sluice-supervise 1\nwait_status 768\nexec_errno 0\nfinished_ns 1700000000123456789\n");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  auto back = ReadStatusFile(path);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->wait_status, 768);
  EXPECT_EQ(back->exec_errno, 0);
  EXPECT_EQ(back->finished_ns, 1700000000123456789);
}

TEST_F(SupervisorTest, PidFileRoundTrips) {
  const std::string path = dir_ + "/a.pid";
  PidFile f;
  f.boot_id = "0b5e1d2c-0000-4000-8000-000000000001";
  f.supervisor = {1234, 98765};
  f.step = {1235, 98766};
  f.started_ns = 42;
  ASSERT_TRUE(WriteFileAtomically(path, FormatPidFile(f)).ok());
  EXPECT_EQ(ReadFile(path),
            "sluice-supervise 1\nboot_id 0b5e1d2c-0000-4000-8000-000000000001\n"
            "supervisor 1234 98765\nstep 1235 98766\nstarted_ns 42\n");
  auto back = ReadPidFile(path);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->boot_id, f.boot_id);
  EXPECT_EQ(back->supervisor.pid, 1234);
  EXPECT_EQ(back->supervisor.start_ticks, 98765u);
  EXPECT_EQ(back->step.pid, 1235);
  EXPECT_EQ(back->step.start_ticks, 98766u);
  EXPECT_EQ(back->started_ns, 42);
}

TEST_F(SupervisorTest, MissingAndTornFilesAreReportedNotMisread) {
  const std::string path = dir_ + "/a.status";
  auto missing = ReadStatusFile(path);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound);
  // What a non-atomic writer could leave: the last line cut short.
  std::ofstream(path) << "sluice-supervise 1\nwait_status 0\nexec_errno 0\nfinished_ns 17";
  auto torn = ReadStatusFile(path);
  ASSERT_FALSE(torn.has_value());
  EXPECT_EQ(torn.error().message(), path + " is not a complete sluice-supervise status file");
  std::ofstream(path) << "sluice-supervise 1\nwait_status 0\n";
  EXPECT_FALSE(ReadStatusFile(path).has_value());
}

TEST_F(SupervisorTest, IdentityTellsAProcessFromALaterOneWithTheSamePid) {
  pid_t child = SleepingChild();
  ASSERT_GT(child, 0);
  auto ticks = ProcessStartTicks(child);
  ASSERT_TRUE(ticks.has_value()) << ticks.error().ToString();
  const std::string boot = BootId();
  ASSERT_FALSE(boot.empty());
  EXPECT_TRUE(IsAlive({child, *ticks}, boot));
  // The same pid with another start time is another process (pid reuse).
  EXPECT_FALSE(IsAlive({child, *ticks + 1}, boot));
  // The same pid and start time in another boot is another process too.
  EXPECT_FALSE(IsAlive({child, *ticks}, "00000000-0000-0000-0000-000000000000"));
  // Ended but not reaped yet (a zombie): not alive.
  kill(child, SIGKILL);
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(IsAlive({child, *ticks}, boot));
  EXPECT_EQ(ProcessStartTicks(child).error().code(), StatusCode::kNotFound);
  WaitExit(child);
  EXPECT_FALSE(IsAlive({child, *ticks}, boot));
}

TEST_F(SupervisorTest, StartTicksSurviveParenthesesAndSpacesInTheCommandName) {
  // comm is "a) b (c" here; the fields after it must still be found.
  pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_NAME, "a) b (c", 0, 0, 0);
    ::pause();
    _exit(0);
  }
  ASSERT_GT(child, 0);
  // The name is set by the child itself: wait (bounded) until it shows.
  std::string comm;
  for (int i = 0; i < 500 && comm != "a) b (c\n"; ++i) {
    comm = ReadFile("/proc/" + std::to_string(child) + "/comm");
    if (comm != "a) b (c\n") std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(comm, "a) b (c\n");
  auto ticks = ProcessStartTicks(child);
  auto self = ProcessStartTicks(getpid());
  ASSERT_TRUE(ticks.has_value()) << ticks.error().ToString();
  ASSERT_TRUE(self.has_value());
  EXPECT_GE(*ticks, *self);
  kill(child, SIGKILL);
  WaitExit(child);
}

TEST_F(SupervisorTest, RecordsThePidBeforeTheStepAndTheExitStatusAfter) {
  const std::string marks = dir_ + "/marks";
  std::string report;
  pid_t sup = StartSupervisor(
      {"/bin/sh", "sh", "-c", "cat " + dir_ + "/s.attempt1.pid > " + marks + "; exit 3"}, &report);
  ASSERT_EQ(report.rfind("ok ", 0), 0u) << report;
  int status = WaitExit(sup);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // The step itself saw its pid file complete.
  auto pf = ReadPidFile(dir_ + "/s.attempt1.pid");
  ASSERT_TRUE(pf.has_value()) << pf.error().ToString();
  EXPECT_EQ(ReadFile(marks), FormatPidFile(*pf));
  EXPECT_EQ(pf->supervisor.pid, sup);
  EXPECT_EQ(std::to_string(pf->step.pid), report.substr(3, report.size() - 4));
  EXPECT_EQ(pf->boot_id, BootId());
  auto st = ReadStatusFile(dir_ + "/s.attempt1.status");
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_TRUE(WIFEXITED(st->wait_status));
  EXPECT_EQ(WEXITSTATUS(st->wait_status), 3);
  EXPECT_EQ(st->exec_errno, 0);
  EXPECT_GE(st->finished_ns, pf->started_ns);
  // Its lock went with it.
  EXPECT_FALSE(IsLockHeld(dir_ + "/s.attempt1.lock").value());
}

TEST_F(SupervisorTest, HoldsTheLockWhileTheStepRunsAndForwardsSigterm) {
  std::string report;
  pid_t sup = StartSupervisor({"/bin/sleep", "sleep", "60"}, &report);
  ASSERT_EQ(report.rfind("ok ", 0), 0u) << report;
  EXPECT_TRUE(IsLockHeld(dir_ + "/s.attempt1.lock").value());
  auto pf = ReadPidFile(dir_ + "/s.attempt1.pid");
  ASSERT_TRUE(pf.has_value());
  EXPECT_TRUE(IsAlive(pf->step, pf->boot_id));
  // Its own session: a signal to the test's process group does not reach it.
  EXPECT_EQ(getsid(sup), sup);
  EXPECT_EQ(getpgid(pf->step.pid), pf->step.pid);
  EXPECT_EQ(SignalAndReadTermSig(sup, SIGTERM), SIGTERM);
  EXPECT_FALSE(IsLockHeld(dir_ + "/s.attempt1.lock").value());
}

TEST_F(SupervisorTest, Sigusr2KillsTheStepsWholeProcessGroup) {
  std::string report;
  // The shell ignores SIGTERM; only a SIGKILL ends it.
  pid_t sup = StartSupervisor({"/bin/sh", "sh", "-c", "trap '' TERM; sleep 60 & wait"}, &report);
  ASSERT_EQ(report.rfind("ok ", 0), 0u) << report;
  EXPECT_EQ(SignalAndReadTermSig(sup, SIGUSR2), SIGKILL);
}

TEST_F(SupervisorTest, AProgramThatCannotBeExecutedIsReportedWithItsErrno) {
  std::string report;
  pid_t sup = StartSupervisor({dir_ + "/missing", "missing"}, &report);
  EXPECT_EQ(report, "exec " + std::to_string(ENOENT) + "\n");
  WaitExit(sup);
  auto st = ReadStatusFile(dir_ + "/s.attempt1.status");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->exec_errno, ENOENT);
}

TEST_F(SupervisorTest, LogMasksRoundTripThroughTheirEncoding) {
  const std::vector<std::string> masks = {"s3cr3t", std::string("with\0nul", 8), "", "x"};
  auto back = DecodeLogMasks(EncodeLogMasks(masks));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(*back, masks);
  EXPECT_EQ(DecodeLogMasks(EncodeLogMasks({})).value(), std::vector<std::string>{});
  // Cut short anywhere (the executor died while sending), or with more
  // after the end: an error, never fewer values.
  const std::string two = EncodeLogMasks({"s3cr3t", "other"});
  EXPECT_EQ(DecodeLogMasks(two.substr(0, 2)).error().ToString(),
            Status::InvalidArgument("the log masks end inside their count").ToString());
  EXPECT_EQ(DecodeLogMasks(two.substr(0, 4 + 4 + 6)).error().ToString(),
            Status::InvalidArgument("the log masks end inside a length").ToString());
  EXPECT_EQ(DecodeLogMasks(two.substr(0, 4 + 4 + 3)).error().ToString(),
            Status::InvalidArgument("the log masks end inside a value").ToString());
  EXPECT_EQ(DecodeLogMasks(two + "x").error().ToString(),
            Status::InvalidArgument("the log masks have bytes after the last value").ToString());
}

// With --masks the supervisor copies the step's output to the log, each
// value written as "***" (split across writes, stderr included), all of it
// before the status file.
TEST_F(SupervisorTest, MaskedOutputReachesTheLogMaskedBeforeTheStatus) {
  const std::vector<std::string> masks = {"s3cr3t", "other"};
  std::string report;
  pid_t sup = StartSupervisor(
      {"/bin/sh", "sh", "-c", "printf 'a s3c'; printf 'r3t b\\n'; echo other >&2; printf 's3cr3t'; exit 2"},
      &report, &masks);
  ASSERT_EQ(report.rfind("ok ", 0), 0u) << report;
  int status = WaitExit(sup);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(ReadFile(dir_ + "/s.attempt1.log"), "a *** b\n***\n***");
  auto st = ReadStatusFile(dir_ + "/s.attempt1.status");
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_TRUE(WIFEXITED(st->wait_status));
  EXPECT_EQ(WEXITSTATUS(st->wait_status), 2);
}

// Masking does not keep the supervisor from its signals.
TEST_F(SupervisorTest, AMaskingSupervisorStillForwardsSigterm) {
  const std::vector<std::string> masks = {"s3cr3t"};
  std::string report;
  const std::string fifo = dir_ + "/echoed";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  pid_t sup = StartSupervisor({"/bin/sh", "sh", "-c", "echo s3cr3t; echo ok > " + fifo + "; exec sleep 60"},
                              &report, &masks);
  ASSERT_EQ(report.rfind("ok ", 0), 0u) << report;
  std::string line;
  std::ifstream in(fifo);
  std::getline(in, line);  // the step has written its line
  EXPECT_EQ(line, "ok");
  EXPECT_EQ(SignalAndReadTermSig(sup, SIGTERM), SIGTERM);
  EXPECT_EQ(ReadFile(dir_ + "/s.attempt1.log"), "***\n");
}

// A start request travels whole with its descriptors, also when it is too
// large for one socket message (a long argv): then it goes in a memfd.
TEST_F(SupervisorTest, StartRequestsTravelWholeWithTheirDescriptors) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  for (size_t arg_size : {size_t{10}, size_t{300000}}) {
    StartRequest r;
    r.id = 0x123456789aULL;
    r.pid_path = "/s/logs/t.attempt1.pid";
    r.status_path = "/s/logs/t.attempt1.status";
    r.program = "/bin/echo";
    r.workdir = "/s";
    r.argv = {"echo", std::string(arg_size, 'x')};
    r.env = {"PATH=/bin", "EMPTY="};
    r.masks = EncodeLogMasks({"s3cr3t"});
    int log_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    ASSERT_EQ(SendMessage(sv[0], EncodeStartRequest(r), {log_fd, log_fd}), 0);
    close(log_fd);
    std::string bytes;
    std::vector<int> fds;
    ASSERT_EQ(RecvMessage(sv[1], &bytes, &fds), 1);
    EXPECT_EQ(fds.size(), 2u);
    for (int fd : fds) close(fd);
    auto back = DecodeStartRequest(bytes);
    ASSERT_TRUE(back.has_value()) << back.error().ToString();
    EXPECT_EQ(back->id, r.id);
    EXPECT_EQ(back->pid_path, r.pid_path);
    EXPECT_EQ(back->status_path, r.status_path);
    EXPECT_EQ(back->program, r.program);
    EXPECT_EQ(back->workdir, r.workdir);
    EXPECT_EQ(back->argv, r.argv);
    EXPECT_EQ(back->env, r.env);
    EXPECT_EQ(back->masks, r.masks);
  }
  ASSERT_EQ(SendMessage(sv[0], EncodeControlMessage({'D', 7, 768, ""})), 0);
  std::string bytes;
  std::vector<int> fds;
  ASSERT_EQ(RecvMessage(sv[1], &bytes, &fds), 1);
  auto m = DecodeControlMessage(bytes);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->kind, 'D');
  EXPECT_EQ(m->id, 7u);
  EXPECT_EQ(m->value, 768);
  EXPECT_EQ(DecodeStartRequest(bytes.substr(0, 5)).error().message(), "not a start request");
  close(sv[0]);
  EXPECT_EQ(RecvMessage(sv[1], &bytes, &fds), 0);  // the peer is gone
  close(sv[1]);
}

}  // namespace
}  // namespace sluice::local
