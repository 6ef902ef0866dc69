#include "executors/kubernetes/api/rate_limiter.h"

#include <algorithm>
#include <thread>

namespace sluice::k8s {

TokenBucket::TokenBucket(double qps, int burst, NowFn now)
    : qps_(qps), burst_(std::max(1, burst)), now_(std::move(now)), tokens_(burst_), last_(now_()) {}

void TokenBucket::RefillLocked() {
  Clock::time_point now = now_();
  if (now > last_) {
    double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min<double>(burst_, tokens_ + elapsed * qps_);
    last_ = now;
  }
}

TokenBucket::Clock::duration TokenBucket::Reserve() {
  if (qps_ <= 0) return Clock::duration::zero();
  std::lock_guard<std::mutex> lock(mu_);
  RefillLocked();
  // Tokens may go negative: each waiter owns the slot it reserved, so waits
  // queue up fairly instead of all waking at once.
  tokens_ -= 1;
  if (tokens_ >= 0) return Clock::duration::zero();
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(-tokens_ / qps_));
}

void TokenBucket::Acquire() {
  Clock::duration wait = Reserve();
  if (wait > Clock::duration::zero()) std::this_thread::sleep_for(wait);
}

TokenBucket::Clock::duration TokenBucket::ReserveIdle() {
  if (qps_ <= 0) return Clock::duration::zero();
  std::lock_guard<std::mutex> lock(mu_);
  RefillLocked();
  const double floor = std::max(1.0, burst_ / 2.0);
  if (tokens_ >= floor) {
    tokens_ -= 1;
    return Clock::duration::zero();
  }
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>((floor - tokens_) / qps_));
}

void TokenBucket::AcquireIdle() {
  for (Clock::duration wait = ReserveIdle(); wait > Clock::duration::zero(); wait = ReserveIdle()) {
    std::this_thread::sleep_for(wait);
  }
}

}  // namespace sluice::k8s
