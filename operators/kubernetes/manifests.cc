#include "operators/kubernetes/manifests.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "executors/kubernetes/api/objects.h"
#include "operators/kubernetes/launcher_pod.h"

namespace sluice::operators {
namespace {

std::string Quantity(int64_t n, bool millis) {
  if (millis) {
    if (n % 1000 == 0) return std::to_string(n / 1000);
    return std::to_string(n) + "m";
  }
  const int64_t kKi = 1024, kMi = kKi * 1024, kGi = kMi * 1024, kTi = kGi * 1024;
  if (n % kTi == 0) return std::to_string(n / kTi) + "Ti";
  if (n % kGi == 0) return std::to_string(n / kGi) + "Gi";
  if (n % kMi == 0) return std::to_string(n / kMi) + "Mi";
  if (n % kKi == 0) return std::to_string(n / kKi) + "Ki";
  return std::to_string(n);
}

}  // namespace

Json ResourceRequirements(const Resources& r) {
  Json q = Json::object();
  if (r.cpu_millis > 0) q["cpu"] = Quantity(r.cpu_millis, true);
  if (r.memory_bytes > 0) q["memory"] = Quantity(r.memory_bytes, false);
  if (r.gpu > 0) q["nvidia.com/gpu"] = std::to_string(r.gpu);
  if (q.empty()) return Json::object();
  return Json{{"requests", q}, {"limits", q}};
}

// A per-replica `resources:` override (see the header).
Json ReplicaResources(const Json& spec) {
  if (spec.contains("requests") || spec.contains("limits")) return spec;
  Json q = Json::object();
  for (const auto& [k, v] : spec.items()) {
    std::string key = k == "gpu" ? "nvidia.com/gpu" : k;
    q[key] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  if (q.empty()) return Json::object();
  return Json{{"requests", q}, {"limits", q}};
}

Result<PodSettings> Settings(const Task& task, const ManifestOptions& o) {
  PodSettings s;
  s.namespace_ = o.namespace_.empty() ? "default" : o.namespace_;
  s.service_account = o.service_account;
  s.priority_class = o.priority_class;
  s.queue = o.queue;
  s.pull_secrets = o.image_pull_secrets;
  s.ttl = o.ttl_seconds_after_finished;
  s.object = o.object.empty() ? "pod" : o.object;
  if (!task.config.is_object() || !task.config.contains("kubernetes")) return s;
  const Json& k = task.config["kubernetes"];
  auto bad = [&](const std::string& what) {
    return Error(Status::InvalidArgument("step \"" + task.step + "\": kubernetes." + what));
  };
  if (!k.is_object()) return bad(" must be a mapping");
  for (const auto& [key, v] : k.items()) {
    if (key == "serviceAccountName" || key == "priorityClassName" || key == "queue" ||
        key == "namespace") {
      if (!v.is_string()) return bad(key + " must be a string");
      (key == "queue"                ? s.queue
       : key == "namespace"          ? s.namespace_
       : key == "serviceAccountName" ? s.service_account
                                     : s.priority_class) = v.get<std::string>();
    } else if (key == "imagePullSecrets") {
      if (!v.is_array()) return bad("imagePullSecrets must be a list of Secret names");
      s.pull_secrets.clear();
      for (const auto& n : v) {
        if (n.is_string()) {
          s.pull_secrets.push_back(n.get<std::string>());
        } else if (n.is_object() && n.contains("name") && n["name"].is_string()) {
          s.pull_secrets.push_back(n["name"].get<std::string>());
        } else {
          return bad("imagePullSecrets must be a list of Secret names");
        }
      }
    } else if (key == "ttlSecondsAfterFinished") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) {
        return bad("ttlSecondsAfterFinished must be a non-negative integer");
      }
      s.ttl = v.get<int64_t>();
    } else if (key == "podLabels" || key == "podAnnotations") {
      if (!v.is_object()) return bad(key + " must be a mapping of strings");
      for (const auto& [lk, lv] : v.items()) {
        if (!lv.is_string()) return bad(key + "." + lk + " must be a string");
      }
      (key == "podLabels" ? s.pod_labels : s.pod_annotations) = v;
    } else if (key == "object") {
      if (!v.is_string() || (v != "pod" && v != "job")) return bad("object must be pod or job");
      s.object = v.get<std::string>();
    } else if (key == "priority") {
      // The step's `priority`, put here by the runner (engine/run/task_builder.cc)
      // and read by Metadata().
      if (!v.is_number_integer()) return bad("priority must be an integer");
    } else if (key == "logs") {
      // Read by the executor when the step ends; nothing in the object.
      if (!v.is_string() || (v != "all" && v != "failed")) return bad("logs must be all or failed");
    } else {
      return bad(key + " is not a known setting (known: namespace, serviceAccountName, "
                       "priorityClassName, "
                       "imagePullSecrets, queue, ttlSecondsAfterFinished, podLabels, "
                       "podAnnotations, object, logs)");
    }
  }
  return s;
}

namespace {

Json Labels(const Task& task, const PodSettings& s) {
  Json l = {{k8s::kLabelPipeline, LabelValue(task.pipeline)},
            {k8s::kLabelRun, LabelValue(task.run_id)},
            {k8s::kLabelStep, LabelValue(task.step)},
            {k8s::kLabelAttempt, std::to_string(task.attempt)},
            {"app.kubernetes.io/managed-by", "sluice"}};
  return l;
}

// On a queued object whose step has `priority: N` (N > 0): the Kueue
// WorkloadPriorityClass "sluice-priority-N". Priority 0 or less adds no
// label (Kueue's default priority, 0); lint refuses a negative priority on a
// queued step.
constexpr char kLabelPriorityClass[] = "kueue.x-k8s.io/priority-class";

// The step's priority: kubernetes.priority, which the runner sets from the
// step's `priority` (0 when absent).
int StepPriority(const Task& task) {
  if (!task.config.is_object() || !task.config.contains("kubernetes")) return 0;
  const Json& k = task.config["kubernetes"];
  if (!k.is_object() || !k.contains("priority") || !k["priority"].is_number_integer()) return 0;
  return k["priority"].get<int>();
}

Json Annotations(const Task& task) {
  return Json{{"sluice.dev/run-id", task.run_id},
              {"sluice.dev/pipeline", task.pipeline},
              {"sluice.dev/step", task.step},
              {"sluice.dev/instance", task.instance}};
}

}  // namespace

// The main container (name, image, command, env, resources, workdir).
Result<Json> Container(const Task& task, const ManifestOptions& o, const std::string& name,
                       const std::string& image, const std::vector<std::string>& argv,
                       const std::map<std::string, std::string>& extra_env,
                       const Json& resources) {
  const auto paths = PodPaths(task, o);
  auto host = [&](const std::string& v) { return ToPodPath(paths, v); };
  Json c = {{"name", name}, {"image", image}};
  if (!argv.empty()) {
    Json cmd = Json::array();
    for (const auto& a : argv) cmd.push_back(host(a));
    c["command"] = cmd;
  }
  std::map<std::string, std::string> env = {
      {"SLUICE_RUN_ID", task.run_id},   {"SLUICE_PIPELINE", task.pipeline},
      {"SLUICE_STEP", task.step},       {"SLUICE_INSTANCE", task.instance},
      {"SLUICE_ATTEMPT", std::to_string(task.attempt)}};
  for (const auto& [k, v] : task.env) env[k] = v;
  for (const auto& [k, v] : extra_env) env[k] = v;
  Json env_list = Json::array();
  for (const auto& [k, v] : env) {
    bool secret = std::find(task.secret_env.begin(), task.secret_env.end(), k) !=
                  task.secret_env.end();
    if (secret) {
      auto ref = task.secret_refs.find(k);
      if (ref == task.secret_refs.end()) {
        return Error(Status::InvalidArgument(
            "step \"" + task.step + "\": env " + k +
            " is a secret but has no Kubernetes Secret reference; write it as "
            "{secret: {name: <secret>, key: <key>}} so its value is never put in a manifest"));
      }
      env_list.push_back({{"name", k},
                          {"valueFrom",
                           {{"secretKeyRef", {{"name", ref->second.name}, {"key", ref->second.key}}}}}});
    } else {
      env_list.push_back({{"name", k}, {"value", host(v)}});
    }
  }
  c["env"] = env_list;
  if (!resources.empty()) c["resources"] = resources;
  std::string workdir;
  if (!o.host_workspace_root.empty() && !task.workdir.empty()) {
    std::string mapped = host(task.workdir);
    if (mapped != task.workdir) workdir = mapped;
  }
  if (workdir.empty() && !o.workspace_pvc.empty()) {
    workdir = o.workspace_mount_path + "/runs/" + DnsPart(task.run_id) + "/" +
              DnsPart(task.instance);
  }
  if (!workdir.empty()) c["workingDir"] = workdir;
  if (!o.workspace_pvc.empty()) {
    c["volumeMounts"] = Json::array({{{"name", "sluice-workspace"}, {"mountPath", o.workspace_mount_path}}});
  }
  if (UsesLauncher(task, o)) AddLauncher(task, o, paths, &c);
  return c;
}

// The pod template around `container`.
Json PodTemplate(const Task& task, const ManifestOptions& o, const PodSettings& s,
                 Json container) {
  Json labels = Labels(task, s);
  for (const auto& [k, v] : s.pod_labels.items()) labels[k] = v;
  Json meta = {{"labels", labels}};
  if (!s.pod_annotations.empty()) meta["annotations"] = s.pod_annotations;
  Json spec = {{"restartPolicy", "Never"}, {"containers", Json::array({std::move(container)})}};
  if (!task.resources.node_selector.empty()) spec["nodeSelector"] = task.resources.node_selector;
  Json tolerations = Json::array();
  bool gpu_toleration = false;
  for (const auto& t : task.resources.tolerations) {
    tolerations.push_back(t);
    if (t.is_object() && t.value("key", "") == "nvidia.com/gpu") gpu_toleration = true;
  }
  if (task.resources.gpu > 0 && !gpu_toleration) {
    tolerations.push_back({{"key", "nvidia.com/gpu"}, {"operator", "Exists"}, {"effect", "NoSchedule"}});
  }
  if (!tolerations.empty()) spec["tolerations"] = tolerations;
  if (!s.service_account.empty()) spec["serviceAccountName"] = s.service_account;
  if (!s.priority_class.empty()) spec["priorityClassName"] = s.priority_class;
  if (!s.pull_secrets.empty()) {
    Json list = Json::array();
    for (const auto& n : s.pull_secrets) list.push_back({{"name", n}});
    spec["imagePullSecrets"] = list;
  }
  if (!o.workspace_pvc.empty()) {
    spec["volumes"] = Json::array(
        {{{"name", "sluice-workspace"}, {"persistentVolumeClaim", {{"claimName", o.workspace_pvc}}}}});
  }
  if (UsesLauncher(task, o)) AddLauncherVolumes(o, &spec);
  return Json{{"metadata", meta}, {"spec", spec}};
}

Json Metadata(const Task& task, const ManifestOptions& o, const PodSettings& s,
              const WorkloadKind& kind) {
  Json labels = Labels(task, s);
  if (!s.queue.empty()) {
    labels[k8s::kLabelQueue] = s.queue;
    const int priority = StepPriority(task);
    if (priority > 0) labels[kLabelPriorityClass] = "sluice-priority-" + std::to_string(priority);
  }
  return Json{{"name", ObjectName(task.run_id, task.instance, task.attempt, kind.max_name_length)},
              {"namespace", s.namespace_},
              {"labels", labels},
              {"annotations", Annotations(task)}};
}

Json BarePod(const Task& task, const ManifestOptions& o, const PodSettings& s, Json pod_template) {
  static const WorkloadKind kPod{"v1", "Pod", "pods", "", "main", 63};
  Json meta = Metadata(task, o, s, kPod);
  Json& from = pod_template["metadata"];
  if (from.contains("labels")) meta["labels"].update(from["labels"]);
  meta["labels"][k8s::kLabelObject] = "pod";
  if (from.contains("annotations")) meta["annotations"].update(from["annotations"]);
  if (s.ttl) meta["annotations"][k8s::kAnnotationTtl] = std::to_string(*s.ttl);
  Json spec = std::move(pod_template["spec"]);
  if (auto d = DeadlineSeconds(task)) spec["activeDeadlineSeconds"] = *d;
  return Json{{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", std::move(meta)}, {"spec", std::move(spec)}};
}

bool IsPod(const Json& object) {
  if (object.value("kind", "") == "Pod") return true;
  return object.contains("spec") && object["spec"].is_object() && object["spec"].contains("containers");
}

WorkloadState BarePodState(const Json& pod, const std::string& container_name) {
  WorkloadState st;
  if (!pod.contains("status") || !pod["status"].is_object()) return st;
  const Json& status = pod["status"];
  const std::string phase = status.value("phase", "");
  if (phase == "Succeeded") {
    st.finished = true;
    st.outcome = TaskOutcome::kSucceeded;
    st.message = "Pod succeeded";
    return st;
  }
  if (phase != "Failed") return st;
  st.finished = true;
  // The pod's own reason (Evicted, NodeLost...), or a DisruptionTarget
  // condition, means the cluster ended it: a system failure, kError, which
  // `retryOn: Error` retries; DeadlineExceeded is its timeout. Without
  // either, its container failed.
  const std::string reason = status.value("reason", "");
  const std::string ended = k8s::ClusterEnded(pod);
  std::string text = ended.empty() ? ConditionText(status) : ended;
  st.outcome = reason == "DeadlineExceeded" ? TaskOutcome::kTimedOut
               : ended.empty()              ? TaskOutcome::kFailed
                                            : TaskOutcome::kError;
  if (text.empty() && status.contains("containerStatuses")) {
    // A container's failure leaves the pod's own reason empty: say the
    // container's (its exit code is added by the executor).
    for (const auto& cs : status["containerStatuses"]) {
      if (cs.value("name", "") != container_name || !cs.contains("state")) continue;
      if (cs["state"].contains("terminated")) text = ConditionText(cs["state"]["terminated"]);
    }
  }
  st.message = "Pod failed" + (text.empty() ? "" : ": " + text);
  return st;
}

std::optional<int64_t> DeadlineSeconds(const Task& task) {
  if (!task.timeout) return std::nullopt;
  int64_t ms = task.timeout->count();
  return std::max<int64_t>(1, (ms + 999) / 1000);
}

std::string Image(const Task& task, const ManifestOptions& o) {
  return task.image.empty() ? o.default_image : task.image;
}

Status NoImage(const Task& task) {
  return Status::InvalidArgument(
      "step \"" + task.step +
      "\" has no image: a Kubernetes step runs in a container; set `image:` on the step or "
      "under `defaults:`");
}

WorkloadState CompleteOrFailedState(const Json& object, const std::string& kind) {
  WorkloadState st;
  if (const Json* c = FindCondition(object, "Complete")) {
    st.finished = true;
    st.outcome = TaskOutcome::kSucceeded;
    st.message = ConditionText(*c);
  } else if (const Json* c = FindCondition(object, "Failed")) {
    st.finished = true;
    st.outcome = c->value("reason", "") == "DeadlineExceeded" ? TaskOutcome::kTimedOut : TaskOutcome::kFailed;
    st.message = kind + " failed: " + ConditionText(*c);
  }
  return st;
}

const Json* FindCondition(const Json& object, const std::string& type) {
  if (!object.contains("status") || !object["status"].is_object()) return nullptr;
  const Json& st = object["status"];
  if (!st.contains("conditions") || !st["conditions"].is_array()) return nullptr;
  for (const auto& c : st["conditions"]) {
    if (c.is_object() && c.value("type", "") == type && c.value("status", "") == "True") return &c;
  }
  return nullptr;
}

std::string ConditionText(const Json& c) {
  std::string reason = c.value("reason", "");
  std::string message = c.value("message", "");
  if (reason.empty()) return message;
  if (message.empty()) return reason;
  return reason + ": " + message;
}

Result<WorkloadKind> KindForOperator(const std::string& operator_type) {
  auto op = KubernetesOperator(OperatorRegistry::Global(), operator_type);
  if (!op) return Error(op.error());
  return *(*op)->Kind();
}

Result<Json> BuildManifest(const Task& task, const ManifestOptions& options) {
  auto op = KubernetesOperator(OperatorRegistry::Global(), task.operator_type);
  if (!op) return Error(op.error().WithContext("step \"" + task.step + "\""));
  return (*op)->KubernetesObject(task, options);
}

WorkloadState InterpretStatus(const std::string& operator_type, const Json& object) {
  const Operator* op = OperatorRegistry::Global().Find(operator_type);
  if (op == nullptr || !op->Kind()) return {};
  return op->ReadStatus(object);
}

}  // namespace sluice::operators
