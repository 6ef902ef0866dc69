#include "operators/serving/k8s_deploy.h"

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "engine/sha256.h"
#include "operators/serving/k8s_manifests.h"

namespace sluice::serving {
namespace {

const k8s::ResourceKind& DeploymentKind() {
  static const k8s::ResourceKind kind{"apps/v1", "Deployment", "deployments", true};
  return kind;
}
const k8s::ResourceKind& ServiceKind() {
  static const k8s::ResourceKind kind{"v1", "Service", "services", true};
  return kind;
}
const k8s::ResourceKind& InferenceServiceKind() {
  static const k8s::ResourceKind kind{"serving.kserve.io/v1beta1", "InferenceService",
                                      "inferenceservices", true};
  return kind;
}

Result<const k8s::ResourceKind*> KindOf(const Json& object) {
  std::string kind = object.value("kind", "");
  if (kind == "Deployment") return &DeploymentKind();
  if (kind == "Service") return &ServiceKind();
  if (kind == "InferenceService") return &InferenceServiceKind();
  return Error(Status::Internal("no REST mapping for kind " + kind));
}

// What the watch has seen of the object being rolled out.
struct RolloutState {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::string failure;
  std::string last = "no status yet";
};

void Observe(const Json& object, const std::string& name, RolloutState& s) {
  if (object.value("metadata", Json::object()).value("name", "") != name) return;
  const Json status = object.value("status", Json::object());
  std::lock_guard<std::mutex> lock(s.mu);
  if (object.value("kind", "") == "InferenceService") {
    for (const auto& c : status.value("conditions", Json::array())) {
      if (c.value("type", "") == "Ready") {
        s.last = "Ready=" + c.value("status", "") + " " + c.value("reason", "") + " " +
                 c.value("message", "");
        if (c.value("status", "") == "True") s.done = true;
      }
    }
    s.cv.notify_all();
    return;
  }
  int64_t generation = object["metadata"].value("generation", int64_t{0});
  int64_t observed = status.value("observedGeneration", int64_t{0});
  int64_t want = object.value("spec", Json::object()).value("replicas", int64_t{1});
  int64_t updated = status.value("updatedReplicas", int64_t{0});
  int64_t available = status.value("availableReplicas", int64_t{0});
  s.last = "observedGeneration " + std::to_string(observed) + "/" + std::to_string(generation) +
           ", updatedReplicas " + std::to_string(updated) + "/" + std::to_string(want) +
           ", availableReplicas " + std::to_string(available) + "/" + std::to_string(want);
  for (const auto& c : status.value("conditions", Json::array())) {
    if (c.value("type", "") == "Progressing" && c.value("reason", "") == "ProgressDeadlineExceeded") {
      s.failure = "ProgressDeadlineExceeded: " + c.value("message", "");
    }
  }
  if (observed >= generation && updated >= want && available >= want) s.done = true;
  s.cv.notify_all();
}

}  // namespace

Result<DeployResult> DeployKubernetes(const DeployConfig& input, k8s::Client& client,
                                      const ServingEnv& env) {
  DeployConfig config = input;
  if (!config.kubernetes.contains("namespace")) {
    config.kubernetes["namespace"] =
        client.config().namespace_.empty() ? "default" : client.config().namespace_;
  }
  if (config.model_digest.empty() && std::filesystem::is_regular_file(config.model)) {
    auto hex = Sha256File(config.model);
    if (!hex) return Error(hex.error().WithContext("hashing the model"));
    config.model_digest = "sha256:" + *hex;
  }
  if (config.version.empty()) {
    config.version = !config.run.run_id.empty() ? config.run.run_id
                     : config.model_digest.size() > 19 ? config.model_digest.substr(7, 12)
                                                       : "latest";
  }
  auto objects = BuildKubernetesObjects(config);
  if (!objects) return Error(objects.error());
  const std::string ns = config.kubernetes["namespace"].get<std::string>();

  // Apply, remembering how to undo each step.
  struct Undo {
    const k8s::ResourceKind* kind;
    std::string name;
    bool created;
    Json previous;  // the merge patch that restores it
  };
  std::vector<Undo> undo;
  auto restore = [&] {
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
      if (it->created) {
        (void)client.Delete(*it->kind, ns, it->name, k8s::Propagation::kBackground);
      } else {
        (void)client.MergePatch(*it->kind, ns, it->name, it->previous);
      }
    }
  };
  std::string rollout_name;
  const k8s::ResourceKind* rollout_kind = nullptr;
  for (Json object : (*objects)["items"]) {
    auto kind = KindOf(object);
    if (!kind) return Error(kind.error());
    std::string name = object["metadata"]["name"].get<std::string>();
    bool patch_only = object["metadata"].value("annotations", Json::object())
                          .value("sluice.dev/apply", "") == "merge-patch";
    if (patch_only) object["metadata"].erase("annotations");
    auto existing = client.Get(**kind, ns, name);
    if (!existing && existing.error().code() != StatusCode::kNotFound) {
      restore();
      return Error(existing.error());
    }
    Result<Json> applied;
    if (existing) {
      Json previous = {{"spec", (*existing)["spec"]}};
      if (object["metadata"].contains("labels")) previous["metadata"]["labels"] = (*existing)["metadata"].value("labels", Json::object());
      if (object["metadata"].contains("annotations")) {
        previous["metadata"]["annotations"] = (*existing)["metadata"].value("annotations", Json::object());
      }
      applied = client.MergePatch(**kind, ns, name, object);
      if (applied) undo.push_back({*kind, name, false, previous});
    } else if (patch_only) {
      continue;  // nothing to scale
    } else {
      applied = client.Create(**kind, ns, object);
      if (applied) undo.push_back({*kind, name, true, Json()});
    }
    if (!applied) {
      restore();
      return Error(applied.error().WithContext("service " + config.service + ": applying " +
                                               object["kind"].get<std::string>() + " " + ns + "/" +
                                               name));
    }
    if (!patch_only && rollout_kind == nullptr &&
        (object["kind"] == "Deployment" || object["kind"] == "InferenceService")) {
      rollout_kind = *kind;
      rollout_name = name;
    }
  }

  // Follow the rollout through a watch.
  RolloutState state;
  std::string selector = "sluice.dev/service=" + config.service;
  auto watcher = client.Watch(*rollout_kind, ns, selector,
                              {[&](const k8s::WatchEvent& e) {
                                 if (e.type == k8s::WatchEvent::Type::kAdded ||
                                     e.type == k8s::WatchEvent::Type::kModified) {
                                   Observe(e.object, rollout_name, state);
                                 }
                               },
                               nullptr, nullptr});
  bool finished;
  std::string failure, last;
  {
    std::unique_lock<std::mutex> lock(state.mu);
    finished = state.cv.wait_for(lock, config.readiness_timeout,
                                 [&] { return state.done || !state.failure.empty(); });
    failure = state.failure;
    last = state.last;
  }
  watcher->Stop();
  std::string who = "service " + config.service + " version " + config.version + " in namespace " + ns;
  if (!finished || !failure.empty()) {
    restore();
    std::string why = !failure.empty()
                          ? failure
                          : "not rolled out within " + std::to_string(config.readiness_timeout.count()) +
                                "ms (last: " + last + ")";
    return Error(Status(failure.empty() ? StatusCode::kDeadlineExceeded : StatusCode::kFailedPrecondition,
                        who + ": " + rollout_kind->kind + " " + rollout_name + " " + why +
                            ". The objects were put back as they were; the previous deployment "
                            "keeps serving. See `kubectl -n " + ns + " describe " +
                            rollout_kind->plural + " " + rollout_name + "`"));
  }

  DeployResult result;
  result.service = config.service;
  result.endpoint = "http://" + config.service + "." + ns + ".svc.cluster.local";
  result.candidate_url = result.endpoint;
  result.version = config.version;
  result.model_digest = config.model_digest;
  result.traffic_percent = config.mode == DeployMode::kCanary ? config.traffic : 100;
  result.mode = config.mode == DeployMode::kCanary ? "canary" : "replace";
  result.state = *objects;

  DeploymentRecord record;
  record.service = config.service;
  record.namespace_ = ns;
  record.executor = "kubernetes";
  record.action = "deploy";
  record.version = config.version;
  record.model_digest = config.model_digest;
  record.traffic_percent = result.traffic_percent;
  record.endpoint = result.endpoint;
  record.run_id = config.run.run_id;
  record.instance = config.run.instance;
  record.execution_id = config.run.execution_id;
  record.details = {{"mode", result.mode}, {"objects", Json::array()}};
  for (const auto& o : (*objects)["items"]) {
    record.details["objects"].push_back(o["kind"].get<std::string>() + "/" +
                                        o["metadata"]["name"].get<std::string>());
  }
  Status recorded = RecordDeployment(env, record);
  if (!recorded.ok()) result.note = recorded.ToString();
  return result;
}

}  // namespace sluice::serving
