#pragma once
// `sluice serve --leader-election kubernetes`: the server's LeaderElector
// (engine/server/leader.h) over a coordination.k8s.io/v1 Lease
// (executors/kubernetes/lease_lock.h), with client-go's timing rules.

#include <chrono>
#include <memory>
#include <string>

#include "engine/cli/kubernetes_options.h"
#include "engine/server/leader.h"
#include "engine/status.h"

namespace sluice::cli {

// The Lease and its timing (docs/server.md, "Two replicas, one leader").
struct LeaseElectionOptions {
  std::string name = "sluice-leader";  // --lease-name
  std::string namespace_;              // --lease-namespace; "" = the kubeconfig's (in a pod: its own)
  std::string identity;                // --leader-identity; "" = DefaultLeaderIdentity()
  std::chrono::milliseconds lease_duration{15000};  // --lease-duration
  std::chrono::milliseconds renew_deadline{10000};  // --renew-deadline
  std::chrono::milliseconds retry_period{2000};     // --retry-period
};

// $POD_NAME when set (a pod's name, given by the downward API), else
// "<hostname>_<pid>".
std::string DefaultLeaderIdentity();

// Checks client-go's constraints: lease duration > renew deadline >
// retry period * 1.2 > 0, durations in whole seconds for the lease.
// kInvalidArgument naming the flags.
Status CheckLeaseTiming(const LeaseElectionOptions& options);

// A LeaderElector on the Lease, talking to the cluster that `flags` name as
// the Kubernetes executor does (kubeconfig, context, in-cluster). It leads
// while its last successful renewal is younger than the renew deadline, and
// takes the Lease over only once it has expired. Errors: the kubeconfig's
// (LoadRestConfig), CheckLeaseTiming's.
Result<std::shared_ptr<server::LeaderElector>> NewLeaseElector(const KubernetesFlags& flags,
                                                               const LeaseElectionOptions& options);

}  // namespace sluice::cli
