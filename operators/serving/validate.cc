#include "operators/serving/validate.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <httplib.h>

#include "engine/text.h"
#include "operators/serving/http_error.h"

namespace sluice::serving {
namespace fs = std::filesystem;

namespace {

std::string Fmt(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, value);
  return buf;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least p% of the values <= it.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  if (rank == 0) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

// One answer from a server.
struct Answer {
  bool ok = false;
  bool responded = false;  // got an HTTP response
  double ms = 0;
  Json prediction;
  std::string error;
};

Answer Ask(httplib::Client& client, const std::string& url, const LoadOptions& options,
           const std::string& body) {
  Answer a;
  auto start = std::chrono::steady_clock::now();
  auto r = client.Post(options.predict_path, body, "application/json");
  a.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!r) {
    a.error = "POST " + url + options.predict_path + ": " + DescribeHttpError(r.error());
    return a;
  }
  a.responded = true;
  if (r->status < 200 || r->status >= 300) {
    std::string snippet = r->body.substr(0, 200);
    a.error = "POST " + url + options.predict_path + ": HTTP " + std::to_string(r->status) +
              (snippet.empty() ? "" : " " + snippet);
    return a;
  }
  try {
    Json j = Json::parse(r->body);
    if (!j.is_object() || !j.contains(options.prediction_field)) {
      a.error = "POST " + url + options.predict_path + ": answer has no \"" +
                options.prediction_field + "\" field: " + r->body.substr(0, 200);
      return a;
    }
    a.prediction = j[options.prediction_field];
    a.ok = true;
  } catch (const std::exception&) {
    a.error = "POST " + url + options.predict_path + ": answer is not JSON: " +
              r->body.substr(0, 200);
  }
  return a;
}

std::unique_ptr<httplib::Client> MakeClient(const std::string& url, const LoadOptions& options) {
  auto c = std::make_unique<httplib::Client>(url);
  c->set_keep_alive(true);
  c->set_tcp_nodelay(true);
  c->set_connection_timeout(std::chrono::seconds(2));
  c->set_read_timeout(options.request_timeout);
  c->set_write_timeout(options.request_timeout);
  return c;
}

// Whether `url` accepts HTTP connections (any status counts), retried with
// back-off for at most `budget`.
Status Probe(const std::string& url, Duration budget) {
  auto deadline = std::chrono::steady_clock::now() + budget;
  httplib::Client c(url);
  c.set_connection_timeout(std::min<Duration>(budget, std::chrono::seconds(2)));
  c.set_read_timeout(std::min<Duration>(budget, std::chrono::seconds(5)));
  auto backoff = std::chrono::milliseconds(50);
  std::string last;
  while (true) {
    auto r = c.Get("/");
    if (r) return Status::Ok();
    last = DescribeHttpError(r.error());
    auto left = std::chrono::duration_cast<Duration>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    std::this_thread::sleep_for(std::min<Duration>(backoff, left));
    backoff = std::min<Duration>(backoff * 2, std::chrono::milliseconds(1000));
  }
  return Status::Unavailable("cannot reach " + url + ": " + last + " (tried for " +
                             std::to_string(budget.count()) + "ms; is the server running?)");
}

}  // namespace

Result<std::vector<RequestItem>> LoadRequestSet(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return Error(Status::NotFound("request set " + path +
                                  " cannot be read (make it with examples/retrain/serving/"
                                  "make_requests.py, one {\"input\": ..., \"label\": ...} per line)"));
  }
  std::vector<RequestItem> items;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      Json j = Json::parse(line);
      if (!j.is_object() || !j.contains("input")) {
        return Error(Status::InvalidArgument(path + ":" + std::to_string(line_no) +
                                             ": want an object with \"input\" (and optionally "
                                             "\"label\")"));
      }
      RequestItem item;
      item.input = j["input"];
      if (j.contains("label") && !j["label"].is_null()) item.label = j["label"];
      items.push_back(std::move(item));
    } catch (const Json::parse_error& e) {
      return Error(Status::InvalidArgument(path + ":" + std::to_string(line_no) +
                                           ": not JSON: " + e.what()));
    }
  }
  if (items.empty()) return Error(Status::InvalidArgument("request set " + path + " is empty"));
  return items;
}

Result<LoadFigures> RunLoad(const std::string& candidate_url, const std::string& baseline_url,
                            const std::vector<RequestItem>& items, const LoadOptions& options) {
  SLUICE_RETURN_IF_ERROR_RESULT(Probe(candidate_url, options.connect_timeout).WithContext("the candidate"));
  if (!baseline_url.empty()) {
    SLUICE_RETURN_IF_ERROR_RESULT(Probe(baseline_url, options.connect_timeout).WithContext("the baseline"));
  }
  int64_t total = options.max_requests > 0 ? options.max_requests
                                           : static_cast<int64_t>(items.size());
  std::atomic<int64_t> next{0};
  std::mutex mu;
  std::vector<double> latencies;
  LoadFigures f;
  int64_t correct = 0, baseline_correct = 0, baseline_labelled = 0, both = 0, agree = 0;
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + options.duration;
  // Rate limiting: each request takes the next slot of a shared schedule.
  std::mutex rate_mu;
  auto next_slot = start;
  auto interval = options.rate > 0
                      ? std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(1.0 / options.rate))
                      : std::chrono::steady_clock::duration::zero();

  auto worker = [&] {
    auto candidate = MakeClient(candidate_url, options);
    auto baseline = baseline_url.empty() ? nullptr : MakeClient(baseline_url, options);
    while (true) {
      int64_t i = next++;
      if (i >= total) return;
      if (options.rate > 0) {
        std::chrono::steady_clock::time_point slot;
        {
          std::lock_guard<std::mutex> lock(rate_mu);
          slot = std::max(next_slot, std::chrono::steady_clock::now());
          next_slot = slot + interval;
        }
        if (slot >= deadline) return;
        std::this_thread::sleep_until(slot);  // pacing to the configured rate
      }
      if (std::chrono::steady_clock::now() >= deadline) return;
      const RequestItem& item = items[static_cast<size_t>(i) % items.size()];
      std::string body = Json{{"input", item.input}}.dump();
      Answer a = Ask(*candidate, candidate_url, options, body);
      Answer b;
      if (baseline) b = Ask(*baseline, baseline_url, options, body);
      std::lock_guard<std::mutex> lock(mu);
      f.requests++;
      if (a.responded) latencies.push_back(a.ms);
      if (!a.ok) {
        f.errors++;
        if (f.first_error.empty()) f.first_error = a.error;
      }
      if (item.label && a.ok) {
        f.labelled++;
        if (a.prediction == *item.label) correct++;
      }
      if (baseline) {
        if (!b.ok) f.baseline_errors++;
        if (item.label && b.ok) {
          baseline_labelled++;
          if (b.prediction == *item.label) baseline_correct++;
        }
        if (a.ok && b.ok) {
          both++;
          if (a.prediction == b.prediction) agree++;
        }
      }
    }
  };
  int n = std::max(1, options.concurrency);
  std::vector<std::thread> threads;
  for (int t = 0; t < n; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();

  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  f.throughput_rps = f.seconds > 0 ? static_cast<double>(f.requests) / f.seconds : 0;
  f.error_rate = f.requests > 0 ? static_cast<double>(f.errors) / static_cast<double>(f.requests) : 0;
  std::sort(latencies.begin(), latencies.end());
  f.p50_ms = Percentile(latencies, 50);
  f.p95_ms = Percentile(latencies, 95);
  f.p99_ms = Percentile(latencies, 99);
  double sum = 0;
  for (double l : latencies) sum += l;
  f.mean_ms = latencies.empty() ? 0 : sum / static_cast<double>(latencies.size());
  if (f.labelled > 0) f.accuracy = static_cast<double>(correct) / static_cast<double>(f.labelled);
  if (!baseline_url.empty()) {
    if (baseline_labelled > 0) {
      f.baseline_accuracy =
          static_cast<double>(baseline_correct) / static_cast<double>(baseline_labelled);
    }
    if (both > 0) f.agreement = static_cast<double>(agree) / static_cast<double>(both);
    if (f.accuracy && f.baseline_accuracy) {
      f.regression = *f.baseline_accuracy - *f.accuracy;
    } else if (f.agreement) {
      f.regression = 1.0 - *f.agreement;
    }
  }
  return f;
}

Verdict Judge(const LoadFigures& f, const Thresholds& t) {
  Verdict v;
  auto check = [&](bool ok, const std::string& line_ok, const std::string& line_bad) {
    if (ok) {
      v.passes.push_back(line_ok);
    } else {
      v.passed = false;
      v.failures.push_back(line_bad);
    }
  };
  if (t.max_error_rate) {
    std::string figures = Fmt("%.4f", f.error_rate) + " (" + std::to_string(f.errors) + "/" +
                          std::to_string(f.requests) + ")";
    check(f.error_rate <= *t.max_error_rate,
          "error rate " + figures + " <= max_error_rate " + Fmt("%g", *t.max_error_rate),
          "error rate " + figures + " > max_error_rate " + Fmt("%g", *t.max_error_rate) +
              (f.first_error.empty() ? "" : " (first error: " + f.first_error + ")"));
  }
  if (t.max_p99_ms) {
    check(f.p99_ms <= *t.max_p99_ms,
          "p99 latency " + Fmt("%.1f", f.p99_ms) + " ms <= max_p99_ms " + Fmt("%g", *t.max_p99_ms),
          "p99 latency " + Fmt("%.1f", f.p99_ms) + " ms > max_p99_ms " + Fmt("%g", *t.max_p99_ms));
  }
  if (t.min_accuracy) {
    if (!f.accuracy) {
      check(false, "", "accuracy unknown (no labelled request got a prediction) < min_accuracy " +
                           Fmt("%g", *t.min_accuracy));
    } else {
      std::string figures = Fmt("%.4f", *f.accuracy) + " (" + std::to_string(f.labelled) +
                            " labelled)";
      check(*f.accuracy >= *t.min_accuracy,
            "accuracy " + figures + " >= min_accuracy " + Fmt("%g", *t.min_accuracy),
            "accuracy " + figures + " < min_accuracy " + Fmt("%g", *t.min_accuracy));
    }
  }
  if (t.max_regression_vs_baseline) {
    if (!f.regression) {
      check(false, "", "regression vs baseline unknown (no request answered by both) > "
                       "max_regression_vs_baseline " + Fmt("%g", *t.max_regression_vs_baseline));
    } else {
      std::string figures = Fmt("%.4f", *f.regression);
      if (f.accuracy && f.baseline_accuracy) {
        figures += " (baseline accuracy " + Fmt("%.4f", *f.baseline_accuracy) + ", candidate " +
                   Fmt("%.4f", *f.accuracy) + ")";
      } else if (f.agreement) {
        figures += " (agreement " + Fmt("%.4f", *f.agreement) + ")";
      }
      check(*f.regression <= *t.max_regression_vs_baseline,
            "regression vs baseline " + figures + " <= max_regression_vs_baseline " +
                Fmt("%g", *t.max_regression_vs_baseline),
            "regression vs baseline " + figures + " > max_regression_vs_baseline " +
                Fmt("%g", *t.max_regression_vs_baseline));
    }
  }
  return v;
}

void AddMetrics(const LoadFigures& f, const std::string& prefix, Json& m) {
  m[prefix + "requests"] = f.requests;
  m[prefix + "errors"] = f.errors;
  m[prefix + "error_rate"] = f.error_rate;
  m[prefix + "latency_p50_ms"] = f.p50_ms;
  m[prefix + "latency_p95_ms"] = f.p95_ms;
  m[prefix + "latency_p99_ms"] = f.p99_ms;
  m[prefix + "latency_mean_ms"] = f.mean_ms;
  m[prefix + "throughput_rps"] = f.throughput_rps;
  if (f.accuracy) m[prefix + "accuracy"] = *f.accuracy;
  if (f.baseline_accuracy) m[prefix + "baseline_accuracy"] = *f.baseline_accuracy;
  if (f.agreement) {
    m[prefix + "agreement"] = *f.agreement;
    m[prefix + "baseline_errors"] = f.baseline_errors;
  }
  if (f.regression) m[prefix + "regression_vs_baseline"] = *f.regression;
}

Result<ValidationConfig> ParseValidationConfig(const Json& input) {
  const Json& j =
      input.contains("validation") && input["validation"].is_object() ? input["validation"] : input;
  ValidationConfig c;
  auto bad = [](const std::string& field, const std::string& what) {
    return Error(Status::InvalidArgument("validation." + field + ": " + what));
  };
  if (!j.is_object()) return bad("", "the validation config must be an object");
  try {
    c.service = j.value("service", "");
    c.endpoint = j.value("endpoint", "");
    c.baseline_endpoint = j.value("baseline_endpoint", "");
    c.executor = j.value("executor", "local");
    if (c.executor != "local" && c.executor != "kubernetes") {
      return bad("executor", "'" + c.executor + "' is not local or kubernetes");
    }
    c.kubernetes = j.value("kubernetes", Json::object());
    if (c.executor == "kubernetes") {
      if (c.service.empty()) {
        return bad("service", "required on Kubernetes: the deployed service whose Deployments "
                              "are rolled out (endpoint, optional, says where its canary "
                              "answers from here)");
      }
    } else if (c.service.empty() == c.endpoint.empty()) {
      return bad("service", "give exactly one of service (a deployed service, whose canary is "
                            "validated and rolled out) or endpoint (a URL to validate only)");
    }
    if (!c.service.empty()) {
      SLUICE_RETURN_IF_ERROR_RESULT(ValidateServiceName(c.service).WithContext("validation.service"));
    }
    if (!j.contains("requests") || !j["requests"].is_string()) {
      return bad("requests", "required: the JSONL request set, e.g. requests: \"{{ steps."
                             "requests.outputs.artifacts.requests }}\"");
    }
    c.requests = j["requests"].get<std::string>();
    c.shadow = j.value("shadow", !c.baseline_endpoint.empty());
    auto duration = [&](const char* key, Duration* out) -> Status {
      if (!j.contains(key)) return Status::Ok();
      auto d = ParseConfigDuration(j[key], std::string("validation.") + key);
      if (!d) return d.error();
      *out = *d;
      return Status::Ok();
    };
    SLUICE_RETURN_IF_ERROR_RESULT(duration("duration", &c.load.duration));
    SLUICE_RETURN_IF_ERROR_RESULT(duration("request_timeout", &c.load.request_timeout));
    SLUICE_RETURN_IF_ERROR_RESULT(duration("connect_timeout", &c.load.connect_timeout));
    c.load.concurrency = j.value("concurrency", 4);
    if (c.load.concurrency < 1 || c.load.concurrency > 256) {
      return bad("concurrency", "must be between 1 and 256");
    }
    c.load.rate = j.value("rate", 0.0);
    if (c.load.rate < 0) return bad("rate", "must not be negative (0 = unbounded)");
    c.load.max_requests = j.value("max_requests", int64_t{0});
    c.load.predict_path = j.value("path", "/predict");
    c.load.prediction_field = j.value("prediction_field", "prediction");
    const Json t = j.value("thresholds", Json::object());
    if (!t.is_object()) return bad("thresholds", "must be an object");
    for (const auto& [key, value] : t.items()) {
      if (!value.is_number()) return bad("thresholds." + key, "must be a number");
      double v = value.get<double>();
      if (key == "max_error_rate") {
        c.thresholds.max_error_rate = v;
      } else if (key == "max_p99_ms") {
        c.thresholds.max_p99_ms = v;
      } else if (key == "min_accuracy") {
        c.thresholds.min_accuracy = v;
      } else if (key == "max_regression_vs_baseline") {
        c.thresholds.max_regression_vs_baseline = v;
      } else {
        return bad("thresholds." + key, "unknown threshold; known: max_error_rate, max_p99_ms, "
                                        "min_accuracy, max_regression_vs_baseline");
      }
    }
    if (c.thresholds.max_regression_vs_baseline && !c.shadow) {
      return bad("thresholds.max_regression_vs_baseline",
                 "needs a baseline: set shadow: true (or baseline_endpoint)");
    }
    if (j.contains("stages")) {
      if (!j["stages"].is_array()) return bad("stages", "must be a list of percentages, e.g. [10, 50, 100]");
      double last = 0;
      for (size_t i = 0; i < j["stages"].size(); ++i) {
        const Json& s = j["stages"][i];
        std::string field = "stages[" + std::to_string(i) + "]";
        if (!s.is_number()) return bad(field, "must be a number (percent)");
        double v = s.get<double>();
        if (!(v > 0 && v <= 100)) return bad(field, "must be in (0, 100]");
        if (v <= last) return bad(field, "stages must increase, e.g. [10, 50, 100]");
        last = v;
        c.stages.push_back(v);
      }
      if (c.service.empty() && !c.stages.empty()) {
        return bad("stages", "a staged rollout needs a service, not a bare endpoint");
      }
    }
    c.promote = j.value("promote", true);
    c.rollback = j.value("rollback", true);
    c.metrics_file = j.value("metrics", "metrics.json");
    c.report_file = j.value("report", "validation.json");
    const Json run = j.value("run", Json::object());
    c.run.run_id = run.value("id", "");
    c.run.instance = run.value("instance", "");
    c.run.execution_id = run.value("execution_id", int64_t{0});
  } catch (const std::exception& e) {
    return Error(Status::InvalidArgument(std::string("validation: ") + e.what()));
  }
  if (c.run.run_id.empty() && std::getenv("SLUICE_RUN_ID")) c.run.run_id = std::getenv("SLUICE_RUN_ID");
  if (c.run.instance.empty() && std::getenv("SLUICE_INSTANCE")) {
    c.run.instance = std::getenv("SLUICE_INSTANCE");
  }
  return c;
}

namespace {

DeploymentRecord BaseRecord(const ValidationConfig& config, const ServiceState& state,
                            const std::string& action) {
  DeploymentRecord r;
  r.service = state.service;
  r.namespace_ = "local";
  r.executor = "local";
  r.action = action;
  r.endpoint = state.proxy ? state.proxy->Endpoint() : "";
  r.run_id = config.run.run_id;
  r.instance = config.run.instance;
  r.execution_id = config.run.execution_id;
  return r;
}

RolloutBackend Side(const BackendState& b) {
  return {b.version, b.model_digest, b.url, b.traffic_percent};
}

// A service deployed locally: its canary proxy's weights, its state file and
// its server processes. The caller holds the service's lock.
class LocalRollout : public RolloutTarget {
 public:
  LocalRollout(const ValidationConfig& config, const ServingEnv& env, ServiceState state)
      : config_(config), env_(env), state_(std::move(state)), before_(state_) {
    stable_ = Side(*state_.stable);
    if (state_.candidate) candidate_ = Side(*state_.candidate);
  }

  const RolloutBackend& stable() const override { return stable_; }
  const std::optional<RolloutBackend>& candidate() const override { return candidate_; }

  Status Shift(double share, int stage, const std::vector<double>& stages) override {
    state_.candidate->traffic_percent = share;
    state_.stable->traffic_percent = 100 - share;
    SLUICE_RETURN_IF_ERROR(EnsureProxyAndApply(state_, env_, 0, "127.0.0.1"));
    SLUICE_RETURN_IF_ERROR(SaveServiceState(env_.state_dir, state_));
    candidate_->traffic_percent = share;
    stable_.traffic_percent = 100 - share;
    DeploymentRecord r = BaseRecord(config_, state_, "shift");
    r.version = state_.candidate->version;
    r.model_digest = state_.candidate->model_digest;
    r.baseline_digest = state_.stable->model_digest;
    r.traffic_percent = share;
    r.details = {{"stage", stage}, {"stages", stages}};
    (void)RecordDeployment(env_, r);
    return Status::Ok();
  }

  Status Promote() override {
    BackendState old_stable = *state_.stable;
    ServiceState after = state_;
    after.stable = *state_.candidate;
    return Settle(std::move(after), old_stable.process, "promote",
                  {{"replaced_version", old_stable.version}, {"replaced_digest", old_stable.model_digest}});
  }

  Status Rollback(const std::string& reason) override {
    // Exactly the deployment before the canary: the stable backend at 100%.
    ServiceState after = before_;
    BackendState candidate = *after.candidate;
    return Settle(std::move(after), candidate.process, "rollback",
                  {{"rolled_back_version", candidate.version},
                   {"rolled_back_digest", candidate.model_digest},
                   {"reason", reason}});
  }

  Json Describe() const override { return ToJson(state_); }

 private:
  // Ends the rollout in `after`, whose stable backend takes all traffic and
  // which has no candidate: applies and saves it, stops `retired` (the
  // backend left out) and records `action` with `details`.
  Status Settle(ServiceState after, const ProcessId& retired, const std::string& action, Json details) {
    after.stable->traffic_percent = 100;
    after.candidate.reset();
    SLUICE_RETURN_IF_ERROR(EnsureProxyAndApply(after, env_, 0, "127.0.0.1"));
    SLUICE_RETURN_IF_ERROR(SaveServiceState(env_.state_dir, after));
    (void)StopProcess(retired, env_.stop_grace);
    DeploymentRecord r = BaseRecord(config_, after, action);
    r.version = after.stable->version;
    r.model_digest = after.stable->model_digest;
    r.traffic_percent = 100;
    r.details = std::move(details);
    (void)RecordDeployment(env_, r);
    state_ = after;
    stable_ = Side(*state_.stable);
    candidate_.reset();
    return Status::Ok();
  }

  const ValidationConfig& config_;
  const ServingEnv& env_;
  ServiceState state_;
  const ServiceState before_;
  RolloutBackend stable_;
  std::optional<RolloutBackend> candidate_;
};

}  // namespace

Result<std::vector<RequestItem>> LoadRequestSetFor(const ValidationConfig& config) {
  auto items = LoadRequestSet(config.requests);
  if (!items) return Error(items.error());
  bool labelled = std::any_of(items->begin(), items->end(),
                              [](const RequestItem& i) { return i.label.has_value(); });
  if (config.thresholds.min_accuracy && !labelled) {
    return Error(Status::InvalidArgument("validation.thresholds.min_accuracy: the request set " +
                                         config.requests + " has no labels"));
  }
  return items;
}

Result<ValidationOutcome> RunRollout(const ValidationConfig& config,
                                     const std::vector<RequestItem>& items,
                                     RolloutTarget& target) {
  ValidationOutcome out;
  out.report["stages"] = Json::array();
  const bool has_candidate = target.candidate().has_value();
  const RolloutBackend validated = has_candidate ? *target.candidate() : target.stable();
  const RolloutBackend stable_before = target.stable();
  std::string baseline_url = config.shadow && has_candidate ? stable_before.url : "";
  std::vector<double> stages = config.stages;
  Thresholds thresholds = config.thresholds;
  std::string note;
  if (!has_candidate) {
    // The first deploy of a service has no canary (a canary deploy with no
    // stable model serves at 100%): validate what serves, nothing to roll.
    note = "service " + config.service + " has no canary (first deployment?): validated the "
           "stable version " + validated.version + " at 100%; nothing to roll out or back";
    stages.clear();
    if (thresholds.max_regression_vs_baseline) {
      thresholds.max_regression_vs_baseline.reset();
      note += "; max_regression_vs_baseline skipped (no baseline)";
    }
  }
  if (stages.empty()) stages.push_back(validated.traffic_percent);
  out.report["note"] = note;
  out.report["service"] = config.service;
  out.report["executor"] = config.executor;
  out.report["candidate"] = {{"version", validated.version},
                             {"model_digest", validated.model_digest},
                             {"url", validated.url}};
  out.report["before"] = target.Describe();

  int stage_no = 0;
  std::string failure;
  for (double share : stages) {
    ++stage_no;
    if (has_candidate && share != target.candidate()->traffic_percent) {
      SLUICE_RETURN_IF_ERROR_RESULT(target.Shift(share, stage_no, stages));
    }
    std::string stage_name = "stage " + std::to_string(stage_no) + "/" +
                             std::to_string(stages.size()) + " (" + Fmt("%g", share) + "% traffic)";
    auto f = RunLoad(validated.url, baseline_url, items, config.load);
    Json stage = {{"stage", stage_no}, {"traffic_percent", share}};
    if (!f) {
      failure = stage_name + ": " + f.error().message();
      stage["error"] = f.error().message();
      stage["passed"] = false;
      out.report["stages"].push_back(stage);
      out.metrics["stage" + std::to_string(stage_no) + "_passed"] = 0;
      break;
    }
    Verdict v = Judge(*f, thresholds);
    AddMetrics(*f, "", out.metrics);  // the latest stage's figures at the top level
    AddMetrics(*f, "stage" + std::to_string(stage_no) + "_", out.metrics);
    out.metrics["stage" + std::to_string(stage_no) + "_passed"] = v.passed ? 1 : 0;
    stage["passed"] = v.passed;
    stage["failures"] = v.failures;
    stage["passes"] = v.passes;
    stage["seconds"] = f->seconds;
    out.report["stages"].push_back(stage);
    if (!v.passed) {
      failure = stage_name + ": " + Join(v.failures, "; ") +
                (v.passes.empty() ? "" : " (passed: " + Join(v.passes, "; ") + ")");
      break;
    }
    out.metrics["stages_passed"] = stage_no;
  }
  if (!out.metrics.contains("stages_passed")) out.metrics["stages_passed"] = 0;
  out.metrics["stages"] = static_cast<int64_t>(stages.size());
  out.passed = failure.empty();
  out.metrics["passed"] = out.passed ? 1 : 0;

  if (out.passed) {
    if (has_candidate && config.promote) {
      SLUICE_RETURN_IF_ERROR_RESULT(target.Promote());
      out.promoted = true;
    }
    out.message = "traffic validation of service " + config.service + " version " +
                  validated.version + " passed " + std::to_string(stages.size()) + " stage(s)" +
                  (out.promoted ? "; promoted to 100% (" + validated.model_digest + ")" : "") +
                  (note.empty() ? "" : ". " + note);
  } else {
    std::string what = "traffic validation of service " + config.service + " version " +
                       validated.version + " (" + validated.model_digest + ") failed at " + failure;
    if (has_candidate && config.rollback) {
      SLUICE_RETURN_IF_ERROR_RESULT(target.Rollback(failure));
      out.rolled_back = true;
      what += ". Rolled back: service " + config.service + " serves version " +
              target.stable().version + " (" + target.stable().model_digest + ") at " +
              Fmt("%g", target.stable().traffic_percent) + "% again; the candidate was stopped";
    } else if (has_candidate) {
      what += ". rollback: false, so the candidate keeps its traffic share";
    }
    if (!note.empty()) what += ". " + note;
    out.message = what;
  }
  out.metrics["promoted"] = out.promoted ? 1 : 0;
  out.metrics["rolled_back"] = out.rolled_back ? 1 : 0;
  out.metrics["traffic_percent"] = target.candidate() ? target.candidate()->traffic_percent
                                                      : (out.rolled_back ? 0.0 : 100.0);
  out.report["after"] = target.Describe();
  out.report["message"] = out.message;
  out.report["passed"] = out.passed;
  return out;
}

Result<ValidationOutcome> ValidateRollout(const ValidationConfig& config, const ServingEnv& env) {
  auto items = LoadRequestSetFor(config);
  if (!items) return Error(items.error());

  // A bare endpoint: measure and judge, no rollout.
  if (config.service.empty()) {
    ValidationOutcome out;
    out.report["stages"] = Json::array();
    std::string baseline = config.shadow ? config.baseline_endpoint : "";
    if (config.shadow && baseline.empty()) {
      return Error(Status::InvalidArgument("validation.baseline_endpoint: required with shadow "
                                           "when validating a bare endpoint"));
    }
    auto f = RunLoad(config.endpoint, baseline, *items, config.load);
    if (!f) return Error(f.error());
    Verdict v = Judge(*f, config.thresholds);
    AddMetrics(*f, "", out.metrics);
    out.passed = v.passed;
    out.metrics["passed"] = v.passed ? 1 : 0;
    out.report["stages"].push_back({{"endpoint", config.endpoint}, {"passed", v.passed},
                                    {"failures", v.failures}, {"passes", v.passes}});
    out.message = v.passed ? "traffic validation of " + config.endpoint + " passed: " +
                                 Join(v.passes, "; ")
                           : "traffic validation of " + config.endpoint + " failed: " +
                                 Join(v.failures, "; ") + " (passed: " + Join(v.passes, "; ") + ")";
    return out;
  }

  if (env.state_dir.empty()) {
    return Error(Status::FailedPrecondition("no state directory: set SLUICE_STATE_DIR"));
  }
  // Worst case: every stage runs for its whole duration, plus probes.
  auto lock = ServiceLock::Acquire(env.state_dir, config.service, std::chrono::seconds(60));
  if (!lock) return Error(lock.error());
  auto loaded = LoadServiceState(env.state_dir, config.service);
  if (!loaded) return Error(loaded.error());
  if (!loaded->has_value() || !(*loaded)->stable) {
    return Error(Status::NotFound("service " + config.service +
                                  " is not deployed locally (no stable model in " +
                                  ServiceStatePath(env.state_dir, config.service) +
                                  "); run a deploy step for it first"));
  }
  LocalRollout target(config, env, **loaded);
  return RunRollout(config, *items, target);
}

Status WriteValidationOutputs(const ValidationConfig& config, const ValidationOutcome& outcome,
                              const std::string& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  for (const auto& [name, doc] : {std::pair{config.metrics_file, &outcome.metrics},
                                  std::pair{config.report_file, &outcome.report}}) {
    std::string path = name.rfind('/', 0) == 0 ? name : out_dir + "/" + name;
    std::ofstream out(path, std::ios::trunc);
    out << doc->dump(2) << "\n";
    if (!out) return Status::FailedPrecondition("cannot write " + path);
  }
  return Status::Ok();
}

}  // namespace sluice::serving
