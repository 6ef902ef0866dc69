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

}  // namespace
}  // namespace sluice::serving
