#include "operators/kubernetes/launcher_pod.h"

#include <algorithm>

#include "engine/launch.h"

namespace sluice::operators {
namespace {

using Json = nlohmann::json;

const std::string kBin = kLauncherBinDir;
const std::string kWork = kLauncherWorkRoot;

std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    size_t end = pos + from.size();
    // Only whole path components: "/data/ws" must not match "/data/wsx".
    if (end == s.size() || s[end] == '/') {
      s.replace(pos, from.size(), to);
      pos += to.size();
    } else {
      pos = end;
    }
  }
  return s;
}

}  // namespace

Json SecretEnv(const std::string& name, const std::string& secret) {
  return {{"name", name}, {"valueFrom", {{"secretKeyRef", {{"name", secret}, {"key", name}}}}}};
}

bool UsesLauncher(const Task& task, const KubernetesObjectOptions& o) {
  return !o.object_storage.url.empty() && task.files.remote();
}

std::vector<std::pair<std::string, std::string>> PodPaths(const Task& task, const KubernetesObjectOptions& o) {
  std::vector<std::pair<std::string, std::string>> paths;
  if (UsesLauncher(task, o)) {
    if (!task.workdir.empty()) paths.emplace_back(task.workdir, kWork + "/work");
    if (!task.files.store_root.empty()) paths.emplace_back(task.files.store_root, kWork + "/store");
    if (!task.files.code_dir.empty()) paths.emplace_back(task.files.code_dir, kWork + "/code");
  }
  if (!o.host_workspace_root.empty()) paths.emplace_back(o.host_workspace_root, o.workspace_mount_path);
  // The most specific first: a workdir inside the store root is the workdir.
  std::stable_sort(paths.begin(), paths.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  return paths;
}

std::string ToPodPath(const std::vector<std::pair<std::string, std::string>>& paths, std::string value) {
  for (const auto& [from, to] : paths) value = ReplaceAll(std::move(value), from, to);
  return value;
}

void AddLauncher(const Task& task, const KubernetesObjectOptions& o,
                 const std::vector<std::pair<std::string, std::string>>& paths, Json* c) {
  const TaskFiles& f = task.files;
  LaunchSpec spec;
  spec.step = task.instance;
  spec.store_url = o.object_storage.url;
  spec.store_endpoint = o.object_storage.endpoint;
  spec.store_region = o.object_storage.region;
  spec.cache_dir = kWork + "/store";
  for (const auto& in : f.inputs) spec.inputs.push_back({in.name, in.digest, ToPodPath(paths, in.path), in.type});
  if (!f.code_digest.empty()) {
    spec.code_digest = f.code_digest;
    spec.code_dir = kWork + "/code";
  }
  spec.workdir = kWork + "/work";
  if (c->contains("command")) {
    for (const auto& a : (*c)["command"]) spec.argv.push_back(a.get<std::string>());
  }
  spec.outputs = f.outputs;
  spec.params = f.params;
  spec.metrics_file = f.metrics_file;
  spec.result_key = f.result_key;
  // A distributed step's pods all run the step; one stores its outputs.
  if (task.operator_type == "pytorchjob") spec.reporter = "pytorch-rank0";
  if (task.operator_type == "tfjob") spec.reporter = "tf-chief";
  (*c)["command"] = Json::array({kBin + "/ld.so", "--library-path", kBin + "/lib", kBin + "/sluice-launcher", "run"});
  Json& env = (*c)["env"];
  env.push_back({{"name", "SLUICE_LAUNCH"}, {"value", LaunchSpecToJson(spec).dump()}});
  env.push_back(SecretEnv("AWS_ACCESS_KEY_ID", o.object_storage.credentials_secret));
  env.push_back(SecretEnv("AWS_SECRET_ACCESS_KEY", o.object_storage.credentials_secret));
  c->erase("workingDir");
  Json mounts = c->contains("volumeMounts") ? (*c)["volumeMounts"] : Json::array();
  mounts.push_back({{"name", "sluice-bin"}, {"mountPath", kBin}});
  mounts.push_back({{"name", "sluice-work"}, {"mountPath", kWork}});
  (*c)["volumeMounts"] = std::move(mounts);
}

void AddLauncherVolumes(const KubernetesObjectOptions& o, Json* spec) {
  Json volumes = spec->contains("volumes") ? (*spec)["volumes"] : Json::array();
  volumes.push_back({{"name", "sluice-bin"}, {"emptyDir", Json::object()}});
  volumes.push_back({{"name", "sluice-work"}, {"emptyDir", Json::object()}});
  (*spec)["volumes"] = std::move(volumes);
  (*spec)["initContainers"] = Json::array(
      {{{"name", "sluice-install"},
        {"image", o.object_storage.launcher_image},
        {"command", Json::array({o.object_storage.launcher_path, "install", kBin})},
        {"volumeMounts", Json::array({{{"name", "sluice-bin"}, {"mountPath", kBin}}})}}});
}

}  // namespace sluice::operators
