#pragma once
// How sluice names and labels the objects it creates on a cluster, shared by
// the operators that build them and the executor that watches them: the
// deterministic object name of an attempt, label values, the run selector,
// and the exit code read from a finished object's pods.
//
// Every object (and pod) carries sluice.dev/pipeline, sluice.dev/run,
// sluice.dev/step, sluice.dev/attempt and app.kubernetes.io/managed-by=sluice.

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::k8s {

inline constexpr char kLabelPipeline[] = "sluice.dev/pipeline";
inline constexpr char kLabelRun[] = "sluice.dev/run";
inline constexpr char kLabelStep[] = "sluice.dev/step";
inline constexpr char kLabelAttempt[] = "sluice.dev/attempt";
inline constexpr char kLabelQueue[] = "kueue.x-k8s.io/queue-name";
// On the pods sluice creates itself (`kubernetes.object: pod`), "pod": what
// the executor's pod watch and the cleanup of expired pods select.
inline constexpr char kLabelObject[] = "sluice.dev/object";
// On those pods: the step's ttlSecondsAfterFinished, in seconds (pods have no
// TTL controller; sluice deletes them).
inline constexpr char kAnnotationTtl[] = "sluice.dev/ttl-seconds-after-finished";

// `s` lower-cased to [a-z0-9-], other runs collapsed to one '-', no '-' at
// the ends (a DNS label part).
std::string DnsPart(const std::string& s);

// "s<run>-<instance>-<hash>-a<attempt>"-style deterministic object name:
// DNS-1123/1035 safe, starting with a letter, at most `max_length`
// characters, with an 8-hex hash of the raw values when the name had to be
// changed or truncated. Same inputs, same name, always.
std::string ObjectName(const std::string& run_id, const std::string& instance, int attempt,
                       size_t max_length = 63);

// `value` as a valid label value (<= 63 chars of [A-Za-z0-9._-], alphanumeric
// at both ends), with a hash suffix when it had to change; "" stays "".
std::string LabelValue(const std::string& value);

// The label selector matching every object (and pod) of a run.
std::string RunSelector(const std::string& run_id);
// The label selector matching the pods sluice created itself for a run
// (RunSelector plus sluice.dev/object=pod); "" run_id: of every run.
std::string BarePodSelector(const std::string& run_id);

// From the pods of a finished object: the first non-zero container exit code
// (-1 when none), and a short description of the failing container
// ("pod x container main: exit 1 (Error)").
struct PodExit {
  int exit_code = -1;
  std::string description;
};
PodExit ExitFromPods(const std::vector<nlohmann::json>& pods);

// When the cluster ended `pod` rather than its container (eviction,
// preemption, node loss: a DisruptionTarget condition, or a reason of the
// pod's own such as Evicted or NodeLost), "reason: message"; else "". The
// pod's own deadline (reason DeadlineExceeded) is a timeout, not this.
std::string ClusterEnded(const nlohmann::json& pod);

}  // namespace sluice::k8s
