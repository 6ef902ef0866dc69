#include "executors/kubernetes/lease_lock.h"

#include <cstdio>
#include <ctime>

namespace sluice::k8s {

const ResourceKind& LeaseKind() {
  static const ResourceKind kind{"coordination.k8s.io/v1", "Lease", "leases", true};
  return kind;
}

std::string MicroTime(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(us % 1000000));
  return buf;
}

LeaseLock::LeaseLock(Client* client, LeaseLockOptions options, SteadyNow now)
    : client_(client), options_(std::move(options)), now_(std::move(now)) {
  if (!now_) now_ = [] { return std::chrono::steady_clock::now(); };
  if (options_.namespace_.empty()) options_.namespace_ = client_->config().namespace_;
  if (options_.namespace_.empty()) options_.namespace_ = "default";
}

void LeaseLock::Observe(const Json& lease) {
  Json spec = lease.value("spec", Json::object());
  if (spec != observed_spec_) {
    observed_spec_ = spec;
    observed_at_ = now_();
  }
  observed_holder_ = spec.value("holderIdentity", "");
  Json annotations = lease.value("metadata", Json::object()).value("annotations", Json::object());
  observed_holder_url_ = annotations.is_object() ? annotations.value(kLeaderUrlAnnotation, "") : "";
  transitions_ = spec.value("leaseTransitions", int64_t{0});
}

Result<bool> LeaseLock::TryAcquireOrRenew() {
  const std::string now_text = MicroTime(std::chrono::system_clock::now());
  const int64_t duration = options_.lease_duration.count();
  auto got = client_->Get(LeaseKind(), options_.namespace_, options_.name);
  if (!got && got.error().code() != StatusCode::kNotFound) return Error(got.error());
  if (!got) {
    Json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata",
                   {{"name", options_.name},
                    {"namespace", options_.namespace_},
                    {"annotations", {{kLeaderUrlAnnotation, options_.holder_url}}}}},
                  {"spec",
                   {{"holderIdentity", options_.identity},
                    {"leaseDurationSeconds", duration},
                    {"acquireTime", now_text},
                    {"renewTime", now_text},
                    {"leaseTransitions", 0}}}};
    auto created = client_->Create(LeaseKind(), options_.namespace_, lease);
    if (!created) {
      // Another replica created it first: it holds it.
      if (created.error().code() == StatusCode::kAlreadyExists) return false;
      return Error(created.error());
    }
    Observe(*created);
    previous_holder_.clear();
    return true;
  }

  Observe(*got);
  const Json& spec = observed_spec_;
  const std::string holder = observed_holder_;
  const bool mine = holder == options_.identity;
  if (!holder.empty() && !mine) {
    int64_t held_for = spec.value("leaseDurationSeconds", duration);
    if (held_for <= 0) held_for = duration;
    if (observed_at_ + std::chrono::seconds(held_for) > now_()) return false;  // not expired
  }
  Json patch_spec = {{"holderIdentity", options_.identity},
                     {"leaseDurationSeconds", duration},
                     {"renewTime", now_text}};
  if (!mine) {
    patch_spec["acquireTime"] = now_text;
    patch_spec["leaseTransitions"] = transitions_ + 1;
  }
  Json patch = {{"metadata",
                 {{"resourceVersion", (*got)["metadata"].value("resourceVersion", "")},
                  {"annotations", {{kLeaderUrlAnnotation, options_.holder_url}}}}},
                {"spec", patch_spec}};
  auto patched = client_->MergePatch(LeaseKind(), options_.namespace_, options_.name, patch);
  if (!patched) {
    // 409: the Lease changed since it was read (another replica renewed or
    // won the race); the next attempt reads it again.
    if (patched.error().code() == StatusCode::kFailedPrecondition) return false;
    return Error(patched.error());
  }
  Observe(*patched);
  if (!mine) previous_holder_ = holder;
  return true;
}

Status LeaseLock::Release() {
  auto got = client_->Get(LeaseKind(), options_.namespace_, options_.name);
  if (!got) return got.error().code() == StatusCode::kNotFound ? Status::Ok() : got.error();
  Observe(*got);
  if (observed_holder_ != options_.identity) return Status::Ok();
  const std::string now_text = MicroTime(std::chrono::system_clock::now());
  Json patch = {{"metadata",
                 {{"resourceVersion", (*got)["metadata"].value("resourceVersion", "")},
                  {"annotations", {{kLeaderUrlAnnotation, nullptr}}}}},
                {"spec",
                 {{"holderIdentity", nullptr},
                  {"leaseDurationSeconds", 1},
                  {"acquireTime", now_text},
                  {"renewTime", now_text}}}};
  auto patched = client_->MergePatch(LeaseKind(), options_.namespace_, options_.name, patch);
  if (!patched) return patched.error();
  Observe(*patched);
  return Status::Ok();
}

}  // namespace sluice::k8s
