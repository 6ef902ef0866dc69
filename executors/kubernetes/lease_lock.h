#pragma once
// LeaseLock: leader election on a coordination.k8s.io/v1 Lease, following
// client-go's leaderelection rules (tools/leaderelection, LeaseLock):
//
//   - A replica that finds no Lease creates it, holding it.
//   - A Lease held by another identity is taken over only once it has
//     expired: its spec (holder, renewTime, ...) has not changed for
//     leaseDurationSeconds, measured on THIS replica's monotonic clock from
//     the moment this replica last saw the spec change (so clocks of
//     different machines never need to agree).
//   - Every write is a merge patch carrying the resourceVersion that was
//     read, so of two replicas racing for the same expired Lease exactly one
//     wins (the other gets 409 Conflict and stays standby).
//   - A takeover sets acquireTime and increments leaseTransitions; a renewal
//     by the holder keeps both and moves renewTime.
//   - Release() (clean shutdown) clears holderIdentity so that a standby
//     takes over at its next attempt instead of waiting for expiry.
//
// The caller drives it (one thread): TryAcquireOrRenew every retry period,
// and stops acting as the leader when no renewal succeeded for the renew
// deadline (see LeaseElector in engine/cli/leader_election.cc).

#include <chrono>
#include <functional>
#include <string>

#include "engine/status.h"
#include "executors/kubernetes/api/client.h"

namespace sluice::k8s {

// coordination.k8s.io/v1 leases.
const ResourceKind& LeaseKind();

// Where the Lease is and who this replica is.
struct LeaseLockOptions {
  std::string name = "sluice-leader";
  std::string namespace_;  // "" = the client's namespace (context / service account)
  std::string identity;    // holderIdentity written by this replica; must not be ""
  std::chrono::seconds lease_duration{15};  // leaseDurationSeconds written
  // Written to the annotation kLeaderUrlAnnotation while this replica holds
  // the Lease (where standbys forward writes); "" = none.
  std::string holder_url;
};

// The Lease annotation holding the holder's API URL.
inline constexpr char kLeaderUrlAnnotation[] = "sluice.dev/leader-url";

class LeaseLock {
 public:
  using SteadyNow = std::function<std::chrono::steady_clock::time_point()>;

  // Borrows `client`, which must outlive the lock. `now` is the local
  // monotonic clock (tests may pin it); null = steady_clock::now.
  LeaseLock(Client* client, LeaseLockOptions options, SteadyNow now = nullptr);

  // One attempt, as client-go's tryAcquireOrRenew: true when this identity
  // holds the Lease after it (created, renewed or taken over), false when
  // another identity holds an unexpired Lease or won a race for it.
  // Errors: the client's (kUnavailable, kPermissionDenied for missing RBAC
  // on leases, ...); the lock's state is unchanged by an error.
  Result<bool> TryAcquireOrRenew();

  // Clears holderIdentity when this identity holds the Lease (as read now);
  // OK when it does not. Errors: the client's.
  Status Release();

  // The holderIdentity last read ("" when none or never read).
  const std::string& holder() const { return observed_holder_; }
  // The holder's kLeaderUrlAnnotation as last read ("" when none).
  const std::string& holder_url() const { return observed_holder_url_; }
  // Sets LeaseLockOptions::holder_url (before the first attempt).
  void set_holder_url(const std::string& url) { options_.holder_url = url; }
  // The holder this replica took the Lease over from at its last
  // acquisition ("" when it created the Lease or the Lease was free).
  const std::string& previous_holder() const { return previous_holder_; }
  // leaseTransitions of the Lease as last read or written.
  int64_t transitions() const { return transitions_; }
  const LeaseLockOptions& options() const { return options_; }

 private:
  // Remembers `lease`'s spec; restarts the expiry clock when it changed.
  void Observe(const Json& lease);

  Client* client_;
  LeaseLockOptions options_;
  SteadyNow now_;
  Json observed_spec_;  // the spec as last read; null before the first read
  std::chrono::steady_clock::time_point observed_at_{};
  std::string observed_holder_;
  std::string observed_holder_url_;
  std::string previous_holder_;
  int64_t transitions_ = 0;
};

// `t` as a Kubernetes MicroTime: "2026-12-07T14:00:00.123456Z".
std::string MicroTime(std::chrono::system_clock::time_point t);

}  // namespace sluice::k8s
