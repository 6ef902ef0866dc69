#include "operators/training/trainjob.h"

#include <optional>

#include "operators/kubernetes/launcher_pod.h"
#include "operators/kubernetes/manifests.h"

namespace sluice::operators {
namespace {

constexpr const char* kApiVersion = "trainer.kubeflow.org/v1alpha1";
constexpr const char* kKeys[] = {"runtime", "runtimeKind", "numNodes", "numProcPerNode"};
constexpr int64_t kMaxNodes = 1024;

// A step's `trainjob:` section, checked.
struct TrainJobConfig {
  std::string runtime;
  std::string runtime_kind = "ClusterTrainingRuntime";
  int64_t num_nodes = 1;
  std::optional<int64_t> num_proc_per_node;
};

// The section: config["trainjob"] when present, else config itself.
const Json& Section(const Json& config) {
  if (config.is_object()) {
    auto it = config.find("trainjob");
    if (it != config.end()) return *it;
  }
  return config;
}

// Reads and checks `section`. Errors: kInvalidArgument naming the key, with
// `error_path` (when not null) set to the offending value's path.
Result<TrainJobConfig> ReadConfig(const Json& section, std::vector<std::string>* error_path) {
  auto bad = [&](std::vector<std::string> path, const std::string& message) {
    if (error_path) *error_path = std::move(path);
    return Error(Status::InvalidArgument("trainjob" + message));
  };
  if (!section.is_object())
    return bad({}, ": must be a mapping, e.g. trainjob: {runtime: torch-distributed, numNodes: 2}");
  for (const auto& [key, value] : section.items()) {
    bool known = false;
    for (const char* k : kKeys) known = known || key == k;
    if (!known)
      return bad({key}, ": unknown key '" + key + "' (known: runtime, runtimeKind, numNodes, numProcPerNode)");
  }
  TrainJobConfig c;
  auto runtime = section.find("runtime");
  if (runtime == section.end())
    return bad({}, ".runtime is required: the training runtime's name, e.g. runtime: torch-distributed");
  if (!runtime->is_string() || runtime->get<std::string>().empty() || runtime->get<std::string>().size() > 253)
    return bad({"runtime"}, ".runtime must be a runtime's name (1 to 253 characters)");
  c.runtime = runtime->get<std::string>();
  if (auto kind = section.find("runtimeKind"); kind != section.end()) {
    if (!kind->is_string() || (*kind != "ClusterTrainingRuntime" && *kind != "TrainingRuntime"))
      return bad({"runtimeKind"}, ".runtimeKind must be ClusterTrainingRuntime or TrainingRuntime");
    c.runtime_kind = kind->get<std::string>();
  }
  if (auto nodes = section.find("numNodes"); nodes != section.end()) {
    if (!nodes->is_number_integer() || nodes->get<int64_t>() < 1 || nodes->get<int64_t>() > kMaxNodes)
      return bad({"numNodes"}, ".numNodes must be an integer from 1 to " + std::to_string(kMaxNodes));
    c.num_nodes = nodes->get<int64_t>();
  }
  if (auto nproc = section.find("numProcPerNode"); nproc != section.end()) {
    if (!nproc->is_number_integer() || nproc->get<int64_t>() < 1 || nproc->get<int64_t>() > kMaxNodes)
      return bad({"numProcPerNode"}, ".numProcPerNode must be an integer from 1 to " + std::to_string(kMaxNodes));
    c.num_proc_per_node = nproc->get<int64_t>();
  }
  return c;
}

}  // namespace

std::vector<ConfigProblem> TrainJobOperator::CheckConfig(const StepSpec& step) const {
  std::vector<std::string> path;
  Json section = Section(step.config);
  if (section.is_object()) section.erase("kubernetes");
  auto c = ReadConfig(section, &path);
  if (c) return {};
  return {ConfigProblem{std::move(path), c.error().message()}};
}

Result<LocalPlan> TrainJobOperator::PlanLocal(const Task& task, const PortAllocator& ports) const {
  auto c = ReadConfig(Section(task.config), nullptr);
  if (!c) return Error(c.error());
  if (task.argv.empty())
    return Error(Status::InvalidArgument("trainjob: step \"" + task.step +
                                         "\" has no command; locally each node runs the step's command"));
  auto port = ports();
  if (!port) return Error(port.error());
  const std::string nproc = std::to_string(c->num_proc_per_node.value_or(1));
  LocalPlan plan;
  plan.distributed = true;
  for (int64_t i = 0; i < c->num_nodes; ++i) {
    LocalProcess p;
    p.type = "node";
    p.index = static_cast<int>(i);
    p.argv = task.argv;
    p.env = task.env;
    p.env["PET_NNODES"] = std::to_string(c->num_nodes);
    p.env["PET_NPROC_PER_NODE"] = nproc;
    p.env["PET_NODE_RANK"] = std::to_string(i);
    p.env["PET_MASTER_ADDR"] = "127.0.0.1";
    p.env["PET_MASTER_PORT"] = std::to_string(*port);
    p.env["JOB_COMPLETION_INDEX"] = std::to_string(i);
    p.env["SLUICE_REPLICA_TYPE"] = "node";
    p.env["SLUICE_REPLICA_INDEX"] = std::to_string(i);
    plan.success_set.push_back(plan.replicas.size());
    plan.replicas.push_back(std::move(p));
  }
  return plan;
}

std::optional<KubernetesKind> TrainJobOperator::Kind() const {
  // JobSet names each node's Job "<name>-node-<i>" and its pods
  // "<name>-node-<i>-<j>-<random>": the TrainJob's name is kept short.
  return KubernetesKind{kApiVersion, "TrainJob", "trainjobs", "jobset.sigs.k8s.io/jobset-name", "node", 40};
}

Result<Json> TrainJobOperator::KubernetesObject(const Task& task, const KubernetesObjectOptions& o) const {
  auto bad = [&](const std::string& what) {
    return Error(Status::InvalidArgument("step \"" + task.step + "\": trainjob: " + what));
  };
  auto c = ReadConfig(Section(task.config), nullptr);
  if (!c) return bad(c.error().message());
  if (UsesLauncher(task, o))
    return bad("a TrainJob's pods come from its training runtime, and the TrainJob API has no field for "
               "sluice's launcher (an init container and its volumes); run it without --artifacts s3://");
  auto s = Settings(task, o);
  if (!s) return Error(s.error());
  const std::string image = Image(task, o);
  if (image.empty()) return Error(NoImage(task));
  // The runtime owns the pod template: no workspace volume or working
  // directory on it.
  KubernetesObjectOptions without_workspace = o;
  without_workspace.workspace_pvc.clear();
  without_workspace.host_workspace_root.clear();
  auto container = Container(task, without_workspace, "node", image, task.argv, {},
                             ResourceRequirements(task.resources));
  if (!container) return Error(container.error());
  Json trainer = {{"image", image}, {"numNodes", c->num_nodes}, {"env", (*container)["env"]}};
  if (container->contains("command")) trainer["command"] = (*container)["command"];
  if (container->contains("resources")) trainer["resourcesPerNode"] = (*container)["resources"];
  if (c->num_proc_per_node) trainer["numProcPerNode"] = *c->num_proc_per_node;
  Json spec = {{"runtimeRef", {{"name", c->runtime}, {"apiGroup", "trainer.kubeflow.org"}, {"kind", c->runtime_kind}}},
               {"trainer", trainer}};
  return Json{{"apiVersion", kApiVersion},
              {"kind", "TrainJob"},
              {"metadata", Metadata(task, o, *s, *Kind())},
              {"spec", spec}};
}

WorkloadState TrainJobOperator::ReadStatus(const Json& object) const {
  return CompleteOrFailedState(object, "TrainJob");
}

Operator::ArgoConditions TrainJobOperator::ArgoResourceConditions(const Json&) const {
  ArgoConditions c;
  c.unsupported =
      "a TrainJob ends with its Complete or Failed status condition, which Argo's successCondition (a label "
      "selector over status paths) cannot select; run it with `sluice run --executor kubernetes`";
  return c;
}

}  // namespace sluice::operators
