#include "operators/serving/k8s_manifests.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <utility>
#include <vector>

#include "operators/kubernetes/launcher_pod.h"

namespace sluice::serving {

namespace {

Json Labels(const DeployConfig& c, const std::string& track, const std::string& version) {
  Json l = {{"app.kubernetes.io/name", c.service},
            {"app.kubernetes.io/managed-by", "sluice"},
            {"sluice.dev/service", c.service}};
  if (!track.empty()) l["sluice.dev/track"] = track;
  if (!version.empty()) l["sluice.dev/version"] = version;
  return l;
}

// The init container that fetches the model by digest from object storage
// with sluice-launcher (`store`: the `model_store` config), into the model
// volume; the credentials come from the store's Secret, never the manifest.
Json StoreFetchContainer(const Json& store, const std::string& name, const std::string& digest,
                         const std::string& dest, const std::string& volume, const std::string& mount) {
  const std::string secret = store.value("credentials_secret", "sluice-s3");
  auto from_secret = [&](const char* key) { return operators::SecretEnv(key, secret); };
  Json env = Json::array({{{"name", "SLUICE_ARTIFACTS"}, {"value", store.value("url", "")}}});
  if (store.contains("endpoint")) env.push_back({{"name", "SLUICE_ARTIFACTS_ENDPOINT"}, {"value", store["endpoint"]}});
  if (store.contains("region")) env.push_back({{"name", "AWS_REGION"}, {"value", store["region"]}});
  env.push_back(from_secret("AWS_ACCESS_KEY_ID"));
  env.push_back(from_secret("AWS_SECRET_ACCESS_KEY"));
  return {{"name", name},
          {"image", store.value("image", "")},
          {"command", {store.value("launcher_path", "/usr/local/bin/sluice-launcher"), "fetch", digest, dest}},
          {"env", env},
          {"volumeMounts", {{{"name", volume}, {"mountPath", mount}}}}};
}

// Where the run's code is in the server's pod, as in a launcher step's.
const std::string kPodCodeDir = std::string(operators::kLauncherWorkRoot) + "/code";

}  // namespace

Result<Json> BuildKubernetesObjects(const DeployConfig& c) {
  const Json& k = c.kubernetes;
  if (c.image.empty()) {
    return Error(Status::InvalidArgument("deploy.serve.image: required on Kubernetes"));
  }
  std::string hex = c.model_digest.rfind("sha256:", 0) == 0 ? c.model_digest.substr(7) : "";
  const bool from_store = k.contains("model_store") && k["model_store"].is_object();
  if (from_store && hex.size() != 64) {
    return Error(Status::InvalidArgument(
        "deploy.model_digest: required with object storage (\"sha256:<64 hex>\"): the init container "
        "fetches the model from the bucket by digest"));
  }
  if (hex.size() != 64 && !k.contains("model_path")) {
    return Error(Status::InvalidArgument(
        "deploy.model_digest: required on Kubernetes (\"sha256:<64 hex>\"): the init container "
        "fetches the model from the artifact store by digest"));
  }
  std::string ns = k.value("namespace", "default");
  int replicas = k.value("replicas", 2);
  int port = k.value("port", 8080);
  std::string pvc = k.value("artifacts_pvc", "sluice-artifacts");
  std::string fetch_image = k.value("fetch_image", "busybox:1.36");
  // The store's place on the claim: its root unless the run said otherwise.
  std::string store_dir = k.value("artifacts_dir", "");
  if (!store_dir.empty() && store_dir != "." && store_dir.back() != '/') store_dir += "/";
  if (store_dir == ".") store_dir.clear();
  std::string source = k.value("model_path", hex.empty() ? std::string()
                                                         : store_dir + "cas/sha256/" + hex.substr(0, 2) + "/" + hex);
  std::string model_name = std::filesystem::path(c.model).filename().string();
  if (model_name.empty()) model_name = "model";
  std::string model_in_pod = "/models/" + model_name;
  std::string version = c.version.empty() ? hex.substr(0, 12) : c.version;
  bool canary = c.mode == DeployMode::kCanary;
  std::string track = canary ? "canary" : "stable";

  std::map<std::string, std::string> values = {{"model", model_in_pod},
                                               {"port", std::to_string(port)},
                                               {"host", "0.0.0.0"},
                                               {"version", version},
                                               {"service", c.service}};
  // With object storage the server's code comes from the bucket too: the
  // pipeline's directory in its argv and env becomes the pod's copy.
  const bool ships_code = from_store && !c.run.code_archive.empty() && !c.run.code_dir.empty();
  const std::vector<std::pair<std::string, std::string>> code_paths = {{c.run.code_dir, kPodCodeDir}};
  auto in_pod = [&](const std::string& v) { return ships_code ? operators::ToPodPath(code_paths, v) : v; };
  Json args = Json::array();
  for (const auto& a : c.command) args.push_back(in_pod(SubstitutePlaceholders(a, values)));
  Json env = Json::array({{{"name", "SLUICE_MODEL_PATH"}, {"value", model_in_pod}},
                          {{"name", "SLUICE_MODEL_DIGEST"}, {"value", c.model_digest}},
                          {{"name", "PORT"}, {"value", std::to_string(port)}}});
  for (const auto& [name, value] : c.env) env.push_back({{"name", name}, {"value", in_pod(value)}});

  // Copy, then verify a file's digest so a wrong or partial artifact never serves.
  std::string fetch = "set -eu; cp -R /artifacts/" + source + " " + model_in_pod;
  if (!hex.empty()) {
    fetch += "; if [ -f " + model_in_pod + " ]; then echo \"" + hex + "  " + model_in_pod +
             "\" | sha256sum -c -; fi";
  }
  Json init = {{"name", "fetch-model"},
               {"image", fetch_image},
               {"command", {"sh", "-c", fetch}},
               {"volumeMounts",
                {{{"name", "artifacts"}, {"mountPath", "/artifacts"}, {"readOnly", true}},
                 {{"name", "model"}, {"mountPath", "/models"}}}}};
  Json server = {{"name", "server"},
                 {"image", c.image},
                 {"ports", {{{"containerPort", port}, {"name", "http"}}}},
                 {"env", env},
                 {"readinessProbe",
                  {{"httpGet", {{"path", c.readiness_path}, {"port", port}}},
                   {"periodSeconds", 2},
                   {"failureThreshold", 3}}},
                 {"volumeMounts", {{{"name", "model"}, {"mountPath", "/models"}, {"readOnly", true}}}}};
  if (!args.empty()) server["args"] = args;
  if (k.contains("resources")) server["resources"] = k["resources"];
  Json volumes = {{{"name", "artifacts"}, {"persistentVolumeClaim", {{"claimName", pvc}, {"readOnly", true}}}},
                  {{"name", "model"}, {"emptyDir", Json::object()}}};
  Json inits = Json::array();
  if (from_store) {
    init = StoreFetchContainer(k["model_store"], "fetch-model", c.model_digest, model_in_pod, "model", "/models");
    volumes = {{{"name", "model"}, {"emptyDir", Json::object()}}};
  }
  inits.push_back(init);
  if (ships_code) {
    inits.push_back(
        StoreFetchContainer(k["model_store"], "fetch-code", c.run.code_archive, kPodCodeDir, "code", kPodCodeDir));
    volumes.push_back({{"name", "code"}, {"emptyDir", Json::object()}});
    server["volumeMounts"].push_back({{"name", "code"}, {"mountPath", kPodCodeDir}, {"readOnly", true}});
  }
  // Placement: the step's nodeSelector and tolerations, as its pods get them.
  auto place = [&](Json& pod_spec) {
    if (k.contains("nodeSelector") && k["nodeSelector"].is_object() && !k["nodeSelector"].empty())
      pod_spec["nodeSelector"] = k["nodeSelector"];
    if (k.contains("tolerations") && k["tolerations"].is_array() && !k["tolerations"].empty())
      pod_spec["tolerations"] = k["tolerations"];
  };
  Json annotations = {{"sluice.dev/model-digest", c.model_digest}};
  if (!c.run.run_id.empty()) annotations["sluice.dev/run"] = c.run.run_id;

  Json items = Json::array();
  if (k.value("kserve", false)) {
    server["name"] = "kserve-container";
    Json predictor = {{"minReplicas", replicas},
                      {"initContainers", inits},
                      {"containers", {server}},
                      {"volumes", volumes}};
    place(predictor);
    if (canary) predictor["canaryTrafficPercent"] = std::lround(c.traffic);
    items.push_back({{"apiVersion", "serving.kserve.io/v1beta1"},
                     {"kind", "InferenceService"},
                     {"metadata",
                      {{"name", c.service},
                       {"namespace", ns},
                       {"labels", Labels(c, "", version)},
                       {"annotations", annotations}}},
                     {"spec", {{"predictor", predictor}}}});
    return Json{{"apiVersion", "v1"}, {"kind", "List"}, {"items", items}};
  }

  const int64_t own = canary ? CanaryReplicasAt(replicas, c.traffic) : replicas;
  // The canary keeps the service's total, so shifts and promote can size both tracks.
  Json object_annotations = annotations;
  if (canary) object_annotations["sluice.dev/total-replicas"] = std::to_string(replicas);
  Json selector = Labels(c, track, "");
  selector.erase("app.kubernetes.io/managed-by");
  selector.erase("app.kubernetes.io/name");
  Json pod_spec = {{"initContainers", inits}, {"containers", {server}}, {"volumes", volumes}};
  place(pod_spec);
  items.push_back(
      {{"apiVersion", "apps/v1"},
       {"kind", "Deployment"},
       {"metadata",
        {{"name", c.service + "-" + track},
         {"namespace", ns},
         {"labels", Labels(c, track, version)},
         {"annotations", object_annotations}}},
       {"spec",
        {{"replicas", own},
         {"selector", {{"matchLabels", selector}}},
         {"strategy", {{"type", "RollingUpdate"},
                       {"rollingUpdate", {{"maxUnavailable", 0}, {"maxSurge", 1}}}}},
         {"template",
          {{"metadata", {{"labels", Labels(c, track, version)}, {"annotations", annotations}}},
           {"spec", pod_spec}}}}}});
  if (canary) {
    items.push_back({{"apiVersion", "apps/v1"},
                     {"kind", "Deployment"},
                     {"metadata",
                      {{"name", c.service + "-stable"},
                       {"namespace", ns},
                       {"annotations", {{"sluice.dev/apply", "merge-patch"}}}}},
                     {"spec", {{"replicas", replicas - own}}}});
  }
  auto service = [&](const std::string& name, const Json& select) {
    return Json{{"apiVersion", "v1"},
                {"kind", "Service"},
                {"metadata", {{"name", name}, {"namespace", ns}, {"labels", Labels(c, "", "")}}},
                {"spec",
                 {{"selector", select},
                  {"ports", {{{"name", "http"}, {"port", 80}, {"targetPort", port}}}}}}};
  };
  items.push_back(service(c.service, {{"sluice.dev/service", c.service}}));
  if (canary) {
    // The canary alone, so traffic validation can measure it apart from the mix.
    items.push_back(service(c.service + "-canary",
                            {{"sluice.dev/service", c.service}, {"sluice.dev/track", "canary"}}));
  }
  return Json{{"apiVersion", "v1"}, {"kind", "List"}, {"items", items}};
}

int64_t CanaryReplicasAt(int64_t total, double share) {
  if (share >= 100) return total;
  int64_t n = std::llround(static_cast<double>(total) * share / 100.0);
  return std::clamp<int64_t>(n, 1, std::max<int64_t>(1, total - 1));
}

Json PromotePatch(const Json& canary, int64_t total) {
  Json tmpl = canary["spec"]["template"];
  tmpl["metadata"]["labels"]["sluice.dev/track"] = "stable";
  Json labels = canary["metadata"].value("labels", Json::object());
  labels["sluice.dev/track"] = "stable";
  const Json annotations = canary["metadata"].value("annotations", Json::object());
  Json promoted = {{"sluice.dev/model-digest", annotations.value("sluice.dev/model-digest", "")}};
  if (std::string run = annotations.value("sluice.dev/run", ""); !run.empty()) {
    promoted["sluice.dev/run"] = run;
  }
  return {{"metadata", {{"labels", labels}, {"annotations", promoted}}},
          {"spec", {{"replicas", total}, {"template", tmpl}}}};
}

}  // namespace sluice::serving
