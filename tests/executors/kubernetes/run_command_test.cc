// `sluice run --dry-run` and `sluice cancel` (engine/cli/run_command.cc)
// without a cluster: the real binary, a pipeline YAML written by the test, a
// real SQLite store. Cancel on the live cluster is in kubernetes_cli_test.
//
// Waits are on events with a bound: process exit on a pidfd; a step tells
// the test it is running by writing to a FIFO the test polls.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "engine/spec.h"
#include "tests/executors/kubernetes/sluice_process.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using test_support::ReadText;
using test_support::SluiceProcess;

// What `run --dry-run` prints for the pipeline of
// DryRunPrintsTheManifestsOfTheKubernetesSteps (`object: job` in its
// defaults): the Jobs of its two
// Kubernetes steps in order, the secret as a secretKeyRef, the GPU as
// nvidia.com/gpu with its toleration, the timeout as activeDeadlineSeconds,
// run-time values as placeholders.
constexpr const char* kDryRunExpected = R"(apiVersion: batch/v1
kind: Job
metadata:
  annotations:
    sluice.dev/instance: prepare
    sluice.dev/pipeline: dry
    sluice.dev/run-id: r1
    sluice.dev/step: prepare
  labels:
    app.kubernetes.io/managed-by: sluice
    sluice.dev/attempt: "1"
    sluice.dev/pipeline: dry
    sluice.dev/run: r1
    sluice.dev/step: prepare
  name: r1-prepare-a1
  namespace: ml
spec:
  backoffLimit: 0
  template:
    metadata:
      labels:
        app.kubernetes.io/managed-by: sluice
        sluice.dev/attempt: "1"
        sluice.dev/pipeline: dry
        sluice.dev/run: r1
        sluice.dev/step: prepare
    spec:
      containers:
        - command:
            - python3
            - prep.py
            - --rows=5
          env:
            - name: SLUICE_ATTEMPT
              value: "1"
            - name: SLUICE_INSTANCE
              value: prepare
            - name: SLUICE_PIPELINE
              value: dry
            - name: SLUICE_RUN_ID
              value: r1
            - name: SLUICE_STEP
              value: prepare
          image: python:3.11
          name: main
      restartPolicy: Never
  ttlSecondsAfterFinished: 86400
---
apiVersion: batch/v1
kind: Job
metadata:
  annotations:
    sluice.dev/depends-on: prepare
    sluice.dev/instance: train
    sluice.dev/pipeline: dry
    sluice.dev/run-id: r1
    sluice.dev/step: train
  labels:
    app.kubernetes.io/managed-by: sluice
    sluice.dev/attempt: "1"
    sluice.dev/pipeline: dry
    sluice.dev/run: r1
    sluice.dev/step: train
  name: r1-train-a1
  namespace: ml
spec:
  activeDeadlineSeconds: 90
  backoffLimit: 0
  template:
    metadata:
      labels:
        app.kubernetes.io/managed-by: sluice
        sluice.dev/attempt: "1"
        sluice.dev/pipeline: dry
        sluice.dev/run: r1
        sluice.dev/step: train
    spec:
      containers:
        - command:
            - python3
            - train.py
            - <steps.prepare.outputs.artifacts.data>
          env:
            - name: DB_PASSWORD
              valueFrom:
                secretKeyRef:
                  key: password
                  name: db
            - name: SLUICE_ATTEMPT
              value: "1"
            - name: SLUICE_INPUT_DATA
              value: <steps.prepare.outputs.artifacts.data>
            - name: SLUICE_INSTANCE
              value: train
            - name: SLUICE_PIPELINE
              value: dry
            - name: SLUICE_RUN_ID
              value: r1
            - name: SLUICE_STEP
              value: train
          image: python:3.11
          name: main
          resources:
            limits:
              cpu: "2"
              memory: 4Gi
              nvidia.com/gpu: "1"
            requests:
              cpu: "2"
              memory: 4Gi
              nvidia.com/gpu: "1"
      restartPolicy: Never
      tolerations:
        - effect: NoSchedule
          key: nvidia.com/gpu
          operator: Exists
  ttlSecondsAfterFinished: 86400
)";

struct Outcome {
  int exit_code;
  std::string out;
  std::string err;
};

class RunCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::temp_directory_path() / ("sluice-run-command-" + std::to_string(::getpid()) + "-" + test);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    store_ = (dir_ / "store").string();
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  std::string WritePipeline(const std::string& yaml) {
    fs::path path = dir_ / "pipeline.yaml";
    std::ofstream(path) << yaml;
    return path.string();
  }

  // Makes the FIFO `path`, through which a step says it is running, and
  // opens its read end. The fd, or -1 (a test failure) when that fails.
  static int OpenReadyFifo(const fs::path& path) {
    EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0) << path;
    int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK);
    EXPECT_GE(fd, 0) << path;
    return fd;
  }

  // Waits up to 60 s for a step to write to the FIFO read by `fd`, then
  // closes it. True when it wrote.
  static bool WaitReady(int fd) {
    pollfd p{fd, POLLIN, 0};
    bool ready = ::poll(&p, 1, 60000) == 1;
    ::close(fd);
    return ready;
  }

  std::unique_ptr<SluiceProcess> Start(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--store", store_};
    all.insert(all.end(), args.begin(), args.end());
    int n = ++processes_;
    return std::make_unique<SluiceProcess>(all, dir_ / ("out" + std::to_string(n)),
                                           dir_ / ("err" + std::to_string(n)));
  }

  Outcome Sluice(const std::vector<std::string>& args) {
    auto p = Start(args);
    int code = p->Wait(std::chrono::minutes(2));
    EXPECT_NE(code, SluiceProcess::kRunning) << "sluice did not end within 2 minutes";
    return {code, p->out(), p->err()};
  }

  fs::path dir_;
  std::string store_;
  int processes_ = 0;
};

TEST_F(RunCommandTest, DryRunPrintsTheManifestsOfTheKubernetesSteps) {
  std::string file = WritePipeline(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: dry
params:
  rows: {type: int, default: 10}
namespace: ml
defaults:
  kubernetes: {object: job}
steps:
  - name: prepare
    image: python:3.11
    command: [python3, prep.py, "--rows={{ params.rows }}"]
    outputs:
      artifacts: [{name: data, path: data.csv}]
  - name: train
    image: python:3.11
    command: [python3, train.py, "{{ inputs.data }}"]
    inputs: {data: "{{ steps.prepare.outputs.artifacts.data }}"}
    env:
      DB_PASSWORD: {secret: {name: db, key: password}}
    timeout: 90s
    resources: {cpu: 2, memory: 4Gi, gpu: 1}
  - name: report
    executor: local
    depends: [train]
    command: [echo, done]
)");
  Outcome o = Sluice({"run", "--dry-run", "--executor", "kubernetes", "--run-id", "r1", "-p",
                      "rows=5", file});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  // The objects are printed, and the run they describe would be refused:
  // its steps pass a file with no way between pods.
  EXPECT_EQ(o.err,
            "sluice: warning: a run would be refused: step 'prepare' runs on Kubernetes and passes files (its "
            "output artifact 'data'), which need a way between pods and this host: give --artifacts "
            "s3://BUCKET/PREFIX (object storage) or --workspace-pvc CLAIM (a ReadWriteMany volume in every pod); "
            "see docs/kubernetes.md\n"
            "sluice: dry run: 1 step run locally and create no Kubernetes objects: report\n");
  EXPECT_EQ(o.out, kDryRunExpected);
  // Nothing ran: no store was created.
  EXPECT_FALSE(fs::exists(store_));
}

// By default a container step is a bare Pod: the Job's pod template with
// the object's name, the queue label Kueue's pod integration reads, the
// deadline on the pod spec and the TTL as an annotation.
TEST_F(RunCommandTest, DryRunPrintsABarePodByDefault) {
  std::string file = WritePipeline(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: dry
namespace: ml
steps:
  - name: train
    image: python:3.11
    command: [python3, train.py]
    timeout: 90s
    kubernetes: {queue: team-a}
)");
  Outcome o = Sluice({"run", "--dry-run", "--executor", "kubernetes", "--run-id", "r1", file});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, R"(apiVersion: v1
kind: Pod
metadata:
  annotations:
    sluice.dev/instance: train
    sluice.dev/pipeline: dry
    sluice.dev/run-id: r1
    sluice.dev/step: train
    sluice.dev/ttl-seconds-after-finished: "86400"
  labels:
    app.kubernetes.io/managed-by: sluice
    kueue.x-k8s.io/queue-name: team-a
    sluice.dev/attempt: "1"
    sluice.dev/object: pod
    sluice.dev/pipeline: dry
    sluice.dev/run: r1
    sluice.dev/step: train
  name: r1-train-a1
  namespace: ml
spec:
  activeDeadlineSeconds: 90
  containers:
    - command:
        - python3
        - train.py
      env:
        - name: SLUICE_ATTEMPT
          value: "1"
        - name: SLUICE_INSTANCE
          value: train
        - name: SLUICE_PIPELINE
          value: dry
        - name: SLUICE_RUN_ID
          value: r1
        - name: SLUICE_STEP
          value: train
      image: python:3.11
      name: main
  restartPolicy: Never
)");
}

// A resource step's dry run prints its object: the manifest rendered, with
// sluice's name, labels and annotations merged in. Locally the same run is
// refused before anything starts.
TEST_F(RunCommandTest, DryRunPrintsAResourceStepsObjectAndALocalRunIsRefused) {
  std::string file = WritePipeline(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: dry
params:
  workers: {type: int, default: 3}
steps:
  - name: train
    type: resource
    resource:
      manifest:
        apiVersion: kubeflow.org/v1
        kind: XGBoostJob
        metadata:
          labels: {team: a}
        spec:
          xgbReplicaSpecs:
            Worker: {replicas: "{{ params.workers }}"}
      successCondition: status.replicaStatuses.Worker.succeeded == {{ params.workers }}
)");
  Outcome o = Sluice({"run", "--dry-run", "--executor", "kubernetes", "--run-id", "r1", file});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, R"(apiVersion: kubeflow.org/v1
kind: XGBoostJob
metadata:
  annotations:
    sluice.dev/instance: train
    sluice.dev/pipeline: dry
    sluice.dev/run-id: r1
    sluice.dev/step: train
    sluice.dev/success-condition: status.replicaStatuses.Worker.succeeded == 3
  labels:
    app.kubernetes.io/managed-by: sluice
    sluice.dev/attempt: "1"
    sluice.dev/pipeline: dry
    sluice.dev/run: r1
    sluice.dev/step: train
    team: a
  name: r1-train-a1
  namespace: default
spec:
  xgbReplicaSpecs:
    Worker:
      replicas: 3
)");

  Outcome local = Sluice({"run", "-q", file});
  EXPECT_EQ(local.exit_code, 2) << local.out << local.err;
  EXPECT_EQ(local.err, "sluice: error: " + file + ":8:5: step 'train': steps of type 'resource' run only on "
                       "Kubernetes: run with --executor kubernetes (or set executor: kubernetes on the step)\n");
}

TEST_F(RunCommandTest, DryRunNeedsAKubernetesStep) {
  std::string file = WritePipeline(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: dry}
steps:
  - name: one
    command: [echo, one]
)");
  Outcome o = Sluice({"run", "--dry-run", file});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.err, "sluice: error: --dry-run prints the Kubernetes objects a run would create, and no "
                   "step of " + file + " runs on Kubernetes; add --executor kubernetes\n");
}

// SIGTERM while sluice waits for a kubeconfig exec credential plugin that
// hangs: sluice ends at once, well before the plugin's 30 s deadline, and
// takes the plugin with it.
TEST_F(RunCommandTest, TermWhileAnExecPluginHangsEndsSluiceAndThePlugin) {
  fs::path ready = dir_ / "ready";
  int fd = OpenReadyFifo(ready);
  ASSERT_GE(fd, 0);
  const std::string pidfile = (dir_ / "plugin.pid").string();
  fs::path plugin = dir_ / "hang-plugin.sh";
  std::ofstream(plugin) << "#!/bin/sh\necho $$ > " << pidfile << "\necho up > " << ready.string()
                        << "\nexec sleep 300\n";
  fs::permissions(plugin, fs::perms::owner_all);
  fs::path kubeconfig = dir_ / "kubeconfig";
  std::ofstream(kubeconfig) << "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: "
                               "\"https://127.0.0.1:1\"}\nusers:\n- name: cloud\n  user:\n    exec:\n      "
                               "apiVersion: client.authentication.k8s.io/v1\n      command: "
                            << plugin.string()
                            << "\ncontexts:\n- name: x\n  context: {cluster: c, user: cloud, namespace: ml}\n"
                               "current-context: x\n";
  std::string file = WritePipeline(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: plugin-hang}
steps:
  - name: remote
    image: busybox:1.36
    command: [echo, hi]
)");
  auto run = Start({"run", "-q", "--run-id", "p1", "--executor", "kubernetes", "--kubeconfig",
                    kubeconfig.string(), file});
  ASSERT_TRUE(WaitReady(fd)) << run->out() << run->err();
  ASSERT_EQ(::kill(run->pid(), SIGTERM), 0);
  // Ended: 130 when the cancel is seen first, 1 when the step's failed
  // start ("... was stopped: sluice is shutting down") ends the run first.
  int code = run->Wait(std::chrono::seconds(20));
  EXPECT_TRUE(code == 130 || code == 1) << code << "\n" << run->out() << run->err();
  pid_t pid = 0;
  std::ifstream(pidfile) >> pid;
  ASSERT_GT(pid, 0);
  // Gone, or a zombie its new parent has not reaped yet.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  EXPECT_TRUE(text.empty() || (paren != std::string::npos && text.substr(paren + 2, 1) == "Z")) << text;
}

TEST_F(RunCommandTest, CancelStopsARunDrivenByAnotherProcess) {
  // The step announces it runs by writing to a FIFO, then sleeps.
  fs::path ready = dir_ / "ready";
  int fd = OpenReadyFifo(ready);
  ASSERT_GE(fd, 0);
  std::string file = WritePipeline(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: cancel-me}
steps:
  - name: sleepy
    command: [sh, -c, 'echo up > "$READY"; exec sleep 300']
    env: {READY: ")" + ready.string() + R"("}
  - name: after
    depends: [sleepy]
    command: [echo, never]
)");
  auto run = Start({"run", "-q", "--run-id", "c1", file});
  ASSERT_TRUE(WaitReady(fd)) << run->out() << run->err();
  Outcome o = Sluice({"cancel", "c1"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "sluice: cancelling run c1: asked sluice process " + std::to_string(run->pid()) +
                       " to stop (SIGTERM); its finally steps still run\nrun c1 Cancelled\n");
  EXPECT_EQ(run->Wait(std::chrono::seconds(30)), 130);
  Outcome status = Sluice({"status", "c1", "--format", "json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  Json s = Json::parse(status.out, nullptr, false);
  EXPECT_EQ(s["run"]["phase"], "Cancelled");
  std::map<std::string, std::string> phases;
  for (const auto& step : s["steps"]) phases[step["instance"]] = step["phase"];
  EXPECT_EQ(phases, (std::map<std::string, std::string>{{"after", "Omitted"}, {"sleepy", "Cancelled"}}));
}

TEST_F(RunCommandTest, CancelOfAKilledRunRecordsItCancelled) {
  // The step announces it runs by writing to a FIFO, then sleeps.
  fs::path ready = dir_ / "ready";
  int fd = OpenReadyFifo(ready);
  ASSERT_GE(fd, 0);
  std::string file = WritePipeline(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: cancel-me}
steps:
  - name: sleepy
    command: [sh, -c, 'echo up > "$READY"; exec sleep 20']
    env: {READY: ")" + ready.string() + R"("}
)");
  auto run = Start({"run", "-q", "--run-id", "k1", file});
  ASSERT_TRUE(WaitReady(fd)) << run->out() << run->err();
  // The step runs before the runner records it (start first, record after):
  // kill only once the store shows it Running, as a crash mid-step finds it.
  ASSERT_TRUE(test_support::WaitUntil(
      [&] {
        Json st = Json::parse(Sluice({"status", "k1", "--format", "json"}).out, nullptr, false);
        return !st.is_discarded() && st["steps"].is_array() && !st["steps"].empty() &&
               st["steps"][0]["phase"] == "Running";
      },
      std::chrono::seconds(60)))
      << "the store never showed step sleepy Running";
  const int pid = run->pid();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(run->Wait(std::chrono::seconds(30)), 128 + SIGKILL);
  Outcome o = Sluice({"cancel", "k1"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  // The step outlived sluice under its supervisor; the cancel stops it too.
  EXPECT_EQ(o.out, "run k1 Cancelled: its sluice process was gone; stopped its 1 local step process\n");
  Outcome status = Sluice({"status", "k1", "--format", "json"});
  Json s = Json::parse(status.out, nullptr, false);
  EXPECT_EQ(s["run"]["phase"], "Cancelled");
  EXPECT_EQ(s["run"]["message"],
            "cancelled by sluice cancel (the sluice process that drove it, pid " + std::to_string(pid) +
                ", was gone)");
  EXPECT_EQ(s["steps"][0]["phase"], "Cancelled");
}

TEST_F(RunCommandTest, CancelOfAFinishedRunIsAUsageError) {
  std::string file = WritePipeline(R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: quick}
steps:
  - name: one
    command: [echo, one]
)");
  ASSERT_EQ(Sluice({"run", "-q", "--run-id", "q1", file}).exit_code, 0);
  Outcome o = Sluice({"cancel", "q1"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.err, "sluice: error: run q1 has already ended (Succeeded); there is nothing to cancel\n");
}

}  // namespace
}  // namespace sluice
