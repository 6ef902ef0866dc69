#pragma once
// `type: container` (the default): the step's command run as one process,
// locally a process group, on Kubernetes a batch/v1 Job whose pod runs the
// step's image. The step needs `command`; it has no config section.
//
//   local         one process: the task's argv and env
//   Kubernetes    `kubernetes.object: pod` (default): a bare v1 Pod, the
//                 same pod a Job would make (container "main"), created and
//                 watched by sluice itself; `object: job`: a batch/v1 Job
//                 (backoffLimit 0, one pod). Kind() stays the Job's: it is
//                 what `sluice compile --target argo` and cleanup look for.
//   status        Job: Complete -> Succeeded; Failed -> Failed, or TimedOut
//                 when the reason is DeadlineExceeded. Pod: phase Succeeded
//                 -> Succeeded; Failed -> Failed, or TimedOut for reason
//                 DeadlineExceeded

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
