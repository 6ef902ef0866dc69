#include "operators/training/training.h"

#include <algorithm>
#include <cctype>

#include "operators/kubernetes/manifests.h"
#include "operators/training/local_plan.h"

namespace sluice::operators {
namespace {

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
  const bool tf = kind.kind == "TFJob";
  const std::string section = tf ? "tfjob" : "pytorchjob";
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
  for (const auto& [type, written] : replicas->items()) {
    // `Worker: 2` is short for `Worker: {replicas: 2}`.
    const Json rs = written.is_number_integer() ? Json{{"replicas", written}} : written;
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

}  // namespace

std::vector<ConfigProblem> TrainingOperator::CheckConfig(const StepSpec& step) const {
  // The local plan's rules (the stricter of the two runtimes: replica counts
  // up to 1024), on the section as written; the step's command stands in for
  // its argv.
  Task task;
  task.step = step.name;
  task.operator_type = std::string(Name());
  // On Kubernetes a step without a command runs its image's entrypoint, so
  // only the local plan needs one: not a lint error.
  for (const auto& t : step.command) task.argv.push_back(t.text);
  if (task.argv.empty()) task.argv.push_back("entrypoint");
  task.config = step.config;
  task.config.erase("kubernetes");
  std::vector<std::string> path;
  auto plan = Plan(task, [] { return Result<int>(1); }, &path);
  if (plan) return {};
  return {ConfigProblem{std::move(path), plan.error().message()}};
}

Result<LocalPlan> TrainingOperator::Plan(const Task& task, const PortAllocator& ports,
                                         std::vector<std::string>* error_path) const {
  try {
    return flavor_ == Flavor::kTensorFlow ? local::PlanTfJob(task, ports, error_path)
                                          : local::PlanPyTorchJob(task, ports, error_path);
  } catch (const nlohmann::json::exception& e) {
    return Error(Status::InvalidArgument(std::string(Name()) + ": malformed config: " + e.what()));
  }
}

Result<LocalPlan> TrainingOperator::PlanLocal(const Task& task, const PortAllocator& ports) const {
  return Plan(task, ports, nullptr);
}

std::optional<KubernetesKind> TrainingOperator::Kind() const {
  if (flavor_ == Flavor::kTensorFlow)
    return KubernetesKind{"kubeflow.org/v1", "TFJob", "tfjobs", "training.kubeflow.org/job-name", "tensorflow", 48};
  return KubernetesKind{"kubeflow.org/v1", "PyTorchJob", "pytorchjobs", "training.kubeflow.org/job-name", "pytorch",
                        48};
}

Result<Json> TrainingOperator::KubernetesObject(const Task& task, const KubernetesObjectOptions& options) const {
  return BuildTraining(task, options, *Kind());
}

WorkloadState TrainingOperator::ReadStatus(const Json& object) const {
  WorkloadState st;
  if (const Json* c = FindCondition(object, "Succeeded")) {
    st.finished = true;
    st.outcome = TaskOutcome::kSucceeded;
    st.message = ConditionText(*c);
  } else if (const Json* c = FindCondition(object, "Failed")) {
    st.finished = true;
    std::string text = ConditionText(*c);
    std::string lower = text;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
    st.outcome = (c->value("reason", "").find("DeadlineExceeded") != std::string::npos ||
                  lower.find("deadline") != std::string::npos)
                     ? TaskOutcome::kTimedOut
                     : TaskOutcome::kFailed;
    st.message = object.value("kind", "object") + " failed: " + text;
  }
  return st;
}

Operator::ArgoConditions TrainingOperator::ArgoResourceConditions(const Json& object) const {
  // Every replica runs with restartPolicy Never and backoffLimit 0, so one
  // failed pod fails the job: each `failed > 0` is a failure condition (Argo
  // fails on any one of them). Success is the replica the operator's default
  // success policy waits for: Chief (or Master), else every Worker.
  const Json specs = object["spec"].value(flavor_ == Flavor::kTensorFlow ? "tfReplicaSpecs" : "pytorchReplicaSpecs",
                                          Json::object());
  ArgoConditions c;
  for (const auto& [type, spec] : specs.items())
    c.failure += (c.failure.empty() ? "" : ", ") + std::string("status.replicaStatuses.") + type + ".failed > 0";
  for (const char* leader : {"Chief", "Master"})
    if (c.success.empty() && specs.contains(leader))
      c.success = std::string("status.replicaStatuses.") + leader + ".succeeded > 0";
  if (c.success.empty()) {
    int64_t workers = specs.contains("Worker") ? specs["Worker"].value("replicas", int64_t{1}) : 1;
    c.success = "status.replicaStatuses.Worker.succeeded == " + std::to_string(workers);
  }
  return c;
}

}  // namespace sluice::operators
