#include "operators/container/container.h"

#include "operators/kubernetes/manifests.h"

namespace sluice::operators {

Result<LocalPlan> ContainerOperator::PlanLocal(const Task& task, const PortAllocator&) const {
  if (task.argv.empty() || task.argv[0].empty())
    return Error(Status::InvalidArgument("the step has no command; set 'command: [program, args...]'"));
  LocalPlan plan;
  LocalProcess p;
  p.type = "main";
  p.argv = task.argv;
  p.env = task.env;
  plan.replicas.push_back(std::move(p));
  plan.success_set.push_back(0);
  return plan;
}

std::optional<KubernetesKind> ContainerOperator::Kind() const {
  return KubernetesKind{"batch/v1", "Job", "jobs", "job-name", "main", 63};
}

Result<Json> ContainerOperator::KubernetesObject(const Task& task, const KubernetesObjectOptions& o) const {
  const KubernetesKind kind = *Kind();
  auto s = Settings(task, o);
  if (!s) return Error(s.error());
  std::string image = Image(task, o);
  if (image.empty()) return Error(NoImage(task));
  auto c = Container(task, o, kind.container_name, image, task.argv, {}, ResourceRequirements(task.resources));
  if (!c) return Error(c.error());
  Json pod_template = PodTemplate(task, o, *s, std::move(*c));
  if (s->object == "pod") return BarePod(task, o, *s, std::move(pod_template));
  Json spec = {{"backoffLimit", 0}, {"template", std::move(pod_template)}};
  if (auto d = DeadlineSeconds(task)) spec["activeDeadlineSeconds"] = *d;
  if (s->ttl) spec["ttlSecondsAfterFinished"] = *s->ttl;
  return Json{{"apiVersion", kind.api_version},
              {"kind", kind.kind},
              {"metadata", Metadata(task, o, *s, kind)},
              {"spec", spec}};
}

WorkloadState ContainerOperator::ReadStatus(const Json& object) const {
  if (IsPod(object)) return BarePodState(object, Kind()->container_name);
  return CompleteOrFailedState(object, "Job");
}

}  // namespace sluice::operators
