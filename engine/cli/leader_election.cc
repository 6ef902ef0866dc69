#include "engine/cli/leader_election.h"

#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "engine/store/provenance.h"
#include "executors/kubernetes/api/client.h"
#include "executors/kubernetes/lease_lock.h"

namespace sluice::cli {
namespace {

using SteadyClock = std::chrono::steady_clock;

class LeaseElector : public server::LeaderElector {
 public:
  LeaseElector(std::unique_ptr<k8s::Client> client, const LeaseElectionOptions& options)
      : client_(std::move(client)),
        lock_(client_.get(), {options.name, options.namespace_, options.identity,
                              std::chrono::duration_cast<std::chrono::seconds>(options.lease_duration), ""}),
        renew_deadline_(options.renew_deadline) {}

  Result<bool> TryLead() override {
    auto held = lock_.TryAcquireOrRenew();
    std::lock_guard lock(mu_);
    leader_ = lock_.holder();
    leader_url_ = lock_.holder_url();
    if (held && *held) {
      last_renew_ = SteadyClock::now();
      leading_ = true;
      previous_ = lock_.previous_holder();
      return true;
    }
    // A leader keeps leading through failed renewals until the renew
    // deadline has passed since its last good one (client-go's renew loop).
    // One that sees another holder has lost it at once.
    const bool taken = held && lock_.holder() != lock_.options().identity;
    if (leading_ && !taken && SteadyClock::now() - last_renew_ < renew_deadline_) {
      if (!held) return Error(held.error());
      return true;
    }
    leading_ = false;
    if (!held) return Error(held.error());
    return false;
  }

  void Release() override {
    (void)lock_.Release();
    std::lock_guard lock(mu_);
    leading_ = false;
    leader_.clear();
    leader_url_.clear();
  }

  std::string Leader() const override {
    std::lock_guard lock(mu_);
    return leader_;
  }
  std::string Identity() const override { return lock_.options().identity; }
  void Advertise(const std::string& url) override { lock_.set_holder_url(url); }
  std::string LeaderUrl() const override {
    std::lock_guard lock(mu_);
    return leader_url_;
  }
  std::string What() const override {
    return "the Lease " + lock_.options().namespace_ + "/" + lock_.options().name;
  }

  // The previous holder's identity is its pod name (which is its host name)
  // or "<host>_<pid>".
  bool DrivenByPreviousLeader(const RunRecord& run) const override {
    std::lock_guard lock(mu_);
    if (previous_.empty()) return false;
    return run.host == previous_ || run.host + "_" + std::to_string(run.pid) == previous_;
  }

 private:
  std::unique_ptr<k8s::Client> client_;
  k8s::LeaseLock lock_;
  const std::chrono::milliseconds renew_deadline_;
  mutable std::mutex mu_;
  std::string leader_;    // guarded by mu_
  std::string leader_url_;  // guarded by mu_
  std::string previous_;  // guarded by mu_
  bool leading_ = false;  // guarded by mu_
  SteadyClock::time_point last_renew_{};
};

}  // namespace

std::string DefaultLeaderIdentity() {
  if (const char* pod = std::getenv("POD_NAME"); pod != nullptr && *pod != '\0') return pod;
  return HostName() + "_" + std::to_string(::getpid());
}

Status CheckLeaseTiming(const LeaseElectionOptions& o) {
  using std::chrono::milliseconds;
  if (o.retry_period <= milliseconds(0))
    return Status::InvalidArgument("--retry-period must be positive");
  if (o.lease_duration % std::chrono::seconds(1) != milliseconds(0))
    return Status::InvalidArgument("--lease-duration must be whole seconds (the Lease stores seconds)");
  if (o.renew_deadline <= o.retry_period * 12 / 10)
    return Status::InvalidArgument("--renew-deadline must be longer than 1.2 x --retry-period");
  if (o.lease_duration <= o.renew_deadline)
    return Status::InvalidArgument("--lease-duration must be longer than --renew-deadline");
  return Status::Ok();
}

Result<std::shared_ptr<server::LeaderElector>> NewLeaseElector(const KubernetesFlags& flags,
                                                               const LeaseElectionOptions& options) {
  if (Status s = CheckLeaseTiming(options); !s.ok()) return Error(s);
  auto k8s = KubernetesOptionsFor(flags, nullptr);
  if (!k8s) return Error(k8s.error());
  auto config = k8s::LoadRestConfig(k8s->kubeconfig);
  if (!config) return Error(config.error().WithContext("--leader-election kubernetes"));
  auto client = k8s::Client::Create(*config);
  if (!client) return Error(client.error().WithContext("--leader-election kubernetes"));
  LeaseElectionOptions o = options;
  if (o.identity.empty()) o.identity = DefaultLeaderIdentity();
  return std::shared_ptr<server::LeaderElector>(std::make_shared<LeaseElector>(std::move(*client), o));
}

}  // namespace sluice::cli
