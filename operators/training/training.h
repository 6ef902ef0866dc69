#pragma once
// `type: tfjob` and `type: pytorchjob`: distributed training with the
// Kubeflow training-operator's contract. The step's `tfjob:` / `pytorchjob:`
// section gives the replicas (docs/dsl.md, docs/kubernetes.md); it is checked
// at lint time with file:line:col, by the same rules the local plan applies.
//
//   local         one process per replica with TF_CONFIG, or MASTER_ADDR,
//                 RANK, WORLD_SIZE ... (local_plan.h)
//   Kubernetes    kubeflow.org/v1 TFJob / PyTorchJob (runPolicy.backoffLimit
//                 0, replica restartPolicy Never), pod labels
//                 training.kubeflow.org/job-name
//   status        Succeeded -> Succeeded; Failed -> Failed, or TimedOut when
//                 the reason or message names a deadline

#include "engine/operator.h"

namespace sluice::operators {

class TrainingOperator : public Operator {
 public:
  enum class Flavor { kTensorFlow, kPyTorch };
  explicit TrainingOperator(Flavor flavor) : flavor_(flavor) {}

  std::string_view Name() const override { return flavor_ == Flavor::kTensorFlow ? "tfjob" : "pytorchjob"; }
  std::string_view SectionKey() const override { return Name(); }
  std::vector<ConfigProblem> CheckConfig(const StepSpec& step) const override;
  Result<LocalPlan> PlanLocal(const Task& task, const PortAllocator& ports) const override;
  std::optional<KubernetesKind> Kind() const override;
  Result<Json> KubernetesObject(const Task& task,
                                const KubernetesObjectOptions& options) const override;
  WorkloadState ReadStatus(const Json& object) const override;
  // From the training-operator's per-replica counts: any replica's failed
  // pod fails the job; it succeeds with its Chief (or Master), else when
  // every Worker has.
  ArgoConditions ArgoResourceConditions(const Json& object) const override;

 private:
  Result<LocalPlan> Plan(const Task& task, const PortAllocator& ports,
                         std::vector<std::string>* error_path) const;

  Flavor flavor_;
};

}  // namespace sluice::operators
