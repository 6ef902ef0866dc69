// The local executor against real processes: exits, signals, timeouts that
// kill whole process groups, cancellation, logs, environment, argv, and
// distributed tfjob/pytorchjob replicas talking over their contract.
//
// Nothing here sleeps to wait: every wait is on an event (a process exit, a
// FIFO, a pidfd) with a generous bound.
#include "executors/local/local_executor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "executors/local/supervisor.h"

extern char** environ;

namespace sluice {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr Duration kBound = seconds(180);  // generous: the machine is shared

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary);
  out << content;
}

// Reads one line from a FIFO, with a bound: the writer is a task's process.
std::string ReadFifoLine(const fs::path& fifo) {
  auto reader = std::async(std::launch::async, [fifo] {
    std::ifstream in(fifo);
    std::string line;
    std::getline(in, line);
    return line;
  });
  if (reader.wait_for(kBound) != std::future_status::ready) {
    ADD_FAILURE() << "nothing was written to " << fifo;
    std::abort();  // the reader thread cannot be joined
  }
  return reader.get();
}

// True when `pid` ends (or has ended) within the bound. Works for processes
// that are not our children: a pidfd becomes readable when the process exits.
bool ProcessEnds(pid_t pid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  int n = poll(&p, 1, static_cast<int>(milliseconds(kBound).count()));
  close(fd);
  return n == 1;
}

class LocalExecutorTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-exec-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    executor_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  LocalExecutor& Executor(int parallelism = 4) {
    LocalExecutorOptions options;
    options.gpu_devices = gpu_devices_;
    options.parallelism = parallelism;
    options.kill_grace = milliseconds(kill_grace_ms_);
    if (allowlist_) options.env_allowlist = *allowlist_;
    executor_ = std::make_unique<LocalExecutor>(options);
    return *executor_;
  }

  Task MakeTask(TaskId id, std::vector<std::string> argv) {
    Task task;
    task.id = id;
    task.run_id = "run-1";
    task.pipeline = "p";
    task.step = "step" + std::to_string(id);
    task.instance = task.step;
    task.argv = std::move(argv);
    task.workdir = dir_.string();
    task.log_path = (dir_ / (task.step + ".log")).string();
    return task;
  }

  // Wait()s until a result arrives, within the bound.
  TaskResult WaitResult() {
    auto deadline = std::chrono::steady_clock::now() + kBound;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto r = executor_->Wait(seconds(1))) return *r;
    }
    ADD_FAILURE() << "no task finished within the bound";
    return TaskResult{};
  }

  TaskResult RunToEnd(const Task& task) {
    Status st = executor_->Start(task);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return WaitResult();
  }

  fs::path MakeFifo(const std::string& name) {
    fs::path p = dir_ / name;
    EXPECT_EQ(mkfifo(p.c_str(), 0600), 0);
    return p;
  }

  fs::path dir_;
  int kill_grace_ms_ = 5000;
  std::optional<std::vector<std::string>> allowlist_;
  std::vector<std::string> gpu_devices_;
  std::unique_ptr<LocalExecutor> executor_;
};

TEST_F(LocalExecutorTest, SuccessAppendsStdoutAndStderrToTheLog) {
  Executor();
  Task task = MakeTask(1, {"sh", "-c", "echo out; echo err >&2; pwd"});
  WriteFile(task.log_path, "attempt 1\n");
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.id, 1u);
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.message, "");
  EXPECT_FALSE(r.external_id.empty());
  EXPECT_LE(r.started_at, r.finished_at);
  EXPECT_EQ(ReadFile(task.log_path), "attempt 1\nout\nerr\n" + dir_.string() + "\n");
  EXPECT_EQ(executor_->Running(), 0u);
}

// Secret values in the output are written as "***", a value split across
// two writes and stderr included.
TEST_F(LocalExecutorTest, LogMasksAreReplacedInTheLog) {
  Executor();
  Task task = MakeTask(1, {"sh", "-c", "printf 'token s3cr'; printf '3t-value\\n'; echo S3CR3T-VALUE >&2; echo plain"});
  task.log_masks = {"s3cr3t-value", "S3CR3T-VALUE"};
  WriteFile(task.log_path, "attempt 1\n");
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;
  EXPECT_EQ(ReadFile(task.log_path), "attempt 1\ntoken ***\n***\nplain\n");
}

// A descendant that left the task's process group keeps the output pipe
// open: the task is still reported once its own processes are gone.
TEST_F(LocalExecutorTest, MaskedOutputHeldOpenByAnEscapedChildDoesNotHoldTheTask) {
  Executor();
  // The task ends only once the child has left its group (it says so
  // through a FIFO), so the group kill at the end cannot reach it.
  const std::string fifo = MakeFifo("escaped").string();
  const std::string pidfile = (dir_ / "escaped.pid").string();
  Task task = MakeTask(1, {"sh", "-c",
                           "setsid sh -c 'echo $$ > " + fifo + "; exec sleep 1000' & read pid < " + fifo +
                               "; echo $pid > " + pidfile + "; echo done"});
  task.log_masks = {"never-printed"};
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;
  EXPECT_EQ(ReadFile(task.log_path), "done\n");
  std::ifstream in(pidfile);
  pid_t escaped = 0;
  in >> escaped;
  if (escaped > 0) kill(escaped, SIGKILL);
}

TEST_F(LocalExecutorTest, NonZeroExitIsAFailureWithItsCode) {
  Executor();
  TaskResult r = RunToEnd(MakeTask(1, {"sh", "-c", "exit 3"}));
  EXPECT_EQ(r.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.message, "exited with code 3");
}

TEST_F(LocalExecutorTest, DeathBySignalIsAFailureWithTheSignal) {
  Executor();
  TaskResult r = RunToEnd(MakeTask(1, {"sh", "-c", "kill -KILL $$"}));
  EXPECT_EQ(r.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(r.message, "killed by signal 9 (SIGKILL)");
}

TEST_F(LocalExecutorTest, CommandNotFoundIsAClearStartError) {
  Executor();
  Status st = executor_->Start(MakeTask(1, {"pythn3", "train.py"}));
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_EQ(st.message(), "cannot start 'pythn3': No such file or directory (is it installed and on PATH?)");
  EXPECT_EQ(executor_->Running(), 0u);
  EXPECT_FALSE(executor_->Wait(milliseconds(0)).has_value());
}

TEST_F(LocalExecutorTest, TaskPathIsUsedToFindTheProgram) {
  Executor();
  fs::create_directory(dir_ / "bin");
  WriteFile(dir_ / "bin" / "hello-tool", "#!/bin/sh\necho hello from tool\n");
  fs::permissions(dir_ / "bin" / "hello-tool", fs::perms::owner_all);
  Task task = MakeTask(1, {"hello-tool"});
  task.env["PATH"] = (dir_ / "bin").string() + ":/usr/bin:/bin";
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;
  EXPECT_EQ(ReadFile(task.log_path), "hello from tool\n");
}

TEST_F(LocalExecutorTest, NonExecutableScriptIsAClearStartError) {
  Executor();
  WriteFile(dir_ / "run.sh", "#!/bin/sh\necho hi\n");
  fs::permissions(dir_ / "run.sh", fs::perms::owner_read | fs::perms::owner_write);
  Status st = executor_->Start(MakeTask(1, {"./run.sh"}));
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(), "cannot start './run.sh': Permission denied (is it executable? try chmod +x " +
                              dir_.string() + "/./run.sh)");
}

TEST_F(LocalExecutorTest, MissingWorkdirIsAClearStartError) {
  Executor();
  Task task = MakeTask(1, {"true"});
  task.workdir = (dir_ / "missing").string();
  Status st = executor_->Start(task);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(), "cannot start 'step1': working directory '" + task.workdir +
                              "' does not exist");
}

TEST_F(LocalExecutorTest, UnwritableLogIsAClearStartError) {
  Executor();
  Task task = MakeTask(1, {"true"});
  task.log_path = (dir_ / "no-such-dir" / "step1.log").string();
  Status st = executor_->Start(task);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(), "cannot open log file '" + task.log_path +
                              "' for step 'step1': No such file or directory");
}

TEST_F(LocalExecutorTest, DuplicateTaskIdIsRejected) {
  Executor();
  ASSERT_TRUE(executor_->Start(MakeTask(7, {"sleep", "1000"})).ok());
  Status st = executor_->Start(MakeTask(7, {"true"}));
  EXPECT_EQ(st, Status::InvalidArgument("task id 7 is already running"));
  executor_->Cancel(7, milliseconds(0));
  EXPECT_EQ(WaitResult().outcome, TaskOutcome::kCancelled);
}

TEST_F(LocalExecutorTest, TimeoutKillsTheWholeProcessGroup) {
  Executor();
  fs::path fifo = MakeFifo("grandchild.pid");
  // The shell starts a grandchild `sleep`, reports its pid, and waits.
  Task task = MakeTask(1, {"sh", "-c", "sleep 1000 & echo $! > \"$1\"; wait", "sh", fifo.string()});
  task.timeout = milliseconds(100);
  ASSERT_TRUE(executor_->Start(task).ok());
  pid_t grandchild = std::stoi(ReadFifoLine(fifo));
  ASSERT_GT(grandchild, 0);

  TaskResult r = WaitResult();
  EXPECT_EQ(r.outcome, TaskOutcome::kTimedOut);
  EXPECT_EQ(r.signal, SIGTERM);
  EXPECT_EQ(r.message, "timed out after 100ms; stopped its process group");
  EXPECT_TRUE(ProcessEnds(grandchild)) << "grandchild " << grandchild << " survived the timeout";
}

TEST_F(LocalExecutorTest, ProcessesLeftInTheGroupAreKilledWhenTheMainProcessExits) {
  Executor();
  Task task = MakeTask(1, {"sh", "-c", "sleep 1000 & echo $! > grandchild.pid"});
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded);
  pid_t grandchild = std::stoi(ReadFile(dir_ / "grandchild.pid"));
  EXPECT_TRUE(ProcessEnds(grandchild));
}

TEST_F(LocalExecutorTest, CancelStopsTheTaskAsCancelled) {
  Executor();
  ASSERT_TRUE(executor_->Start(MakeTask(1, {"sleep", "1000"})).ok());
  EXPECT_FALSE(executor_->Wait(milliseconds(10)).has_value());
  executor_->Cancel(1, seconds(30));
  TaskResult r = WaitResult();
  EXPECT_EQ(r.outcome, TaskOutcome::kCancelled);
  EXPECT_EQ(r.signal, SIGTERM);
  EXPECT_EQ(r.message, "cancelled");
}

TEST_F(LocalExecutorTest, CancelEscalatesToSigkillAfterTheGrace) {
  Executor();
  fs::path fifo = MakeFifo("ready");
  ASSERT_TRUE(executor_
                  ->Start(MakeTask(1, {"sh", "-c", "trap '' TERM; echo ready > \"$1\"; while :; do sleep 1; done",
                                       "sh", fifo.string()}))
                  .ok());
  EXPECT_EQ(ReadFifoLine(fifo), "ready");
  executor_->Cancel(1, milliseconds(50));
  TaskResult r = WaitResult();
  EXPECT_EQ(r.outcome, TaskOutcome::kCancelled);
  EXPECT_EQ(r.signal, SIGKILL);
}

TEST_F(LocalExecutorTest, CancelFromAnotherThreadWakesWait) {
  Executor();
  ASSERT_TRUE(executor_->Start(MakeTask(1, {"sleep", "1000"})).ok());
  std::thread canceller([this] { executor_->CancelAll(seconds(5)); });
  TaskResult r = WaitResult();
  canceller.join();
  EXPECT_EQ(r.outcome, TaskOutcome::kCancelled);
}

TEST_F(LocalExecutorTest, WaitReturnsTheFirstTaskToFinish) {
  Executor(/*parallelism=*/3);
  EXPECT_FALSE(executor_->Wait(milliseconds(0)).has_value());  // nothing running
  ASSERT_TRUE(executor_->Start(MakeTask(1, {"sleep", "1000"})).ok());
  ASSERT_TRUE(executor_->Start(MakeTask(2, {"true"})).ok());
  ASSERT_TRUE(executor_->Start(MakeTask(3, {"sleep", "1000"})).ok());
  EXPECT_FALSE(executor_->CanRunMore());
  EXPECT_EQ(executor_->Running(), 3u);

  TaskResult first = WaitResult();
  EXPECT_EQ(first.id, 2u);
  EXPECT_EQ(first.outcome, TaskOutcome::kSucceeded);
  EXPECT_TRUE(executor_->CanRunMore());
  EXPECT_EQ(executor_->Running(), 2u);

  executor_->Cancel(3, seconds(5));
  EXPECT_EQ(WaitResult().id, 3u);
  executor_->Cancel(1, seconds(5));
  EXPECT_EQ(WaitResult().id, 1u);
  EXPECT_EQ(executor_->Running(), 0u);
}

TEST_F(LocalExecutorTest, EnvironmentIsMinimalAllowListedAndTheTasks) {
  allowlist_ = std::vector<std::string>{"SLUICE_*", "VIRTUAL_ENV"};
  Executor();
  setenv("SLUICE_TEST_VISIBLE", "yes", 1);
  setenv("VIRTUAL_ENV", "/opt/venv", 1);
  setenv("UNEXPECTED_PARENT_VAR", "leak", 1);
  setenv("SLUICE_SECRET_DB_PASSWORD", "hunter2", 1);
  Task task = MakeTask(1, {"env"});
  task.attempt = 2;
  task.env = {{"GREETING", "hello world"}, {"PATH", "/usr/bin:/bin"}};
  TaskResult r = RunToEnd(task);
  unsetenv("UNEXPECTED_PARENT_VAR");
  unsetenv("SLUICE_SECRET_DB_PASSWORD");
  ASSERT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;

  std::map<std::string, std::string> got;
  std::istringstream lines(ReadFile(task.log_path));
  for (std::string line; std::getline(lines, line);) {
    got[line.substr(0, line.find('='))] = line.substr(line.find('=') + 1);
  }
  std::set<std::string> expected = {"PATH", "HOME", "LANG", "TMPDIR", "PYTHONUNBUFFERED",
                                    "SLUICE_RUN_ID", "SLUICE_PIPELINE", "SLUICE_STEP",
                                    "SLUICE_INSTANCE", "SLUICE_ATTEMPT", "GREETING",
                                    "VIRTUAL_ENV"};
  for (char** e = environ; *e != nullptr; ++e) {
    std::string name(*e, strchrnul(*e, '=') - *e);
    if (name.rfind("SLUICE_", 0) == 0 && name.rfind("SLUICE_SECRET_", 0) != 0) {
      expected.insert(name);
    }
  }
  std::set<std::string> names;
  for (const auto& [k, v] : got) names.insert(k);
  EXPECT_EQ(names, expected);
  EXPECT_EQ(got["PATH"], "/usr/bin:/bin");
  EXPECT_EQ(got["GREETING"], "hello world");
  EXPECT_EQ(got["PYTHONUNBUFFERED"], "1");
  EXPECT_EQ(got["SLUICE_TEST_VISIBLE"], "yes");
  EXPECT_EQ(got["VIRTUAL_ENV"], "/opt/venv");
  EXPECT_EQ(got["SLUICE_RUN_ID"], "run-1");
  EXPECT_EQ(got["SLUICE_STEP"], "step1");
  EXPECT_EQ(got["SLUICE_ATTEMPT"], "2");
  unsetenv("SLUICE_TEST_VISIBLE");
  unsetenv("VIRTUAL_ENV");
}

TEST_F(LocalExecutorTest, SecretValuesReachTheTaskButNeverTheLog) {
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto logger = std::make_shared<spdlog::logger>("capture", sink);
  logger->set_level(spdlog::level::trace);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);

  Executor();
  Task task = MakeTask(1, {"sh", "-c", "test \"$DB_PASSWORD\" = hunter2"});
  task.env["DB_PASSWORD"] = "hunter2";
  task.secret_env = {"DB_PASSWORD"};
  TaskResult r = RunToEnd(task);
  spdlog::set_default_logger(previous);

  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;
  EXPECT_NE(captured.str(), "");  // it did log the start, at debug level
  EXPECT_EQ(captured.str().find("hunter2"), std::string::npos) << captured.str();
}

TEST_F(LocalExecutorTest, ArgvArrivesVerbatimWithoutAShell) {
  Executor();
  std::vector<std::string> args = {"two words", "\"double\"", "'single'", "$(touch pwned)",
                                   "`touch pwned2`", "*", "", "$HOME", "a;b|c&&d", "back\\slash",
                                   "[\"/abs/a/model.pkl\", \"/abs/b/model.pkl\"]"};
  std::vector<std::string> argv = {"python3", "-c",
                                   "import json, sys; print(json.dumps(sys.argv[1:]))"};
  argv.insert(argv.end(), args.begin(), args.end());
  TaskResult r = RunToEnd(MakeTask(1, argv));
  ASSERT_EQ(r.outcome, TaskOutcome::kSucceeded) << ReadFile(dir_ / "step1.log");
  EXPECT_EQ(Json::parse(ReadFile(dir_ / "step1.log")), Json(args));
  EXPECT_FALSE(fs::exists(dir_ / "pwned"));
  EXPECT_FALSE(fs::exists(dir_ / "pwned2"));
}

TEST_F(LocalExecutorTest, StdinIsDevNull) {
  Executor();
  Task task = MakeTask(1, {"sh", "-c", "cat; echo end"});
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded);
  EXPECT_EQ(ReadFile(task.log_path), "end\n");
}

TEST_F(LocalExecutorTest, GpusAreHandedOutThroughCudaVisibleDevices) {
  gpu_devices_ = {"0", "1", "2"};
  Executor();
  // Each task reports its devices through a FIFO, then stays running.
  auto gpu_task = [&](TaskId id, int64_t gpus, const fs::path& fifo) {
    Task task = MakeTask(id, {"sh", "-c", "echo \"[$CUDA_VISIBLE_DEVICES]\" > \"$1\"; exec sleep 1000",
                              "sh", fifo.string()});
    task.resources.gpu = gpus;
    return task;
  };
  fs::path a = MakeFifo("a"), b = MakeFifo("b"), c = MakeFifo("c"), d = MakeFifo("d");
  ASSERT_TRUE(executor_->Start(gpu_task(1, 2, a)).ok());
  EXPECT_EQ(ReadFifoLine(a), "[0,1]");
  ASSERT_TRUE(executor_->Start(gpu_task(2, 0, b)).ok());
  EXPECT_EQ(ReadFifoLine(b), "[]");
  ASSERT_TRUE(executor_->Start(gpu_task(3, 1, c)).ok());
  EXPECT_EQ(ReadFifoLine(c), "[2]");
  Status st = executor_->Start(gpu_task(4, 1, d));
  EXPECT_EQ(st, Status::Unavailable("cannot start 'step4': it needs 1 GPU(s) and 0 of 3 are free"));

  executor_->Cancel(1, seconds(5));
  EXPECT_EQ(WaitResult().id, 1u);
  ASSERT_TRUE(executor_->Start(gpu_task(4, 2, d)).ok());
  EXPECT_EQ(ReadFifoLine(d), "[0,1]");
  executor_->CancelAll(seconds(5));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(WaitResult().outcome, TaskOutcome::kCancelled);
}

// --- distributed training jobs ---------------------------------------------

TEST_F(LocalExecutorTest, TfJobReplicasTalkOverTfConfigAddresses) {
  Executor();
  Task task = MakeTask(1, {"python3", SLUICE_EXECUTOR_TESTDATA "/tf_peers.py"});
  task.operator_type = "tfjob";
  task.config = Json::parse(R"({"replicas": {"Chief": {"replicas": 1},
                                             "Worker": {"replicas": 2},
                                             "PS": {"replicas": 2}}})");
  TaskResult r = RunToEnd(task);
  // The parameter servers never exit by themselves: the chief's success ends
  // the task and they are stopped.
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message << "\n" << ReadFile(task.log_path);
  EXPECT_EQ(ReadFile(dir_ / "chief.out"), "worker-0,worker-1");
  EXPECT_EQ(std::count(r.external_id.begin(), r.external_id.end(), ','), 4);
  std::string log = ReadFile(task.log_path);
  EXPECT_NE(log.find("[sluice] chief-0 exited with code 0"), std::string::npos) << log;
  EXPECT_NE(log.find("[sluice] ps-1 killed by signal 15 (SIGTERM)"), std::string::npos) << log;
}

TEST_F(LocalExecutorTest, TfJobFailsWhenAReplicaFailsAndStopsTheRest) {
  Executor();
  Task task = MakeTask(1, {"python3", SLUICE_EXECUTOR_TESTDATA "/tf_peers.py"});
  task.operator_type = "tfjob";
  task.env["FAIL_REPLICA"] = "worker-1";
  task.config = Json::parse(R"({"replicas": {"Chief": {}, "Worker": {"replicas": 2}}})");
  TaskResult r = RunToEnd(task);
  // The chief waits for worker-1 forever; the failure stops it.
  EXPECT_EQ(r.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.message, "worker-1 exited with code 3");
  EXPECT_FALSE(fs::exists(dir_ / "chief.out"));
}

TEST_F(LocalExecutorTest, PyTorchJobRanksMeetAtTheMaster) {
  Executor();
  Task task = MakeTask(1, {"python3", SLUICE_EXECUTOR_TESTDATA "/torch_peers.py"});
  task.operator_type = "pytorchjob";
  task.config = Json::parse(R"({"replicas": {"Master": {"replicas": 1},
                                             "Worker": {"replicas": 3}}})");
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message << "\n" << ReadFile(task.log_path);
  EXPECT_EQ(ReadFile(dir_ / "master.out"), "1,2,3");
}

TEST_F(LocalExecutorTest, DistributedTaskTimeoutStopsEveryReplica) {
  Executor();
  Task task = MakeTask(1, {"sleep", "1000"});
  task.operator_type = "pytorchjob";
  task.config = Json::parse(R"({"replicas": {"Master": {}, "Worker": {"replicas": 2}}})");
  task.timeout = milliseconds(50);
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kTimedOut);
  EXPECT_EQ(r.message, "timed out after 50ms; stopped its process group");
}

// examples/distributed: the same feature mean through both contracts.
TEST_F(LocalExecutorTest, DistributedExampleStepsAgree) {
  if (std::system("python3 -c 'import sklearn' 2>/dev/null") != 0) {
    GTEST_SKIP() << "scikit-learn is not installed (pip install -r examples/requirements.txt)";
  }
  Executor();
  const std::string steps = SLUICE_EXAMPLES_DIR "/distributed/steps/";
  fs::create_directory(dir_ / "torch");
  fs::create_directory(dir_ / "tf");
  Task torch = MakeTask(1, {"python3", steps + "torch_mean.py", "--feature", "mean radius",
                            "--out", "stats.json"});
  torch.operator_type = "pytorchjob";
  torch.workdir = (dir_ / "torch").string();
  torch.config = Json::parse(R"({"replicas": {"Master": {"replicas": 1}, "Worker": {"replicas": 2}},
                                 "nprocPerNode": 1})");
  Task tf = MakeTask(2, {"python3", steps + "tf_mean.py", "--feature", "mean radius", "--out",
                         "stats.json"});
  tf.operator_type = "tfjob";
  tf.workdir = (dir_ / "tf").string();
  tf.config = Json::parse(R"({"replicas": {"Chief": {"replicas": 1}, "Worker": {"replicas": 2},
                                           "PS": {"replicas": 1}}})");
  ASSERT_TRUE(executor_->Start(torch).ok());
  ASSERT_TRUE(executor_->Start(tf).ok());
  for (int i = 0; i < 2; ++i) {
    TaskResult r = WaitResult();
    EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded)
        << r.message << "\n" << ReadFile(r.id == 1 ? torch.log_path : tf.log_path);
  }
  Json torch_stats = Json::parse(ReadFile(dir_ / "torch" / "stats.json"));
  Json tf_stats = Json::parse(ReadFile(dir_ / "tf" / "stats.json"));
  EXPECT_EQ(torch_stats["rows"], 569);
  EXPECT_EQ(torch_stats["world_size"], 3);
  EXPECT_EQ(tf_stats["rows"], 569);
  EXPECT_EQ(tf_stats["workers"], 2);
  EXPECT_NEAR(torch_stats["mean"].get<double>(), tf_stats["mean"].get<double>(), 1e-9);
  EXPECT_NEAR(torch_stats["mean"].get<double>(), 14.127, 1e-3);
}

// The same script as a trainjob's nodes: torchrun's PET_ contract, one
// process per node, gives the same mean.
TEST_F(LocalExecutorTest, TrainJobNodesShareTheWorkThroughThePetContract) {
  if (std::system("python3 -c 'import sklearn' 2>/dev/null") != 0) {
    GTEST_SKIP() << "scikit-learn is not installed (pip install -r examples/requirements.txt)";
  }
  Executor();
  Task task = MakeTask(1, {"python3", SLUICE_EXAMPLES_DIR "/distributed/steps/torch_mean.py", "--feature",
                           "mean radius", "--out", "stats.json"});
  task.operator_type = "trainjob";
  task.config = Json::parse(R"({"runtime": "torch-distributed", "numNodes": 3})");
  TaskResult r = RunToEnd(task);
  ASSERT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message << "\n" << ReadFile(task.log_path);
  Json stats = Json::parse(ReadFile(fs::path(task.workdir) / "stats.json"));
  EXPECT_EQ(stats["rows"], 569);
  EXPECT_EQ(stats["world_size"], 3);
  EXPECT_NEAR(stats["mean"].get<double>(), 14.127, 1e-3);
  const std::string log = ReadFile(task.log_path);
  for (const char* line : {"[sluice] node-0 started", "[sluice] node-2 exited with code 0", "rank 2/3: 189 rows",
                           "rank 0: mean mean radius = 14.127292 over 569 rows"})
    EXPECT_NE(log.find(line), std::string::npos) << line << "\n" << log;
}

TEST_F(LocalExecutorTest, BadDistributedConfigStartsNothing) {
  Executor();
  Task task = MakeTask(1, {"true"});
  task.operator_type = "tfjob";
  task.config = Json::parse(R"({"replicas": {"Wroker": {"replicas": 2}}})");
  Status st = executor_->Start(task);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(executor_->Running(), 0u);
}

// What a `kill -9` of sluice leaves behind: a process that started `task` on
// a local executor of its own and ended without any cleanup.
void StartInADyingProcess(const std::vector<Task>& tasks) {
  pid_t child = fork();
  if (child == 0) {
    LocalExecutorOptions options;
    options.parallelism = 0;
    LocalExecutor doomed{options};
    for (const Task& task : tasks) {
      if (!doomed.Start(task).ok()) _exit(1);
    }
    _exit(0);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "Start failed in the child";
}

void StartInADyingProcess(const Task& task) { StartInADyingProcess(std::vector<Task>{task}); }

TEST_F(LocalExecutorTest, AnAttemptStartedByAnEarlierProcessIsAdoptedNotStartedAgain) {
  fs::path gate = MakeFifo("gate");
  Task task = MakeTask(1, {"sh", "-c", "echo start >> marks; read line < gate; echo \"end $line\" >> marks; exit 4"});
  StartInADyingProcess(task);
  Executor();
  ASSERT_TRUE(executor_->Start(task).ok());
  EXPECT_EQ(executor_->Running(), 1u);
  EXPECT_FALSE(executor_->Wait(milliseconds(10)).has_value());
  std::ofstream(gate) << "go\n";  // opens once the step reads the FIFO
  TaskResult r = WaitResult();
  EXPECT_EQ(r.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.message, "exited with code 4");
  EXPECT_EQ(ReadFile(dir_ / "marks"), "start\nend go\n");
}

// The supervisor masks the output itself: a masked step goes on writing to
// its log, masked, while no sluice process runs, and is adopted with its
// result.
TEST_F(LocalExecutorTest, AMaskedStepKeepsItsMaskedLogWhileNoSluiceRunsAndIsAdopted) {
  fs::path gate = MakeFifo("gate");
  fs::path gate2 = MakeFifo("gate2");
  fs::path written = MakeFifo("written");
  Task task = MakeTask(1, {"sh", "-c",
                           "echo 'before s3cr3t'; read line < gate; printf \"$line s3c\"; printf 'r3t\\n'; "
                           "echo 'stderr s3cr3t' >&2; echo ok > written; read line < gate2; "
                           "echo \"end $line s3cr3t\"; exit 3"});
  task.log_masks = {"s3cr3t"};
  WriteFile(task.log_path, "attempt 1\n");
  StartInADyingProcess(task);
  // No sluice process runs now: the step writes, and would die of SIGPIPE
  // if its output went to a pipe that sluice read.
  std::ofstream(gate) << "middle\n";
  EXPECT_EQ(ReadFifoLine(written), "ok");
  auto pid_file = local::ReadPidFile((dir_ / "step1.pid").string());
  ASSERT_TRUE(pid_file.has_value()) << pid_file.error().ToString();
  EXPECT_TRUE(local::IsAlive(pid_file->step, pid_file->boot_id));

  Executor();
  ASSERT_TRUE(executor_->Start(task).ok());
  EXPECT_EQ(executor_->Running(), 1u);
  EXPECT_FALSE(executor_->Wait(milliseconds(10)).has_value());
  std::ofstream(gate2) << "adopted\n";
  TaskResult r = WaitResult();
  EXPECT_EQ(r.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.message, "exited with code 3");
  EXPECT_EQ(r.external_id, std::to_string(pid_file->step.pid));
  EXPECT_EQ(ReadFile(task.log_path), "attempt 1\nbefore ***\nmiddle ***\nstderr ***\nend adopted ***\n");
}

TEST_F(LocalExecutorTest, AnAttemptThatEndedWhileNoSluiceWatchedGivesItsRecordedResult) {
  Task task = MakeTask(1, {"sh", "-c", "echo ran >> marks"});
  StartInADyingProcess(task);
  // The supervisor writes the status file, then exits.
  auto pid_file = local::ReadPidFile((dir_ / "step1.pid").string());
  ASSERT_TRUE(pid_file.has_value()) << pid_file.error().ToString();
  ASSERT_TRUE(ProcessEnds(pid_file->supervisor.pid));
  Executor();
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.external_id, std::to_string(pid_file->step.pid));
  EXPECT_EQ(ReadFile(dir_ / "marks"), "ran\n");
}

TEST_F(LocalExecutorTest, AStepWhoseSupervisorWasKilledIsStoppedAndReportedLost) {
  Task task = MakeTask(1, {"sleep", "1000"});
  StartInADyingProcess(task);
  auto pid_file = local::ReadPidFile((dir_ / "step1.pid").string());
  ASSERT_TRUE(pid_file.has_value()) << pid_file.error().ToString();
  ASSERT_EQ(kill(pid_file->supervisor.pid, SIGKILL), 0);
  ASSERT_TRUE(ProcessEnds(pid_file->supervisor.pid));
  Executor();
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kError);
  EXPECT_EQ(r.message, "lost: its supervisor (pid " + std::to_string(pid_file->supervisor.pid) +
                           ") ended without recording how the step ended; its step (pid " +
                           std::to_string(pid_file->step.pid) + ") was still running and was killed");
  EXPECT_TRUE(ProcessEnds(pid_file->step.pid));
}

TEST_F(LocalExecutorTest, AnAttemptRunningWhenTheMachineRestartedIsLost) {
  Task task = MakeTask(1, {"sh", "-c", "echo ran >> marks"});
  local::PidFile before;
  before.boot_id = "00000000-0000-4000-8000-000000000000";
  before.supervisor = {1, 1};
  before.step = {2, 2};
  before.started_ns = 1;
  ASSERT_TRUE(local::WriteFileAtomically((dir_ / "step1.pid").string(), local::FormatPidFile(before)).ok());
  Executor();
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kError);
  EXPECT_EQ(r.message, "lost: the machine restarted while it ran, so how it ended is unknown");
  EXPECT_FALSE(fs::exists(dir_ / "marks"));
}

TEST_F(LocalExecutorTest, AnAdoptedAttemptStillTimesOut) {
  Task task = MakeTask(1, {"sleep", "1000"});
  StartInADyingProcess(task);
  auto pid_file = local::ReadPidFile((dir_ / "step1.pid").string());
  ASSERT_TRUE(pid_file.has_value());
  // Its deadline counts from the start recorded in the pid file.
  task.timeout = milliseconds(100);
  Executor();
  TaskResult r = RunToEnd(task);
  EXPECT_EQ(r.outcome, TaskOutcome::kTimedOut);
  EXPECT_EQ(r.signal, SIGTERM);
  EXPECT_TRUE(ProcessEnds(pid_file->step.pid));
}

// One supervisor starts every step of an executor, and ends once the
// executor is gone and its steps have ended.
TEST_F(LocalExecutorTest, EveryStepOfAnExecutorRunsUnderOneSupervisor) {
  Executor();
  TaskResult first = RunToEnd(MakeTask(1, {"true"}));
  TaskResult second = RunToEnd(MakeTask(2, {"true"}));
  EXPECT_EQ(first.outcome, TaskOutcome::kSucceeded) << first.message;
  EXPECT_EQ(second.outcome, TaskOutcome::kSucceeded) << second.message;
  auto one = local::ReadPidFile((dir_ / "step1.pid").string());
  auto two = local::ReadPidFile((dir_ / "step2.pid").string());
  ASSERT_TRUE(one.has_value()) << one.error().ToString();
  ASSERT_TRUE(two.has_value()) << two.error().ToString();
  EXPECT_EQ(one->supervisor.pid, two->supervisor.pid);
  EXPECT_EQ(one->supervisor.start_ticks, two->supervisor.start_ticks);
  EXPECT_NE(one->step.pid, two->step.pid);
  EXPECT_TRUE(local::IsAlive(one->supervisor, one->boot_id));
  executor_.reset();
  EXPECT_FALSE(local::IsAlive(one->supervisor, one->boot_id));
}

// sluice cancel of a run without its driver signals one step at a time,
// although one supervisor runs them all.
TEST_F(LocalExecutorTest, SignalSupervisorsStopsOnlyTheStepItNames) {
  Task a = MakeTask(1, {"sleep", "1000"});
  Task b = MakeTask(2, {"sleep", "1000"});
  StartInADyingProcess({a, b});
  auto pa = local::ReadPidFile((dir_ / "step1.pid").string());
  auto pb = local::ReadPidFile((dir_ / "step2.pid").string());
  ASSERT_TRUE(pa.has_value() && pb.has_value());
  ASSERT_EQ(pa->supervisor.pid, pb->supervisor.pid);

  EXPECT_EQ(local::SignalSupervisors(a.log_path, SIGTERM), 1);
  ASSERT_TRUE(ProcessEnds(pa->step.pid));
  // The end is recorded, and the other step still runs.
  Executor();
  TaskResult r = RunToEnd(a);
  EXPECT_EQ(r.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(r.message, "killed by signal 15 (SIGTERM)");
  EXPECT_TRUE(local::IsAlive(pb->step, pb->boot_id));
  EXPECT_EQ(local::SignalSupervisors(a.log_path, SIGTERM), 0);  // it has ended

  EXPECT_EQ(local::SignalSupervisors(b.log_path, SIGKILL), 1);
  ASSERT_TRUE(ProcessEnds(pb->step.pid));
  ASSERT_TRUE(ProcessEnds(pb->supervisor.pid));  // its last step has ended
  r = RunToEnd(b);
  EXPECT_EQ(r.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(r.message, "killed by signal 9 (SIGKILL)");
}

// A supervisor killed while it runs steps: those are lost (and stopped),
// and the next step starts under a new one.
TEST_F(LocalExecutorTest, ASupervisorKilledUnderARunLosesItsStepsAndIsReplaced) {
  Executor();
  ASSERT_TRUE(executor_->Start(MakeTask(1, {"sleep", "1000"})).ok());
  auto pf = local::ReadPidFile((dir_ / "step1.pid").string());
  ASSERT_TRUE(pf.has_value()) << pf.error().ToString();
  ASSERT_EQ(kill(pf->supervisor.pid, SIGKILL), 0);
  TaskResult r = WaitResult();
  EXPECT_EQ(r.outcome, TaskOutcome::kError);
  EXPECT_EQ(r.message, "lost: its supervisor (pid " + std::to_string(pf->supervisor.pid) +
                           ") ended without recording how the step ended; its step (pid " +
                           std::to_string(pf->step.pid) + ") was still running and was killed");
  EXPECT_TRUE(ProcessEnds(pf->step.pid));

  r = RunToEnd(MakeTask(2, {"sh", "-c", "echo again"}));
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;
  EXPECT_EQ(ReadFile(dir_ / "step2.log"), "again\n");
  auto next = local::ReadPidFile((dir_ / "step2.pid").string());
  ASSERT_TRUE(next.has_value());
  EXPECT_NE(next->supervisor.pid, pf->supervisor.pid);
}

}  // namespace
}  // namespace sluice
