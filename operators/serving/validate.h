#pragma once
// The `traffic-validation` operator: sends a request set to a candidate model
// server (and optionally to the baseline, for a shadow comparison), measures
// it, judges the figures against thresholds and drives a staged rollout:
// at each traffic stage it shifts the proxy's weights, validates, and goes on;
// when every stage passes it promotes the candidate, and at the first failure
// it rolls back to exactly the previous deployment. The runner runs it as
// `sluice-serving validate --config FILE`; see docs/deploy.md.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"
#include "operators/serving/deploy.h"

namespace sluice::serving {

// One line of the request set: {"input": ..., "label": ...}.
struct RequestItem {
  Json input;
  std::optional<Json> label;
};

// Reads a JSONL request set. Blank lines are skipped. kInvalidArgument names
// the file and line of a bad line; kNotFound for a missing file;
// kInvalidArgument for an empty set.
Result<std::vector<RequestItem>> LoadRequestSet(const std::string& path);

struct LoadOptions {
  int concurrency = 4;                 // requests in flight at once (per target)
  double rate = 0;                     // requests per second over all workers; 0 = unbounded
  Duration duration = std::chrono::seconds(60);  // no new request starts after this
  int64_t max_requests = 0;            // 0 = the whole set once
  Duration request_timeout = std::chrono::seconds(10);
  Duration connect_timeout = std::chrono::seconds(10);  // reachability probe budget
  std::string predict_path = "/predict";
  std::string prediction_field = "prediction";
};

// What one validation pass measured. Latencies are over requests that got an
// HTTP response; accuracy is over labelled requests that got a prediction.
struct LoadFigures {
  int64_t requests = 0;  // sent to the candidate
  int64_t errors = 0;    // transport error, non-2xx, or no prediction in the answer
  double error_rate = 0;
  double p50_ms = 0, p95_ms = 0, p99_ms = 0, mean_ms = 0;
  int64_t labelled = 0;  // labelled requests that got a prediction
  std::optional<double> accuracy;
  // Shadow comparison (when a baseline URL is given).
  int64_t baseline_errors = 0;
  std::optional<double> baseline_accuracy;
  std::optional<double> agreement;   // equal predictions / requests both answered
  std::optional<double> regression;  // baseline_accuracy - accuracy, else 1 - agreement
  double seconds = 0;
  double throughput_rps = 0;
  std::string first_error;  // the first error seen, for messages
};

// Sends the request set to `candidate_url` (and `baseline_url` when not
// empty). Errors: kUnavailable "cannot reach <url>: ..." when the candidate
// does not accept connections within options.connect_timeout.
Result<LoadFigures> RunLoad(const std::string& candidate_url, const std::string& baseline_url,
                            const std::vector<RequestItem>& items, const LoadOptions& options);

struct Thresholds {
  std::optional<double> max_error_rate;              // fail when error_rate > this
  std::optional<double> max_p99_ms;                  // fail when p99 > this
  std::optional<double> min_accuracy;                // fail when accuracy < this
  std::optional<double> max_regression_vs_baseline;  // fail when regression > this
};

// The judgement of one pass: each threshold gives one line, e.g.
// "p99 latency 812.4 ms > max_p99_ms 500" (failed) or
// "error rate 0.0000 <= max_error_rate 0.01" (passed). Equal passes.
struct Verdict {
  bool passed = true;
  std::vector<std::string> failures;
  std::vector<std::string> passes;
};

Verdict Judge(const LoadFigures& figures, const Thresholds& thresholds);

// Adds the figures to `metrics` as numbers, keys prefixed by `prefix`
// (requests, errors, error_rate, latency_p50_ms, latency_p95_ms,
// latency_p99_ms, latency_mean_ms, throughput_rps, accuracy,
// baseline_accuracy, baseline_errors, agreement, regression_vs_baseline).
void AddMetrics(const LoadFigures& figures, const std::string& prefix, Json& metrics);

// The `validation:` config, parsed. See docs/deploy.md.
struct ValidationConfig {
  std::string service;           // the deployed service (its candidate is validated)
  std::string endpoint;          // instead of a service: validate this URL only; with
                                 // executor kubernetes: where the candidate is reached
                                 // (default: its Service <service>-canary's cluster URL)
  std::string baseline_endpoint; // with `endpoint`: the shadow baseline
  std::string requests;          // JSONL request set path
  bool shadow = false;           // also send to the baseline (the stable server)
  LoadOptions load;
  Thresholds thresholds;
  std::vector<double> stages;    // canary shares, e.g. {10, 50, 100}; empty = current share
  bool promote = true;           // promote after the last stage passes
  bool rollback = true;          // roll back at the first failure
  std::string metrics_file = "metrics.json";
  std::string report_file = "validation.json";
  RunContext run;
  std::string executor = "local";    // "local" | "kubernetes" (the service's Deployments)
  Json kubernetes = Json::object();  // namespace, kubeconfig, context, rollout_timeout
};

// kInvalidArgument names the field ("validation.stages[1]: ...").
Result<ValidationConfig> ParseValidationConfig(const Json& config);

struct ValidationOutcome {
  bool passed = false;
  bool promoted = false;
  bool rolled_back = false;
  std::string message;  // one paragraph: what failed (threshold and figures) or what passed
  Json metrics = Json::object();  // numbers only, for the step's metrics
  Json report = Json::object();   // everything: stages, verdicts, state
};

// One model of a service as a rollout sees it.
struct RolloutBackend {
  std::string version;
  std::string model_digest;    // "sha256:..."
  std::string url;             // where validation sends requests ("" = not reachable)
  double traffic_percent = 0;  // its share now
};

// The deployment a staged rollout drives: the local canary proxy
// (ValidateRollout) or the two Deployments on Kubernetes (k8s_deploy.h).
// Each change is all-or-error and records itself (a DeploymentRecord with
// action shift, promote or rollback).
class RolloutTarget {
 public:
  virtual ~RolloutTarget() = default;
  // The model serving before the rollout. Always present.
  virtual const RolloutBackend& stable() const = 0;
  // The canary being validated; nullopt when the service has none.
  virtual const std::optional<RolloutBackend>& candidate() const = 0;
  // Gives the candidate `share` percent (stage `stage` of `stages`, from 1),
  // the stable model the rest; on Kubernetes rounded to whole replicas (no
  // change, and no record, when the split in place is already that).
  virtual Status Shift(double share, int stage, const std::vector<double>& stages) = 0;
  // The candidate becomes the stable model at 100%; the old one is stopped.
  virtual Status Promote() = 0;
  // Exactly the deployment before the canary: the stable model with its
  // previous share and spec; the candidate is stopped. `reason` is recorded.
  virtual Status Rollback(const std::string& reason) = 0;
  // The deployment now, for the report ("before" / "after").
  virtual Json Describe() const = 0;
};

// The staged rollout of `target` (see the file comment), with the request
// set already loaded: shift, measure the candidate at candidate()->url (and
// the stable model at stable().url with shadow), judge, then promote or roll
// back. A target without a candidate is validated as it stands, no rollout.
// Errors are for changes to the target that fail; a failed validation is
// passed=false.
Result<ValidationOutcome> RunRollout(const ValidationConfig& config,
                                     const std::vector<RequestItem>& items,
                                     RolloutTarget& target);

// LoadRequestSet, plus the check that min_accuracy has labels to judge.
Result<std::vector<RequestItem>> LoadRequestSetFor(const ValidationConfig& config);

// Validates and rolls out (see the file comment). A failed validation is not
// an error: it returns passed=false after the rollback. Errors are for
// things that stop validation from running at all (bad request set, no such
// service, no candidate, proxy unreachable); a candidate that cannot be
// reached is a failed validation (and is rolled back) when it belongs to the
// service, and kUnavailable for a bare endpoint.
Result<ValidationOutcome> ValidateRollout(const ValidationConfig& config, const ServingEnv& env);

// Writes outcome.metrics to `<out_dir>/<metrics_file>` and outcome.report to
// `<out_dir>/<report_file>`.
Status WriteValidationOutputs(const ValidationConfig& config, const ValidationOutcome& outcome,
                              const std::string& out_dir);

}  // namespace sluice::serving
