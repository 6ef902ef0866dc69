#include "operators/kubernetes/manifests.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace sluice::operators {
namespace {

constexpr char kLabelPipeline[] = "sluice.dev/pipeline";
constexpr char kLabelRun[] = "sluice.dev/run";
constexpr char kLabelStep[] = "sluice.dev/step";
constexpr char kLabelAttempt[] = "sluice.dev/attempt";
constexpr char kLabelQueue[] = "kueue.x-k8s.io/queue-name";

// FNV-1a 64: stable across platforms and versions, enough to separate names.
std::string ShortHash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 8);
}

// Lower-case [a-z0-9-], runs of anything else collapsed to one '-', no '-' at
// the ends.
std::string DnsPart(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    char l = static_cast<char>(std::tolower(c));
    if ((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9')) {
      out += l;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

std::string TrimDashes(std::string s) {
  while (!s.empty() && (s.back() == '-' || s.back() == '.' || s.back() == '_')) s.pop_back();
  return s;
}

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

// The effective per-task Kubernetes settings.
struct PodSettings {
  std::string namespace_;
  std::string service_account, priority_class, queue;
  std::vector<std::string> pull_secrets;
  std::optional<int64_t> ttl;
  Json pod_labels = Json::object(), pod_annotations = Json::object();
};

Result<PodSettings> Settings(const Task& task, const ManifestOptions& o) {
  PodSettings s;
  s.namespace_ = o.namespace_.empty() ? "default" : o.namespace_;
  s.service_account = o.service_account;
  s.priority_class = o.priority_class;
  s.queue = o.queue;
  s.pull_secrets = o.image_pull_secrets;
  s.ttl = o.ttl_seconds_after_finished;
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
    } else {
      return bad(key + " is not a known setting (known: namespace, serviceAccountName, "
                       "priorityClassName, "
                       "imagePullSecrets, queue, ttlSecondsAfterFinished, podLabels, "
                       "podAnnotations)");
    }
  }
  return s;
}

Json Labels(const Task& task, const PodSettings& s) {
  Json l = {{kLabelPipeline, LabelValue(task.pipeline)},
            {kLabelRun, LabelValue(task.run_id)},
            {kLabelStep, LabelValue(task.step)},
            {kLabelAttempt, std::to_string(task.attempt)},
            {"app.kubernetes.io/managed-by", "sluice"}};
  return l;
}

Json Annotations(const Task& task) {
  return Json{{"sluice.dev/run-id", task.run_id},
              {"sluice.dev/pipeline", task.pipeline},
              {"sluice.dev/step", task.step},
              {"sluice.dev/instance", task.instance}};
}

// The main container (name, image, command, env, resources, workdir).
Result<Json> Container(const Task& task, const ManifestOptions& o, const std::string& name,
                       const std::string& image, const std::vector<std::string>& argv,
                       const std::map<std::string, std::string>& extra_env,
                       const Json& resources) {
  auto host = [&](const std::string& v) {
    return o.host_workspace_root.empty() ? v
                                         : ReplaceAll(v, o.host_workspace_root, o.workspace_mount_path);
  };
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
  return Json{{"metadata", meta}, {"spec", spec}};
}

Json Metadata(const Task& task, const ManifestOptions& o, const PodSettings& s,
              const WorkloadKind& kind) {
  Json labels = Labels(task, s);
  if (!s.queue.empty()) labels[kLabelQueue] = s.queue;
  return Json{{"name", ObjectName(task.run_id, task.instance, task.attempt, kind.max_name_length)},
              {"namespace", s.namespace_},
              {"labels", labels},
              {"annotations", Annotations(task)}};
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

Result<Json> BuildJob(const Task& task, const ManifestOptions& o, const WorkloadKind& kind) {
  auto s = Settings(task, o);
  if (!s) return Error(s.error());
  std::string image = Image(task, o);
  if (image.empty()) return Error(NoImage(task));
  auto c = Container(task, o, kind.container_name, image, task.argv, {},
                     ResourceRequirements(task.resources));
  if (!c) return Error(c.error());
  Json spec = {{"backoffLimit", 0}, {"template", PodTemplate(task, o, *s, std::move(*c))}};
  if (auto d = DeadlineSeconds(task)) spec["activeDeadlineSeconds"] = *d;
  if (s->ttl) spec["ttlSecondsAfterFinished"] = *s->ttl;
  return Json{{"apiVersion", kind.api_version},
              {"kind", kind.kind},
              {"metadata", Metadata(task, o, *s, kind)},
              {"spec", spec}};
}

// Canonical replica type names, matched case-insensitively as the local
// executor does.
std::optional<std::string> CanonicalReplica(const std::string& type, bool tf) {
  std::string l = type;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  if (tf) {
    if (l == "chief") return "Chief";
    if (l == "master") return "Master";
    if (l == "worker") return "Worker";
    if (l == "ps") return "PS";
    if (l == "evaluator") return "Evaluator";
    return std::nullopt;
  }
  if (l == "master") return "Master";
  if (l == "worker") return "Worker";
  return std::nullopt;
}

Result<Json> BuildTraining(const Task& task, const ManifestOptions& o, const WorkloadKind& kind) {
  const bool tf = task.operator_type == "tfjob";
  const std::string section = task.operator_type;
  auto s = Settings(task, o);
  if (!s) return Error(s.error());
  auto bad = [&](const std::string& what) {
    return Error(Status::InvalidArgument("step \"" + task.step + "\": " + section + ": " + what));
  };
  // Either the section itself or {"tfjob": {...}} (as the local executor).
  const Json* cfg = &task.config;
  if (task.config.is_object() && task.config.contains(section)) cfg = &task.config[section];
  if (!cfg->is_object()) return bad("config must be a mapping");
  const Json* replicas = nullptr;
  for (const char* key : {"replicas", "tfReplicaSpecs", "pytorchReplicaSpecs"}) {
    if (cfg->contains(key)) replicas = &(*cfg)[key];
  }
  if (replicas == nullptr || !replicas->is_object() || replicas->empty()) {
    return bad(std::string("replicas is required, e.g. replicas: {") +
               (tf ? "Chief: {replicas: 1}, Worker: {replicas: 2}" : "Master: {replicas: 1}, Worker: {replicas: 2}") +
               "}");
  }
  std::string default_image = Image(task, o);
  Json specs = Json::object();
  for (const auto& [type, rs] : replicas->items()) {
    auto canon = CanonicalReplica(type, tf);
    if (!canon) {
      return bad("replica type \"" + type + "\" is not one of " +
                 (tf ? "Chief, Master, Worker, PS, Evaluator" : "Master, Worker"));
    }
    if (!rs.is_object()) return bad("replicas." + type + " must be a mapping");
    int64_t count = 1;
    if (rs.contains("replicas")) {
      if (!rs["replicas"].is_number_integer() || rs["replicas"].get<int64_t>() < 0) {
        return bad("replicas." + type + ".replicas must be an integer >= 0");
      }
      count = rs["replicas"].get<int64_t>();
    }
    std::vector<std::string> argv = task.argv;
    if (rs.contains("command")) {
      if (!rs["command"].is_array()) return bad("replicas." + type + ".command must be a list");
      argv.clear();
      for (const auto& a : rs["command"]) {
        if (!a.is_string()) return bad("replicas." + type + ".command must be a list of strings");
        argv.push_back(a.get<std::string>());
      }
    }
    std::map<std::string, std::string> env;
    if (rs.contains("env")) {
      if (!rs["env"].is_object()) return bad("replicas." + type + ".env must be a mapping");
      for (const auto& [k, v] : rs["env"].items()) {
        env[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
    }
    std::string image = rs.contains("image") && rs["image"].is_string()
                            ? rs["image"].get<std::string>()
                            : default_image;
    if (image.empty()) return Error(NoImage(task));
    Json resources = rs.contains("resources") && rs["resources"].is_object()
                         ? ReplicaResources(rs["resources"])
                         : ResourceRequirements(task.resources);
    auto c = Container(task, o, kind.container_name, image, argv, env, resources);
    if (!c) return Error(c.error());
    Json tmpl = PodTemplate(task, o, *s, std::move(*c));
    tmpl["metadata"]["labels"]["sluice.dev/replica-type"] = DnsPart(*canon);
    specs[*canon] = {{"replicas", count}, {"restartPolicy", "Never"}, {"template", tmpl}};
  }
  Json run_policy = {{"backoffLimit", 0}, {"cleanPodPolicy", "None"}};
  if (auto d = DeadlineSeconds(task)) run_policy["activeDeadlineSeconds"] = *d;
  if (s->ttl) run_policy["ttlSecondsAfterFinished"] = *s->ttl;
  if (cfg->contains("runPolicy")) {
    if (!(*cfg)["runPolicy"].is_object()) return bad("runPolicy must be a mapping");
    for (const auto& [k, v] : (*cfg)["runPolicy"].items()) run_policy[k] = v;
  }
  Json spec = {{"runPolicy", run_policy}, {tf ? "tfReplicaSpecs" : "pytorchReplicaSpecs", specs}};
  if (tf) {
    if (cfg->contains("successPolicy")) {
      const Json& sp = (*cfg)["successPolicy"];
      if (!sp.is_string() || (sp != "" && sp != "AllWorkers")) {
        return bad("successPolicy must be \"\" or AllWorkers");
      }
      spec["successPolicy"] = sp;
    }
  } else {
    if (cfg->contains("nprocPerNode")) {
      const Json& n = (*cfg)["nprocPerNode"];
      if (!n.is_string() && !n.is_number_integer()) {
        return bad("nprocPerNode must be an integer or a string (auto, cpu, gpu)");
      }
      spec["nprocPerNode"] = n.is_string() ? n.get<std::string>() : std::to_string(n.get<int64_t>());
    }
    if (cfg->contains("elasticPolicy")) {
      if (!(*cfg)["elasticPolicy"].is_object()) return bad("elasticPolicy must be a mapping");
      spec["elasticPolicy"] = (*cfg)["elasticPolicy"];
    }
  }
  return Json{{"apiVersion", kind.api_version},
              {"kind", kind.kind},
              {"metadata", Metadata(task, o, *s, kind)},
              {"spec", spec}};
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

}  // namespace

Result<WorkloadKind> KindForOperator(const std::string& operator_type) {
  if (operator_type == "container") {
    return WorkloadKind{"batch/v1", "Job", "jobs", "job-name", "main", 63};
  }
  if (operator_type == "tfjob") {
    return WorkloadKind{"kubeflow.org/v1", "TFJob", "tfjobs", "training.kubeflow.org/job-name",
                        "tensorflow", 48};
  }
  if (operator_type == "pytorchjob") {
    return WorkloadKind{"kubeflow.org/v1", "PyTorchJob", "pytorchjobs",
                        "training.kubeflow.org/job-name", "pytorch", 48};
  }
  return Error(Status::InvalidArgument("step type \"" + operator_type +
                                       "\" cannot run on Kubernetes (known: container, tfjob, "
                                       "pytorchjob)"));
}

std::string ObjectName(const std::string& run_id, const std::string& instance, int attempt,
                       size_t max_length) {
  std::string run = DnsPart(run_id);
  std::string inst = DnsPart(instance);
  std::string suffix = "-a" + std::to_string(attempt);
  std::string core = run + "-" + inst;
  bool lossy = run != run_id || inst != instance || run.empty() || inst.empty();
  // DNS-1035 (services of TFJob/PyTorchJob pods): start with a letter.
  if (core.empty() || !(core[0] >= 'a' && core[0] <= 'z')) core = "s" + core;
  if (!lossy && core.size() + suffix.size() <= max_length) return core + suffix;
  std::string hash = "-" + ShortHash(run_id + "\n" + instance);
  size_t room = max_length - suffix.size() - hash.size();
  if (core.size() > room) core = core.substr(0, room);
  core = TrimDashes(core);
  return core + hash + suffix;
}

std::string LabelValue(const std::string& value) {
  if (value.empty()) return value;
  std::string out;
  for (unsigned char c : value) {
    out += (std::isalnum(c) || c == '-' || c == '_' || c == '.') ? static_cast<char>(c) : '-';
  }
  bool changed = out != value || out.size() > 63 || !std::isalnum(static_cast<unsigned char>(out.front())) ||
                 !std::isalnum(static_cast<unsigned char>(out.back()));
  if (!changed) return out;
  std::string hash = ShortHash(value);
  out = out.substr(0, std::min<size_t>(out.size(), 63 - hash.size() - 1));
  while (!out.empty() && !std::isalnum(static_cast<unsigned char>(out.front()))) out.erase(0, 1);
  out = TrimDashes(out);
  return out.empty() ? hash : out + "-" + hash;
}

std::string RunSelector(const std::string& run_id) {
  return std::string(kLabelRun) + "=" + LabelValue(run_id);
}

Result<Json> BuildManifest(const Task& task, const ManifestOptions& options) {
  auto kind = KindForOperator(task.operator_type);
  if (!kind) {
    return Error(kind.error().WithContext("step \"" + task.step + "\""));
  }
  if (task.operator_type == "container") return BuildJob(task, options, *kind);
  return BuildTraining(task, options, *kind);
}

WorkloadState InterpretStatus(const std::string& operator_type, const Json& object) {
  WorkloadState st;
  if (operator_type == "container") {
    if (const Json* c = FindCondition(object, "Complete")) {
      st.finished = true;
      st.outcome = TaskOutcome::kSucceeded;
      st.message = ConditionText(*c);
    } else if (const Json* c = FindCondition(object, "Failed")) {
      st.finished = true;
      st.outcome = c->value("reason", "") == "DeadlineExceeded" ? TaskOutcome::kTimedOut
                                                                : TaskOutcome::kFailed;
      st.message = "Job failed: " + ConditionText(*c);
    }
    return st;
  }
  if (const Json* c = FindCondition(object, "Succeeded")) {
    st.finished = true;
    st.outcome = TaskOutcome::kSucceeded;
    st.message = ConditionText(*c);
  } else if (const Json* c = FindCondition(object, "Failed")) {
    st.finished = true;
    std::string text = ConditionText(*c);
    std::string lower = text;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    st.outcome = (c->value("reason", "").find("DeadlineExceeded") != std::string::npos ||
                  lower.find("deadline") != std::string::npos)
                     ? TaskOutcome::kTimedOut
                     : TaskOutcome::kFailed;
    st.message = object.value("kind", "object") + " failed: " + text;
  }
  return st;
}

PodExit ExitFromPods(const std::vector<Json>& pods) {
  PodExit out;
  for (const auto& pod : pods) {
    if (!pod.contains("status") || !pod["status"].contains("containerStatuses")) continue;
    for (const auto& cs : pod["status"]["containerStatuses"]) {
      if (!cs.contains("state") || !cs["state"].contains("terminated")) continue;
      const Json& t = cs["state"]["terminated"];
      int code = t.value("exitCode", 0);
      if (code == 0) continue;
      out.exit_code = code;
      out.description = "pod " + pod["metadata"].value("name", "") + " container " +
                        cs.value("name", "") + ": exit " + std::to_string(code);
      std::string reason = t.value("reason", "");
      if (!reason.empty()) out.description += " (" + reason + ")";
      return out;
    }
  }
  return out;
}

}  // namespace sluice::operators
