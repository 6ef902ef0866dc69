// examples/retrain/pipeline.yaml with `sluice run --executor kubernetes`
// against the live test cluster (label k8s, fixture k8s): the deploy step
// creates the Deployment and Service, a second run's canary fails traffic
// validation and is rolled back to exactly the previous Deployment spec.
//
// kwok runs no containers, so a container step on the cluster produces no
// outputs (docs/kubernetes.md). The run is therefore made first locally:
// prepare ... register and requests are then cache hits (the executor is not
// part of a step's cache key), and what runs with --executor kubernetes are
// the deploy and validate steps: controllers that run on this host and act
// on the cluster. kwok's pods answer nothing, so validation cannot reach the
// service (its default endpoint is the cluster-internal Service URL): the
// first deployment fails validation with nothing to roll back, the canary of
// the second is rolled back.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "executors/kubernetes/api/client.h"
#include "executors/kubernetes/api/kubeconfig.h"
#include "run_test_util.h"

namespace sluice::serving {
namespace {

namespace fs = std::filesystem;
using testing::Ran;
using testing::RunBounded;

const k8s::ResourceKind kNamespaces{"v1", "Namespace", "namespaces", false};
const k8s::ResourceKind kDeployments{"apps/v1", "Deployment", "deployments", true};
const k8s::ResourceKind kServices{"v1", "Service", "services", true};
const k8s::ResourceKind kClaims{"v1", "PersistentVolumeClaim", "persistentvolumeclaims", true};
const k8s::ResourceKind kVolumes{"v1", "PersistentVolume", "persistentvolumes", false};

class RetrainOnKubernetesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* state = std::getenv("SLUICE_K8S_STATE");
    kubeconfig_ = std::string(state && *state ? state : "/tmp/sluice-k8s") + "/kubeconfig";
    if (!fs::exists(kubeconfig_)) {
      GTEST_SKIP() << "no test cluster: " << kubeconfig_ << " is absent";
    }
    dir_ = testing::MakeTempDir("sluice-retrain-k8s-");
    ASSERT_FALSE(dir_.empty());
    Ran probe = RunBounded({"/usr/bin/env", "python3", "-c", "import sklearn, joblib, numpy"}, dir_,
                           std::chrono::seconds(60));
    if (probe.exit_code != 0) {
      GTEST_SKIP() << "scikit-learn is not importable; install examples/requirements.txt";
    }
    k8s::KubeconfigOptions options;
    options.kubeconfig = kubeconfig_;
    auto rest = k8s::LoadRestConfig(options);
    ASSERT_TRUE(rest.has_value()) << rest.error().ToString();
    auto client = k8s::Client::Create(*rest);
    ASSERT_TRUE(client.has_value()) << client.error().ToString();
    client_ = std::move(*client);
    std::mt19937_64 random(std::random_device{}());
    ns_ = "retrain-" + std::to_string(::getpid()) + "-" + std::to_string(random() % 100000);
    ASSERT_TRUE(client_->Create(kNamespaces, "", {{"apiVersion", "v1"},
                                                  {"kind", "Namespace"},
                                                  {"metadata", {{"name", ns_}}}})
                    .has_value());
    // The artifacts claim the model-fetch init container mounts, bound (the
    // scheduler places no pod whose claim is unbound; kwok never mounts it).
    ASSERT_TRUE(client_
                    ->Create(kVolumes, "",
                             {{"apiVersion", "v1"},
                              {"kind", "PersistentVolume"},
                              {"metadata", {{"name", ns_ + "-artifacts"}}},
                              {"spec",
                               {{"capacity", {{"storage", "1Gi"}}},
                                {"accessModes", {"ReadWriteMany"}},
                                {"persistentVolumeReclaimPolicy", "Retain"},
                                {"storageClassName", ""},
                                {"claimRef", {{"namespace", ns_}, {"name", "sluice-artifacts"}}},
                                {"hostPath", {{"path", "/sluice-artifacts"}}}}}})
                    .has_value());
    ASSERT_TRUE(client_
                    ->Create(kClaims, ns_,
                             {{"apiVersion", "v1"},
                              {"kind", "PersistentVolumeClaim"},
                              {"metadata", {{"name", "sluice-artifacts"}}},
                              {"spec",
                               {{"accessModes", {"ReadWriteMany"}},
                                {"storageClassName", ""},
                                {"volumeName", ns_ + "-artifacts"},
                                {"resources", {{"requests", {{"storage", "1Gi"}}}}}}}})
                    .has_value());
  }

  void TearDown() override {
    if (client_) {
      (void)client_->Delete(kNamespaces, "", ns_, k8s::Propagation::kBackground);
      (void)client_->Delete(kVolumes, "", ns_ + "-artifacts", k8s::Propagation::kBackground);
    }
    if (dir_.empty()) return;
    RunBounded({SLUICE_SERVING_BIN, "undeploy", "--service", "breast-cancer", "--state-dir",
                dir_ + "/.sluice"},
               dir_, std::chrono::seconds(60));
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Ran Sluice(std::vector<std::string> args, std::chrono::seconds bound = std::chrono::seconds(60)) {
    args.insert(args.begin(), SLUICE_BIN);
    return RunBounded(args, dir_, bound);
  }

  Ran RunOnCluster() {
    // The steps pass files: the claim is their way between pods (here every
    // container step is a cache hit, and the deploy step's model fetch
    // mounts it).
    return Sluice({"run", std::string(SLUICE_SOURCE_DIR) + "/examples/retrain/pipeline.yaml",
                   "--executor", "kubernetes", "--kubeconfig", kubeconfig_, "--namespace", ns_,
                   "--workspace-pvc", "sluice-artifacts"},
                  std::chrono::seconds(600));
  }

  std::map<std::string, std::string> Phases(const std::string& run_id) {
    Ran status = Sluice({"status", run_id, "--format", "json"});
    std::map<std::string, std::string> phases;
    try {
      nlohmann::json j = nlohmann::json::parse(status.out);
      phases["(run)"] = j["run"]["phase"];
      for (const auto& s : j["steps"]) phases[s["instance"].get<std::string>()] = s["phase"];
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what() << "\n" << status.out << status.err;
    }
    return phases;
  }

  Json Get(const k8s::ResourceKind& kind, const std::string& name) {
    auto o = client_->Get(kind, ns_, name);
    return o ? *o : Json(nullptr);
  }

  std::string kubeconfig_;
  std::string dir_;
  std::string ns_;
  std::unique_ptr<k8s::Client> client_;
};

// Was disabled in session 2 (availableReplicas 0/2 for 300 s after the
// rollback's scale-up). The cause was the test cluster, not the operator:
// kwok's default node stages gave the nodes no heartbeat that the
// controller-manager accepted, so every 65 s every node went NotReady and the
// node lifecycle controller marked every pod on it Ready=False, for good
// (tests/k8s/config/kwok-stages.yaml.in now heartbeats the nodes; evidence in
// docs/deploy.md).
TEST_F(RetrainOnKubernetesTest, SameYamlDeploysToTheClusterAndRollsBackTheCanary) {
  // Locally first: every step's outputs are in the store's cache.
  Ran local = Sluice({"run", std::string(SLUICE_SOURCE_DIR) + "/examples/retrain/pipeline.yaml"},
                     std::chrono::seconds(600));
  ASSERT_EQ(local.exit_code, 0) << local.out << local.err;

  // 1. On the cluster: the first deployment of the service there.
  Ran first = RunOnCluster();
  EXPECT_EQ(first.exit_code, 1) << first.out << first.err;  // validate cannot reach kwok's pods
  std::string first_id = testing::RunId(first);
  ASSERT_FALSE(first_id.empty()) << first.out << first.err;
  auto phases = Phases(first_id);
  EXPECT_EQ(phases["select"], "Cached");
  EXPECT_EQ(phases["deploy"], "Succeeded") << first.out << first.err;
  EXPECT_EQ(phases["validate"], "Failed");

  Json stable = Get(kDeployments, "breast-cancer-stable");
  ASSERT_FALSE(stable.is_null()) << first.out << first.err;
  EXPECT_EQ(stable["spec"]["replicas"], 2);
  EXPECT_EQ(stable["status"]["availableReplicas"], 2);
  EXPECT_EQ(stable["spec"]["template"]["spec"]["initContainers"][0]["name"], "fetch-model");
  EXPECT_EQ(stable["metadata"]["labels"]["sluice.dev/version"], first_id);
  const std::string digest = stable["metadata"]["annotations"]["sluice.dev/model-digest"];
  EXPECT_EQ(digest.size(), 71u);
  EXPECT_FALSE(Get(kServices, "breast-cancer").is_null());
  const Json before = stable["spec"];
  Ran log = Sluice({"logs", first_id, "validate"});
  EXPECT_NE(log.out.find("cannot reach http://breast-cancer." + ns_ + ".svc.cluster.local"),
            std::string::npos)
      << log.out;

  // lineage --deployed answers for the cluster.
  Ran lineage = Sluice({"lineage", "--deployed", "breast-cancer", "--format", "json"});
  ASSERT_EQ(lineage.exit_code, 0) << lineage.out << lineage.err;
  nlohmann::json deployment = nlohmann::json::parse(lineage.out)["deployment"];
  EXPECT_EQ(deployment["executor"], "kubernetes");
  EXPECT_EQ(deployment["namespace"], ns_);
  EXPECT_EQ(deployment["model_digest"], digest);

  // 2. Again: now a canary beside the stable Deployment, by replicas; its
  // validation fails and it is rolled back.
  Ran second = RunOnCluster();
  EXPECT_EQ(second.exit_code, 1) << second.out << second.err;
  std::string second_id = testing::RunId(second);
  phases = Phases(second_id);
  EXPECT_EQ(phases["deploy"], "Succeeded") << second.out << second.err;
  EXPECT_EQ(phases["validate"], "Failed");
  log = Sluice({"logs", second_id, "validate"});
  EXPECT_NE(log.out.find("failed at stage 1/3 (10% traffic): the candidate: cannot reach "
                         "http://breast-cancer-canary." + ns_ + ".svc.cluster.local"),
            std::string::npos)
      << log.out;
  EXPECT_NE(log.out.find("Rolled back: service breast-cancer serves version " + first_id + " (" +
                         digest + ") at 100% again"),
            std::string::npos)
      << log.out;

  // Exactly the previous Deployment: its spec (pod template with the image
  // and the model fetch by digest, 2 replicas), its model digest and version;
  // all of the traffic (both replicas, available); the canary and its
  // Service gone.
  stable = Get(kDeployments, "breast-cancer-stable");
  EXPECT_EQ(stable["spec"], before);
  EXPECT_EQ(stable["spec"]["replicas"], 2);
  EXPECT_EQ(stable["spec"]["template"]["spec"]["containers"][0]["image"], "python:3.11-slim");
  EXPECT_EQ(stable["metadata"]["annotations"]["sluice.dev/model-digest"], digest);
  EXPECT_EQ(stable["spec"]["template"]["metadata"]["annotations"]["sluice.dev/model-digest"],
            digest);
  EXPECT_EQ(stable["metadata"]["labels"]["sluice.dev/version"], first_id);
  EXPECT_EQ(stable["status"]["availableReplicas"], 2);
  EXPECT_TRUE(Get(kDeployments, "breast-cancer-canary").is_null());
  EXPECT_TRUE(Get(kServices, "breast-cancer-canary").is_null());

  // The rollback is recorded, and lineage --deployed names the first run's
  // model again, at 100%, on the cluster.
  lineage = Sluice({"lineage", "--deployed", "breast-cancer", "--format", "json"});
  ASSERT_EQ(lineage.exit_code, 0) << lineage.out << lineage.err;
  deployment = nlohmann::json::parse(lineage.out)["deployment"];
  EXPECT_EQ(deployment["action"], "rollback");
  EXPECT_EQ(deployment["version"], first_id);
  EXPECT_EQ(deployment["model_digest"], digest);
  EXPECT_EQ(deployment["traffic_percent"], 100);
  EXPECT_EQ(deployment["executor"], "kubernetes");
  EXPECT_EQ(deployment["namespace"], ns_);
  EXPECT_EQ(deployment["run_id"], second_id);
  EXPECT_EQ(deployment["instance"], "validate");
  // ...and, through the model's digest, which data and code made it: the
  // local run's prepare and train steps.
  nlohmann::json graph = nlohmann::json::parse(lineage.out);
  EXPECT_EQ(graph["root"]["artifact"], digest);
  std::set<std::string> steps;
  for (const auto& e : graph["executions"]) steps.insert(e["step"].get<std::string>());
  EXPECT_EQ(steps.count("prepare"), 1u) << lineage.out;
  EXPECT_TRUE(std::any_of(steps.begin(), steps.end(),
                          [](const std::string& s) { return s.rfind("train[", 0) == 0; }))
      << lineage.out;
}

}  // namespace
}  // namespace sluice::serving
