// The Kubernetes executor against the live test cluster (tests/k8s: a real
// kube-apiserver, kube-controller-manager and training-operator; kwok runs
// the pods, which run no code). Registered with FIXTURES_REQUIRED k8s and
// LABELS k8s; skipped when the cluster's kubeconfig is absent.
//
// kwok pod lifecycle (tests/k8s/config/kwok-stages.yaml.in): pods succeed
// after a short delay; annotation sluice.dev/kwok-fail: "true" makes them fail
// (exit code from sluice.dev/kwok-exit-code), sluice.dev/kwok-hold: "true"
// keeps them Running.
//
// Each test runs with a container step's two objects: a bare Pod (the
// default, test suffix /pod) and a Job (/job).

#include "executors/kubernetes/kubernetes_executor.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/executors/kubernetes/live_cluster.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class KubernetesExecutorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    object_ = GetParam();
    kubeconfig_ = test_support::K8sStateDir() + "/kubeconfig";
    if (!fs::exists(kubeconfig_)) {
      GTEST_SKIP() << "no test cluster: " << kubeconfig_
                   << " is missing (run tests/k8s/cluster up, or ctest -L k8s)";
    }
    run_id_ = test_support::LiveRunId("it-" + object_, 20);
    dir_ = fs::temp_directory_path() / ("sluice-k8s-it-" + run_id_);
    fs::create_directories(dir_);
    options_.kubeconfig.kubeconfig = kubeconfig_;
    options_.manifests.namespace_ = "default";
    options_.deadline_grace = Duration(20000);
    options_.manifests.object = object_;
    auto ex = NewKubernetesExecutor(options_);
    ASSERT_TRUE(ex) << ex.error().ToString();
    executor_.reset(static_cast<KubernetesExecutor*>(ex->release()));
  }

  void TearDown() override {
    if (executor_) {
      for (const auto* kind : {&k8s::JobKind(), &k8s::PodKind()}) {
        executor_->client()->DeleteCollection(*kind, "default", operators::RunSelector(run_id_),
                                              k8s::Propagation::kBackground);
      }
      executor_.reset();
    }
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  Task MakeTask(TaskId id, const std::string& step) {
    Task t;
    t.id = id;
    t.run_id = run_id_;
    t.pipeline = "it";
    t.step = step;
    t.instance = step;
    t.attempt = 1;
    t.argv = {"sh", "-c", "echo hello from " + step};
    t.image = "busybox:1.36";
    t.workdir = dir_.string();
    t.log_path = (dir_ / (step + ".log")).string();
    t.resources.cpu_millis = 100;
    t.resources.memory_bytes = 64ll << 20;
    return t;
  }

  // Waits (bounded) for the next result.
  TaskResult Next(Duration bound = Duration(90000)) {
    auto r = executor_->Wait(bound);
    EXPECT_TRUE(r.has_value()) << "no result within " << bound.count() << "ms";
    return r.value_or(TaskResult{});
  }

  // What a container step becomes in this test: PodKind() or JobKind().
  const k8s::ResourceKind& Kind() const { return object_ == "pod" ? k8s::PodKind() : k8s::JobKind(); }

  // The run's objects of Kind().
  size_t CountObjects() {
    auto list = executor_->client()->List(Kind(), "default", operators::RunSelector(run_id_));
    EXPECT_TRUE(list) << list.error().ToString();
    return list ? list->items.size() : 0;
  }

  // This executor's requests since `before`, by HTTP method, without zeros.
  std::map<std::string, int64_t> RequestsSince(const std::map<std::string, int64_t>& before) {
    std::map<std::string, int64_t> out;
    for (const auto& [method, n] : executor_->client()->RequestCounts()) {
      auto it = before.find(method);
      int64_t d = n - (it == before.end() ? 0 : it->second);
      if (d != 0) out[method] = d;
    }
    return out;
  }

  std::string object_;  // "pod" | "job"
  std::string kubeconfig_;
  std::string run_id_;
  fs::path dir_;
  KubernetesExecutorOptions options_;
  std::unique_ptr<KubernetesExecutor> executor_;
};

INSTANTIATE_TEST_SUITE_P(Object, KubernetesExecutorTest, ::testing::Values("pod", "job"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST_P(KubernetesExecutorTest, StepSucceedsAndIsLabelled) {
  Task t = MakeTask(1, "prepare");
  ASSERT_TRUE(executor_->Start(t).ok());
  EXPECT_EQ(executor_->Running(), 1u);
  TaskResult r = Next();
  EXPECT_EQ(r.id, 1u);
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;
  EXPECT_EQ(r.exit_code, 0);
  std::string name = operators::ObjectName(run_id_, "prepare", 1);
  EXPECT_EQ(r.external_id, "default/" + name);
  auto object = executor_->client()->Get(Kind(), "default", name);
  ASSERT_TRUE(object) << object.error().ToString();
  EXPECT_EQ((*object)["metadata"]["labels"]["sluice.dev/step"], "prepare");
  EXPECT_EQ((*object)["metadata"]["labels"]["sluice.dev/attempt"], "1");
  if (object_ == "job") {
    EXPECT_EQ((*object)["spec"]["backoffLimit"], 0);
  } else {
    EXPECT_EQ((*object)["metadata"]["labels"]["sluice.dev/object"], "pod");
    EXPECT_EQ((*object)["spec"]["restartPolicy"], "Never");
    EXPECT_EQ((*object)["status"]["phase"], "Succeeded");
  }
  EXPECT_EQ(executor_->Running(), 0u);
  // The log file holds the pod's log, or (kwok has no kubelet to serve
  // pods/log) the reason there is none. A success's log is copied in the
  // background; the executor finishes pending copies before it goes away.
  executor_.reset();
  auto ex = NewKubernetesExecutor(options_);
  ASSERT_TRUE(ex) << ex.error().ToString();
  executor_.reset(static_cast<KubernetesExecutor*>(ex->release()));
  std::ifstream in(t.log_path);
  std::stringstream log;
  log << in.rdbuf();
  EXPECT_FALSE(log.str().empty());
  RecordProperty("log", log.str());
}

TEST_P(KubernetesExecutorTest, Diamond) {
  ASSERT_TRUE(executor_->Start(MakeTask(1, "a")).ok());
  TaskResult a = Next();
  ASSERT_EQ(a.outcome, TaskOutcome::kSucceeded) << a.message;
  ASSERT_TRUE(executor_->Start(MakeTask(2, "b")).ok());
  ASSERT_TRUE(executor_->Start(MakeTask(3, "c")).ok());
  TaskResult first = Next();
  TaskResult second = Next();
  EXPECT_EQ(first.outcome, TaskOutcome::kSucceeded) << first.message;
  EXPECT_EQ(second.outcome, TaskOutcome::kSucceeded) << second.message;
  EXPECT_EQ(first.id + second.id, 5u);
  ASSERT_TRUE(executor_->Start(MakeTask(4, "d")).ok());
  EXPECT_EQ(Next().outcome, TaskOutcome::kSucceeded);
  EXPECT_EQ(CountObjects(), 4u);
}

TEST_P(KubernetesExecutorTest, AsyncCreateFailureComesBackFromWait) {
  // The first create in the namespace is synchronous and succeeds ...
  ASSERT_TRUE(executor_->Start(MakeTask(1, "good")).ok());
  // ... so the next Start() returns at once, and the API server's rejection
  // of its manifest (an invalid label key) arrives as an Error result.
  Task bad = MakeTask(2, "bad");
  bad.config = Json::parse(R"({"kubernetes": {"podLabels": {"not a label!": "x"}}})");
  ASSERT_TRUE(executor_->Start(bad).ok());
  std::map<TaskId, TaskResult> results;
  for (int i = 0; i < 2; ++i) {
    TaskResult r = Next();
    results[r.id] = r;
  }
  EXPECT_EQ(results[1].outcome, TaskOutcome::kSucceeded) << results[1].message;
  EXPECT_EQ(results[2].outcome, TaskOutcome::kError);
  const std::string rejected = object_ == "pod" ? "the API server rejected create pods default/"
                                                : "the API server rejected create jobs.batch default/";
  EXPECT_EQ(results[2].message.rfind(rejected, 0), 0u) << results[2].message;
  EXPECT_EQ(executor_->Running(), 0u);
}

TEST_P(KubernetesExecutorTest, FailingPodFailsTheTaskWithItsExitCode) {
  Task t = MakeTask(1, "flaky");
  t.config = Json::parse(R"({"kubernetes": {"podAnnotations": {
      "sluice.dev/kwok-fail": "true", "sluice.dev/kwok-exit-code": "3"}}})");
  ASSERT_TRUE(executor_->Start(t).ok());
  TaskResult r = Next();
  EXPECT_EQ(r.outcome, TaskOutcome::kFailed) << r.message;
  EXPECT_EQ(r.exit_code, 3);
  if (object_ == "job") {
    EXPECT_NE(r.message.find("Job failed: BackoffLimitExceeded"), std::string::npos) << r.message;
  } else {
    // From the pod's final watch event: no list, no extra read.
    const std::string pod = operators::ObjectName(run_id_, "flaky", 1);
    EXPECT_EQ(r.message, "Pod failed: Error: failed on request (annotation sluice.dev/kwok-fail) (pod " +
                             pod + " container main: exit 3 (Error))");
  }
  // sluice's retry is a new object (attempt 2), never a pod restart.
  Task retry = t;
  retry.id = 2;
  retry.attempt = 2;
  ASSERT_TRUE(executor_->Start(retry).ok());
  EXPECT_EQ(Next().outcome, TaskOutcome::kFailed);
  EXPECT_EQ(CountObjects(), 2u);
}

// kwok does not enforce a bare pod's activeDeadlineSeconds (a kubelet
// does): the pod is timed out by the executor's backstop, timeout + grace.
TEST_P(KubernetesExecutorTest, TimeoutDeletesTheObject) {
  Task t = MakeTask(1, "slow");
  t.timeout = Duration(2000);
  t.config = Json::parse(R"({"kubernetes": {"podAnnotations": {"sluice.dev/kwok-hold": "true"}}})");
  ASSERT_TRUE(executor_->Start(t).ok());
  TaskResult r = Next();
  EXPECT_EQ(r.outcome, TaskOutcome::kTimedOut) << r.message;
  auto object = executor_->client()->Get(Kind(), "default", operators::ObjectName(run_id_, "slow", 1));
  // Deleted with Background propagation: gone, or going.
  EXPECT_TRUE(!object || (*object)["metadata"].contains("deletionTimestamp"))
      << "the object still exists after its timeout";
}

TEST_P(KubernetesExecutorTest, CancelDeletesTheObject) {
  Task t = MakeTask(1, "held");
  t.config = Json::parse(R"({"kubernetes": {"podAnnotations": {"sluice.dev/kwok-hold": "true"}}})");
  ASSERT_TRUE(executor_->Start(t).ok());
  EXPECT_FALSE(executor_->Wait(Duration(1)).has_value());
  executor_->CancelAll(Duration(0));
  TaskResult r = Next();
  EXPECT_EQ(r.outcome, TaskOutcome::kCancelled) << r.message;
  auto object = executor_->client()->Get(Kind(), "default", operators::ObjectName(run_id_, "held", 1));
  EXPECT_TRUE(!object || (*object)["metadata"].contains("deletionTimestamp"));
}

TEST_P(KubernetesExecutorTest, GpuStepLandsOnTheGpuNode) {
  Task t = MakeTask(1, "gpu");
  t.resources.gpu = 1;
  t.resources.node_selector = {{"sluice.dev/accelerator", "nvidia-gpu"}};
  ASSERT_TRUE(executor_->Start(t).ok());
  TaskResult r = Next();
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;
  const std::string name = operators::ObjectName(run_id_, "gpu", 1);
  auto pods = executor_->client()->List(
      k8s::PodKind(), "default", object_ == "pod" ? operators::RunSelector(run_id_) : "job-name=" + name);
  ASSERT_TRUE(pods) << pods.error().ToString();
  ASSERT_EQ(pods->items.size(), 1u);
  EXPECT_EQ(pods->items[0]["spec"]["nodeName"], "kwok-gpu-0");
}

TEST_P(KubernetesExecutorTest, TfJobAndPyTorchJobSucceedThroughTheTrainingOperator) {
  if (object_ == "job") GTEST_SKIP() << "kubernetes.object is a container step's";
  Task tf = MakeTask(1, "tf");
  tf.operator_type = "tfjob";
  tf.config = Json::parse(R"({"tfjob": {"replicas": {"PS": {"replicas": 1},
                                                       "Worker": {"replicas": 2}}}})");
  Task pt = MakeTask(2, "pt");
  pt.operator_type = "pytorchjob";
  pt.config = Json::parse(R"({"pytorchjob": {"replicas": {"Master": {"replicas": 1},
                                                            "Worker": {"replicas": 2}}}})");
  ASSERT_TRUE(executor_->Start(tf).ok());
  ASSERT_TRUE(executor_->Start(pt).ok());
  TaskResult a = Next(Duration(180000));
  TaskResult b = Next(Duration(180000));
  EXPECT_EQ(a.outcome, TaskOutcome::kSucceeded) << a.message;
  EXPECT_EQ(b.outcome, TaskOutcome::kSucceeded) << b.message;
  for (const auto* kind : {&k8s::TFJobKind(), &k8s::PyTorchJobKind()}) {
    executor_->client()->DeleteCollection(*kind, "default", operators::RunSelector(run_id_),
                                          k8s::Propagation::kBackground);
  }
}

TEST_P(KubernetesExecutorTest, ResumeAfterACrashAdoptsTheObject) {
  Task t = MakeTask(1, "long");
  t.config = Json::parse(R"({"kubernetes": {"podAnnotations": {"sluice.dev/kwok-duration": "3s"}}})");
  ASSERT_TRUE(executor_->Start(t).ok());
  // "kill -9": the executor goes away with the object still running.
  executor_.reset();
  auto ex = NewKubernetesExecutor(options_);
  ASSERT_TRUE(ex) << ex.error().ToString();
  executor_.reset(static_cast<KubernetesExecutor*>(ex->release()));
  t.id = 42;  // a new process numbers its tasks afresh
  ASSERT_TRUE(executor_->Start(t).ok());
  TaskResult r = Next();
  EXPECT_EQ(r.id, 42u);
  EXPECT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;
  // Adopting a finished object returns its result too, and creates nothing.
  t.id = 43;
  ASSERT_TRUE(executor_->Start(t).ok());
  EXPECT_EQ(Next().outcome, TaskOutcome::kSucceeded);
  EXPECT_EQ(CountObjects(), 1u);
}

TEST_P(KubernetesExecutorTest, ForeignObjectWithOurNameIsNotAdopted) {
  Task t = MakeTask(1, "taken");
  auto m = KubernetesDryRun(t, options_);
  ASSERT_TRUE(m) << m.error().ToString();
  Json foreign = (*m)[0];
  foreign["metadata"]["annotations"]["sluice.dev/instance"] = "someone-else";
  ASSERT_TRUE(executor_->client()->Create(Kind(), "default", foreign));
  Status st = executor_->Start(t);
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(st.message(), (object_ == "pod" ? "Pod" : "Job") + std::string(" default/") + operators::ObjectName(run_id_, "taken", 1) +
                              " exists but was not created by run " + run_id_ +
                              " for taken attempt 1; delete it or rename the run");
}

TEST_P(KubernetesExecutorTest, ExecCredentialPluginAuthenticates) {
  if (object_ == "job") GTEST_SKIP() << "authentication does not depend on the object";
  // The admin's token, handed out by an exec plugin (a Python script)
  // instead of sitting in the kubeconfig, as with EKS/GKE/AKS.
  auto admin = k8s::LoadRestConfig(options_.kubeconfig);
  ASSERT_TRUE(admin) << admin.error().ToString();
  ASSERT_FALSE(admin->user.token.empty());
  std::string plugin = (dir_ / "token-plugin.py").string();
  std::ofstream(plugin) << "#!/usr/bin/env python3\n"
                           "import json, os\n"
                           "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
                           "print(json.dumps({'apiVersion': info['apiVersion'], "
                           "'kind': 'ExecCredential', 'status': {'token': os.environ['TOKEN'], "
                           "'expirationTimestamp': '2099-01-01T00:00:00Z'}}))\n";
  fs::permissions(plugin, fs::perms::owner_all);
  std::string kubeconfig = (dir_ / "exec-kubeconfig").string();
  std::ofstream(kubeconfig) << "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
                               "    server: " << admin->cluster.server << "\n"
                               "    certificate-authority-data: "
                            << k8s::Base64Encode(admin->cluster.ca_pem) << "\n"
                               "users:\n- name: cloud\n  user:\n    exec:\n"
                               "      apiVersion: client.authentication.k8s.io/v1\n"
                               "      command: " << plugin << "\n"
                               "      interactiveMode: Never\n"
                               "      env: [{name: TOKEN, value: \"" << admin->user.token << "\"}]\n"
                               "contexts:\n- name: x\n  context: {cluster: c, user: cloud}\n"
                               "current-context: x\n";
  KubernetesExecutorOptions exec = options_;
  exec.kubeconfig.kubeconfig = kubeconfig;
  auto ex = NewKubernetesExecutor(exec);
  ASSERT_TRUE(ex) << ex.error().ToString();
  ASSERT_TRUE((*ex)->Start(MakeTask(1, "exec-auth")).ok());
  auto r = (*ex)->Wait(Duration(90000));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcome, TaskOutcome::kSucceeded) << r->message;
}

TEST_P(KubernetesExecutorTest, NoRbacPermissionGivesTheClearMessage) {
  KubernetesExecutorOptions limited = options_;
  limited.kubeconfig.kubeconfig = test_support::K8sStateDir() + "/kubeconfig-limited";
  auto ex = NewKubernetesExecutor(limited);
  ASSERT_TRUE(ex) << ex.error().ToString();
  Status st = (*ex)->Start(MakeTask(1, "denied"));
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  const std::string denied =
      object_ == "pod" ? "forbidden: pods is forbidden: User \"sluice-limited\" cannot create resource "
                         "\"pods\" in API group \"\" in the namespace \"default\""
                       : "forbidden: jobs.batch is forbidden: User \"sluice-limited\" cannot "
                         "create resource \"jobs\" in API group \"batch\" in the namespace "
                         "\"default\"";
  EXPECT_EQ(st.message().rfind(denied, 0), 0u) << st.message();
}

TEST_P(KubernetesExecutorTest, UnreachableClusterGivesTheClearMessage) {
  if (object_ == "job") GTEST_SKIP() << "nothing is created: the object makes no difference";
  // The admin kubeconfig with the server moved to a closed port.
  std::ifstream in(kubeconfig_);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  size_t pos = text.find("https://127.0.0.1:");
  ASSERT_NE(pos, std::string::npos);
  size_t end = text.find_first_not_of("0123456789", pos + 18);
  text.replace(pos, end - pos, "https://127.0.0.1:1");
  std::string path = (dir_ / "wrong-kubeconfig").string();
  std::ofstream(path) << text;
  KubernetesExecutorOptions wrong = options_;
  wrong.kubeconfig.kubeconfig = path;
  wrong.client.max_retries = 0;
  auto ex = NewKubernetesExecutor(wrong);
  ASSERT_TRUE(ex) << ex.error().ToString();
  Status st = (*ex)->Start(MakeTask(1, "nowhere"));
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_EQ(st.message().rfind("cannot reach https://127.0.0.1:1: connection refused (is the "
                               "cluster up? context \"",
                               0),
            0u)
      << st.message();
}

// sluice's own requests per step once the run's watch is up: a bare pod
// costs its create and one read of its log (its result, exit code included,
// comes with the watch event); a Job its create, a list of its pods and one
// read of the log. Success or failure alike.
TEST_P(KubernetesExecutorTest, RequestsPerStep) {
  // The first step starts the run's watch (a list) and, for bare pods, the
  // namespace's cleanup (a list); its log is read in the background. Either
  // way 3 GETs, which must all have happened before counting starts.
  ASSERT_TRUE(executor_->Start(MakeTask(1, "warm")).ok());
  ASSERT_EQ(Next().outcome, TaskOutcome::kSucceeded);
  const std::map<std::string, int64_t> zero;
  ASSERT_TRUE(test_support::WaitUntil([&] { return RequestsSince(zero)["GET"] >= 3; }, std::chrono::seconds(60)));
  auto before = executor_->client()->RequestCounts();
  const int n = 3;
  for (int i = 0; i < n; ++i) ASSERT_TRUE(executor_->Start(MakeTask(10 + i, "s" + std::to_string(i))).ok());
  Task failing = MakeTask(20, "failing");
  failing.config = Json::parse(R"({"kubernetes": {"podAnnotations": {"sluice.dev/kwok-fail": "true"}}})");
  ASSERT_TRUE(executor_->Start(failing).ok());
  for (int i = 0; i < n + 1; ++i) Next();
  const int64_t gets_per_step = object_ == "pod" ? 1 : 2;
  // Successes' logs are read in the background: wait for them, bounded.
  test_support::WaitUntil([&] { return RequestsSince(before)["GET"] >= (n + 1) * gets_per_step; },
                          std::chrono::seconds(60));
  EXPECT_EQ(RequestsSince(before),
            (std::map<std::string, int64_t>{{"GET", (n + 1) * gets_per_step}, {"POST", n + 1}}));
}

// `kubernetes.logs: failed`: a success costs its create only; its log file
// says where the log is. A failure's log is still copied.
TEST_P(KubernetesExecutorTest, LogsFailedLeavesSuccessLogsInThePod) {
  ASSERT_TRUE(executor_->Start(MakeTask(1, "warm")).ok());
  ASSERT_EQ(Next().outcome, TaskOutcome::kSucceeded);
  const std::map<std::string, int64_t> zero;
  ASSERT_TRUE(test_support::WaitUntil([&] { return RequestsSince(zero)["GET"] >= 3; }, std::chrono::seconds(60)));
  auto before = executor_->client()->RequestCounts();
  Task ok = MakeTask(2, "quiet");
  ok.config = Json::parse(R"({"kubernetes": {"logs": "failed"}})");
  ASSERT_TRUE(executor_->Start(ok).ok());
  TaskResult r = Next();
  ASSERT_EQ(r.outcome, TaskOutcome::kSucceeded) << r.message;
  EXPECT_EQ(RequestsSince(before), (std::map<std::string, int64_t>{{"POST", 1}}));
  // The note is written on a finisher thread, after the result.
  auto read_log = [&] {
    std::ifstream in(ok.log_path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  ASSERT_TRUE(test_support::WaitUntil([&] { return !read_log().empty(); }, std::chrono::seconds(30)));
  const std::string name = operators::ObjectName(run_id_, "quiet", 1);
  const std::string where =
      object_ == "pod" ? "pod/" + name : "-l job-name=" + name;
  EXPECT_EQ(read_log(),
            "[sluice] kubernetes.logs is failed: this step's log was not copied; while its pods "
            "exist: kubectl logs -n default -c main " + where + "\n");

  Task bad = MakeTask(3, "loud");
  bad.config = Json::parse(
      R"({"kubernetes": {"logs": "failed", "podAnnotations": {"sluice.dev/kwok-fail": "true"}}})");
  ASSERT_TRUE(executor_->Start(bad).ok());
  EXPECT_EQ(Next().outcome, TaskOutcome::kFailed);
  EXPECT_TRUE(fs::exists(bad.log_path));
  std::ifstream bad_in(bad.log_path);
  std::string first;
  std::getline(bad_in, first);
  EXPECT_EQ(first.rfind("[sluice] kubernetes.logs", 0), std::string::npos) << first;
}

// Bare pods have no TTL controller: the next run's first create in the
// namespace deletes the pods of ended runs whose TTL has passed, and keeps
// the others.
TEST_P(KubernetesExecutorTest, ExpiredPodsAreDeletedByTheNextRun) {
  if (object_ == "job") GTEST_SKIP() << "a Job is deleted by the cluster's TTL controller";
  auto step_of_run = [&](TaskId id, const std::string& run, int ttl) {
    Task t = MakeTask(id, "old");
    t.run_id = run;
    t.config = Json::parse(R"({"kubernetes": {"ttlSecondsAfterFinished": )" + std::to_string(ttl) + "}}");
    return t;
  };
  const std::string expired = run_id_ + "-x", kept = run_id_ + "-k";
  ASSERT_TRUE(executor_->Start(step_of_run(1, expired, 0)).ok());
  ASSERT_TRUE(executor_->Start(step_of_run(2, kept, 3600)).ok());
  EXPECT_EQ(Next().outcome, TaskOutcome::kSucceeded);
  EXPECT_EQ(Next().outcome, TaskOutcome::kSucceeded);
  auto pods_of = [&](const std::string& run) {
    auto list = executor_->client()->List(k8s::PodKind(), "default", k8s::BarePodSelector(run));
    EXPECT_TRUE(list) << list.error().ToString();
    return list ? list->items.size() : 0;
  };
  EXPECT_EQ(pods_of(expired), 1u);
  // The next run: a new sluice process.
  executor_.reset();
  auto ex = NewKubernetesExecutor(options_);
  ASSERT_TRUE(ex) << ex.error().ToString();
  executor_.reset(static_cast<KubernetesExecutor*>(ex->release()));
  ASSERT_TRUE(executor_->Start(MakeTask(3, "next")).ok());
  EXPECT_TRUE(test_support::WaitUntil([&] { return pods_of(expired) == 0; }, std::chrono::seconds(60)))
      << "the expired run's pod was not deleted";
  EXPECT_EQ(pods_of(kept), 1u);
  EXPECT_EQ(Next().outcome, TaskOutcome::kSucceeded);
  executor_->client()->DeleteCollection(k8s::PodKind(), "default", k8s::BarePodSelector(kept),
                                        k8s::Propagation::kBackground);
}

}  // namespace
}  // namespace sluice
