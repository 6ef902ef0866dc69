#include "executors/kubernetes/kueue.h"

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "engine/task_note.h"

namespace sluice::k8s {

namespace {

bool ConditionTrue(const Json& object, const std::string& type) {
  const Json status = object.value("status", Json::object());
  if (!status.is_object() || !status.contains("conditions") || !status["conditions"].is_array()) return false;
  for (const auto& c : status["conditions"]) {
    if (c.is_object() && c.value("type", "") == type && c.value("status", "") == "True") return true;
  }
  return false;
}

bool OwnedBy(const Json& workload, const std::string& kind, const std::string& name) {
  const Json meta = workload.value("metadata", Json::object());
  if (!meta.is_object() || !meta.contains("ownerReferences") || !meta["ownerReferences"].is_array()) return false;
  for (const auto& o : meta["ownerReferences"]) {
    if (o.is_object() && o.value("kind", "") == kind && o.value("name", "") == name) return true;
  }
  return false;
}

bool Pending(const Json& w) {
  const Json spec = w.value("spec", Json::object());
  if (spec.is_object() && spec.value("active", true) == false) return false;
  return !ConditionTrue(w, "QuotaReserved") && !ConditionTrue(w, "Finished");
}

// Kueue's order within a queue: higher priority first, then older.
std::tuple<int64_t, std::string, std::string> QueueOrder(const Json& w) {
  const Json spec = w.value("spec", Json::object());
  const Json meta = w.value("metadata", Json::object());
  int64_t priority = 0;
  if (spec.is_object() && spec.contains("priority") && spec["priority"].is_number_integer())
    priority = spec["priority"].get<int64_t>();
  return {-priority, meta.is_object() ? meta.value("creationTimestamp", "") : "",
          meta.is_object() ? meta.value("name", "") : ""};
}

}  // namespace

const ResourceKind& KueueWorkloadKind() {
  static const ResourceKind kind{"kueue.x-k8s.io/v1beta2", "Workload", "workloads", true};
  return kind;
}

bool HeldByKueue(const Json& object) {
  const Json spec = object.value("spec", Json::object());
  if (!spec.is_object()) return false;
  if (spec.value("suspend", false) == true) return true;
  const Json run_policy = spec.value("runPolicy", Json::object());
  if (run_policy.is_object() && run_policy.value("suspend", false) == true) return true;
  if (spec.contains("schedulingGates") && spec["schedulingGates"].is_array()) {
    for (const auto& g : spec["schedulingGates"]) {
      if (g.is_object() && g.value("name", "") == kKueueAdmissionGate) return true;
    }
  }
  return false;
}

std::string KueueQueueNote(const std::string& queue, const std::vector<Json>& workloads,
                           const std::string& owner_kind, const std::string& owner_name) {
  const std::string head = std::string(kQueuedNotePrefix) + queue + " (Kueue: ";
  auto mine = std::find_if(workloads.begin(), workloads.end(),
                           [&](const Json& w) { return OwnedBy(w, owner_kind, owner_name); });
  if (mine == workloads.end()) return head + "no Workload yet)";
  const Json spec = mine->value("spec", Json::object());
  if (spec.is_object() && spec.value("active", true) == false) return head + "deactivated)";
  if (ConditionTrue(*mine, "Admitted")) return head + "admitted, starting)";
  if (ConditionTrue(*mine, "QuotaReserved")) return head + "quota reserved, waiting for admission checks)";
  const auto order = QueueOrder(*mine);
  int position = 1;
  for (const auto& w : workloads) {
    if (&w == &*mine || !Pending(w)) continue;
    const Json ws = w.value("spec", Json::object());
    if (!ws.is_object() || ws.value("queueName", "") != queue) continue;
    if (QueueOrder(w) < order) ++position;
  }
  return head + "pending admission, position " + std::to_string(position) + ")";
}

}  // namespace sluice::k8s
