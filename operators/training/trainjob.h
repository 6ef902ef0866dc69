#pragma once
// `type: trainjob`: distributed training through Kubeflow Trainer v2's
// TrainJob (trainer.kubeflow.org/v1alpha1), which runs on a JobSet made
// from a training runtime (a ClusterTrainingRuntime such as
// torch-distributed, or a namespaced TrainingRuntime). The step gives the
// trainer's image, command, env and per-node resources; its `trainjob:`
// section names the runtime and the nodes:
//
//   trainjob:
//     runtime: torch-distributed         # required: the runtime's name
//     runtimeKind: ClusterTrainingRuntime  # or TrainingRuntime (default: Cluster...)
//     numNodes: 2                         # 1 to 1024; default 1
//     numProcPerNode: 1                   # >= 1; default: the runtime's
//
//   local         one process per node with the environment the Trainer's
//                 torch runtime sets in each node's pod (torchrun's):
//                 PET_NNODES, PET_NPROC_PER_NODE (numProcPerNode, else 1),
//                 PET_NODE_RANK, PET_MASTER_ADDR/PET_MASTER_PORT (127.0.0.1
//                 and a free port), JOB_COMPLETION_INDEX (the node's index in
//                 its indexed Job); it succeeds when every node exits 0, as
//                 the runtime's JobSet succeeds when every node's Job does.
//   Kubernetes    a TrainJob: runtimeRef, trainer {image, command, env,
//                 numNodes, resourcesPerNode, numProcPerNode}, the sluice
//                 labels; the node pods carry jobset.sigs.k8s.io/jobset-name
//                 (the TrainJob's name) and the container `node`.
//   status        Complete -> Succeeded; Failed -> Failed, or TimedOut for
//                 reason DeadlineExceeded.
//
// The TrainJob API has no field for a pod's volumes or init containers (the
// runtime owns the pod template), so on Kubernetes the nodes' pods get
// neither the workspace volume nor the object-storage launcher:
// KubernetesObject() leaves the volume out and refuses a run through the
// launcher (`--artifacts s3://`) with the reason. Such a step exchanges
// data through storage its script names.

#include "engine/operator.h"

namespace sluice::operators {

class TrainJobOperator : public Operator {
 public:
  std::string_view Name() const override { return "trainjob"; }
  std::string_view SectionKey() const override { return "trainjob"; }
  std::vector<ConfigProblem> CheckConfig(const StepSpec& step) const override;
  Result<LocalPlan> PlanLocal(const Task& task, const PortAllocator& ports) const override;
  std::optional<KubernetesKind> Kind() const override;
  Result<Json> KubernetesObject(const Task& task, const KubernetesObjectOptions& options) const override;
  WorkloadState ReadStatus(const Json& object) const override;
  // Unsupported: a TrainJob ends with its Complete or Failed condition.
  ArgoConditions ArgoResourceConditions(const Json& object) const override;
};

}  // namespace sluice::operators
