#pragma once
// Clock: the Runner's only access to time, so tests can run it on a fake
// clock (LevelDB's Env idea, for time alone).

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "engine/spec.h"
#include "engine/store.h"

namespace sluice {

class Clock {
 public:
  virtual ~Clock() = default;

  // The current wall-clock time.
  virtual TimePoint Now() = 0;

  // Blocks for up to `d`, or until Wake() is called (from any thread).
  // Used by the Runner when nothing is running and it waits for a retry.
  virtual void SleepFor(Duration d) = 0;

  // Ends a SleepFor() in progress (or the next one) early. Thread-safe.
  virtual void Wake() = 0;
};

// The real clock (std::chrono::system_clock), sleeping on a condition
// variable.
class SystemClock : public Clock {
 public:
  TimePoint Now() override { return std::chrono::system_clock::now(); }

  void SleepFor(Duration d) override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, d, [this] { return woken_; });
    woken_ = false;
  }

  void Wake() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      woken_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
};

// A clock for tests: time moves only when told; SleepFor advances it.
class FakeClock : public Clock {
 public:
  explicit FakeClock(TimePoint start = TimePoint{} + std::chrono::hours(24 * 365 * 56)) : now_(start) {}

  TimePoint Now() override { return now_; }
  void SleepFor(Duration d) override { now_ += d; }
  void Wake() override {}
  void Advance(Duration d) { now_ += d; }

 private:
  TimePoint now_;
};

}  // namespace sluice
