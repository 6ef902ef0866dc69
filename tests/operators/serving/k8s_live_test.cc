// The deploy and traffic-validation operators against the live test cluster
// (tests/k8s: a real kube-apiserver and controller-manager, kwok for the
// kubelets). Label k8s, fixture k8s; skipped when the cluster's kubeconfig
// (${SLUICE_K8S_STATE:-/tmp/sluice-k8s}/kubeconfig) is absent.
//
// kwok pods serve no traffic, so what is checked on the cluster is the
// objects and the rollout (Deployments, Service, replicas, the model-fetch
// init container, status.availableReplicas); the requests of a traffic
// validation go to local model servers (fake_model_server.py) standing in
// for the canary, as docs/deploy.md says.

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "executors/kubernetes/api/kubeconfig.h"
#include "operators/serving/k8s_deploy.h"
#include "serving_test_util.h"

namespace sluice::serving {
namespace {

using testing::ServingTest;

const k8s::ResourceKind kNamespaces{"v1", "Namespace", "namespaces", false};
const k8s::ResourceKind kDeployments{"apps/v1", "Deployment", "deployments", true};
const k8s::ResourceKind kServices{"v1", "Service", "services", true};
const k8s::ResourceKind kClaims{"v1", "PersistentVolumeClaim", "persistentvolumeclaims", true};
const k8s::ResourceKind kVolumes{"v1", "PersistentVolume", "persistentvolumes", false};

std::string StateDir() {
  const char* s = std::getenv("SLUICE_K8S_STATE");
  return s && *s ? s : "/tmp/sluice-k8s";
}

class KubernetesServingLiveTest : public ServingTest {
 protected:
  void SetUp() override {
    std::string kubeconfig = StateDir() + "/kubeconfig";
    if (!std::filesystem::exists(kubeconfig)) {
      GTEST_SKIP() << "no test cluster: " << kubeconfig
                   << " is absent (tests/k8s/cluster up, or ctest -L k8s)";
    }
    ServingTest::SetUp();
    k8s::KubeconfigOptions options;
    options.kubeconfig = kubeconfig;
    auto rest = k8s::LoadRestConfig(options);
    ASSERT_TRUE(rest.has_value()) << rest.error().ToString();
    auto client = k8s::Client::Create(*rest);
    ASSERT_TRUE(client.has_value()) << client.error().ToString();
    client_ = std::move(*client);

    // A namespace of its own, with the artifacts claim the model-fetch init
    // container mounts, bound to a PersistentVolume (kwok never mounts it,
    // but the scheduler places no pod whose claim is unbound).
    std::mt19937_64 random(std::random_device{}());
    ns_ = "serving-" + std::to_string(::getpid()) + "-" + std::to_string(random() % 100000);
    ASSERT_TRUE(client_->Create(kNamespaces, "", {{"apiVersion", "v1"},
                                                  {"kind", "Namespace"},
                                                  {"metadata", {{"name", ns_}}}})
                    .has_value());
    Json volume = {{"apiVersion", "v1"},
                   {"kind", "PersistentVolume"},
                   {"metadata", {{"name", ns_ + "-artifacts"}}},
                   {"spec",
                    {{"capacity", {{"storage", "1Gi"}}},
                     {"accessModes", {"ReadWriteMany"}},
                     {"persistentVolumeReclaimPolicy", "Retain"},
                     {"storageClassName", ""},
                     {"claimRef", {{"namespace", ns_}, {"name", "sluice-artifacts"}}},
                     {"hostPath", {{"path", "/sluice-artifacts"}}}}}};
    auto pv = client_->Create(kVolumes, "", volume);
    ASSERT_TRUE(pv.has_value()) << pv.error().ToString();
    Json claim = {{"apiVersion", "v1"},
                  {"kind", "PersistentVolumeClaim"},
                  {"metadata", {{"name", "sluice-artifacts"}}},
                  {"spec",
                   {{"accessModes", {"ReadWriteMany"}},
                    {"storageClassName", ""},
                    {"volumeName", ns_ + "-artifacts"},
                    {"resources", {{"requests", {{"storage", "1Gi"}}}}}}}};
    auto pvc = client_->Create(kClaims, ns_, claim);
    ASSERT_TRUE(pvc.has_value()) << pvc.error().ToString();
  }

  void TearDown() override {
    if (client_) {
      (void)client_->Delete(kNamespaces, "", ns_, k8s::Propagation::kBackground);
      (void)client_->Delete(kVolumes, "", ns_ + "-artifacts", k8s::Propagation::kBackground);
    }
    ServingTest::TearDown();
  }

  // The retrain example's deploy step, for Kubernetes, with `total` replicas.
  DeployConfig K8sConfig(const std::string& version, DeployMode mode, int total,
                         double traffic = 10) {
    DeployConfig c;
    c.service = "breast-cancer";
    c.executor = "kubernetes";
    c.model = Model(version + ".pkl", version);
    c.version = version;
    c.image = "python:3.11-slim";
    c.command = {"python3", "/app/serve.py", "--model", "{{model}}", "--port", "{{port}}"};
    c.mode = mode;
    c.traffic = traffic;
    c.readiness_timeout = std::chrono::seconds(120);
    c.run.run_id = "run-" + version;
    c.run.instance = "deploy";
    c.kubernetes = {{"namespace", ns_}, {"replicas", total}};
    return c;
  }

  // A local model server standing in for the canary (kwok pods serve nothing).
  std::string LocalServer(const std::string& name, const std::string& model_json) {
    auto local = DeployLocal(Config(name, Model(name + ".json", model_json), "local"), env_);
    EXPECT_TRUE(local.has_value()) << local.error().ToString();
    return local ? local->candidate_url : "";
  }

  ValidationConfig Validation(const std::string& endpoint, std::vector<double> stages) {
    ValidationConfig v;
    v.service = "breast-cancer";
    v.executor = "kubernetes";
    v.endpoint = endpoint;
    v.kubernetes = {{"namespace", ns_}, {"rollout_timeout", "120s"}};
    v.requests = dir_ + "/requests.jsonl";
    testing::WriteFile(v.requests, "{\"input\": [1], \"label\": 1}\n{\"input\": [2], \"label\": 1}\n"
                                   "{\"input\": [3], \"label\": 1}\n{\"input\": [4], \"label\": 1}\n");
    v.stages = std::move(stages);
    v.thresholds.min_accuracy = 0.9;
    v.thresholds.max_error_rate = 0;
    v.run.run_id = "run-validate";
    v.run.instance = "validate";
    return v;
  }

  Json Get(const k8s::ResourceKind& kind, const std::string& name) {
    auto o = client_->Get(kind, ns_, name);
    return o ? *o : Json(nullptr);
  }

  std::vector<std::string> Actions() {
    auto records = store_->ListDeployments("breast-cancer", 20);
    std::vector<std::string> actions;
    if (!records) return actions;
    for (const auto& r : *records) {
      actions.push_back(r.action + "@" + std::to_string(static_cast<int>(r.traffic_percent)));
    }
    return actions;
  }

  std::unique_ptr<k8s::Client> client_;
  std::string ns_;
};

TEST_F(KubernetesServingLiveTest, DeployCreatesDeploymentAndServiceWithTheModelFetch) {
  auto v1 = DeployKubernetes(K8sConfig("v1", DeployMode::kReplace, 2), *client_, env_);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  EXPECT_EQ(v1->endpoint, "http://breast-cancer." + ns_ + ".svc.cluster.local");

  // The rollout was followed to the end: the controller's status says so.
  Json stable = Get(kDeployments, "breast-cancer-stable");
  ASSERT_FALSE(stable.is_null());
  EXPECT_EQ(stable["spec"]["replicas"], 2);
  EXPECT_EQ(stable["status"]["availableReplicas"], 2);
  EXPECT_EQ(stable["status"]["updatedReplicas"], 2);
  EXPECT_EQ(stable["metadata"]["annotations"]["sluice.dev/model-digest"], v1->model_digest);
  const Json& pod = stable["spec"]["template"]["spec"];
  ASSERT_EQ(pod["initContainers"].size(), 1u);
  EXPECT_EQ(pod["initContainers"][0]["name"], "fetch-model");
  std::string hex = v1->model_digest.substr(7);
  EXPECT_EQ(pod["initContainers"][0]["command"][2],
            "set -eu; cp -R /artifacts/cas/sha256/" + hex.substr(0, 2) + "/" + hex +
                " /models/v1.pkl; if [ -f /models/v1.pkl ]; then echo \"" + hex +
                "  /models/v1.pkl\" | sha256sum -c -; fi");
  EXPECT_EQ(pod["containers"][0]["args"],
            Json::parse(R"(["python3", "/app/serve.py", "--model", "/models/v1.pkl", "--port", "8080"])"));
  EXPECT_EQ(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "sluice-artifacts");

  Json service = Get(kServices, "breast-cancer");
  ASSERT_FALSE(service.is_null());
  EXPECT_EQ(service["spec"]["selector"], Json({{"sluice.dev/service", "breast-cancer"}}));
  EXPECT_EQ(service["spec"]["ports"][0]["targetPort"], 8080);
  EXPECT_EQ(Actions(), std::vector<std::string>{"deploy@100"});
}

TEST_F(KubernetesServingLiveTest, CanaryByWeightedReplicasIsShiftedAndPromoted) {
  auto v1 = DeployKubernetes(K8sConfig("v1", DeployMode::kReplace, 4), *client_, env_);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  auto v2 = DeployKubernetes(K8sConfig("v2", DeployMode::kCanary, 4, 25), *client_, env_);
  ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
  Json canary = Get(kDeployments, "breast-cancer-canary");
  EXPECT_EQ(canary["spec"]["replicas"], 1);  // 25% of 4
  EXPECT_EQ(canary["status"]["availableReplicas"], 1);
  EXPECT_EQ(Get(kDeployments, "breast-cancer-stable")["spec"]["replicas"], 3);
  EXPECT_EQ(canary["metadata"]["annotations"]["sluice.dev/stable-replicas-before"], "4");
  EXPECT_EQ(Get(kServices, "breast-cancer-canary")["spec"]["selector"],
            Json({{"sluice.dev/service", "breast-cancer"}, {"sluice.dev/track", "canary"}}));

  std::string good = LocalServer("good", R"({"answer": 1})");
  auto outcome = ValidateKubernetes(Validation(good, {25, 50, 100}), *client_, env_);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_TRUE(outcome->passed) << outcome->message;
  EXPECT_TRUE(outcome->promoted);
  EXPECT_EQ(outcome->message, "traffic validation of service breast-cancer version v2 passed 3 "
                              "stage(s); promoted to 100% (" + v2->model_digest + ")");
  EXPECT_EQ(outcome->metrics["stages_passed"], 3);

  // Promoted: the stable Deployment runs the canary's template at the total,
  // rolled out, and the canary is gone.
  Json stable = Get(kDeployments, "breast-cancer-stable");
  EXPECT_EQ(stable["spec"]["replicas"], 4);
  EXPECT_EQ(stable["status"]["availableReplicas"], 4);
  EXPECT_EQ(stable["metadata"]["annotations"]["sluice.dev/model-digest"], v2->model_digest);
  EXPECT_EQ(stable["metadata"]["labels"]["sluice.dev/version"], "v2");
  EXPECT_EQ(stable["spec"]["template"]["metadata"]["labels"]["sluice.dev/track"], "stable");
  EXPECT_EQ(stable["spec"]["template"]["spec"]["containers"][0]["args"][3], "/models/v2.pkl");
  EXPECT_TRUE(Get(kDeployments, "breast-cancer-canary").is_null());
  EXPECT_TRUE(Get(kServices, "breast-cancer-canary").is_null());
  EXPECT_EQ(Actions(), (std::vector<std::string>{"promote@100", "shift@100", "shift@50",
                                                 "deploy@25", "deploy@100"}));
  auto records = store_->ListDeployments("breast-cancer", 1);
  ASSERT_TRUE(records.has_value() && !records->empty());
  EXPECT_EQ(records->front().model_digest, v2->model_digest);
  EXPECT_EQ(records->front().executor, "kubernetes");
  EXPECT_EQ(records->front().namespace_, ns_);
}

TEST_F(KubernetesServingLiveTest, FailedValidationRestoresExactlyThePreviousDeployment) {
  auto v1 = DeployKubernetes(K8sConfig("v1", DeployMode::kReplace, 3), *client_, env_);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  const Json before = Get(kDeployments, "breast-cancer-stable")["spec"];
  auto v2 = DeployKubernetes(K8sConfig("v2", DeployMode::kCanary, 3), *client_, env_);
  ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
  EXPECT_EQ(Get(kDeployments, "breast-cancer-canary")["spec"]["replicas"], 1);
  EXPECT_EQ(Get(kDeployments, "breast-cancer-stable")["spec"]["replicas"], 2);

  std::string bad = LocalServer("bad", R"({"answer": 0})");  // always wrong
  auto outcome = ValidateKubernetes(Validation(bad, {10, 50, 100}), *client_, env_);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_FALSE(outcome->passed);
  EXPECT_TRUE(outcome->rolled_back);
  EXPECT_EQ(outcome->message,
            "traffic validation of service breast-cancer version v2 (" + v2->model_digest +
                ") failed at stage 1/3 (10% traffic): accuracy 0.0000 (4 labelled) < "
                "min_accuracy 0.9 (passed: error rate 0.0000 (0/4) <= max_error_rate 0). "
                "Rolled back: service breast-cancer serves version v1 (" + v1->model_digest +
                ") at 100% again; the candidate was stopped");

  // Exactly the previous Deployment spec: model digest, template, replicas.
  Json stable = Get(kDeployments, "breast-cancer-stable");
  EXPECT_EQ(stable["spec"], before);
  EXPECT_EQ(stable["status"]["availableReplicas"], 3);
  EXPECT_EQ(stable["metadata"]["annotations"]["sluice.dev/model-digest"], v1->model_digest);
  EXPECT_TRUE(Get(kDeployments, "breast-cancer-canary").is_null());
  EXPECT_TRUE(Get(kServices, "breast-cancer-canary").is_null());
  EXPECT_EQ(Actions(), (std::vector<std::string>{"rollback@100", "deploy@10", "deploy@100"}));
  auto records = store_->ListDeployments("breast-cancer", 1);
  ASSERT_TRUE(records.has_value() && !records->empty());
  EXPECT_EQ(records->front().model_digest, v1->model_digest);
  EXPECT_EQ(records->front().details["rolled_back_digest"], v2->model_digest);
}

// A server that never gets ready, on the cluster: the canary asks for more
// CPU than any node has, so its pod is never scheduled and the Deployment
// never becomes available. The deploy fails once readiness.timeout has passed
// with the rollout's last status, deletes the canary, and the previous
// Deployment was never touched: same generation, spec, model digest, all of
// its replicas available; no canary Service, no record.
TEST_F(KubernetesServingLiveTest, CanaryThatNeverBecomesAvailableFailsInTimeAndLeavesThePrevious) {
  auto v1 = DeployKubernetes(K8sConfig("v1", DeployMode::kReplace, 3), *client_, env_);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  const Json before = Get(kDeployments, "breast-cancer-stable");

  DeployConfig c = K8sConfig("v2", DeployMode::kCanary, 3);
  c.kubernetes["resources"] = {{"requests", {{"cpu", "64"}}}};  // the nodes have 8 and 16
  c.readiness_timeout = std::chrono::seconds(5);
  const auto started = std::chrono::steady_clock::now();
  auto v2 = DeployKubernetes(c, *client_, env_);
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(v2.has_value());
  EXPECT_EQ(v2.error().code(), StatusCode::kDeadlineExceeded);
  const std::string& message = v2.error().message();
  const std::string head = "service breast-cancer version v2 in namespace " + ns_ +
                           ": Deployment breast-cancer-canary not rolled out within 5000ms "
                           "(last: ";
  // Then why, read from the canary's pod before it was deleted.
  const std::string why = "availableReplicas 0/1). pod breast-cancer-canary-";
  EXPECT_NE(message.find(why), std::string::npos) << message;
  EXPECT_NE(message.find(": Pending; not scheduled: Unschedulable: 0/"), std::string::npos) << message;
  EXPECT_NE(message.find("Insufficient cpu"), std::string::npos) << message;
  const std::string tail = ". The objects were put back as they were; the previous deployment keeps serving";
  EXPECT_EQ(message.substr(0, head.size()), head) << message;
  ASSERT_GE(message.size(), tail.size());
  EXPECT_EQ(message.substr(message.size() - tail.size()), tail) << message;
  // Bounded by the step's timeout: the wait itself, then a delete.
  EXPECT_GE(took, std::chrono::seconds(5));
  EXPECT_LT(took, std::chrono::seconds(35));

  Json stable = Get(kDeployments, "breast-cancer-stable");
  EXPECT_EQ(stable["metadata"]["generation"], before["metadata"]["generation"]);
  EXPECT_EQ(stable["spec"], before["spec"]);
  EXPECT_EQ(stable["metadata"]["annotations"], before["metadata"]["annotations"]);
  EXPECT_EQ(stable["metadata"]["labels"]["sluice.dev/version"], "v1");
  EXPECT_EQ(stable["status"]["availableReplicas"], 3);
  Json canary = Get(kDeployments, "breast-cancer-canary");
  EXPECT_TRUE(canary.is_null() || canary["metadata"].contains("deletionTimestamp"));
  EXPECT_TRUE(Get(kServices, "breast-cancer-canary").is_null());
  EXPECT_EQ(Actions(), std::vector<std::string>{"deploy@100"});
}

TEST_F(KubernetesServingLiveTest, UndeployDeletesTheObjectsAndIsRecorded) {
  auto v1 = DeployKubernetes(K8sConfig("v1", DeployMode::kReplace, 1), *client_, env_);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  RunContext run{"run-undeploy", "undeploy", 0};
  Status s = UndeployKubernetes("breast-cancer", ns_, *client_, env_, run);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(Get(kDeployments, "breast-cancer-stable").is_null() ||
              Get(kDeployments, "breast-cancer-stable")["metadata"].contains("deletionTimestamp"));
  EXPECT_TRUE(Get(kServices, "breast-cancer").is_null());
  EXPECT_EQ(Actions(), (std::vector<std::string>{"undeploy@0", "deploy@100"}));
  auto records = store_->ListDeployments("breast-cancer", 1);
  ASSERT_TRUE(records.has_value() && !records->empty());
  EXPECT_EQ(records->front().details["deleted"],
            Json::parse(R"(["Deployment/breast-cancer-stable", "Service/breast-cancer"])"));

  Status again = UndeployKubernetes("breast-cancer", ns_, *client_, env_, run);
  EXPECT_EQ(again.code(), StatusCode::kNotFound);
  EXPECT_EQ(again.message(), "service breast-cancer is not deployed in namespace " + ns_ +
                                 " (no Deployment breast-cancer-stable or -canary, no Service "
                                 "breast-cancer or breast-cancer-canary)");
}

}  // namespace
}  // namespace sluice::serving
