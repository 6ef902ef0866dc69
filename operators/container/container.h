#pragma once
// `type: container` (the default): the step's command run as one process,
// locally a process group, on Kubernetes a batch/v1 Job whose pod runs the
// step's image. The step needs `command`; it has no config section.
//
//   local         one process: the task's argv and env
//   Kubernetes    batch/v1 Job (backoffLimit 0, one pod, container "main")
//   status        Complete -> Succeeded; Failed -> Failed, or TimedOut when
//                 the reason is DeadlineExceeded

#include "engine/operator.h"

namespace sluice::operators {

class ContainerOperator : public Operator {
 public:
  std::string_view Name() const override { return "container"; }
  bool RequiresCommand() const override { return true; }
  // Errors: kInvalidArgument when the task has no command.
  Result<LocalPlan> PlanLocal(const Task& task, const PortAllocator& ports) const override;
  std::optional<KubernetesKind> Kind() const override;
  Result<Json> KubernetesObject(const Task& task,
                                const KubernetesObjectOptions& options) const override;
  WorkloadState ReadStatus(const Json& object) const override;
};

}  // namespace sluice::operators
