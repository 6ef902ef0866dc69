#pragma once
// The seam between `sluice compile` (--target argo: ArgoOptions::serving;
// --target manifests and `sluice run --dry-run`: ManifestsOptions::serving)
// and the serving operator: ServingObjects (engine/compile/argo.h) backed by
// operators/serving/k8s_manifests.h. A library of its own
// (sluice_compile_serving), so that sluice_compile does not link
// operators/serving; the sluice CLI and the compile tests link both.

#include "engine/compile/argo.h"

namespace sluice::compile {

// Deploy configs are parsed with serving::ParseDeployConfig and built with
// serving::BuildKubernetesObjects; the rollout's replica counts and promote
// patch are serving::CanaryReplicasAt and serving::PromotePatch.
ServingObjects OperatorServingObjects();

}  // namespace sluice::compile
