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
#include "executors/kubernetes/api/client.h"
#include "operators/serving/deploy.h"
#include "operators/serving/validate.h"

namespace sluice::serving {

// Deploys `config` (executor: kubernetes) with `client`. The namespace is
// kubernetes.namespace, else the client's (kubeconfig context) namespace.
// Errors: the client's (kUnavailable, kPermissionDenied, ... with its clear
// messages), kDeadlineExceeded (not rolled out within readiness.timeout),
// kFailedPrecondition (ProgressDeadlineExceeded), kInvalidArgument (config).
Result<DeployResult> DeployKubernetes(const DeployConfig& config, k8s::Client& client,
                                      const ServingEnv& env);

// One line per pod (at most 3) of `deployment`'s template labels: its phase,
// why it is not scheduled, and each container that is waiting or exited
// non-zero (reason and message), e.g.
//   "pod web-5d9-x2: Pending; not scheduled: Unschedulable: 0/4 nodes are
//    available: 4 Insufficient cpu."
// For a failed rollout's error, read before the objects are removed. A
// failure to list is described in the text, never returned.
std::string DescribeRolloutPods(k8s::Client& client, const std::string& ns, const Json& deployment);

// Waits, through a watch on the service's objects of `kind` (label
// sluice.dev/service=<service>), until `name` is rolled out: a Deployment when
// observedGeneration has caught up and updatedReplicas and availableReplicas
// reach spec.replicas, an InferenceService when Ready. kFailedPrecondition on
// ProgressDeadlineExceeded, kDeadlineExceeded after `timeout`; both messages
// start with "<Kind> <name>" and say what was last seen.
Status WaitRolledOut(k8s::Client& client, const k8s::ResourceKind& kind, const std::string& ns,
                     const std::string& name, const std::string& service, Duration timeout);

// Validates and rolls out a canary deployed on Kubernetes by DeployKubernetes
// (config.executor == "kubernetes"): the staged rollout of validate.h with the
// two Deployments as its target. A stage sizes the tracks by replicas
// (canary = round(total x share%), the stable Deployment the rest; total from
// the canary's sluice.dev/total-replicas) and waits for both to roll out;
// promote puts the canary's pod template on the stable Deployment at the
// total, waits, and deletes the canary; rollback scales the stable Deployment
// back to its replica count before the canary (sluice.dev/stable-replicas-
// before), waits, and deletes the canary: its spec is then exactly what it
// was. Requests go to config.endpoint, by default the canary's own Service
// (http://<service>-canary.<ns>.svc.cluster.local, reachable where the
// cluster's DNS is, e.g. sluice in a pod) and, with shadow, to
// config.baseline_endpoint (required then).
// kubernetes.rollout_timeout (default 5m) bounds each wait. Errors: NotFound
// when the service has no stable Deployment; the client's errors.
Result<ValidationOutcome> ValidateKubernetes(const ValidationConfig& config, k8s::Client& client,
                                             const ServingEnv& env);

// Deletes a service's Deployments (stable, canary), its Services (<service>,
// <service>-canary) and its InferenceService, whichever exist, and records `undeploy`. NotFound when
// none existed.
Status UndeployKubernetes(const std::string& service, const std::string& ns,
                          k8s::Client& client, const ServingEnv& env, const RunContext& run);

}  // namespace sluice::serving
