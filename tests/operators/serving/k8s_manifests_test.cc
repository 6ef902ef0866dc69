#include "operators/serving/k8s_manifests.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace sluice::serving {
namespace {

// The deploy step of examples/retrain as the runner passes it, for Kubernetes.
Json StepConfig(const std::string& mode, bool kserve) {
  Json step = Json::parse(R"({
    "service": "breast-cancer",
    "executor": "kubernetes",
    "model": "/work/.sluice/runs/r1/select/best/model.pkl",
    "model_digest": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "version": "r1",
    "serve": {"image": "python:3.11-slim",
              "command": ["python3", "/app/serve.py", "--model", "{{model}}", "--port", "{{port}}",
                          "--host", "{{host}}"]},
    "readiness": {"path": "/healthz"},
    "traffic": 10,
    "run": {"id": "r1"},
    "kubernetes": {"namespace": "ml", "replicas": 10}
  })");
  step["mode"] = mode;
  if (kserve) step["kubernetes"]["kserve"] = true;
  return step;
}

// Compares with testdata/<name>.json; SLUICE_UPDATE_GOLDEN=1 rewrites it.
void ExpectGolden(const Json& actual, const std::string& name) {
  std::string path = std::string(SERVING_TESTDATA) + "/" + name + ".json";
  if (std::getenv("SLUICE_UPDATE_GOLDEN")) {
    std::ofstream(path) << actual.dump(2) << "\n";
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing golden file " << path << " (run with SLUICE_UPDATE_GOLDEN=1)";
  std::stringstream s;
  s << in.rdbuf();
  EXPECT_EQ(actual.dump(2) + "\n", s.str()) << "golden file " << path;
}

Json Build(const Json& step) {
  auto config = ParseDeployConfig(step);
  EXPECT_TRUE(config.has_value()) << config.error().ToString();
  if (!config) return nullptr;
  auto objects = BuildKubernetesObjects(*config);
  EXPECT_TRUE(objects.has_value()) << objects.error().ToString();
  return objects ? *objects : nullptr;
}

TEST(KubernetesManifestsTest, ReplaceIsADeploymentAndAService) {
  ExpectGolden(Build(StepConfig("replace", false)), "k8s_replace");
}

TEST(KubernetesManifestsTest, CanarySplitsByReplicasUnderOneService) {
  Json objects = Build(StepConfig("canary", false));
  ExpectGolden(objects, "k8s_canary");
  EXPECT_EQ(objects["items"][0]["spec"]["replicas"], 1);  // 10% of 10
  EXPECT_EQ(objects["items"][1]["spec"]["replicas"], 9);
}

TEST(KubernetesManifestsTest, KServeCanaryTrafficPercent) {
  Json objects = Build(StepConfig("canary", true));
  ExpectGolden(objects, "k8s_kserve_canary");
  EXPECT_EQ(objects["items"][0]["spec"]["predictor"]["canaryTrafficPercent"], 10);
}

TEST(KubernetesManifestsTest, NeedsADigest) {
  Json step = StepConfig("replace", false);
  step.erase("model_digest");
  auto config = ParseDeployConfig(step);
  ASSERT_TRUE(config.has_value());
  auto objects = BuildKubernetesObjects(*config);
  ASSERT_FALSE(objects.has_value());
  EXPECT_EQ(objects.error().message(),
            "deploy.model_digest: required on Kubernetes (\"sha256:<64 hex>\"): the init "
            "container fetches the model from the artifact store by digest");
}

// With object storage (`sluice run --artifacts s3://...` adds model_store),
// the model comes from the bucket by digest through sluice-launcher, with
// the credentials from the Secret: no artifacts volume.
TEST(KubernetesManifestsTest, ObjectStorageFetchesTheModelWithTheLauncher) {
  Json step = StepConfig("replace", false);
  step["kubernetes"]["model_store"] = {{"url", "s3://models/team-a"},
                                       {"endpoint", "https://s3.example.com"},
                                       {"credentials_secret", "sluice-s3"},
                                       {"image", "ghcr.io/sluice-dev/sluice:0.1.0"}};
  Json objects = Build(step);
  ExpectGolden(objects, "k8s_replace_object_storage");
  const Json& pod = objects["items"][0]["spec"]["template"]["spec"];
  EXPECT_EQ(pod["initContainers"][0]["command"],
            Json({"/usr/local/bin/sluice-launcher", "fetch",
                  "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "/models/model.pkl"}));
  EXPECT_EQ(pod["volumes"], Json::parse(R"([{"name": "model", "emptyDir": {}}])"));
  EXPECT_EQ(objects.dump().find("AWS_SECRET_ACCESS_KEY\",\"value\""), std::string::npos);

  step.erase("model_digest");
  auto config = ParseDeployConfig(step);
  ASSERT_TRUE(config.has_value());
  auto refused = BuildKubernetesObjects(*config);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().message(),
            "deploy.model_digest: required with object storage (\"sha256:<64 hex>\"): the init container "
            "fetches the model from the bucket by digest");
}

// With object storage and the run's code (the runner passes code_archive
// and code_dir), the server's pod fetches the code the way a launcher step
// does, and the serve command names the pod's copy; the step's placement
// reaches the pod.
TEST(KubernetesManifestsTest, ObjectStorageShipsTheServingCodeAndPlacesThePods) {
  Json step = StepConfig("canary", false);
  step["serve"]["command"] = {"python3", "/home/ml/retrain/serving/serve.py", "--model", "{{model}}"};
  step["serve"]["env"] = {{"SERVE_CONFIG", "/home/ml/retrain/serving/config.json"}};
  step["run"]["code_archive"] = "sha256:" + std::string(64, 'c');
  step["run"]["code_dir"] = "/home/ml/retrain";
  step["kubernetes"]["model_store"] = {{"url", "s3://models/team-a"}, {"image", "ghcr.io/sluice-dev/sluice:0.1.0"}};
  step["kubernetes"]["nodeSelector"] = {{"pool", "serving"}};
  step["kubernetes"]["tolerations"] = Json::parse(R"([{"key": "pool", "operator": "Equal", "value": "serving",
                                                        "effect": "NoSchedule"}])");
  Json objects = Build(step);
  const Json& pod = objects["items"][0]["spec"]["template"]["spec"];
  ASSERT_EQ(pod["initContainers"].size(), 2u);
  EXPECT_EQ(pod["initContainers"][1]["name"], "fetch-code");
  EXPECT_EQ(pod["initContainers"][1]["command"],
            Json({"/usr/local/bin/sluice-launcher", "fetch", "sha256:" + std::string(64, 'c'), "/sluice/code"}));
  EXPECT_EQ(pod["initContainers"][1]["volumeMounts"], Json::parse(R"([{"name": "code", "mountPath": "/sluice/code"}])"));
  const Json& server = pod["containers"][0];
  EXPECT_EQ(server["args"], Json({"python3", "/sluice/code/serving/serve.py", "--model", "/models/model.pkl"}));
  EXPECT_EQ(server["env"][3], Json::parse(R"({"name": "SERVE_CONFIG", "value": "/sluice/code/serving/config.json"})"));
  EXPECT_EQ(server["volumeMounts"][1], Json::parse(R"({"name": "code", "mountPath": "/sluice/code", "readOnly": true})"));
  EXPECT_EQ(pod["volumes"], Json::parse(R"([{"name": "model", "emptyDir": {}}, {"name": "code", "emptyDir": {}}])"));
  EXPECT_EQ(pod["nodeSelector"], Json::parse(R"({"pool": "serving"})"));
  EXPECT_EQ(pod["tolerations"], step["kubernetes"]["tolerations"]);

  // Without object storage the code is not shipped (the shared volume's
  // paths are the user's to give), and the command is left as written.
  step["kubernetes"].erase("model_store");
  Json on_volume = Build(step);
  const Json& volume_pod = on_volume["items"][0]["spec"]["template"]["spec"];
  EXPECT_EQ(volume_pod["initContainers"].size(), 1u);
  EXPECT_EQ(volume_pod["containers"][0]["args"][1], "/home/ml/retrain/serving/serve.py");
  EXPECT_EQ(volume_pod["nodeSelector"], Json::parse(R"({"pool": "serving"})"));
}

}  // namespace
}  // namespace sluice::serving
