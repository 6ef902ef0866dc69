#pragma once
// A client-side token bucket that spaces out requests to the API server, as
// client-go's flowcontrol.NewTokenBucketRateLimiter does.
//
// sluice's defaults are qps 50, burst 100 (kubectl/client-go default to 5/10,
// which would cap a 1,000-step fan-out at 5 creates a second; the API server's
// own priority-and-fairness still protects it). Thread-safe.

#include <chrono>
#include <functional>
#include <mutex>

namespace sluice::k8s {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;
  // Returns the current time; tests pass a fake.
  using NowFn = std::function<Clock::time_point()>;

  // `qps` tokens are added per second up to `burst`; the bucket starts full.
  // qps <= 0 disables limiting.
  TokenBucket(double qps, int burst, NowFn now = [] { return Clock::now(); });

  // Takes one token and returns how long the caller must wait before using
  // it (zero when a token was available). Never blocks; callers sleep.
  Clock::duration Reserve();

  // Reserve(), then sleeps for the returned time.
  void Acquire();

  // For background requests that must never delay the others: takes a token
  // only while at least half the burst (and at least one token) is free, so
  // nothing is queued and a burst of foreground requests still finds room.
  // Returns zero when it took one, else how long until one could be taken
  // (nothing is taken then; call again after waiting).
  Clock::duration ReserveIdle();

  // ReserveIdle() until it takes a token, sleeping in between.
  void AcquireIdle();

  double qps() const { return qps_; }
  int burst() const { return burst_; }

 private:
  const double qps_;
  const int burst_;
  NowFn now_;
  std::mutex mu_;
  double tokens_;
  Clock::time_point last_;

  // Adds the tokens earned since last_. Requires mu_.
  void RefillLocked();
};

}  // namespace sluice::k8s
