// k8s::HeldByKueue and k8s::KueueQueueNote (executors/kubernetes/kueue.h):
// objects and Workloads as the API server returns them, texts exact.

#include "executors/kubernetes/kueue.h"

#include <gtest/gtest.h>

namespace sluice::k8s {
namespace {

// A Workload of LocalQueue `queue` owned by Job `owner`, created at `created`,
// with `priority` and the conditions that are True.
Json Workload(const std::string& name, const std::string& owner, const std::string& queue,
              const std::string& created, int priority = 0, const std::vector<std::string>& true_conditions = {}) {
  Json w = Json::parse(R"({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
                           "metadata": {"namespace": "team-a"}, "spec": {}, "status": {"conditions": []}})");
  w["metadata"]["name"] = name;
  w["metadata"]["creationTimestamp"] = created;
  w["metadata"]["ownerReferences"] = Json::array({{{"apiVersion", "batch/v1"}, {"kind", "Job"}, {"name", owner}}});
  w["spec"]["queueName"] = queue;
  if (priority != 0) w["spec"]["priority"] = priority;
  w["status"]["conditions"].push_back(
      {{"type", "QuotaReserved"}, {"status", "False"}, {"reason", "Pending"}, {"message", "couldn't assign flavors"}});
  for (const auto& c : true_conditions) w["status"]["conditions"].push_back({{"type", c}, {"status", "True"}});
  return w;
}

TEST(HeldByKueue, SuspendedJobGatedPodAndAdmittedOnes) {
  EXPECT_TRUE(HeldByKueue(Json::parse(R"({"kind": "Job", "spec": {"suspend": true}})")));
  EXPECT_FALSE(HeldByKueue(Json::parse(R"({"kind": "Job", "spec": {"suspend": false}})")));
  EXPECT_FALSE(HeldByKueue(Json::parse(R"({"kind": "Job", "spec": {}})")));
  EXPECT_TRUE(HeldByKueue(Json::parse(
      R"({"kind": "Pod", "spec": {"schedulingGates": [{"name": "other"}, {"name": "kueue.x-k8s.io/admission"}]}})")));
  EXPECT_FALSE(HeldByKueue(Json::parse(R"({"kind": "Pod", "spec": {"schedulingGates": [{"name": "other"}]}})")));
  EXPECT_FALSE(HeldByKueue(Json::parse(R"({"kind": "Pod", "spec": {"schedulingGates": []}})")));
  EXPECT_TRUE(HeldByKueue(Json::parse(R"({"kind": "TFJob", "spec": {"runPolicy": {"suspend": true}}})")));
}

TEST(KueueQueueNote, PositionFollowsPriorityThenCreationTime) {
  std::vector<Json> w = {
      Workload("job-a", "a", "team-a", "2026-12-07T10:00:00Z", 0, {"QuotaReserved", "Admitted"}),  // running
      Workload("job-b", "b", "team-a", "2026-12-07T10:00:01Z"),
      Workload("job-c", "c", "team-a", "2026-12-07T10:00:02Z"),
      Workload("job-d", "d", "team-a", "2026-12-07T10:00:03Z", 10),                 // higher priority, newer
      Workload("job-e", "e", "team-b", "2026-12-07T09:00:00Z"),                     // another queue
      Workload("job-f", "f", "team-a", "2026-12-07T09:00:00Z", 0, {"Finished"}),   // done
  };
  EXPECT_EQ(KueueQueueNote("team-a", w, "Job", "d"), "queued in team-a (Kueue: pending admission, position 1)");
  EXPECT_EQ(KueueQueueNote("team-a", w, "Job", "b"), "queued in team-a (Kueue: pending admission, position 2)");
  EXPECT_EQ(KueueQueueNote("team-a", w, "Job", "c"), "queued in team-a (Kueue: pending admission, position 3)");
  EXPECT_EQ(KueueQueueNote("team-a", w, "Job", "a"), "queued in team-a (Kueue: admitted, starting)");
}

TEST(KueueQueueNote, OtherStatesOfTheWorkload) {
  std::vector<Json> w = {Workload("job-a", "a", "team-a", "2026-12-07T10:00:00Z", 0, {"QuotaReserved"}),
                         Workload("job-b", "b", "team-a", "2026-12-07T10:00:01Z")};
  w[1]["spec"]["active"] = false;
  EXPECT_EQ(KueueQueueNote("team-a", w, "Job", "a"),
            "queued in team-a (Kueue: quota reserved, waiting for admission checks)");
  EXPECT_EQ(KueueQueueNote("team-a", w, "Job", "b"), "queued in team-a (Kueue: deactivated)");
  EXPECT_EQ(KueueQueueNote("team-a", w, "Job", "z"), "queued in team-a (Kueue: no Workload yet)");
  EXPECT_EQ(KueueQueueNote("team-a", w, "Pod", "a"), "queued in team-a (Kueue: no Workload yet)");
}

}  // namespace
}  // namespace sluice::k8s
