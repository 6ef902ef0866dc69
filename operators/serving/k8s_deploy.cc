#include "operators/serving/k8s_deploy.h"

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "engine/sha256.h"
#include "engine/text.h"
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

const k8s::ResourceKind& PodKind() {
  static const k8s::ResourceKind kind{"v1", "Pod", "pods", true};
  return kind;
}

// At most `limit` bytes of `text`, cut with "...".
std::string Clip(const std::string& text, size_t limit = 300) {
  return text.size() <= limit ? text : text.substr(0, limit) + "...";
}

// Why one container is not running: "waiting: ImagePullBackOff: ..." or
// "exited 1: Error: ...", or "" when it runs (or has not been looked at).
std::string ContainerTrouble(const Json& status) {
  const Json state = status.value("state", Json::object());
  std::string what;
  if (state.contains("waiting")) {
    const Json& w = state["waiting"];
    std::string reason = w.value("reason", "");
    if (reason == "PodInitializing" || reason == "ContainerCreating") return "";
    what = "waiting: " + reason;
    if (!w.value("message", "").empty()) what += ": " + w.value("message", "");
  } else if (state.contains("terminated")) {
    const Json& t = state["terminated"];
    if (t.value("exitCode", 0) == 0) return "";
    what = "exited " + std::to_string(t.value("exitCode", 0)) + ": " + t.value("reason", "");
    if (!t.value("message", "").empty()) what += ": " + t.value("message", "");
  } else {
    return "";
  }
  if (status.value("restartCount", 0) > 0) what += " (restarts " + std::to_string(status.value("restartCount", 0)) + ")";
  return "container " + status.value("name", "?") + " " + Clip(what);
}

// One pod's state in one line: its phase, an unmet condition (Unschedulable
// and its message), and each init or main container that is not running.
std::string PodTrouble(const Json& pod) {
  const Json status = pod.value("status", Json::object());
  std::vector<std::string> parts = {status.value("phase", "Unknown")};
  for (const auto& c : status.value("conditions", Json::array())) {
    if (c.value("status", "") != "False" || c.value("type", "") != "PodScheduled") continue;
    parts.push_back("not scheduled: " + c.value("reason", "") + ": " + Clip(c.value("message", "")));
  }
  for (const char* key : {"initContainerStatuses", "containerStatuses"}) {
    for (const auto& cs : status.value(key, Json::array())) {
      std::string trouble = ContainerTrouble(cs);
      if (!trouble.empty()) parts.push_back(std::move(trouble));
    }
  }
  return "pod " + pod["metadata"].value("name", "?") + ": " + Join(parts, "; ");
}

}  // namespace

std::string DescribeRolloutPods(k8s::Client& client, const std::string& ns, const Json& deployment) {
  const Json labels = deployment.value("spec", Json::object())
                          .value("template", Json::object())
                          .value("metadata", Json::object())
                          .value("labels", Json::object());
  std::vector<std::string> selector;
  for (auto it = labels.begin(); it != labels.end(); ++it)
    if (it.value().is_string()) selector.push_back(it.key() + "=" + it.value().get<std::string>());
  if (selector.empty()) return "";
  auto pods = client.List(PodKind(), ns, Join(selector, ","));
  if (!pods) return "its pods could not be listed: " + pods.error().message();
  if (pods->items.empty()) return "no pod was created (see the ReplicaSet's events)";
  constexpr size_t kMaxPods = 3;
  std::vector<std::string> lines;
  for (size_t i = 0; i < pods->items.size() && i < kMaxPods; ++i) lines.push_back(PodTrouble(pods->items[i]));
  if (pods->items.size() > kMaxPods)
    lines.push_back("and " + std::to_string(pods->items.size() - kMaxPods) + " more pods");
  return Join(lines, "; ");
}

Status WaitRolledOut(k8s::Client& client, const k8s::ResourceKind& kind, const std::string& ns,
                     const std::string& name, const std::string& service, Duration timeout) {
  RolloutState state;
  auto watcher = client.Watch(kind, ns, "sluice.dev/service=" + service,
                              {[&](const k8s::WatchEvent& e) {
                                 if (e.type == k8s::WatchEvent::Type::kAdded ||
                                     e.type == k8s::WatchEvent::Type::kModified) {
                                   Observe(e.object, name, state);
                                 }
                               },
                               nullptr, nullptr});
  bool finished;
  std::string failure, last;
  {
    std::unique_lock<std::mutex> lock(state.mu);
    finished = state.cv.wait_for(lock, timeout,
                                 [&] { return state.done || !state.failure.empty(); });
    failure = state.failure;
    last = state.last;
  }
  watcher->Stop();
  if (!failure.empty()) {
    return Status::FailedPrecondition(kind.kind + " " + name + " " + failure);
  }
  if (!finished) {
    return Status::DeadlineExceeded(kind.kind + " " + name + " not rolled out within " +
                                    std::to_string(timeout.count()) + "ms (last: " + last + ")");
  }
  return Status::Ok();
}

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
  const std::string ns = config.kubernetes["namespace"].get<std::string>();
  // A canary needs a stable Deployment beside it. Without one, the model is
  // deployed as stable at 100%, as locally. With one, its replica count now
  // is kept on the canary, so a rollback restores exactly that.
  std::string note;
  std::optional<int64_t> stable_replicas;
  std::string stable_digest;
  const bool kserve = config.kubernetes.value("kserve", false);
  if (config.mode == DeployMode::kCanary && !kserve) {
    auto stable = client.Get(DeploymentKind(), ns, config.service + "-stable");
    if (!stable && stable.error().code() != StatusCode::kNotFound) return Error(stable.error());
    if (!stable) {
      config.mode = DeployMode::kReplace;
      note = "no stable deployment of " + config.service + " in namespace " + ns +
             ": deployed as stable at 100%";
    } else {
      stable_replicas = (*stable)["spec"].value("replicas", int64_t{1});
      stable_digest = (*stable)["metadata"]
                          .value("annotations", Json::object())
                          .value("sluice.dev/model-digest", "");
    }
  }
  auto objects = BuildKubernetesObjects(config);
  if (!objects) return Error(objects.error());
  if (stable_replicas) {
    for (auto& o : (*objects)["items"]) {
      if (o["metadata"]["name"] == config.service + "-canary") {
        o["metadata"]["annotations"]["sluice.dev/stable-replicas-before"] =
            std::to_string(*stable_replicas);
      }
    }
  }

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
  // The first Deployment (or the InferenceService) is the new model: it is
  // followed to its rollout before anything else is applied, so a canary
  // that never becomes available has not scaled the stable Deployment down
  // and the previous deployment is left exactly as it was.
  const std::string who =
      "service " + config.service + " version " + config.version + " in namespace " + ns;
  bool rolled_out = false;
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
    if (patch_only || rolled_out ||
        (object["kind"] != "Deployment" && object["kind"] != "InferenceService")) {
      continue;
    }
    // Follow the rollout through a watch.
    rolled_out = true;
    Status rolled =
        WaitRolledOut(client, **kind, ns, name, config.service, config.readiness_timeout);
    if (!rolled.ok()) {
      // Read before the objects are put back: a deleted canary's pods tell nothing.
      std::string pods = object["kind"] == "Deployment" ? DescribeRolloutPods(client, ns, object) : "";
      restore();
      return Error(Status(rolled.code(), who + ": " + rolled.message() + (pods.empty() ? "" : ". " + pods) +
                                             ". The objects were put back as they were; the "
                                             "previous deployment keeps serving"));
    }
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
  record.baseline_digest = stable_digest;
  record.details = {{"mode", result.mode}, {"objects", Json::array()}};
  for (const auto& o : (*objects)["items"]) {
    record.details["objects"].push_back(o["kind"].get<std::string>() + "/" +
                                        o["metadata"]["name"].get<std::string>());
  }
  result.note = note;
  Status recorded = RecordDeployment(env, record);
  if (!recorded.ok()) result.note += (result.note.empty() ? "" : "; ") + recorded.ToString();
  return result;
}

}  // namespace sluice::serving

namespace sluice::serving {
namespace {

std::string Annotation(const Json& object, const std::string& key) {
  return object.value("metadata", Json::object())
      .value("annotations", Json::object())
      .value(key, "");
}

std::string Label(const Json& object, const std::string& key) {
  return object.value("metadata", Json::object()).value("labels", Json::object()).value(key, "");
}

int64_t Replicas(const Json& deployment) {
  return deployment.value("spec", Json::object()).value("replicas", int64_t{1});
}

// A canary deployed by DeployKubernetes: Deployments <service>-stable and
// <service>-canary under one Service, traffic split by replicas.
class KubernetesRollout : public RolloutTarget {
 public:
  static Result<std::unique_ptr<KubernetesRollout>> Load(const ValidationConfig& config,
                                                         k8s::Client& client,
                                                         const ServingEnv& env) {
    auto r = std::unique_ptr<KubernetesRollout>(new KubernetesRollout(config, client, env));
    r->ns_ = config.kubernetes.value("namespace", "");
    if (r->ns_.empty()) {
      r->ns_ = client.config().namespace_.empty() ? "default" : client.config().namespace_;
    }
    if (config.kubernetes.contains("rollout_timeout")) {
      auto t = ParseConfigDuration(config.kubernetes["rollout_timeout"],
                                   "validation.kubernetes.rollout_timeout");
      if (!t) return Error(t.error());
      r->timeout_ = *t;
    }
    auto stable = client.Get(DeploymentKind(), r->ns_, r->StableName());
    if (!stable) {
      if (stable.error().code() != StatusCode::kNotFound) return Error(stable.error());
      return Error(Status::NotFound("service " + config.service +
                                    " is not deployed on Kubernetes (no Deployment " +
                                    r->StableName() + " in namespace " + r->ns_ +
                                    "); run a deploy step with executor: kubernetes first"));
    }
    auto canary = client.Get(DeploymentKind(), r->ns_, r->CanaryName());
    if (!canary && canary.error().code() != StatusCode::kNotFound) return Error(canary.error());
    if (config.shadow && config.baseline_endpoint.empty()) {
      return Error(Status::InvalidArgument(
          "validation.baseline_endpoint: required with shadow on Kubernetes: where the stable "
          "model answers from here"));
    }
    r->stable_object_ = *stable;
    r->total_ = Replicas(*stable);
    if (canary) {
      r->canary_object_ = *canary;
      std::string total = Annotation(*canary, "sluice.dev/total-replicas");
      std::string before = Annotation(*canary, "sluice.dev/stable-replicas-before");
      r->total_ = total.empty() ? Replicas(*stable) + Replicas(*canary) : std::stoll(total);
      r->stable_before_ = before.empty() ? r->total_ : std::stoll(before);
    }
    r->Refresh();
    return r;
  }

  const RolloutBackend& stable() const override { return stable_; }
  const std::optional<RolloutBackend>& candidate() const override { return candidate_; }

  Status Shift(double share, int stage, const std::vector<double>& stages) override {
    int64_t canary = CanaryReplicasAt(total_, share);
    // Replicas are the unit: a share that rounds to the split in place
    // changes nothing (1 of 3 replicas serves 10% as well as 33%).
    if (canary == Replicas(canary_object_) && total_ - canary == Replicas(stable_object_)) {
      return Status::Ok();
    }
    SLUICE_RETURN_IF_ERROR(Scale(CanaryName(), canary, &canary_object_));
    SLUICE_RETURN_IF_ERROR(Scale(StableName(), total_ - canary, &stable_object_));
    Refresh();
    DeploymentRecord r = Record("shift", *candidate_);
    r.baseline_digest = stable_.model_digest;
    r.traffic_percent = share;
    r.details = {{"stage", stage},
                 {"stages", stages},
                 {"replicas", {{"canary", canary}, {"stable", total_ - canary}}}};
    (void)RecordDeployment(env_, r);
    return Status::Ok();
  }

  Status Promote() override {
    // The canary's pod template, relabelled for the stable track (the
    // stable Deployment's selector), at the total; then the canary goes.
    auto patched = client_.MergePatch(DeploymentKind(), ns_, StableName(),
                                      PromotePatch(canary_object_, total_));
    if (!patched) return patched.error().WithContext("promoting " + Who());
    SLUICE_RETURN_IF_ERROR(Wait(StableName()));
    SLUICE_RETURN_IF_ERROR(DeleteCanary());
    RolloutBackend replaced = stable_;
    stable_object_ = *patched;
    Refresh();
    DeploymentRecord r = Record("promote", stable_);
    r.traffic_percent = 100;
    r.details = {{"replaced_version", replaced.version},
                 {"replaced_digest", replaced.model_digest},
                 {"replicas", total_}};
    (void)RecordDeployment(env_, r);
    return Status::Ok();
  }

  Status Rollback(const std::string& reason) override {
    // Capacity first: the stable Deployment back to its size before the
    // canary (its template was never changed), then the canary goes.
    RolloutBackend rolled_back = *candidate_;
    SLUICE_RETURN_IF_ERROR(Scale(StableName(), stable_before_, &stable_object_));
    SLUICE_RETURN_IF_ERROR(DeleteCanary());
    Refresh();
    DeploymentRecord r = Record("rollback", stable_);
    r.traffic_percent = stable_.traffic_percent;
    r.details = {{"rolled_back_version", rolled_back.version},
                 {"rolled_back_digest", rolled_back.model_digest},
                 {"reason", reason},
                 {"replicas", stable_before_}};
    (void)RecordDeployment(env_, r);
    return Status::Ok();
  }

  Json Describe() const override {
    auto track = [](const Json& d) -> Json {
      if (d.is_null()) return nullptr;
      return {{"name", d["metadata"]["name"]},
              {"replicas", Replicas(d)},
              {"version", Label(d, "sluice.dev/version")},
              {"model_digest", Annotation(d, "sluice.dev/model-digest")}};
    };
    return {{"executor", "kubernetes"},
            {"namespace", ns_},
            {"total_replicas", total_},
            {"stable", track(stable_object_)},
            {"canary", track(canary_object_)}};
  }

 private:
  KubernetesRollout(const ValidationConfig& config, k8s::Client& client, const ServingEnv& env)
      : config_(config), client_(client), env_(env) {}

  std::string StableName() const { return config_.service + "-stable"; }
  std::string CanaryName() const { return config_.service + "-canary"; }
  std::string ServiceUrl(const std::string& name) const {
    return "http://" + name + "." + ns_ + ".svc.cluster.local";
  }
  std::string Who() const { return "service " + config_.service + " in namespace " + ns_; }

  // The backends as the objects say: version and digest from labels and
  // annotations, the share from the replica counts.
  void Refresh() {
    int64_t stable = Replicas(stable_object_);
    int64_t canary = canary_object_.is_null() ? 0 : Replicas(canary_object_);
    double sum = static_cast<double>(std::max<int64_t>(1, stable + canary));
    stable_ = {Label(stable_object_, "sluice.dev/version"),
               Annotation(stable_object_, "sluice.dev/model-digest"), config_.baseline_endpoint,
               100.0 * static_cast<double>(stable) / sum};
    if (canary_object_.is_null()) {
      // No canary: the service itself is validated.
      stable_.url = !config_.endpoint.empty() ? config_.endpoint : ServiceUrl(config_.service);
      candidate_.reset();
    } else {
      candidate_ = RolloutBackend{
          Label(canary_object_, "sluice.dev/version"),
          Annotation(canary_object_, "sluice.dev/model-digest"),
          !config_.endpoint.empty() ? config_.endpoint : ServiceUrl(CanaryName()),
          100.0 * static_cast<double>(canary) / sum};
    }
  }

  Status Wait(const std::string& name) {
    Status s = WaitRolledOut(client_, DeploymentKind(), ns_, name, config_.service, timeout_);
    if (!s.ok()) {
      auto deployment = client_.Get(DeploymentKind(), ns_, name);
      std::string pods = deployment ? DescribeRolloutPods(client_, ns_, *deployment) : "";
      return Status(s.code(), Who() + ": " + s.message() + (pods.empty() ? "" : ". " + pods) +
                                  ". See `kubectl -n " + ns_ + " describe deployments " + name + "`");
    }
    return Status::Ok();
  }

  Status Scale(const std::string& name, int64_t replicas, Json* object) {
    auto patched =
        client_.MergePatch(DeploymentKind(), ns_, name, {{"spec", {{"replicas", replicas}}}});
    if (!patched) {
      return patched.error().WithContext(Who() + ": scaling " + name + " to " +
                                         std::to_string(replicas));
    }
    *object = *patched;
    return Wait(name);
  }

  // The canary's Deployment and its Service.
  Status DeleteCanary() {
    for (const auto* kind : {&DeploymentKind(), &ServiceKind()}) {
      Status s = client_.Delete(*kind, ns_, CanaryName(), k8s::Propagation::kBackground);
      if (!s.ok() && s.code() != StatusCode::kNotFound) {
        return s.WithContext(Who() + ": deleting " + kind->kind + " " + CanaryName());
      }
    }
    canary_object_ = nullptr;
    return Status::Ok();
  }

  DeploymentRecord Record(const std::string& action, const RolloutBackend& model) const {
    DeploymentRecord r;
    r.service = config_.service;
    r.namespace_ = ns_;
    r.executor = "kubernetes";
    r.action = action;
    r.version = model.version;
    r.model_digest = model.model_digest;
    r.endpoint = "http://" + config_.service + "." + ns_ + ".svc.cluster.local";
    r.run_id = config_.run.run_id;
    r.instance = config_.run.instance;
    r.execution_id = config_.run.execution_id;
    return r;
  }

  const ValidationConfig& config_;
  k8s::Client& client_;
  const ServingEnv& env_;
  std::string ns_;
  Duration timeout_ = std::chrono::minutes(5);
  Json stable_object_;
  Json canary_object_;  // null when there is no canary
  int64_t total_ = 1;
  int64_t stable_before_ = 1;
  RolloutBackend stable_;
  std::optional<RolloutBackend> candidate_;
};

}  // namespace

Result<ValidationOutcome> ValidateKubernetes(const ValidationConfig& config, k8s::Client& client,
                                             const ServingEnv& env) {
  auto items = LoadRequestSetFor(config);
  if (!items) return Error(items.error());
  auto target = KubernetesRollout::Load(config, client, env);
  if (!target) return Error(target.error());
  return RunRollout(config, *items, **target);
}

Status UndeployKubernetes(const std::string& service, const std::string& ns,
                          k8s::Client& client, const ServingEnv& env, const RunContext& run) {
  SLUICE_RETURN_IF_ERROR(ValidateServiceName(service));
  DeploymentRecord record;
  record.service = service;
  record.namespace_ = ns;
  record.executor = "kubernetes";
  record.action = "undeploy";
  record.traffic_percent = 0;
  record.run_id = run.run_id;
  record.instance = run.instance;
  record.execution_id = run.execution_id;
  record.details = {{"deleted", Json::array()}};
  auto stable = client.Get(DeploymentKind(), ns, service + "-stable");
  if (stable) {
    record.version = Label(*stable, "sluice.dev/version");
    record.model_digest = Annotation(*stable, "sluice.dev/model-digest");
  }
  const std::vector<std::pair<const k8s::ResourceKind*, std::string>> objects = {
      {&DeploymentKind(), service + "-canary"},
      {&DeploymentKind(), service + "-stable"},
      {&ServiceKind(), service + "-canary"},
      {&ServiceKind(), service},
      {&InferenceServiceKind(), service}};
  for (const auto& [kind, name] : objects) {
    // Delete succeeds on a missing object: ask first, to record what was there.
    auto existing = client.Get(*kind, ns, name);
    if (!existing) {
      // No InferenceService API (KServe not installed) counts as none.
      if (existing.error().code() == StatusCode::kNotFound || kind == &InferenceServiceKind()) continue;
      return existing.error().WithContext("undeploying service " + service + " in namespace " + ns);
    }
    Status s = client.Delete(*kind, ns, name, k8s::Propagation::kBackground);
    if (!s.ok()) return s.WithContext("undeploying service " + service + " in namespace " + ns);
    record.details["deleted"].push_back(kind->kind + "/" + name);
  }
  if (record.details["deleted"].empty()) {
    return Status::NotFound("service " + service + " is not deployed in namespace " + ns +
                            " (no Deployment " + service + "-stable or -canary, no Service " +
                            service + " or " + service + "-canary)");
  }
  return RecordDeployment(env, record);
}

}  // namespace sluice::serving
