#pragma once
// The `deploy` operator on Kubernetes: applies the objects of
// k8s_manifests.h through the REST client of executors/kubernetes and follows
// the rollout with a watch (no polling): a Deployment is rolled out when
// status.observedGeneration has caught up with metadata.generation and
// updatedReplicas and availableReplicas reach spec.replicas; an
// InferenceService when its Ready condition is True. A Progressing condition
// with reason ProgressDeadlineExceeded, or readiness.timeout passing, fails
// the deploy, and the objects are put back as they were (created ones
// deleted, patched ones restored), so the previous deployment keeps serving.
//
// Applying: create; when the name exists, a JSON merge patch with the whole
// object (metadata labels/annotations and spec). Objects annotated
// `sluice.dev/apply: merge-patch` are only patched (the stable Deployment's
// replica count in canary mode).

#include "engine/status.h"
#include "executors/kubernetes/client.h"
#include "operators/serving/deploy.h"

namespace sluice::serving {

// Deploys `config` (executor: kubernetes) with `client`. The namespace is
// kubernetes.namespace, else the client's (kubeconfig context) namespace.
// Errors: the client's (kUnavailable, kPermissionDenied, ... with its clear
// messages), kDeadlineExceeded (not rolled out within readiness.timeout),
// kFailedPrecondition (ProgressDeadlineExceeded), kInvalidArgument (config).
Result<DeployResult> DeployKubernetes(const DeployConfig& config, k8s::Client& client,
                                      const ServingEnv& env);

}  // namespace sluice::serving
