#pragma once
// Reading Kueue's state of a step's object, for `kubernetes.queue`: whether
// Kueue still holds the object (a Job it keeps suspended, a pod behind its
// admission scheduling gate) and the text a held step's record shows, from
// the Workloads (kueue.x-k8s.io/v1beta2) of the object's namespace. Pure
// functions: no I/O.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "executors/kubernetes/api/client.h"

namespace sluice::k8s {

// kueue.x-k8s.io/v1beta2 Workload.
const ResourceKind& KueueWorkloadKind();

// The scheduling gate Kueue's pod integration puts on the pods it manages.
inline constexpr char kKueueAdmissionGate[] = "kueue.x-k8s.io/admission";

// True while Kueue has not admitted `object`: a Job (or any kind with
// spec.suspend or spec.runPolicy.suspend) that is suspended, a Pod whose
// spec.schedulingGates holds kKueueAdmissionGate.
bool HeldByKueue(const Json& object);

// The text for object `owner_kind`/`owner_name`, held in LocalQueue `queue`,
// given the Workloads of its namespace (`workloads`, as listed):
//   "queued in Q (Kueue: pending admission, position N)"  no quota reserved;
//       N counts the pending Workloads of the same LocalQueue ordered as
//       Kueue orders them: higher spec.priority first, then older
//       creationTimestamp, then name (1 = next to be admitted)
//   "queued in Q (Kueue: quota reserved, waiting for admission checks)"
//   "queued in Q (Kueue: admitted, starting)"
//   "queued in Q (Kueue: deactivated)"                    spec.active false
//   "queued in Q (Kueue: no Workload yet)"                none owned by it
// Workloads of other LocalQueues feeding the same ClusterQueue are not
// counted: reading them would take cluster-wide reads of every namespace.
std::string KueueQueueNote(const std::string& queue, const std::vector<Json>& workloads,
                           const std::string& owner_kind, const std::string& owner_name);

}  // namespace sluice::k8s
