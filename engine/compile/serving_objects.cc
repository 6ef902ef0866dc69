#include "engine/compile/serving_objects.h"

#include "operators/serving/deploy.h"
#include "operators/serving/k8s_manifests.h"

namespace sluice::compile {

ServingObjects OperatorServingObjects() {
  ServingObjects s;
  s.build = [](const Json& config) -> Result<Json> {
    auto parsed = serving::ParseDeployConfig(config);
    if (!parsed) return Error(parsed.error());
    return serving::BuildKubernetesObjects(*parsed);
  };
  s.canary_replicas = serving::CanaryReplicasAt;
  s.promote_patch = serving::PromotePatch;
  return s;
}

}  // namespace sluice::compile
