#pragma once
// LeaderElector: how `sluice serve` replicas sharing a store agree on one
// leader. The server asks TryLead() every retry period from one thread;
// the replica for which it answers true fires schedules and resumes the
// runs the previous leader drove. Two implementations: the store's
// PostgreSQL advisory lock (PgLeaderElector, below) and a Kubernetes Lease
// (engine/cli/leader_election.h over executors/kubernetes/lease_lock.h).

#include <memory>
#include <string>

#include "engine/status.h"
#include "engine/store.h"
#include "engine/store/pg_leader_lock.h"

namespace sluice::server {

class LeaderElector {
 public:
  virtual ~LeaderElector() = default;

  // One attempt to take or keep the leadership: true = this replica leads
  // now. Errors are the backend's (kUnavailable, kPermissionDenied); the
  // server logs them and counts the attempt as "not leading" unless the
  // elector's own rules say otherwise. Called from one thread only.
  virtual Result<bool> TryLead() = 0;

  // Gives the leadership up at a clean shutdown, so that a standby takes
  // over at once. Called from the thread that called TryLead.
  virtual void Release() = 0;

  // Who leads, as far as this replica knows ("" = nobody known). Any thread.
  virtual std::string Leader() const = 0;

  // This replica's identity. Any thread.
  virtual std::string Identity() const = 0;

  // Where this replica serves its API ("http://10.0.0.7:8080"), published
  // with the leadership so that standbys can forward writes to the leader.
  // Set once, before the first TryLead. Default: not published.
  virtual void Advertise(const std::string& url) { (void)url; }

  // The leader's published URL ("" = not known). Any thread.
  virtual std::string LeaderUrl() const { return ""; }

  // What is held, for messages: "the store's leader lock",
  // "the Lease sluice/sluice-leader".
  virtual std::string What() const = 0;

  // Whether `run` (Running in the store, not driven here) was driven by
  // the replica this one took the leadership over from, on another host:
  // the new leader resumes it. Runs on this host are resumed when their
  // process is gone, whatever this says.
  virtual bool DrivenByPreviousLeader(const RunRecord& run) const {
    (void)run;
    return false;
  }
};

// The store's PostgreSQL advisory lock (PgLeaderLock) as a LeaderElector.
// Its identity and leader are not known across replicas ("").
class PgLeaderElector : public LeaderElector {
 public:
  explicit PgLeaderElector(std::unique_ptr<PgLeaderLock> lock) : lock_(std::move(lock)) {}
  Result<bool> TryLead() override { return lock_->TryAcquire(); }
  void Release() override { (void)lock_->Release(); }
  std::string Leader() const override { return ""; }
  std::string Identity() const override { return ""; }
  std::string What() const override { return "the store's leader lock"; }

 private:
  std::unique_ptr<PgLeaderLock> lock_;
};

}  // namespace sluice::server
