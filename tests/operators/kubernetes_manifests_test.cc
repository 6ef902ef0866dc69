// Golden-file tests of the Kubernetes manifests built from resolved tasks,
// and of status interpretation. Set SLUICE_UPDATE_GOLDEN=1 to rewrite the
// expected files (then review the diff).

#include "operators/kubernetes/manifests.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace sluice::operators {
namespace {

std::string Golden(const std::string& name) {
  return std::string(SLUICE_OPERATORS_TESTDATA) + "/" + name;
}

void ExpectGolden(const Json& actual, const std::string& name) {
  std::string text = actual.dump(2) + "\n";
  if (std::getenv("SLUICE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(Golden(name)) << text;
  }
  std::ifstream in(Golden(name));
  ASSERT_TRUE(in) << "missing golden file " << Golden(name);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), text) << "manifest differs from " << Golden(name);
}

Task BasicTask() {
  Task t;
  t.id = 7;
  t.run_id = "r20261125-1530-ab12";
  t.pipeline = "retrain";
  t.step = "prepare";
  t.instance = "prepare";
  t.attempt = 1;
  t.argv = {"python3", "/ws/steps/prepare.py", "--out", "data"};
  t.env = {{"SEED", "42"}};
  t.workdir = "/ws/runs/r20261125-1530-ab12/prepare";
  t.image = "python:3.11-slim";
  t.resources.cpu_millis = 500;
  t.resources.memory_bytes = 512ll * 1024 * 1024;
  t.timeout = Duration(10 * 60 * 1000);
  return t;
}

TEST(KubernetesManifestsTest, ContainerStepBecomesJob) {
  ManifestOptions o;
  o.namespace_ = "ml";
  o.object = "job";
  auto m = BuildManifest(BasicTask(), o);
  ASSERT_TRUE(m) << m.error().ToString();
  ExpectGolden(*m, "job_basic.json");
}

TEST(KubernetesManifestsTest, ContainerStepBecomesABarePodByDefault) {
  ManifestOptions o;
  o.namespace_ = "ml";
  auto m = BuildManifest(BasicTask(), o);
  ASSERT_TRUE(m) << m.error().ToString();
  ExpectGolden(*m, "pod_basic.json");
  // The Job's pod template, as the Job controller would have made the pod.
  o.object = "job";
  auto job = BuildManifest(BasicTask(), o);
  ASSERT_TRUE(job) << job.error().ToString();
  EXPECT_EQ((*m)["spec"]["containers"], (*job)["spec"]["template"]["spec"]["containers"]);
}

// The step's kubernetes.object wins over ManifestOptions::object.
TEST(KubernetesManifestsTest, StepChoosesItsObject) {
  Task t = BasicTask();
  t.config = Json::parse(R"({"kubernetes": {"object": "job"}})");
  auto m = BuildManifest(t, {});
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ((*m)["kind"], "Job");
  t.config = Json::parse(R"({"kubernetes": {"object": "pod"}})");
  ManifestOptions o;
  o.object = "job";
  m = BuildManifest(t, o);
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ((*m)["kind"], "Pod");
  t.config = Json::parse(R"({"kubernetes": {"object": "deployment"}})");
  EXPECT_EQ(BuildManifest(t, {}).error().message(),
            "step \"prepare\": kubernetes.object must be pod or job");
}

// The task of JobWithEverything.
Task FullTask() {
  Task t = BasicTask();
  t.step = "train";
  t.instance = "train[2]";
  t.attempt = 3;
  t.resources.gpu = 2;
  t.resources.node_selector = {{"sluice.dev/accelerator", "nvidia-gpu"}};
  t.resources.tolerations = {Json::parse(R"({"key": "dedicated", "operator": "Equal",
                                             "value": "ml", "effect": "NoSchedule"})")};
  t.env["DB_PASSWORD"] = "hunter2";
  t.secret_env = {"DB_PASSWORD"};
  t.secret_refs["DB_PASSWORD"] = SecretRef{"db", "password"};
  t.timeout = Duration(1500);
  t.config = Json::parse(R"({"kubernetes": {
      "serviceAccountName": "trainer", "priorityClassName": "high", "priority": 10,
      "imagePullSecrets": ["regcred"], "queue": "team-a", "ttlSecondsAfterFinished": 600,
      "podAnnotations": {"sluice.dev/kwok-fail": "true"}}})");
  return t;
}

ManifestOptions FullOptions() {
  ManifestOptions o;
  o.namespace_ = "ml";
  o.workspace_pvc = "sluice-artifacts";
  o.workspace_mount_path = "/sluice";
  o.host_workspace_root = "/ws";
  return o;
}

// The bare pod carries what the Job would have: the queue and priority-class
// labels (Kueue's pod integration), the deadline on the pod spec, the TTL as
// an annotation.
TEST(KubernetesManifestsTest, BarePodWithEverything) {
  auto m = BuildManifest(FullTask(), FullOptions());
  ASSERT_TRUE(m) << m.error().ToString();
  ExpectGolden(*m, "pod_full.json");
  EXPECT_EQ(m->dump().find("hunter2"), std::string::npos) << "a secret value was inlined";
}

// A step's priority is a Kueue WorkloadPriorityClass only on a queued
// object, and only above 0 (Kueue's default priority).
TEST(KubernetesManifestsTest, PriorityClassLabelOnlyForAQueuedStep) {
  Task t = BasicTask();
  t.config = Json::parse(R"({"kubernetes": {"priority": 5}})");
  auto unqueued = BuildManifest(t, ManifestOptions{});
  ASSERT_TRUE(unqueued) << unqueued.error().ToString();
  EXPECT_FALSE((*unqueued)["metadata"]["labels"].contains("kueue.x-k8s.io/priority-class"));
  t.config = Json::parse(R"({"kubernetes": {"queue": "team-a", "priority": 5}})");
  auto queued = BuildManifest(t, ManifestOptions{});
  ASSERT_TRUE(queued) << queued.error().ToString();
  EXPECT_EQ((*queued)["metadata"]["labels"]["kueue.x-k8s.io/queue-name"], "team-a");
  EXPECT_EQ((*queued)["metadata"]["labels"]["kueue.x-k8s.io/priority-class"], "sluice-priority-5");
  t.config = Json::parse(R"({"kubernetes": {"queue": "team-a"}})");
  auto zero = BuildManifest(t, ManifestOptions{});
  ASSERT_TRUE(zero) << zero.error().ToString();
  EXPECT_FALSE((*zero)["metadata"]["labels"].contains("kueue.x-k8s.io/priority-class"));
}

TEST(KubernetesManifestsTest, JobWithEverything) {
  ManifestOptions o = FullOptions();
  o.object = "job";
  auto m = BuildManifest(FullTask(), o);
  ASSERT_TRUE(m) << m.error().ToString();
  ExpectGolden(*m, "job_full.json");
  EXPECT_EQ(m->dump().find("hunter2"), std::string::npos) << "a secret value was inlined";
}

TEST(KubernetesManifestsTest, ObjectStorageRunsTheStepThroughTheLauncher) {
  // Host paths: the store root /ws/.sluice, the step's workdir inside it,
  // the pipeline's directory /ws (its code).
  Task t = BasicTask();
  t.argv = {"python3", "/ws/steps/train.py", "--data", "/ws/.sluice/cas/sha256/ab/ab12", "--out", "model"};
  t.env["SLUICE_INPUT_DATA"] = "/ws/.sluice/cas/sha256/ab/ab12";
  t.workdir = "/ws/.sluice/runs/r20261125-1530-ab12/steps/prepare";
  t.files.inputs = {{"data", "sha256:ab12", "/ws/.sluice/cas/sha256/ab/ab12", ArtifactType::kDataset}};
  t.files.outputs = {{"model", "", "model", ArtifactType::kModel}};
  t.files.params = {{"rows", "model/rows.txt"}};
  t.files.metrics_file = "metrics.json";
  t.files.code_digest = "sha256:c0de";
  t.files.code_dir = "/ws";
  t.files.store_root = "/ws/.sluice";
  t.files.result_key = "results/r20261125-1530-ab12/prepare/attempt-1.json";
  ManifestOptions o;
  o.namespace_ = "ml";
  o.object_storage.url = "s3://ml-artifacts/team-a";
  o.object_storage.endpoint = "https://s3.eu-west-1.amazonaws.com";
  o.object_storage.region = "eu-west-1";
  o.object_storage.launcher_image = "registry.example/sluice:1.0";
  o.object = "job";
  auto m = BuildManifest(t, o);
  ASSERT_TRUE(m) << m.error().ToString();
  ExpectGolden(*m, "job_object_storage.json");
  // Without object storage the same task's Job is the plain one.
  o.object_storage.url.clear();
  auto plain = BuildManifest(t, o);
  ASSERT_TRUE(plain) << plain.error().ToString();
  EXPECT_FALSE((*plain)["spec"]["template"]["spec"].contains("initContainers"));
}

TEST(KubernetesManifestsTest, TfJobUsesTheLocalExecutorsConfigShape) {
  Task t = BasicTask();
  t.step = "train-tf";
  t.instance = "train-tf";
  t.operator_type = "tfjob";
  t.argv = {"python3", "train.py"};
  t.config = Json::parse(R"({"tfjob": {
      "replicas": {"chief": {"replicas": 1},
                   "Worker": {"replicas": 2, "env": {"ROLE": "worker"}},
                   "PS": {"replicas": 1, "command": ["python3", "ps.py"],
                          "resources": {"cpu": "250m", "memory": "256Mi"}}},
      "successPolicy": "AllWorkers",
      "runPolicy": {"cleanPodPolicy": "Running"}}})");
  ManifestOptions o;
  auto m = BuildManifest(t, o);
  ASSERT_TRUE(m) << m.error().ToString();
  ExpectGolden(*m, "tfjob.json");
}

TEST(KubernetesManifestsTest, PyTorchJobWithElasticPolicy) {
  Task t = BasicTask();
  t.step = "train-pt";
  t.instance = "train-pt";
  t.operator_type = "pytorchjob";
  t.argv = {"torchrun", "train.py"};
  t.resources.gpu = 1;
  t.config = Json::parse(R"({
      "replicas": {"Master": {"replicas": 1}, "Worker": {"replicas": 3}},
      "nprocPerNode": 4,
      "elasticPolicy": {"minReplicas": 2, "maxReplicas": 4, "rdzvBackend": "c10d"}})");
  ManifestOptions o;
  auto m = BuildManifest(t, o);
  ASSERT_TRUE(m) << m.error().ToString();
  ExpectGolden(*m, "pytorchjob.json");
}

TEST(KubernetesManifestsTest, ObjectNamesAreDeterministicDnsNames) {
  EXPECT_EQ(ObjectName("r1", "prepare", 1), "r1-prepare-a1");
  EXPECT_EQ(ObjectName("r1", "prepare", 1), ObjectName("r1", "prepare", 1));
  // Lossy conversions get a hash, so train[2] and train-2 never collide.
  EXPECT_EQ(ObjectName("r1", "train[2]", 1), "r1-train-2-7cb22940-a1");
  EXPECT_NE(ObjectName("r1", "train[2]", 1), ObjectName("r1", "train-2", 1));
  // A name must start with a letter (DNS-1035, for training-operator services).
  EXPECT_EQ(ObjectName("20261125", "prep", 2), "s20261125-prep-a2");
  std::string long_name = ObjectName(std::string(80, 'r'), "evaluate", 12);
  EXPECT_EQ(long_name.size(), 63u);
  EXPECT_EQ(long_name.substr(long_name.size() - 4), "-a12");
  EXPECT_EQ(ObjectName(std::string(80, 'r'), "evaluate", 1, 48).size(), 48u);
}

TEST(KubernetesManifestsTest, LabelValues) {
  EXPECT_EQ(LabelValue("retrain"), "retrain");
  EXPECT_EQ(LabelValue("train[2]"), "train-2-6fab2bef");
  EXPECT_LE(LabelValue(std::string(100, 'x')).size(), 63u);
  EXPECT_EQ(RunSelector("r1"), "sluice.dev/run=r1");
}

TEST(KubernetesManifestsTest, ClearErrors) {
  Task t = BasicTask();
  t.image = "";
  EXPECT_EQ(BuildManifest(t, {}).error().message(),
            "step \"prepare\" has no image: a Kubernetes step runs in a container; set `image:` "
            "on the step or under `defaults:`");

  t = BasicTask();
  t.env["TOKEN"] = "s3cr3t";
  t.secret_env = {"TOKEN"};
  EXPECT_EQ(BuildManifest(t, {}).error().message(),
            "step \"prepare\": env TOKEN is a secret but has no Kubernetes Secret reference; "
            "write it as {secret: {name: <secret>, key: <key>}} so its value is never put in a "
            "manifest");

  t = BasicTask();
  t.operator_type = "tfjob";
  t.config = Json::parse(R"({"tfjob": {"replicas": {"Launcher": {"replicas": 1}}}})");
  EXPECT_EQ(BuildManifest(t, {}).error().message(),
            "step \"prepare\": tfjob: replica type \"Launcher\" is not one of Chief, Master, "
            "Worker, PS, Evaluator");

  t = BasicTask();
  t.operator_type = "deploy";
  EXPECT_EQ(BuildManifest(t, {}).error().message(),
            "step \"prepare\": step type \"deploy\" cannot run on Kubernetes (known: container, "
            "tfjob, pytorchjob, trainjob, resource)");

  t = BasicTask();
  t.config = Json::parse(R"({"kubernetes": {"serviceAcount": "x"}})");
  EXPECT_EQ(BuildManifest(t, {}).error().message(),
            "step \"prepare\": kubernetes.serviceAcount is not a known setting (known: "
            "namespace, serviceAccountName, priorityClassName, imagePullSecrets, queue, "
            "ttlSecondsAfterFinished, podLabels, podAnnotations, object, logs)");
}

TEST(KubernetesManifestsTest, JobStatus) {
  auto job = [](const char* conditions) {
    return Json::parse(std::string(R"({"kind": "Job", "status": {"conditions": )") + conditions +
                       "}}");
  };
  WorkloadState running = InterpretStatus("container", job("[]"));
  EXPECT_FALSE(running.finished);

  WorkloadState ok = InterpretStatus(
      "container", job(R"([{"type": "SuccessCriteriaMet", "status": "True"},
                          {"type": "Complete", "status": "True"}])"));
  EXPECT_TRUE(ok.finished);
  EXPECT_EQ(ok.outcome, TaskOutcome::kSucceeded);

  // FailureTarget comes first; the Job is finished only once Failed is set.
  WorkloadState target = InterpretStatus(
      "container", job(R"([{"type": "FailureTarget", "status": "True",
                           "reason": "BackoffLimitExceeded"}])"));
  EXPECT_FALSE(target.finished);

  WorkloadState failed = InterpretStatus(
      "container", job(R"([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                           "message": "Job has reached the specified backoff limit"}])"));
  EXPECT_TRUE(failed.finished);
  EXPECT_EQ(failed.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(failed.message,
            "Job failed: BackoffLimitExceeded: Job has reached the specified backoff limit");

  WorkloadState timed_out = InterpretStatus(
      "container", job(R"([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                           "message": "Job was active longer than specified deadline"}])"));
  EXPECT_EQ(timed_out.outcome, TaskOutcome::kTimedOut);
}

TEST(KubernetesManifestsTest, BarePodStatus) {
  auto pod = [](const char* status) {
    return Json::parse(std::string(R"({"kind": "Pod", "status": )") + status + "}");
  };
  EXPECT_FALSE(InterpretStatus("container", pod(R"({"phase": "Running"})")).finished);

  WorkloadState ok = InterpretStatus("container", pod(R"({"phase": "Succeeded"})"));
  EXPECT_TRUE(ok.finished);
  EXPECT_EQ(ok.outcome, TaskOutcome::kSucceeded);

  // A container's failure: the pod has no reason of its own.
  WorkloadState failed = InterpretStatus("container", pod(R"({"phase": "Failed",
      "containerStatuses": [{"name": "main", "state": {"terminated":
          {"exitCode": 3, "reason": "Error", "message": "boom"}}}]})"));
  EXPECT_TRUE(failed.finished);
  EXPECT_EQ(failed.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(failed.message, "Pod failed: Error: boom");

  // What the kubelet writes when activeDeadlineSeconds passes.
  WorkloadState timed_out = InterpretStatus("container", pod(R"({"phase": "Failed",
      "reason": "DeadlineExceeded",
      "message": "Pod was active on the node longer than the specified deadline"})"));
  EXPECT_EQ(timed_out.outcome, TaskOutcome::kTimedOut);
  EXPECT_EQ(timed_out.message,
            "Pod failed: DeadlineExceeded: Pod was active on the node longer than the specified "
            "deadline");

  // The cluster ended it: a system failure, not the step's.
  WorkloadState evicted = InterpretStatus("container", pod(R"({"phase": "Failed", "reason": "Evicted",
      "message": "The node was low on resource: memory."})"));
  EXPECT_EQ(evicted.outcome, TaskOutcome::kError);
  EXPECT_EQ(evicted.message, "Pod failed: Evicted: The node was low on resource: memory.");

  // The pod garbage collector's mark on a pod whose node is gone: no reason
  // of the pod's own, a DisruptionTarget condition.
  WorkloadState lost = InterpretStatus("container", pod(R"({"phase": "Failed", "conditions": [
      {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
       "message": "PodGC: node no longer exists"}]})"));
  EXPECT_EQ(lost.outcome, TaskOutcome::kError);
  EXPECT_EQ(lost.message, "Pod failed: DeletionByPodGC: PodGC: node no longer exists");
  EXPECT_EQ(k8s::ClusterEnded(pod(R"({"phase": "Failed", "reason": "DeadlineExceeded"})")), "");
}

TEST(KubernetesManifestsTest, TrainingJobStatus) {
  Json tf = Json::parse(R"({"kind": "TFJob", "status": {"conditions": [
      {"type": "Created", "status": "True"},
      {"type": "Running", "status": "False"},
      {"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded",
       "message": "TFJob default/x successfully completed."}]}})");
  WorkloadState ok = InterpretStatus("tfjob", tf);
  EXPECT_TRUE(ok.finished);
  EXPECT_EQ(ok.outcome, TaskOutcome::kSucceeded);

  Json pt = Json::parse(R"({"kind": "PyTorchJob", "status": {"conditions": [
      {"type": "Failed", "status": "True", "reason": "PyTorchJobFailed",
       "message": "PyTorchJob default/x is failed because 1 Worker replica(s) failed."}]}})");
  WorkloadState failed = InterpretStatus("pytorchjob", pt);
  EXPECT_EQ(failed.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(failed.message,
            "PyTorchJob failed: PyTorchJobFailed: PyTorchJob default/x is failed because 1 "
            "Worker replica(s) failed.");
}

TEST(KubernetesManifestsTest, ExitCodeFromPods) {
  std::vector<Json> pods = {Json::parse(R"({"metadata": {"name": "j-abcde"}, "status": {
      "containerStatuses": [{"name": "main", "state": {"terminated":
          {"exitCode": 3, "reason": "Error"}}}]}})")};
  PodExit e = ExitFromPods(pods);
  EXPECT_EQ(e.exit_code, 3);
  EXPECT_EQ(e.description, "pod j-abcde container main: exit 3 (Error)");
  EXPECT_EQ(ExitFromPods({}).exit_code, -1);
}

}  // namespace
}  // namespace sluice::operators
