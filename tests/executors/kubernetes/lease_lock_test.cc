// LeaseLock (executors/kubernetes/lease_lock.h) against the live test
// cluster's API server (fixture k8s): client-go's rules on a real Lease,
// with each replica's monotonic clock pinned by the test so that expiry is
// decided without sleeping.

#include <chrono>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "executors/kubernetes/lease_lock.h"
#include "tests/executors/kubernetes/live_cluster.h"

namespace sluice {
namespace {

using test_support::ClusterClient;
using test_support::K8sStateDir;
using SteadyTime = std::chrono::steady_clock::time_point;


class LeaseLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string kubeconfig = K8sStateDir() + "/kubeconfig";
    auto client = ClusterClient(kubeconfig);
    if (!client) GTEST_SKIP() << "no test cluster: " << client.error().ToString();
    client_ = std::move(*client);
    ns_ = "lease-" + std::to_string(std::random_device{}() % 1000000);
    Status created = test_support::CreateNamespace(*client_, ns_);
    ASSERT_TRUE(created.ok()) << created.ToString();
  }
  void TearDown() override {
    if (client_) (void)client_->Delete(test_support::NamespaceKind(), "", ns_, k8s::Propagation::kBackground);
  }

  // A replica `identity` whose monotonic clock reads `*now`.
  k8s::LeaseLock Replica(const std::string& identity, SteadyTime* now) {
    return k8s::LeaseLock(client_.get(), {"leader", ns_, identity, std::chrono::seconds(15)},
                          [now] { return *now; });
  }

  Json Spec() {
    auto lease = client_->Get(k8s::LeaseKind(), ns_, "leader");
    EXPECT_TRUE(lease) << lease.error().ToString();
    return lease ? (*lease)["spec"] : Json();
  }

  std::unique_ptr<k8s::Client> client_;
  std::string ns_;
};

bool Holds(Result<bool> r) {
  EXPECT_TRUE(r) << r.error().ToString();
  return r && *r;
}

TEST_F(LeaseLockTest, AStandbyTakesOverOnlyOnceTheLeaseExpiredOnItsOwnClock) {
  SteadyTime a_now{}, b_now{};
  k8s::LeaseLock a = Replica("a", &a_now), b = Replica("b", &b_now);
  EXPECT_TRUE(Holds(a.TryAcquireOrRenew()));  // creates the Lease
  EXPECT_EQ(Spec()["holderIdentity"], "a");
  EXPECT_EQ(Spec()["leaseDurationSeconds"], 15);
  EXPECT_EQ(Spec()["leaseTransitions"], 0);

  EXPECT_FALSE(Holds(b.TryAcquireOrRenew()));  // b starts its clock now
  EXPECT_EQ(b.holder(), "a");
  b_now += std::chrono::seconds(14);
  EXPECT_FALSE(Holds(b.TryAcquireOrRenew()));  // 14 s unchanged: not expired
  // a renews: the spec changes, so b's 15 s start again.
  EXPECT_TRUE(Holds(a.TryAcquireOrRenew()));
  b_now += std::chrono::seconds(2);
  EXPECT_FALSE(Holds(b.TryAcquireOrRenew()));
  b_now += std::chrono::seconds(14);
  EXPECT_FALSE(Holds(b.TryAcquireOrRenew()));
  b_now += std::chrono::seconds(1);  // 15 s since the last renewal it saw
  EXPECT_TRUE(Holds(b.TryAcquireOrRenew()));
  EXPECT_EQ(b.previous_holder(), "a");
  Json spec = Spec();
  EXPECT_EQ(spec["holderIdentity"], "b");
  EXPECT_EQ(spec["leaseTransitions"], 1);
  EXPECT_EQ(spec["acquireTime"], spec["renewTime"]);

  // a sees b hold it and does not take it back; b's renewal keeps
  // acquireTime and the transition count.
  EXPECT_FALSE(Holds(a.TryAcquireOrRenew()));
  EXPECT_EQ(a.holder(), "b");
  const Json acquired = spec["acquireTime"];
  EXPECT_TRUE(Holds(b.TryAcquireOrRenew()));
  EXPECT_EQ(Spec()["acquireTime"], acquired);
  EXPECT_EQ(Spec()["leaseTransitions"], 1);
}

TEST_F(LeaseLockTest, OfTwoStandbysRacingForAnExpiredLeaseOneWins) {
  SteadyTime now{};
  k8s::LeaseLock a = Replica("a", &now), b = Replica("b", &now), c = Replica("c", &now);
  EXPECT_TRUE(Holds(a.TryAcquireOrRenew()));
  EXPECT_FALSE(Holds(b.TryAcquireOrRenew()));
  EXPECT_FALSE(Holds(c.TryAcquireOrRenew()));
  now += std::chrono::seconds(16);
  // Both read the same expired Lease; the second write carries a stale
  // resourceVersion and is refused (409), so c stays standby.
  auto lease = client_->Get(k8s::LeaseKind(), ns_, "leader");
  ASSERT_TRUE(lease);
  EXPECT_TRUE(Holds(b.TryAcquireOrRenew()));
  EXPECT_FALSE(Holds(c.TryAcquireOrRenew()));  // b's write changed the spec: c's clock restarts
  EXPECT_EQ(Spec()["holderIdentity"], "b");
  // A write with the resourceVersion c could have read before b's is refused.
  auto stale = client_->MergePatch(
      k8s::LeaseKind(), ns_, "leader",
      {{"metadata", {{"resourceVersion", (*lease)["metadata"]["resourceVersion"]}}},
       {"spec", {{"holderIdentity", "c"}}}});
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code(), StatusCode::kFailedPrecondition) << stale.error().ToString();
  EXPECT_EQ(Spec()["holderIdentity"], "b");
}

TEST_F(LeaseLockTest, ReleaseClearsTheHolderAndAStandbyLeadsAtOnce) {
  SteadyTime now{};
  k8s::LeaseLock a = Replica("a", &now), b = Replica("b", &now);
  EXPECT_TRUE(Holds(a.TryAcquireOrRenew()));
  EXPECT_FALSE(Holds(b.TryAcquireOrRenew()));
  ASSERT_TRUE(b.Release().ok());  // not the holder: nothing changes
  EXPECT_EQ(Spec()["holderIdentity"], "a");
  ASSERT_TRUE(a.Release().ok());
  EXPECT_FALSE(Spec().contains("holderIdentity")) << Spec().dump();
  EXPECT_TRUE(Holds(b.TryAcquireOrRenew()));  // no waiting for expiry
  EXPECT_EQ(Spec()["holderIdentity"], "b");
  EXPECT_EQ(Spec()["leaseTransitions"], 1);
  EXPECT_EQ(b.previous_holder(), "");
}

}  // namespace
}  // namespace sluice
