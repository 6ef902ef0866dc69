#pragma once
// `type: resource`: any Kubernetes object as a step (an MPIJob, an
// XGBoostJob, a Spark application...), the way Argo's resource template runs
// one. The step's `resource:` section gives
//
//   manifest           the object (a mapping; apiVersion and kind required;
//                      its strings are templates, rendered per attempt)
//   successCondition   when it has succeeded, e.g. status.succeeded > 0
//   failureCondition   when it has failed, e.g. status.phase == Failed
//   plural             its API resource name, when not the kind lower-cased
//                      plus "s" ("es" after s/x/ch/sh, "ies" for a final
//                      consonant + y)
//
// Conditions are Argo's (condition.h): the step succeeds once every
// successCondition requirement holds and fails (Failed, a user failure) as
// soon as any failureCondition requirement does; without a
// successCondition it succeeds once the object exists.
//
//   local         refused: "step type 'resource' runs only on Kubernetes
//                 (--executor kubernetes)"
//   Kubernetes    the manifest with sluice's name (deterministic per run,
//                 instance and attempt, so a resumed run adopts its object),
//                 namespace, labels and annotations merged in; the
//                 conditions and the plural ride along as annotations
//                 sluice.dev/success-condition, sluice.dev/failure-condition
//                 and sluice.dev/plural, so the object alone says how to
//                 read it. Deleted on cancel and timeout (the executor's own
//                 deadline: an arbitrary kind has no activeDeadlineSeconds).
//   Argo          a resource template with the same conditions.

#include "engine/operator.h"

namespace sluice::operators {

class ResourceOperator : public Operator {
 public:
  std::string_view Name() const override { return "resource"; }
  std::string_view SectionKey() const override { return "resource"; }
  // Missing manifest, a manifest that is not a mapping, no apiVersion or
  // kind (or one that is a template), a name or namespace of the user's
  // (sluice names the object), a condition that does not parse, an unknown
  // key.
  std::vector<ConfigProblem> CheckConfig(const StepSpec& step) const override;
  bool RendersConfig() const override { return true; }
  bool KubernetesOnly() const override { return true; }
  // kFailedPrecondition: a resource step runs only on Kubernetes.
  Result<LocalPlan> PlanLocal(const Task& task, const PortAllocator& ports) const override;
  // Any kind: an empty plural (KindOf() reads each object's).
  std::optional<KubernetesKind> Kind() const override;
  std::optional<KubernetesKind> KindOf(const Json& object) const override;
  // Errors (kInvalidArgument, naming the step): the CheckConfig() problems
  // of the rendered config.
  Result<Json> KubernetesObject(const Task& task, const KubernetesObjectOptions& options) const override;
  // From the conditions in the object's annotations.
  WorkloadState ReadStatus(const Json& object) const override;
  ArgoConditions ArgoResourceConditions(const Json& object) const override;
};

// The API resource name Kubernetes' convention gives `kind` ("MPIJob" ->
// "mpijobs", "Policy" -> "policies", "Ingress" -> "ingresses").
std::string PluralOf(const std::string& kind);

}  // namespace sluice::operators
