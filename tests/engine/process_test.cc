#include "engine/process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

namespace sluice {
namespace {

// What a child printed and how it ended.
struct Captured {
  int status = -1;
  std::string out;
};

// Spawns `options` with stdout into a pipe, reads it to EOF and reaps the
// child. The spawn must succeed.
Captured RunCaptured(SpawnOptions options) {
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  options.dup.push_back({STDOUT_FILENO, fds[1]});
  pid_t pid = 0;
  int rc = SpawnProcess(options, &pid);
  close(fds[1]);
  Captured c;
  EXPECT_EQ(rc, 0) << std::strerror(rc);
  if (rc != 0) {
    close(fds[0]);
    return c;
  }
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) c.out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  while (waitpid(pid, &c.status, 0) < 0 && errno == EINTR) {
  }
  return c;
}

SpawnOptions Python(const std::string& code) {
  SpawnOptions o;
  o.program = "python3";
  o.search_path = true;
  o.argv = {"python3", "-c", code};
  return o;
}

TEST(SpawnProcessTest, ArgvElementsReachTheProgramAsIs) {
  SpawnOptions o = Python("import sys; print(sys.argv[1:])");
  o.argv.insert(o.argv.end(), {"a b", "$HOME", "; true"});
  Captured c = RunCaptured(o);
  EXPECT_EQ(c.out, "['a b', '$HOME', '; true']\n");
  EXPECT_TRUE(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0);
}

TEST(SpawnProcessTest, ExitStatusComesBack) {
  Captured c = RunCaptured(Python("import sys; sys.exit(3)"));
  ASSERT_TRUE(WIFEXITED(c.status));
  EXPECT_EQ(WEXITSTATUS(c.status), 3);
}

TEST(SpawnProcessTest, EnvironmentIsOursOrExactlyTheGivenOne) {
  ASSERT_EQ(setenv("SLUICE_PROCESS_TEST", "ours", 1), 0);
  EXPECT_EQ(CurrentEnvironment().at("SLUICE_PROCESS_TEST"), "ours");
  const std::string code = "import os; print(os.environ.get('SLUICE_PROCESS_TEST'), os.environ.get('ONLY'))";
  EXPECT_EQ(RunCaptured(Python(code)).out, "ours None\n");
  SpawnOptions o = Python(code);
  o.env = std::map<std::string, std::string>{{"ONLY", "this"}, {"PATH", std::getenv("PATH")}};
  EXPECT_EQ(RunCaptured(o).out, "None this\n");
  unsetenv("SLUICE_PROCESS_TEST");
}

TEST(SpawnProcessTest, WorkdirAndDevNull) {
  SpawnOptions o = Python("import os, sys; print(os.getcwd(), repr(sys.stdin.read()))");
  o.workdir = "/";
  o.dev_null = {{STDIN_FILENO, O_RDONLY}};
  EXPECT_EQ(RunCaptured(o).out, "/ ''\n");
}

TEST(SpawnProcessTest, FailuresAreErrnoValues) {
  pid_t pid = 0;
  SpawnOptions missing;
  missing.program = "sluice-no-such-program";
  missing.search_path = true;
  missing.argv = {missing.program};
  EXPECT_EQ(SpawnProcess(missing, &pid), ENOENT);

  SpawnOptions not_on_path = missing;
  not_on_path.program = "python3";
  not_on_path.search_path = false;  // a relative path, not looked up
  if (access("python3", X_OK) != 0) EXPECT_EQ(SpawnProcess(not_on_path, &pid), ENOENT);

  SpawnOptions bad_dir = Python("pass");
  bad_dir.workdir = "/sluice-no-such-dir";
  EXPECT_EQ(SpawnProcess(bad_dir, &pid), ENOENT);
}

TEST(SpawnProcessTest, NewSessionAndNewGroup) {
  const std::string code = "import os; print(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())";
  EXPECT_EQ(RunCaptured(Python(code)).out, "False False\n");
  SpawnOptions group = Python(code);
  group.group = SpawnOptions::Group::kNewGroup;
  EXPECT_EQ(RunCaptured(group).out, "False True\n");
  SpawnOptions session = Python(code);
  session.group = SpawnOptions::Group::kNewSession;
  EXPECT_EQ(RunCaptured(session).out, "True True\n");
}

TEST(SpawnProcessTest, SignalMaskAndDefaults) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  struct sigaction ignore {}, old_usr2 {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGUSR2, &ignore, &old_usr2), 0);

  const std::string code =
      "import signal; print(signal.SIGUSR1 in signal.pthread_sigmask(signal.SIG_BLOCK, []), "
      "signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN)";
  EXPECT_EQ(RunCaptured(Python(code)).out, "True True\n");  // inherited
  SpawnOptions clean = Python(code);
  clean.clear_signal_mask = true;
  clean.default_signals = {SIGUSR2};
  EXPECT_EQ(RunCaptured(clean).out, "False False\n");
  SpawnOptions all = Python(code);
  all.all_signals_default = true;
  EXPECT_EQ(RunCaptured(all).out, "True False\n");

  ASSERT_EQ(sigaction(SIGUSR2, &old_usr2, nullptr), 0);
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &old, nullptr), 0);
}

TEST(SpawnProcessTest, CloseFromClosesInheritedDescriptors) {
  int fd = open("/dev/null", O_RDONLY);  // not close-on-exec: inherited unless closed
  ASSERT_GE(fd, 3);
  const std::string code = "import os, sys; print(os.path.exists('/proc/self/fd/' + sys.argv[1]))";
  SpawnOptions inherit = Python(code);
  inherit.argv.push_back(std::to_string(fd));
  EXPECT_EQ(RunCaptured(inherit).out, "True\n");
  SpawnOptions closed = inherit;
  closed.close_from = 3;
  EXPECT_EQ(RunCaptured(closed).out, "False\n");
  close(fd);
}

TEST(PidfdTest, SignalAndWaitThroughAPidfd) {
  SpawnOptions o = Python("import time; time.sleep(600)");
  pid_t pid = 0;
  ASSERT_EQ(SpawnProcess(o, &pid), 0);
  int fd = PidfdOpen(pid);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_FALSE(WaitForPidfd(fd, std::chrono::milliseconds(0)));  // still running
  EXPECT_EQ(PidfdSendSignal(fd, SIGKILL), 0);
  EXPECT_TRUE(WaitForPidfd(fd, std::chrono::minutes(2)));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  close(fd);
}

TEST(PidfdTest, NoSuchProcess) {
  SpawnOptions o = Python("pass");
  pid_t pid = 0;
  ASSERT_EQ(SpawnProcess(o, &pid), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);  // reaped: the pid names no process now
  errno = 0;
  int fd = PidfdOpen(pid);
  if (fd >= 0) {
    close(fd);  // the pid was reused meanwhile; nothing to check
    GTEST_SKIP() << "pid " << pid << " reused";
  }
  EXPECT_EQ(errno, ESRCH);
}

}  // namespace
}  // namespace sluice
