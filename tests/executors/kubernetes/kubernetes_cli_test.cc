// End-to-end: real pipelines through the real `sluice` binary on the live
// test cluster (tests/k8s: kube-apiserver, controller-manager, scheduler,
// training-operator; kwok runs the pods, which run no code). Each test writes
// a pipeline YAML, runs `sluice run --executor kubernetes` against a fresh
// SQLite store, and checks the run through `sluice status/show --format
// json` and the objects through the Kubernetes API.
//
// Registered with FIXTURES_REQUIRED k8s and LABELS k8s; skipped when the
// cluster's kubeconfig is absent. Waits are on events (process exit through a
// pidfd, watch events), each with a bound.
//
// kwok pod lifecycle (tests/k8s/config/kwok-stages.yaml.in), chosen per step
// with kubernetes.podAnnotations: sluice.dev/kwok-fail ("true": the pod fails,
// exit code sluice.dev/kwok-exit-code), sluice.dev/kwok-hold (stays Running),
// sluice.dev/kwok-duration (Running time).

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "engine/sha256.h"
#include "executors/kubernetes/api/client.h"
#include "executors/kubernetes/api/kubeconfig.h"
#include "operators/kubernetes/manifests.h"
#include "tests/executors/kubernetes/live_cluster.h"
#include "tests/executors/kubernetes/sluice_process.h"

namespace sluice {
using test_support::ClusterClient;
using test_support::LiveRunId;
using test_support::ReadText;
using test_support::RunObjects;
using test_support::SluiceProcess;
namespace {

namespace fs = std::filesystem;

struct Outcome {
  int exit_code;
  std::string out;
  std::string err;
};

// Each test runs twice: with the default object of a container step (a bare
// Pod, test suffix /pod) and with `kubernetes.object: job` set in the
// pipeline's defaults (/job).
class KubernetesCliTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    object_ = GetParam();
    kubeconfig_ = test_support::K8sStateDir() + "/kubeconfig";
    if (!fs::exists(kubeconfig_)) {
      GTEST_SKIP() << "no test cluster: " << kubeconfig_
                   << " is missing (run tests/k8s/cluster up, or ctest -L k8s)";
    }
    run_id_ = LiveRunId("cli-" + object_, 16);
    dir_ = fs::temp_directory_path() / ("sluice-k8s-cli-" + run_id_);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    store_ = (dir_ / "store").string();
    auto client = ClusterClient(kubeconfig_);
    ASSERT_TRUE(client) << client.error().ToString();
    client_ = std::move(*client);
  }

  void TearDown() override {
    if (client_) {
      for (const auto* kind :
           {&k8s::JobKind(), &k8s::TFJobKind(), &k8s::PyTorchJobKind(), &k8s::PodKind(), &XgbKind()}) {
        (void)client_->DeleteCollection(*kind, "default", operators::RunSelector(run_id_),
                                        k8s::Propagation::kBackground);
      }
    }
    if (!dir_.empty() && !HasFailure()) fs::remove_all(dir_);
  }

  // Writes kHeader (with this test's object) + `steps`.
  std::string WritePipeline(const std::string& steps);

  // What a container step becomes in this test: PodKind() or JobKind().
  const k8s::ResourceKind& Kind() const { return object_ == "pod" ? k8s::PodKind() : k8s::JobKind(); }

  // The pod spec of a step's object (a Pod's spec, a Job's template's).
  static const Json& PodSpec(const Json& object) {
    return object["kind"] == "Job" || object["spec"].contains("template") ? object["spec"]["template"]["spec"]
                                                                          : object["spec"];
  }

  // True when the step's object (Pod or Job) has succeeded.
  static bool Succeeded(const Json& object) {
    if (object["spec"].contains("template")) return object["status"].value("succeeded", 0) == 1;
    return object["status"].value("phase", "") == "Succeeded";
  }

  // The pod that ran `step`'s first attempt (the bare pod, or the Job's).
  Result<Json> PodOf(const std::string& step) {
    const std::string name = operators::ObjectName(run_id_, step, 1);
    if (object_ == "pod") return client_->Get(k8s::PodKind(), "default", name);
    auto pods = client_->List(k8s::PodKind(), "default", "job-name=" + name);
    if (!pods) return Error(pods.error());
    if (pods->items.size() != 1) return Error(Status::NotFound(std::to_string(pods->items.size()) + " pods"));
    return pods->items[0];
  }

  // Starts `sluice --store S ARGS...`.
  std::unique_ptr<SluiceProcess> Start(const std::vector<std::string>& args,
                                       const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> all = {"--store", store_};
    all.insert(all.end(), args.begin(), args.end());
    int n = ++processes_;
    return std::make_unique<SluiceProcess>(all, dir_ / ("out" + std::to_string(n)),
                                           dir_ / ("err" + std::to_string(n)), env);
  }

  // Runs `sluice --store S ARGS...` to its end (bounded).
  Outcome Sluice(const std::vector<std::string>& args,
                 const std::map<std::string, std::string>& env = {},
                 std::chrono::milliseconds bound = std::chrono::minutes(4)) {
    auto p = Start(args, env);
    int code = p->Wait(bound);
    EXPECT_NE(code, SluiceProcess::kRunning) << "sluice did not end within " << bound.count() << " ms";
    return {code, p->out(), p->err()};
  }

  // `sluice run --executor kubernetes --kubeconfig K --run-id R FILE`.
  Outcome RunOnCluster(const std::string& file, const std::vector<std::string>& extra = {},
                       const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> args = {"run", "-q", "--executor", "kubernetes", "--kubeconfig",
                                     kubeconfig_, "--run-id", run_id_};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(file);
    return Sluice(args, env);
  }

  // `sluice status RUN --format json`, parsed.
  Json Status() {
    Outcome o = Sluice({"status", run_id_, "--format", "json"});
    EXPECT_EQ(o.exit_code, 0) << o.err;
    return Json::parse(o.out, nullptr, /*allow_exceptions=*/false);
  }

  // instance -> "Phase/attempts/exit_code" from `sluice status`.
  std::map<std::string, std::string> StepPhases() {
    std::map<std::string, std::string> out;
    Json status = Status();
    if (!status.contains("steps")) return out;
    for (const auto& s : status["steps"]) {
      out[s["instance"].get<std::string>()] = s["phase"].get<std::string>() + "/" +
                                             std::to_string(s["attempts"].get<int>()) + "/" +
                                             std::to_string(s["exit_code"].get<int>());
    }
    return out;
  }

  // The run's objects of `kind`, name -> "step/attempt".
  std::map<std::string, std::string> Objects(const k8s::ResourceKind& kind) {
    return RunObjects(*client_, kind, "default", run_id_);
  }

  // Waits (up to `bound`) until the run has no object of `kind` left.
  bool WaitUntilNone(const k8s::ResourceKind& kind, std::chrono::milliseconds bound) {
    return WaitForObjects(
        kind, [](const std::map<std::string, Json>& objects) { return objects.empty(); }, bound);
  }

  // Watches the run's objects of `kind` until `done(objects)` holds (name ->
  // object, deleted ones removed) or `bound` passes. True when it held.
  bool WaitForObjects(const k8s::ResourceKind& kind,
                      const std::function<bool(const std::map<std::string, Json>&)>& done,
                      std::chrono::milliseconds bound) {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, Json> objects;
    bool synced = false;
    k8s::WatchHandlers callbacks;
    callbacks.on_event = [&](const k8s::WatchEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      std::string name = e.object["metadata"].value("name", "");
      if (e.type == k8s::WatchEvent::Type::kDeleted) objects.erase(name);
      else objects[name] = e.object;
      cv.notify_all();
    };
    callbacks.on_synced = [&] {
      std::lock_guard<std::mutex> lock(mu);
      synced = true;
      cv.notify_all();
    };
    auto watcher = client_->Watch(kind, "default", operators::RunSelector(run_id_), callbacks);
    std::unique_lock<std::mutex> lock(mu);
    bool ok = cv.wait_for(lock, bound, [&] { return synced && done(objects); });
    lock.unlock();
    watcher->Stop();
    return ok;
  }

  // Creates ReadWriteMany claim `name` in "default", bound to a hostPath
  // PersistentVolume at `host_dir` (as on a cluster with NFS/EFS; the
  // controller-manager binds it, so the scheduler places pods that mount it).
  // The returned object deletes both; null (with a test failure) on error.
  struct ClaimCleanup {
    k8s::Client* client;
    std::string name;
    ~ClaimCleanup() {
      (void)client->Delete(k8s::PersistentVolumeClaimKind(), "default", name, k8s::Propagation::kBackground);
      (void)client->Delete(PersistentVolumeKind(), "", name, k8s::Propagation::kBackground);
    }
  };
  static const k8s::ResourceKind& PersistentVolumeKind() {
    static const k8s::ResourceKind kind{"v1", "PersistentVolume", "persistentvolumes", false};
    return kind;
  }
  std::unique_ptr<ClaimCleanup> BindRwxClaim(const std::string& name, const fs::path& host_dir) {
    Json pv = {{"apiVersion", "v1"},
               {"kind", "PersistentVolume"},
               {"metadata", {{"name", name}}},
               {"spec",
                {{"capacity", {{"storage", "1Gi"}}},
                 {"accessModes", {"ReadWriteMany"}},
                 {"storageClassName", ""},
                 {"hostPath", {{"path", host_dir.string()}}},
                 {"claimRef", {{"namespace", "default"}, {"name", name}}}}}};
    Json pvc = {{"apiVersion", "v1"},
                {"kind", "PersistentVolumeClaim"},
                {"metadata", {{"name", name}}},
                {"spec",
                 {{"accessModes", {"ReadWriteMany"}},
                  {"storageClassName", ""},
                  {"volumeName", name},
                  {"resources", {{"requests", {{"storage", "1Gi"}}}}}}}};
    auto cleanup = std::make_unique<ClaimCleanup>(ClaimCleanup{client_.get(), name});
    auto created_pv = client_->Create(PersistentVolumeKind(), "", pv);
    EXPECT_TRUE(created_pv) << "PersistentVolume: " << created_pv.error().ToString();
    auto created_pvc = client_->Create(k8s::PersistentVolumeClaimKind(), "default", pvc);
    EXPECT_TRUE(created_pvc) << "claim: " << created_pvc.error().ToString();
    if (!created_pv || !created_pvc) return nullptr;
    return cleanup;
  }

  // An XGBoostJob-shaped custom resource. The test cluster's training-operator
  // runs only TFJob and PyTorchJob, so this CRD (kubeflow.org/v1 XGBoostJob,
  // a schema that keeps every field, a status subresource) has no
  // controller: the tests write its status as the XGBoost controller would.
  static const k8s::ResourceKind& XgbKind() {
    static const k8s::ResourceKind kind{"kubeflow.org/v1", "XGBoostJob", "xgboostjobs", true};
    return kind;
  }
  // Creates the CRD unless it exists, and waits until its objects are served.
  void EnsureXgbCrd() {
    static const k8s::ResourceKind crd_kind{"apiextensions.k8s.io/v1", "CustomResourceDefinition",
                                            "customresourcedefinitions", false};
    Json crd = {{"apiVersion", "apiextensions.k8s.io/v1"},
                {"kind", "CustomResourceDefinition"},
                {"metadata", {{"name", "xgboostjobs.kubeflow.org"}}},
                {"spec",
                 {{"group", "kubeflow.org"},
                  {"scope", "Namespaced"},
                  {"names",
                   {{"kind", "XGBoostJob"}, {"plural", "xgboostjobs"}, {"singular", "xgboostjob"},
                    {"listKind", "XGBoostJobList"}}},
                  {"versions",
                   {{{"name", "v1"},
                     {"served", true},
                     {"storage", true},
                     {"subresources", {{"status", Json::object()}}},
                     {"schema",
                      {{"openAPIV3Schema", {{"type", "object"}, {"x-kubernetes-preserve-unknown-fields", true}}}}}}}}}}};
    auto created = client_->Create(crd_kind, "", crd);
    ASSERT_TRUE(created || created.error().code() == StatusCode::kAlreadyExists) << created.error().ToString();
    ASSERT_TRUE(test_support::WaitUntil([&] { return client_->List(XgbKind(), "default", "").has_value(); },
                                        std::chrono::seconds(60)))
        << "xgboostjobs are not served";
  }
  // Merges `status` into the status of `kind` object `name` (its status
  // subresource), as the object's controller would.
  void PatchStatus(const k8s::ResourceKind& kind, const std::string& name, const Json& status) {
    auto r = client_->Do("PATCH", kind.CollectionPath("default") + "/" + name + "/status",
                         Json{{"status", status}}.dump(), "application/merge-patch+json", "patch status of " + name);
    ASSERT_TRUE(r) << r.error().ToString();
  }
  // The pipeline of a resource step `xgb` whose XGBoostJob finishes by its
  // Master replica; `extra` is added to the step.
  std::string WriteXgbPipeline(const std::string& extra = "") {
    return WritePipeline(R"(params:
  workers: {type: int, default: 2}
steps:
  - name: xgb
    type: resource
)" + extra + R"(    resource:
      manifest:
        apiVersion: kubeflow.org/v1
        kind: XGBoostJob
        metadata:
          labels: {team: a}
        spec:
          xgbReplicaSpecs:
            Master: {replicas: 1}
            Worker: {replicas: "{{ params.workers }}"}
      successCondition: status.replicaStatuses.Master.succeeded > 0
      failureCondition: status.replicaStatuses.Master.failed > 0
)");
  }
  // Waits until the run has an object of `kind` named `name`, and returns it.
  Json WaitForObject(const k8s::ResourceKind& kind, const std::string& name,
                     const std::function<bool(const Json&)>& ready = nullptr) {
    Json got;
    EXPECT_TRUE(WaitForObjects(
        kind,
        [&](const std::map<std::string, Json>& objects) {
          auto it = objects.find(name);
          if (it == objects.end() || (ready && !ready(it->second))) return false;
          got = it->second;
          return true;
        },
        std::chrono::minutes(2)))
        << kind.kind << " " << name << " did not appear";
    return got;
  }
  // instance -> its step's message in `sluice status`.
  std::map<std::string, std::string> StepMessages() {
    std::map<std::string, std::string> out;
    Json status = Status();
    if (status.contains("steps"))
      for (const auto& s : status["steps"]) out[s["instance"].get<std::string>()] = s.value("message", "");
    return out;
  }
  // A node no kubelet (and no kwok) runs: the pods bound to it get no status
  // but what the test writes, as if a kubelet had. Deleted by the returned
  // object.
  struct NodeCleanup {
    k8s::Client* client = nullptr;
    std::string name;
    ~NodeCleanup() { (void)client->Delete(NodeKind(), "", name, k8s::Propagation::kBackground); }
  };
  static const k8s::ResourceKind& NodeKind() {
    static const k8s::ResourceKind kind{"v1", "Node", "nodes", false};
    return kind;
  }
  std::unique_ptr<NodeCleanup> UnmanagedNode(const std::string& name) {
    Json node = {{"apiVersion", "v1"},
                 {"kind", "Node"},
                 {"metadata", {{"name", name}, {"labels", {{"kubernetes.io/hostname", name}}}}},
                 {"status",
                  {{"capacity", {{"cpu", "4"}, {"memory", "8Gi"}, {"pods", "10"}}},
                   {"allocatable", {{"cpu", "4"}, {"memory", "8Gi"}, {"pods", "10"}}}}}};
    auto created = client_->Create(NodeKind(), "", node);
    EXPECT_TRUE(created) << created.error().ToString();
    // Filled in place: a temporary NodeCleanup would delete the node at once.
    auto cleanup = std::make_unique<NodeCleanup>();
    cleanup->client = client_.get();
    cleanup->name = name;
    return cleanup;
  }
  // `sluice run` of this test's pipeline `file` in the background.
  std::unique_ptr<SluiceProcess> StartRun(const std::string& file) {
    return Start({"run", "-q", "--executor", "kubernetes", "--kubeconfig", kubeconfig_, "--run-id", run_id_, file});
  }
  // A run of one step `step` (plus `extra` step keys) whose pod is bound to
  // a fresh UnmanagedNode(): returned once the pod is bound.
  struct OnNode {
    std::unique_ptr<NodeCleanup> node;
    std::unique_ptr<SluiceProcess> run;
    std::string pod;
  };
  OnNode RunOnUnmanagedNode(const std::string& step, const std::string& extra = "") {
    OnNode out;
    const std::string node = "sluice-nokubelet-" + std::to_string(::getpid());
    out.node = UnmanagedNode(node);
    out.run = StartRun(WritePipeline("steps:\n  - name: " + step + "\n    command: [sh, -c, \"echo " + step +
                                     "\"]\n    resources:\n      nodeSelector: {kubernetes.io/hostname: " + node +
                                     "}\n      tolerations: [{operator: Exists}]\n" + extra));
    // A bare pod has the object's name; a Job's pod is found by its label.
    const std::string object = operators::ObjectName(run_id_, step, 1);
    EXPECT_TRUE(WaitForObjects(
        k8s::PodKind(),
        [&](const std::map<std::string, Json>& pods) {
          for (const auto& [name, p] : pods) {
            const bool ours = object_ == "pod" ? name == object
                                               : p["metadata"]["labels"].value("job-name", "") == object;
            if (ours && p["spec"].contains("nodeName")) out.pod = name;
          }
          return !out.pod.empty();
        },
        std::chrono::minutes(2)))
        << "the pod of " << object << " was not bound to " << node;
    return out;
  }

  std::string object_;  // "pod" | "job"
  std::string kubeconfig_;
  std::string run_id_;
  fs::path dir_;
  std::string store_;
  std::unique_ptr<k8s::Client> client_;
  int processes_ = 0;
};

INSTANTIATE_TEST_SUITE_P(Object, KubernetesCliTest, ::testing::Values("pod", "job"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// Pods run no code on kwok; these make every step's pod small and quick.
constexpr const char* kHeader = R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: k8s-cli
defaults:
  image: busybox:1.36
  resources: {cpu: 100m, memory: 64Mi}
)";

std::string KubernetesCliTest::WritePipeline(const std::string& steps) {
  fs::path path = dir_ / "pipeline.yaml";
  // The default object is a pod; `job` is chosen once, for every step.
  std::ofstream(path) << kHeader << (object_ == "job" ? "  kubernetes: {object: job}\n" : "") << steps;
  return path.string();
}

TEST_P(KubernetesCliTest, DiamondSucceeds) {
  std::string file = WritePipeline(R"(steps:
  - name: prepare
    command: [sh, -c, "echo prepare"]
  - name: left
    depends: [prepare]
    command: [sh, -c, "echo left"]
  - name: right
    depends: [prepare]
    command: [sh, -c, "echo right"]
  - name: join
    depends: [left, right]
    command: [sh, -c, "echo join"]
)");
  Outcome o = RunOnCluster(file);
  ASSERT_EQ(o.exit_code, 0) << o.out << o.err;
  EXPECT_NE(o.out.find("run " + run_id_ + " Succeeded"), std::string::npos) << o.out;
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"join", "Succeeded/1/0"},
                                                              {"left", "Succeeded/1/0"},
                                                              {"prepare", "Succeeded/1/0"},
                                                              {"right", "Succeeded/1/0"}}));
  auto objects = Objects(Kind());
  EXPECT_EQ(objects, (std::map<std::string, std::string>{
                      {operators::ObjectName(run_id_, "join", 1), "join/1"},
                      {operators::ObjectName(run_id_, "left", 1), "left/1"},
                      {operators::ObjectName(run_id_, "prepare", 1), "prepare/1"},
                      {operators::ObjectName(run_id_, "right", 1), "right/1"}}));
  // The run is recorded as a Kubernetes run, each execution with its Job.
  Json status = Status();
  EXPECT_EQ(status["run"]["executor"], "kubernetes");
  EXPECT_EQ(status["run"]["phase"], "Succeeded");
  // The steps' logs were copied into the store when they ended: `sluice logs`
  // works after the Jobs and pods are gone (kwok serves no pods/log, so the
  // copy holds the reason).
  ASSERT_TRUE(client_->DeleteCollection(Kind(), "default", operators::RunSelector(run_id_),
                                        k8s::Propagation::kBackground)
                  .ok());
  EXPECT_TRUE(WaitUntilNone(k8s::PodKind(), std::chrono::seconds(60)));
  Outcome logs = Sluice({"logs", run_id_, "join"});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("could not fetch the logs of pod default/" + operators::ObjectName(run_id_, "join", 1)),
            std::string::npos)
      << logs.out;
}

TEST_P(KubernetesCliTest, FailingPodIsRetriedThenTheRunFails) {
  std::string file = WritePipeline(R"(steps:
  - name: flaky
    command: [sh, -c, "exit 3"]
    retries: {limit: 1, backoff: 100ms}
    kubernetes:
      podAnnotations: {sluice.dev/kwok-fail: "true", sluice.dev/kwok-exit-code: "3"}
  - name: after
    depends: [flaky]
    command: [sh, -c, "echo never"]
  - name: independent
    command: [sh, -c, "echo fine"]
)");
  Outcome o = RunOnCluster(file, {"--keep-going"});
  EXPECT_EQ(o.exit_code, 1) << o.out << o.err;
  EXPECT_NE(o.out.find("run " + run_id_ + " Failed"), std::string::npos) << o.out;
  auto phases = StepPhases();
  EXPECT_EQ(phases["flaky"], "Failed/2/3");
  EXPECT_EQ(phases["independent"], "Succeeded/1/0");
  EXPECT_EQ(phases["after"].substr(0, phases["after"].find('/')), "Omitted") << phases["after"];
  // Each sluice attempt was its own object (a Job: backoffLimit 0): two for flaky.
  EXPECT_EQ(Objects(Kind()), (std::map<std::string, std::string>{
                      {operators::ObjectName(run_id_, "flaky", 1), "flaky/1"},
                      {operators::ObjectName(run_id_, "flaky", 2), "flaky/2"},
                      {operators::ObjectName(run_id_, "independent", 1), "independent/1"}}));
  // show --format json lists both attempts' executions as Failed, exit 3.
  Outcome show = Sluice({"show", run_id_, "--format", "json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  Json shown = Json::parse(show.out, nullptr, false);
  std::vector<std::string> flaky;
  for (const auto& e : shown["executions"]) {
    if (e["instance"] == "flaky")
      flaky.push_back(std::to_string(e["attempt"].get<int>()) + ":" + e["outcome"].get<std::string>() +
                      ":" + std::to_string(e["exit_code"].get<int>()));
  }
  std::sort(flaky.begin(), flaky.end());
  EXPECT_EQ(flaky, (std::vector<std::string>{"1:Failed:3", "2:Failed:3"}));
}

// kwok does not enforce a bare pod's activeDeadlineSeconds (a kubelet
// does): the pod is timed out by sluice's own backstop, timeout + 30 s.
TEST_P(KubernetesCliTest, TimeoutDeletesTheObject) {
  std::string file = WritePipeline(R"(steps:
  - name: slow
    command: [sleep, "3600"]
    timeout: 2s
    kubernetes:
      podAnnotations: {sluice.dev/kwok-hold: "true"}
)");
  Outcome o = RunOnCluster(file);
  EXPECT_EQ(o.exit_code, 1) << o.out << o.err;
  // A timeout is a system failure (phase Error); its execution says TimedOut.
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"slow", "Error/1/-1"}}));
  Outcome show = Sluice({"show", run_id_, "--format", "json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  Json shown = Json::parse(show.out, nullptr, false);
  ASSERT_EQ(shown["executions"].size(), 1u) << show.out;
  EXPECT_EQ(shown["executions"][0]["outcome"], "TimedOut") << show.out;
  // The object (and a Job's pod, by propagation) is deleted.
  EXPECT_TRUE(WaitUntilNone(Kind(), std::chrono::seconds(30)))
      << "the timed-out object still exists";
  EXPECT_TRUE(WaitUntilNone(k8s::PodKind(), std::chrono::seconds(60)))
      << "the timed-out step's pod still exists";
}

TEST_P(KubernetesCliTest, TfJobAndPyTorchJobStepsSucceedThroughTheTrainingOperator) {
  if (object_ == "job") GTEST_SKIP() << "kubernetes.object is a container step's; training jobs are TFJob/PyTorchJob either way";
  std::string file = WritePipeline(R"(steps:
  - name: train-tf
    type: tfjob
    image: tensorflow/tensorflow:2.15.0
    command: [python3, train.py]
    tfjob:
      replicas:
        Chief: {replicas: 1}
        Worker: {replicas: 2}
  - name: train-pt
    type: pytorchjob
    image: pytorch/pytorch:2.1.0-cuda12.1-cudnn8-runtime
    command: [python3, train.py]
    depends: [train-tf]
    pytorchjob:
      replicas:
        Master: {replicas: 1}
        Worker: {replicas: 1}
)");
  Outcome o = RunOnCluster(file);
  ASSERT_EQ(o.exit_code, 0) << o.out << o.err;
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"train-pt", "Succeeded/1/0"},
                                                              {"train-tf", "Succeeded/1/0"}}));
  EXPECT_EQ(Objects(k8s::TFJobKind()),
            (std::map<std::string, std::string>{
                {operators::ObjectName(run_id_, "train-tf", 1, 48), "train-tf/1"}}));
  EXPECT_EQ(Objects(k8s::PyTorchJobKind()),
            (std::map<std::string, std::string>{
                {operators::ObjectName(run_id_, "train-pt", 1, 48), "train-pt/1"}}));
  EXPECT_TRUE(Objects(k8s::JobKind()).empty());
}

TEST_P(KubernetesCliTest, GpuStepLandsOnTheGpuNodeThroughItsToleration) {
  std::string file = WritePipeline(R"(steps:
  - name: train
    image: nvidia/cuda:12.4.1-base-ubuntu22.04
    command: [nvidia-smi]
    resources:
      gpu: 1
      nodeSelector: {sluice.dev/accelerator: nvidia-gpu}
)");
  Outcome o = RunOnCluster(file);
  ASSERT_EQ(o.exit_code, 0) << o.out << o.err;
  auto pod = PodOf("train");
  ASSERT_TRUE(pod) << pod.error().ToString();
  const Json& spec = (*pod)["spec"];
  EXPECT_EQ(spec["nodeName"], "kwok-gpu-0");
  bool tolerates = false;
  for (const auto& t : spec["tolerations"]) tolerates |= t.value("key", "") == "nvidia.com/gpu";
  EXPECT_TRUE(tolerates) << spec["tolerations"].dump();
  EXPECT_EQ(spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "1");
}

TEST_P(KubernetesCliTest, KillDashNineThenResumeAdoptsTheObjects) {
  // `slow` runs 6 s on kwok; sluice is killed while its object is live.
  std::string file = WritePipeline(R"(steps:
  - name: prepare
    command: [sh, -c, "echo prepare"]
  - name: slow
    depends: [prepare]
    command: [sh, -c, "sleep 6"]
    kubernetes:
      podAnnotations: {sluice.dev/kwok-duration: "6s"}
  - name: quick
    depends: [prepare]
    command: [sh, -c, "echo quick"]
  - name: join
    depends: [slow, quick]
    command: [sh, -c, "echo join"]
)");
  auto run = Start({"run", "-q", "--executor", "kubernetes", "--kubeconfig", kubeconfig_,
                    "--run-id", run_id_, file});
  const std::string slow_job = operators::ObjectName(run_id_, "slow", 1);
  const std::string quick_job = operators::ObjectName(run_id_, "quick", 1);
  // Wait until `slow`'s object exists and `quick`'s has completed.
  ASSERT_TRUE(WaitForObjects(
      Kind(),
      [&](const std::map<std::string, Json>& objects) {
        auto q = objects.find(quick_job);
        if (!objects.count(slow_job) || q == objects.end()) return false;
        return Succeeded(q->second);
      },
      std::chrono::minutes(2)))
      << run->out() << run->err();
  ASSERT_EQ(::kill(run->pid(), SIGKILL), 0);
  EXPECT_EQ(run->Wait(std::chrono::seconds(30)), 128 + SIGKILL);
  // The store says `slow` runs its first attempt (the Job exists, so its
  // record was written: the runner records right after the create is
  // queued); resume must continue that attempt, not start a second one. The
  // executor is recorded with the run, so resume needs no --executor.
  EXPECT_EQ(StepPhases()["slow"], "Running/1/-1");
  Outcome resumed = Sluice({"resume", run_id_, "-q", "--kubeconfig", kubeconfig_});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"join", "Succeeded/1/0"},
                                                              {"prepare", "Succeeded/1/0"},
                                                              {"quick", "Succeeded/1/0"},
                                                              {"slow", "Succeeded/1/0"}}));
  // Steps x attempts objects: the live one was adopted, not duplicated,
  // and the finished ones were not run again.
  EXPECT_EQ(Objects(Kind()), (std::map<std::string, std::string>{
                                         {operators::ObjectName(run_id_, "join", 1), "join/1"},
                                         {operators::ObjectName(run_id_, "prepare", 1), "prepare/1"},
                                         {quick_job, "quick/1"},
                                         {slow_job, "slow/1"}}));
}

// A step whose pod stays Running until it is deleted.
constexpr const char* kHeldStep = R"(steps:
  - name: held
    command: [sleep, "3600"]
    kubernetes:
      podAnnotations: {sluice.dev/kwok-hold: "true"}
)";

TEST_P(KubernetesCliTest, CancelStopsTheRunAndDeletesItsObjects) {
  std::string file = WritePipeline(kHeldStep);
  auto run = Start({"run", "-q", "--executor", "kubernetes", "--kubeconfig", kubeconfig_,
                    "--run-id", run_id_, file});
  const std::string job = operators::ObjectName(run_id_, "held", 1);
  ASSERT_TRUE(WaitForObjects(
      Kind(), [&](const std::map<std::string, Json>& objects) { return objects.count(job) == 1; },
      std::chrono::minutes(2)))
      << run->out() << run->err();
  Outcome o = Sluice({"cancel", run_id_});
  EXPECT_EQ(o.exit_code, 0) << o.out << o.err;
  EXPECT_EQ(o.out, "sluice: cancelling run " + run_id_ + ": asked sluice process " +
                       std::to_string(run->pid()) + " to stop (SIGTERM); its finally steps still run\nrun " + run_id_ +
                       " Cancelled\n");
  EXPECT_EQ(run->Wait(std::chrono::seconds(30)), 130) << run->out() << run->err();
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"held", "Cancelled/1/-1"}}));
  EXPECT_TRUE(WaitUntilNone(Kind(), std::chrono::seconds(30)))
      << "the cancelled run's object still exists";
  EXPECT_TRUE(WaitUntilNone(k8s::PodKind(), std::chrono::seconds(60)))
      << "the cancelled run's pod still exists";
}

TEST_P(KubernetesCliTest, CancelOfAKilledRunDeletesItsObjectsItself) {
  std::string file = WritePipeline(kHeldStep);
  auto run = Start({"run", "-q", "--executor", "kubernetes", "--kubeconfig", kubeconfig_,
                    "--run-id", run_id_, file});
  const std::string job = operators::ObjectName(run_id_, "held", 1);
  ASSERT_TRUE(WaitForObjects(
      Kind(), [&](const std::map<std::string, Json>& objects) { return objects.count(job) == 1; },
      std::chrono::minutes(2)))
      << run->out() << run->err();
  // The Job exists before the runner records the step (start first, record
  // after): kill only once the store shows it Running.
  ASSERT_TRUE(test_support::WaitUntil([&] { return StepPhases()["held"].rfind("Running/", 0) == 0; },
                                      std::chrono::seconds(60)))
      << "the store never showed step held Running";
  const int pid = run->pid();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  EXPECT_EQ(run->Wait(std::chrono::seconds(30)), 128 + SIGKILL);
  Outcome o = Sluice({"cancel", run_id_, "--kubeconfig", kubeconfig_});
  EXPECT_EQ(o.exit_code, 0) << o.out << o.err;
  EXPECT_EQ(o.out, "run " + run_id_ +
                       " Cancelled: its sluice process was gone; deleted its 1 Kubernetes object\n");
  EXPECT_TRUE(WaitUntilNone(Kind(), std::chrono::seconds(30)));
  Json status = Status();
  EXPECT_EQ(status["run"]["phase"], "Cancelled");
  EXPECT_EQ(status["run"]["message"], "cancelled by sluice cancel (the sluice process that drove it, pid " +
                                          std::to_string(pid) + ", was gone)");
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"held", "Cancelled/1/-1"}}));
  // A second cancel has nothing left to do.
  o = Sluice({"cancel", run_id_});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_EQ(o.err, "sluice: error: run " + run_id_ + " has already ended (Cancelled); there is nothing to cancel\n");
}

TEST_P(KubernetesCliTest, SecretEnvBecomesASecretKeyRefWithoutAHostCopy) {
  // No SLUICE_SECRET_DB_PASSWORD on the host: the pod reads the Secret.
  std::string file = WritePipeline(R"(steps:
  - name: connect
    command: [sh, -c, "echo connecting"]
    env:
      DB_HOST: db.internal
      DB_PASSWORD: {secret: {name: db, key: password}}
)");
  ASSERT_EQ(std::getenv("SLUICE_SECRET_DB_PASSWORD"), nullptr);
  Outcome o = RunOnCluster(file);
  ASSERT_EQ(o.exit_code, 0) << o.out << o.err;
  auto object = client_->Get(Kind(), "default", operators::ObjectName(run_id_, "connect", 1));
  ASSERT_TRUE(object) << object.error().ToString();
  Json env = Json::object();
  for (const auto& e : PodSpec(*object)["containers"][0]["env"])
    env[e["name"].get<std::string>()] = e.contains("valueFrom") ? e["valueFrom"] : e["value"];
  EXPECT_EQ(env["DB_PASSWORD"], Json::parse(R"({"secretKeyRef": {"name": "db", "key": "password"}})"));
  EXPECT_EQ(env["DB_HOST"], "db.internal");
}

TEST_P(KubernetesCliTest, ArtifactsMoveThroughTheRwxWorkspaceWithDigestsInLineage) {
  // kwok ignores volumes and runs no code, so the test writes the step's
  // output where the pod would, on the shared volume as this host sees it.
  const std::string claim = "ws-" + std::to_string(::getpid());
  auto cleanup = BindRwxClaim(claim, dir_ / "ws");
  ASSERT_TRUE(cleanup);

  std::string file = WritePipeline(R"(steps:
  - name: produce
    command: [sh, -c, "echo 42 > out.txt"]
    outputs:
      artifacts: [{name: result, path: out.txt, type: dataset}]
    kubernetes:
      podAnnotations: {sluice.dev/kwok-duration: "5s"}
  - name: consume
    command: [cat, "{{ inputs.result }}"]
    inputs: {result: "{{ steps.produce.outputs.artifacts.result }}"}
)");
  const fs::path ws = dir_ / "ws";
  const std::string store = (ws / ".sluice").string();
  auto run = std::make_unique<SluiceProcess>(
      std::vector<std::string>{"--store", store, "run", "-q", "--executor", "kubernetes",
                               "--kubeconfig", kubeconfig_, "--run-id", run_id_,
                               "--workspace-pvc", claim, "--workspace-host-dir", ws.string(), file},
      dir_ / "run.out", dir_ / "run.err");
  const std::string produce_job = operators::ObjectName(run_id_, "produce", 1);
  Json produce;
  ASSERT_TRUE(WaitForObjects(
      Kind(),
      [&](const std::map<std::string, Json>& objects) {
        auto it = objects.find(produce_job);
        if (it == objects.end()) return false;
        produce = it->second;
        return true;
      },
      std::chrono::minutes(2)))
      << run->out() << run->err();
  // The pod works in its step directory on the volume, under /sluice.
  const Json& pod = PodSpec(produce);
  const std::string workdir = pod["containers"][0].value("workingDir", "");
  const std::string prefix = "/sluice/.sluice/runs/" + run_id_ + "/steps/produce";
  ASSERT_EQ(workdir.substr(0, prefix.size()), prefix) << produce.dump();
  EXPECT_EQ(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], claim);
  EXPECT_EQ(pod["containers"][0]["volumeMounts"][0]["mountPath"], "/sluice");
  // "The container" writes its output; the host sees it on the volume.
  std::ofstream(ws / workdir.substr(std::string("/sluice/").size()) / "out.txt") << "42\n";
  ASSERT_EQ(run->Wait(std::chrono::minutes(3)), 0) << run->out() << run->err();

  // The output is recorded with its content digest, and the consumer's Job
  // reads that very artifact through the volume.
  auto show = std::make_unique<SluiceProcess>(
      std::vector<std::string>{"--store", store, "show", run_id_, "--format", "json"},
      dir_ / "show.out", dir_ / "show.err");
  ASSERT_EQ(show->Wait(std::chrono::minutes(1)), 0) << show->err();
  Json shown = Json::parse(show->out(), nullptr, false);
  // sha256("42\n")
  const std::string digest = "084c799cd551dd1d8d5c5f9a5d593b2e931f5e36122ee5c793c1d08a19839cc0";
  std::map<std::string, std::string> outputs, inputs;
  for (const auto& step : shown["steps"]) {
    for (const auto& o : step["outputs"]) outputs[step["instance"].get<std::string>() + "." +
                                                  o["name"].get<std::string>()] = o.dump();
    for (const auto& i : step["inputs"]) inputs[step["instance"].get<std::string>() + "." +
                                                i["name"].get<std::string>()] = i.dump();
  }
  ASSERT_EQ(outputs.size(), 1u) << shown.dump(2);
  EXPECT_NE(outputs["produce.result"].find(digest), std::string::npos) << outputs["produce.result"];
  EXPECT_NE(inputs["consume.result"].find(digest), std::string::npos) << shown.dump(2);
  auto consume = client_->Get(Kind(), "default", operators::ObjectName(run_id_, "consume", 1));
  ASSERT_TRUE(consume) << consume.error().ToString();
  const Json& command = PodSpec(*consume)["containers"][0]["command"];
  ASSERT_EQ(command.size(), 2u) << command.dump();
  const std::string input = command[1].get<std::string>();
  EXPECT_EQ(input.substr(0, 16), "/sluice/.sluice/") << input;
  EXPECT_NE(input.find(digest), std::string::npos) << input;
  EXPECT_EQ(ReadText(ws / input.substr(8)), "42\n");
}

TEST_P(KubernetesCliTest, FanOutIsNotLimitedByThisHostsCpus) {
  // Eight steps, each running 5 s: without -j they are all in flight at once,
  // whatever this machine's CPU count (-j defaults to it for local runs).
  std::string file = WritePipeline(R"(steps:
  - name: shard
    foreach: {range: {start: 0, end: 8}}
    command: [sh, -c, "echo {{ item }}"]
    resources: {cpu: 500m, memory: 256Mi}
    kubernetes:
      podAnnotations: {sluice.dev/kwok-duration: "5s"}
)");
  auto run = Start({"run", "-q", "--executor", "kubernetes", "--kubeconfig", kubeconfig_,
                    "--run-id", run_id_, file});
  EXPECT_TRUE(WaitForObjects(
      Kind(),
      [](const std::map<std::string, Json>& objects) {
        size_t active = 0;
        for (const auto& [name, object] : objects) active += !Succeeded(object);
        return active == 8;
      },
      std::chrono::minutes(2)))
      << run->out() << run->err();
  EXPECT_EQ(run->Wait(std::chrono::minutes(3)), 0) << run->out() << run->err();
  EXPECT_EQ(Objects(Kind()).size(), 8u);
}

TEST_P(KubernetesCliTest, WrongKubeconfigGivesTheClearMessage) {
  if (object_ == "job") GTEST_SKIP() << "nothing is created: the object makes no difference";
  std::string file = WritePipeline(R"(steps:
  - name: one
    command: [sh, -c, "echo one"]
)");
  // A kubeconfig that does not exist.
  std::string missing = (dir_ / "no-such-kubeconfig").string();
  Outcome o = Sluice({"run", "-q", "--executor", "kubernetes", "--kubeconfig", missing, "--run-id",
                      run_id_, file});
  EXPECT_EQ(o.exit_code, 3) << o.out << o.err;
  EXPECT_NE(o.err.find("sluice: error: kubernetes executor: "), std::string::npos) << o.err;
  EXPECT_NE(o.err.find(missing), std::string::npos) << o.err;

  // The admin kubeconfig with the server moved to a closed port.
  std::string text = ReadText(kubeconfig_);
  size_t pos = text.find("https://127.0.0.1:");
  ASSERT_NE(pos, std::string::npos);
  size_t end = text.find_first_not_of("0123456789", pos + 18);
  text.replace(pos, end - pos, "https://127.0.0.1:1");
  std::string wrong = (dir_ / "wrong-kubeconfig").string();
  std::ofstream(wrong) << text;
  o = Sluice({"run", "-q", "--executor", "kubernetes", "--kubeconfig", wrong, "--run-id",
              run_id_ + "-b", file});
  EXPECT_EQ(o.exit_code, 1) << o.out << o.err;
  EXPECT_NE(o.out.find("cannot reach https://127.0.0.1:1: connection refused (is the cluster up? "
                       "context \""),
            std::string::npos)
      << o.out << o.err;
}

TEST_P(KubernetesCliTest, MissingRbacPermissionGivesTheClearMessage) {
  std::string file = WritePipeline(R"(steps:
  - name: one
    command: [sh, -c, "echo one"]
)");
  Outcome o = Sluice({"run", "-q", "--executor", "kubernetes", "--kubeconfig",
                      test_support::K8sStateDir() + "/kubeconfig-limited", "--run-id", run_id_, file});
  EXPECT_EQ(o.exit_code, 1) << o.out << o.err;
  const std::string denied =
      object_ == "pod" ? "forbidden: pods is forbidden: User \"sluice-limited\" cannot create resource "
                         "\"pods\" in API group \"\" in the namespace \"default\""
                       : "forbidden: jobs.batch is forbidden: User \"sluice-limited\" cannot create "
                         "resource \"jobs\" in API group \"batch\" in the namespace \"default\"";
  EXPECT_NE(o.out.find(denied), std::string::npos) << o.out << o.err;
  EXPECT_NE(o.out.find("ask a cluster admin for an RBAC Role allowing it"), std::string::npos) << o.out;
  auto phases = StepPhases();
  EXPECT_EQ(phases["one"].substr(0, phases["one"].find('/')), "Error") << phases["one"];
}

// The retrain example's shape on the RWX recipe: a step leaves a model on the
// workspace claim, then a deploy step rolls it out. The deploy program runs on
// this host with a minimal environment, yet finds the cluster through the
// run's $KUBECONFIG (no --kubeconfig), and its model-fetch init container
// mounts the run's --workspace-pvc claim at the store's place on it.
TEST_P(KubernetesCliTest, DeployStepFindsTheClusterAndTheModelOnTheWorkspaceClaim) {
  if (object_ == "job") GTEST_SKIP() << "the deploy step is the same either way; the object of the train step is "
                                        "covered by ArtifactsMoveThroughTheRwxWorkspaceWithDigestsInLineage";
  const std::string claim = "ws-deploy-" + std::to_string(::getpid());
  auto cleanup = BindRwxClaim(claim, dir_ / "ws");
  ASSERT_TRUE(cleanup);
  const std::string service = "m-" + run_id_;
  std::string file = WritePipeline(R"(steps:
  - name: train
    command: [sh, -c, "echo weights > model.pkl"]
    outputs:
      artifacts: [{name: model, path: model.pkl, type: model}]
    kubernetes:
      podAnnotations: {sluice.dev/kwok-duration: "5s"}
  - name: deploy
    type: deploy
    inputs: {model: "{{ steps.train.outputs.artifacts.model }}"}
    deploy:
      service: )" + service + R"(
      model: "{{ inputs.model }}"
      mode: replace
      serve:
        command: [python3, /app/serve.py, --model, "${model}", --port, "${port}"]
        image: python:3.11-slim
      readiness: {path: /healthz, timeout: 90s}
      kubernetes: {replicas: 1}
)");
  const fs::path ws = dir_ / "ws";
  const std::string store = (ws / ".sluice").string();
  auto run = std::make_unique<SluiceProcess>(
      std::vector<std::string>{"--store", store, "run", "-q", "--executor", "kubernetes", "--run-id", run_id_,
                               "--workspace-pvc", claim, "--workspace-host-dir", ws.string(), file},
      dir_ / "run.out", dir_ / "run.err", std::map<std::string, std::string>{{"KUBECONFIG", kubeconfig_}});
  const std::string train_job = operators::ObjectName(run_id_, "train", 1);
  Json train;
  ASSERT_TRUE(WaitForObjects(
      Kind(),
      [&](const std::map<std::string, Json>& objects) {
        auto it = objects.find(train_job);
        if (it == objects.end()) return false;
        train = it->second;
        return true;
      },
      std::chrono::minutes(2)))
      << run->out() << run->err();
  const std::string workdir = PodSpec(train)["containers"][0].value("workingDir", "");
  std::ofstream(ws / workdir.substr(std::string("/sluice/").size()) / "model.pkl") << "weights\n";
  const k8s::ResourceKind deployments{"apps/v1", "Deployment", "deployments", true};
  const k8s::ResourceKind services{"v1", "Service", "services", true};
  struct DeleteService {
    k8s::Client* c;
    std::string name;
    k8s::ResourceKind deployments, services;
    ~DeleteService() {
      (void)c->Delete(deployments, "default", name + "-stable", k8s::Propagation::kBackground);
      (void)c->Delete(services, "default", name, k8s::Propagation::kBackground);
    }
  } delete_service{client_.get(), service, deployments, services};
  ASSERT_EQ(run->Wait(std::chrono::minutes(3)), 0) << run->out() << run->err();

  auto deployment = client_->Get(deployments, "default", service + "-stable");
  ASSERT_TRUE(deployment) << deployment.error().ToString();
  const Json& pod = (*deployment)["spec"]["template"]["spec"];
  EXPECT_EQ(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], claim) << pod.dump();
  // The model's digest, at the store's place on the claim.
  const std::string fetch = pod["initContainers"][0]["command"][2].get<std::string>();
  const std::string digest = Sha256Hex("weights\n");
  EXPECT_NE(fetch.find("cp -R /artifacts/.sluice/cas/sha256/" + digest.substr(0, 2) + "/" + digest + " "),
            std::string::npos)
      << fetch;
}


// --- type: resource ---------------------------------------------------------

TEST_P(KubernetesCliTest, ResourceStepSucceedsWhenItsSuccessConditionHolds) {
  if (object_ == "job") GTEST_SKIP() << "kubernetes.object is a container step's; a resource step is its manifest";
  EnsureXgbCrd();
  std::string file = WriteXgbPipeline();
  auto run = StartRun(file);
  const std::string name = operators::ObjectName(run_id_, "xgb", 1, 48);
  Json object = WaitForObject(XgbKind(), name);
  // The manifest, its templates rendered (a lone {{ }} keeps its type), with
  // sluice's identity merged into its own labels.
  EXPECT_EQ(object["spec"]["xgbReplicaSpecs"]["Worker"]["replicas"], 2) << object.dump();
  EXPECT_EQ(object["metadata"]["labels"]["team"], "a");
  EXPECT_EQ(object["metadata"]["labels"]["sluice.dev/step"], "xgb");
  EXPECT_EQ(object["metadata"]["annotations"]["sluice.dev/success-condition"],
            "status.replicaStatuses.Master.succeeded > 0");
  PatchStatus(XgbKind(), name, {{"replicaStatuses", {{"Master", {{"active", 1}}}}}});
  PatchStatus(XgbKind(), name, {{"replicaStatuses", {{"Master", {{"active", 0}, {"succeeded", 1}}}}}});
  EXPECT_EQ(run->Wait(std::chrono::minutes(2)), 0) << run->out() << run->err();
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"xgb", "Succeeded/1/0"}}));
  EXPECT_EQ(StepMessages()["xgb"],
            "XGBoostJob succeeded: successCondition 'status.replicaStatuses.Master.succeeded > 0' holds");
  EXPECT_EQ(Objects(XgbKind()), (std::map<std::string, std::string>{{name, "xgb/1"}}));
}

TEST_P(KubernetesCliTest, ResourceStepFailsWhenItsFailureConditionHolds) {
  if (object_ == "job") GTEST_SKIP() << "kubernetes.object is a container step's; a resource step is its manifest";
  EnsureXgbCrd();
  std::string file = WriteXgbPipeline();
  auto run = StartRun(file);
  const std::string name = operators::ObjectName(run_id_, "xgb", 1, 48);
  WaitForObject(XgbKind(), name);
  PatchStatus(XgbKind(), name, {{"replicaStatuses", {{"Master", {{"failed", 1}}}}}});
  EXPECT_EQ(run->Wait(std::chrono::minutes(2)), 1) << run->out() << run->err();
  // The object said so: a user failure, not a system error.
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"xgb", "Failed/1/-1"}}));
  EXPECT_EQ(StepMessages()["xgb"],
            "XGBoostJob failed: failureCondition 'status.replicaStatuses.Master.failed > 0' holds");
}

TEST_P(KubernetesCliTest, KillDashNineThenResumeAdoptsTheResource) {
  if (object_ == "job") GTEST_SKIP() << "kubernetes.object is a container step's; a resource step is its manifest";
  EnsureXgbCrd();
  std::string file = WriteXgbPipeline();
  auto run = StartRun(file);
  const std::string name = operators::ObjectName(run_id_, "xgb", 1, 48);
  WaitForObject(XgbKind(), name);
  // The object exists before the runner records the step: kill only once
  // the store shows it Running.
  ASSERT_TRUE(test_support::WaitUntil([&] { return StepPhases()["xgb"].rfind("Running/", 0) == 0; },
                                      std::chrono::seconds(60)))
      << "the store never showed step xgb Running";
  ASSERT_EQ(::kill(run->pid(), SIGKILL), 0);
  EXPECT_EQ(run->Wait(std::chrono::seconds(30)), 128 + SIGKILL);
  EXPECT_EQ(StepPhases()["xgb"], "Running/1/-1");
  // The object finishes while no sluice watches it; resume adopts it and
  // reads its result from the object alone.
  PatchStatus(XgbKind(), name, {{"replicaStatuses", {{"Master", {{"succeeded", 1}}}}}});
  Outcome resumed = Sluice({"resume", run_id_, "-q", "--kubeconfig", kubeconfig_});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"xgb", "Succeeded/1/0"}}));
  EXPECT_EQ(Objects(XgbKind()), (std::map<std::string, std::string>{{name, "xgb/1"}}));
}

TEST_P(KubernetesCliTest, CancelOfAKilledRunDeletesItsResource) {
  if (object_ == "job") GTEST_SKIP() << "kubernetes.object is a container step's; a resource step is its manifest";
  EnsureXgbCrd();
  std::string file = WriteXgbPipeline();
  auto run = StartRun(file);
  const std::string name = operators::ObjectName(run_id_, "xgb", 1, 48);
  WaitForObject(XgbKind(), name);
  // The object exists before the runner records the step: kill only once
  // the store shows it Running.
  ASSERT_TRUE(test_support::WaitUntil([&] { return StepPhases()["xgb"].rfind("Running/", 0) == 0; },
                                      std::chrono::seconds(60)))
      << "the store never showed step xgb Running";
  ASSERT_EQ(::kill(run->pid(), SIGKILL), 0);
  EXPECT_EQ(run->Wait(std::chrono::seconds(30)), 128 + SIGKILL);
  // No sluice process is left to ask: `cancel` deletes the run's objects of
  // the kinds its steps name, XGBoostJob among them.
  Outcome o = Sluice({"cancel", run_id_, "--kubeconfig", kubeconfig_});
  EXPECT_EQ(o.exit_code, 0) << o.out << o.err;
  EXPECT_EQ(o.out, "run " + run_id_ +
                       " Cancelled: its sluice process was gone; deleted its 1 Kubernetes object\n");
  EXPECT_TRUE(WaitUntilNone(XgbKind(), std::chrono::seconds(30))) << "the killed run's XGBoostJob still exists";
}

TEST_P(KubernetesCliTest, ResourceTimeoutDeletesTheObject) {
  if (object_ == "job") GTEST_SKIP() << "kubernetes.object is a container step's; a resource step is its manifest";
  EnsureXgbCrd();
  std::string file = WriteXgbPipeline("    timeout: 2s\n");
  Outcome o = RunOnCluster(file);
  EXPECT_EQ(o.exit_code, 1) << o.out << o.err;
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"xgb", "Error/1/-1"}}));
  EXPECT_TRUE(WaitUntilNone(XgbKind(), std::chrono::seconds(30))) << "the timed-out XGBoostJob still exists";
}

// --- why a pod failed -------------------------------------------------------

TEST_P(KubernetesCliTest, PendingTimeoutFailsAnUnschedulablePodWithItsReason) {
  std::string file = WritePipeline(R"(steps:
  - name: nowhere
    command: [sh, -c, "echo never"]
    pendingTimeout: 2s
    resources:
      nodeSelector: {sluice.dev/pool: nowhere}
)");
  Outcome o = RunOnCluster(file);
  EXPECT_EQ(o.exit_code, 1) << o.out << o.err;
  // A system error, with the scheduler's reason, long before any timeout.
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"nowhere", "Error/1/-1"}}));
  const std::string message = StepMessages()["nowhere"];
  EXPECT_EQ(message.rfind("pod default/", 0), 0u) << message;
  EXPECT_NE(message.find(" was still Pending after 2s (pendingTimeout): Unschedulable: 0/"), std::string::npos)
      << message;
  EXPECT_NE(message.find("node(s) didn't match Pod's node affinity/selector"), std::string::npos) << message;
  EXPECT_TRUE(WaitUntilNone(Kind(), std::chrono::seconds(30))) << "the pending step's object still exists";
}

TEST_P(KubernetesCliTest, ImagePullBackOffIsAnErrorAfterThePendingTimeout) {
  if (object_ == "job") GTEST_SKIP() << "the pod's own status is what matters; one object is enough";
  OnNode r = RunOnUnmanagedNode("pull", "    pendingTimeout: 10s\n");
  auto& run = r.run;
  const std::string& pod = r.pod;
  // What a kubelet reports for an image it cannot pull.
  PatchStatus(k8s::PodKind(), pod,
              {{"phase", "Pending"},
               {"containerStatuses",
                {{{"name", "main"},
                  {"image", "busybox:1.36"},
                  {"imageID", ""},
                  {"ready", false},
                  {"restartCount", 0},
                  {"state", {{"waiting", {{"reason", "ImagePullBackOff"},
                                          {"message", "Back-off pulling image \"busybox:1.36\""}}}}}}}}});
  EXPECT_EQ(run->Wait(std::chrono::minutes(2)), 1) << run->out() << run->err();
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"pull", "Error/1/-1"}}));
  EXPECT_EQ(StepMessages()["pull"], "pod default/" + pod +
                                        " was still Pending after 10s (pendingTimeout): container main: "
                                        "ImagePullBackOff: Back-off pulling image \"busybox:1.36\"");
}

TEST_P(KubernetesCliTest, KubeletEvictionIsAnError) {
  OnNode r = RunOnUnmanagedNode("evicted");
  auto& run = r.run;
  const std::string& pod = r.pod;
  // What a kubelet under memory pressure writes for the pod it evicts.
  PatchStatus(k8s::PodKind(), pod,
              {{"phase", "Failed"}, {"reason", "Evicted"}, {"message", "The node was low on resource: memory."}});
  EXPECT_EQ(run->Wait(std::chrono::minutes(2)), 1) << run->out() << run->err();
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"evicted", "Error/1/-1"}}));
  const std::string message = StepMessages()["evicted"];
  if (object_ == "pod") {
    EXPECT_EQ(message, "Pod failed: Evicted: The node was low on resource: memory.");
  } else {
    // The Job fails as it would for a failed container; its pod tells.
    EXPECT_EQ(message.rfind("Job failed: ", 0), 0u) << message;
    EXPECT_NE(message.find("; pod " + pod + " was ended by the cluster: Evicted: The node was low on resource: memory."),
              std::string::npos)
        << message;
  }
}

TEST_P(KubernetesCliTest, EvictionThroughTheApiIsAnErrorRetriedUnderRetryOnError) {
  if (object_ == "job") GTEST_SKIP() << "a Job's evicted pod is counted by the Job controller first; bare pods here";
  std::string file = WritePipeline(R"(steps:
  - name: drained
    command: [sh, -c, "sleep 8"]
    retries: {limit: 1, backoff: 100ms, retryOn: Error}
    kubernetes:
      podAnnotations: {sluice.dev/kwok-duration: "8s"}
)");
  auto run = StartRun(file);
  const std::string pod = operators::ObjectName(run_id_, "drained", 1);
  WaitForObject(k8s::PodKind(), pod, [](const Json& p) { return p["status"].value("phase", "") == "Running"; });
  // `kubectl drain` evicts through this API.
  auto evicted = client_->Do("POST", "/api/v1/namespaces/default/pods/" + pod + "/eviction",
                             Json{{"apiVersion", "policy/v1"}, {"kind", "Eviction"},
                                  {"metadata", {{"name", pod}, {"namespace", "default"}}}}
                                 .dump(),
                             "application/json", "evict " + pod);
  ASSERT_TRUE(evicted) << evicted.error().ToString();
  EXPECT_EQ(run->Wait(std::chrono::minutes(2)), 0) << run->out() << run->err();
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"drained", "Succeeded/2/0"}}));
  Outcome show = Sluice({"show", run_id_, "--format", "json"});
  Json shown = Json::parse(show.out, nullptr, false);
  ASSERT_EQ(shown["executions"].size(), 2u) << show.out;
  EXPECT_EQ(shown["executions"][0]["outcome"], "Error") << show.out;
  EXPECT_EQ(shown["executions"][0]["message"], "Pod default/" + pod +
                                                   " was deleted by the cluster before it finished: "
                                                   "EvictionByEvictionAPI: Eviction API: evicting")
      << show.out;
}

TEST_P(KubernetesCliTest, PreemptionIsAnError) {
  if (object_ == "job") GTEST_SKIP() << "a Job's preempted pod is replaced by the Job controller; bare pods here";
  static const k8s::ResourceKind priority_kind{"scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", false};
  auto pc = client_->Create(priority_kind, "",
                            {{"apiVersion", "scheduling.k8s.io/v1"}, {"kind", "PriorityClass"},
                             {"metadata", {{"name", "sluice-test-preemptor"}}}, {"value", 1000000}});
  ASSERT_TRUE(pc || pc.error().code() == StatusCode::kAlreadyExists) << pc.error().ToString();
  // The victim takes most of kwok-cpu-1's 8 CPUs and stays Running.
  std::string file = WritePipeline(R"(steps:
  - name: victim
    command: [sleep, "3600"]
    resources: {cpu: "7", nodeSelector: {kubernetes.io/hostname: kwok-cpu-1}}
    kubernetes:
      podAnnotations: {sluice.dev/kwok-hold: "true"}
)");
  auto run = StartRun(file);
  const std::string pod = operators::ObjectName(run_id_, "victim", 1);
  WaitForObject(k8s::PodKind(), pod, [](const Json& p) { return p["status"].value("phase", "") == "Running"; });
  // A pod of higher priority that fits only where the victim runs.
  const std::string preemptor = "preemptor-" + std::to_string(::getpid());
  auto created = client_->Create(
      k8s::PodKind(), "default",
      {{"apiVersion", "v1"}, {"kind", "Pod"},
       {"metadata", {{"name", preemptor}, {"annotations", {{"sluice.dev/kwok-hold", "true"}}}}},
       {"spec",
        {{"priorityClassName", "sluice-test-preemptor"},
         {"nodeSelector", {{"kubernetes.io/hostname", "kwok-cpu-1"}}},
         {"containers", {{{"name", "main"}, {"image", "busybox:1.36"},
                          {"resources", {{"requests", {{"cpu", "7"}}}}}}}}}}});
  ASSERT_TRUE(created) << created.error().ToString();
  EXPECT_EQ(run->Wait(std::chrono::minutes(2)), 1) << run->out() << run->err();
  (void)client_->Delete(k8s::PodKind(), "default", preemptor, k8s::Propagation::kBackground, 0);
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"victim", "Error/1/-1"}}));
  const std::string message = StepMessages()["victim"];
  EXPECT_EQ(message.rfind("Pod default/" + pod + " was deleted by the cluster before it finished: "
                          "PreemptionByScheduler: ", 0), 0u)
      << message;
}

TEST_P(KubernetesCliTest, NodeLossIsAnError) {
  if (object_ == "job") GTEST_SKIP() << "the pod's own status is what matters; one object is enough";
  OnNode r = RunOnUnmanagedNode("stranded");
  auto& run = r.run;
  // The node goes away; the pod garbage collector ends its pods (after its
  // 40 s quarantine).
  ASSERT_TRUE(client_->Delete(NodeKind(), "", r.node->name, k8s::Propagation::kBackground).ok());
  EXPECT_EQ(run->Wait(std::chrono::minutes(3)), 1) << run->out() << run->err();
  EXPECT_EQ(StepPhases(), (std::map<std::string, std::string>{{"stranded", "Error/1/-1"}}));
  const std::string message = StepMessages()["stranded"];
  EXPECT_NE(message.find("DeletionByPodGC: "), std::string::npos) << message;
}

}  // namespace
}  // namespace sluice
