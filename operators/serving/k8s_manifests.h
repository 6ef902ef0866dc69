#pragma once
// Kubernetes objects for the `deploy` operator (pure functions; applying them
// and following the rollout needs the cluster client of executors/kubernetes).
//
// The model is not baked into an image: an init container `fetch-model`
// copies the artifact from the shared artifacts PersistentVolumeClaim (the
// RWX workspace of the Kubernetes executor, holding sluice's content-addressed store at
// cas/sha256/<hex[0:2]>/<hex>) into an emptyDir at /models, checking its
// SHA-256 for a file; the serving container then reads /models/<name>.
//
// Shapes (see docs/deploy.md):
//   replace:        Deployment <service>-stable (replicas: total) + Service <service>
//   canary:         Deployment <service>-canary (replicas: round(total * traffic%),
//                   at least 1) + a merge patch scaling <service>-stable to the rest;
//                   the Service selects both tracks, so traffic splits by replicas;
//                   Service <service>-canary selects the canary alone (validation)
//   kserve: true:   InferenceService <service> (serving.kserve.io/v1beta1) with
//                   canaryTrafficPercent in canary mode
// Labels: app.kubernetes.io/name, app.kubernetes.io/managed-by=sluice,
// sluice.dev/service, sluice.dev/track (stable|canary), sluice.dev/version;
// annotation sluice.dev/model-digest.
//
// The `kubernetes:` config section: namespace (default "default"), replicas
// (total, default 2), port (container port, default 8080), artifacts_pvc
// (default "sluice-artifacts"), fetch_image (default "busybox:1.36"),
// artifacts_dir (where sluice's store is on the PVC, default its root),
// model_path (path on the PVC; default <artifacts_dir>/cas/sha256/<hex[0:2]>/<hex>
// from model_digest), kubeconfig, kubeconfig_env (a $KUBECONFIG list),
// context, model_store (object storage instead of the PVC: {url, endpoint,
// region, credentials_secret, image, launcher_path}; the init container runs
// `sluice-launcher fetch <model_digest> /models/<name>` in that image;
// with the run's code_archive (RunContext) a second one, `fetch-code`,
// fetches the run's code to /sluice/code and the serve command's and env's
// code_dir paths become /sluice/code paths), resources (a Kubernetes
// ResourceRequirements, verbatim), nodeSelector and tolerations (the pod's,
// verbatim; `sluice run` copies the step's `resources` ones), kserve (bool).

#include "engine/spec.h"
#include "engine/status.h"
#include "operators/serving/deploy.h"

namespace sluice::serving {

// A `v1/List` of the objects to apply, in order. Objects to merge-patch rather
// than create carry the annotation `sluice.dev/apply: merge-patch`.
// kInvalidArgument when the config lacks serve.image or a model digest.
Result<Json> BuildKubernetesObjects(const DeployConfig& config);

// The canary's replicas at `share` percent of `total` in a staged rollout on
// Kubernetes: round(total x share%), at least 1 and at most total - 1; all of
// them at 100%. (Used by `sluice compile --target argo` for the replica
// counts of each stage.)
int64_t CanaryReplicasAt(int64_t total, double share);

// The merge patch that promotes a canary: the stable Deployment gets the
// canary Deployment's pod template relabelled `sluice.dev/track: stable`, its
// labels, its model digest (and run) annotations, at `total` replicas.
Json PromotePatch(const Json& canary_deployment, int64_t total);

}  // namespace sluice::serving
