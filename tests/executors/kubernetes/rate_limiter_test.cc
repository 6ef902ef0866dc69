// The token bucket, driven by a fake clock (no sleeps, no timing).

#include "executors/kubernetes/api/rate_limiter.h"

#include "executors/kubernetes/api/client.h"

#include <gtest/gtest.h>

namespace sluice::k8s {
namespace {

using std::chrono::milliseconds;

TEST(TokenBucketTest, BurstThenQps) {
  TokenBucket::Clock::time_point now{};
  TokenBucket bucket(/*qps=*/10, /*burst=*/3, [&] { return now; });
  // A full bucket: three requests go at once.
  EXPECT_EQ(bucket.Reserve(), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(bucket.Reserve(), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(bucket.Reserve(), TokenBucket::Clock::duration::zero());
  // Then one every 100 ms; waiters queue behind each other.
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.Reserve()), milliseconds(100));
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.Reserve()), milliseconds(200));
  // 500 ms later the two debts are paid and three tokens have been earned
  // (capped at the burst).
  now += milliseconds(500);
  EXPECT_EQ(bucket.Reserve(), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(bucket.Reserve(), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(bucket.Reserve(), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.Reserve()), milliseconds(100));
}

TEST(TokenBucketTest, RefillIsCappedAtBurst) {
  TokenBucket::Clock::time_point now{};
  TokenBucket bucket(50, 2, [&] { return now; });
  now += std::chrono::hours(1);
  EXPECT_EQ(bucket.Reserve(), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(bucket.Reserve(), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.Reserve()), milliseconds(20));
}

// Background requests take a token only while half the burst is free, so a
// queue of foreground requests always goes first.
TEST(TokenBucketTest, IdleReservationsYieldToQueuedRequests) {
  TokenBucket::Clock::time_point now{};
  TokenBucket bucket(/*qps=*/10, /*burst=*/4, [&] { return now; });
  // Full bucket (4): background takes while at least half the burst (2) is
  // free: at 4, 3 and 2 tokens.
  EXPECT_EQ(bucket.ReserveIdle(), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(bucket.ReserveIdle(), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(bucket.ReserveIdle(), TokenBucket::Clock::duration::zero());
  // 1 left: below the floor, nothing is taken; a whole token of room comes
  // back in 100 ms.
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.ReserveIdle()), milliseconds(100));
  // Foreground requests use the rest and queue up (debt of 2 tokens).
  EXPECT_EQ(bucket.Reserve(), TokenBucket::Clock::duration::zero());
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.Reserve()), milliseconds(100));
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.Reserve()), milliseconds(200));
  // While the queue is paid off, background requests wait for the debt and
  // the floor: (2 + 2) tokens at 10/s.
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.ReserveIdle()), milliseconds(400));
  now += milliseconds(400);
  EXPECT_EQ(bucket.ReserveIdle(), TokenBucket::Clock::duration::zero());
}

TEST(TokenBucketTest, ZeroQpsDisablesLimiting) {
  TokenBucket bucket(0, 1);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(bucket.Reserve(), TokenBucket::Clock::duration::zero());
}

TEST(TokenBucketTest, SluiceDefaults) {
  ClientOptions defaults;
  EXPECT_EQ(defaults.qps, 50);
  EXPECT_EQ(defaults.burst, 100);
}

}  // namespace
}  // namespace sluice::k8s
