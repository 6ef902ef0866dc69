#include "engine/server/metrics.h"

#include <cmath>
#include <cstdio>

namespace sluice::server {
namespace {

std::string FormatDouble(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Prefer the short spelling when it round-trips.
  char shortbuf[64];
  std::snprintf(shortbuf, sizeof shortbuf, "%g", v);
  if (std::strtod(shortbuf, nullptr) == v) return shortbuf;
  return buf;
}

}  // namespace

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

MetricFamily::MetricFamily(std::string name, std::string help, Type type,
                           std::vector<double> buckets)
    : name_(std::move(name)), help_(std::move(help)), type_(type), bounds_(std::move(buckets)) {}

std::string MetricFamily::Key(const Labels& labels) {
  std::string key;
  for (const auto& [k, v] : labels) {
    key += key.empty() ? "" : ",";
    key += k + "=\"" + EscapeLabelValue(v) + "\"";
  }
  return key;
}

void MetricFamily::Inc(const Labels& labels, double delta) {
  std::lock_guard lock(mu_);
  series_[Key(labels)].value += delta;
}

void MetricFamily::Set(const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  series_[Key(labels)].value = value;
}

void MetricFamily::Observe(const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  Series& s = series_[Key(labels)];
  if (s.buckets.empty()) s.buckets.assign(bounds_.size(), 0);
  for (size_t i = 0; i < bounds_.size(); ++i)
    if (value <= bounds_[i]) {
      ++s.buckets[i];
      break;
    }
  s.sum += value;
  ++s.count;
}

double MetricFamily::Value(const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto it = series_.find(Key(labels));
  return it == series_.end() ? 0 : it->second.value;
}

uint64_t MetricFamily::Count(const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto it = series_.find(Key(labels));
  return it == series_.end() ? 0 : it->second.count;
}

void MetricFamily::Render(std::string* out) const {
  static const char* kTypes[] = {"counter", "gauge", "histogram"};
  *out += "# HELP " + name_ + " " + help_ + "\n";
  *out += "# TYPE " + name_ + " " + kTypes[static_cast<int>(type_)] + "\n";
  std::lock_guard lock(mu_);
  if (type_ != Type::kHistogram) {
    if (series_.empty() && type_ == Type::kGauge) *out += name_ + " 0\n";
    for (const auto& [key, s] : series_)
      *out += name_ + (key.empty() ? "" : "{" + key + "}") + " " + FormatDouble(s.value) + "\n";
    return;
  }
  for (const auto& [key, s] : series_) {
    std::string sep = key.empty() ? "" : ",";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += s.buckets[i];
      *out += name_ + "_bucket{" + key + sep + "le=\"" + FormatDouble(bounds_[i]) + "\"} " +
              std::to_string(cumulative) + "\n";
    }
    *out += name_ + "_bucket{" + key + sep + "le=\"+Inf\"} " + std::to_string(s.count) + "\n";
    std::string labels = key.empty() ? "" : "{" + key + "}";
    *out += name_ + "_sum" + labels + " " + FormatDouble(s.sum) + "\n";
    *out += name_ + "_count" + labels + " " + std::to_string(s.count) + "\n";
  }
}

MetricFamily* MetricsRegistry::Counter(const std::string& name, const std::string& help) {
  families_.push_back(
      std::make_unique<MetricFamily>(name, help, MetricFamily::Type::kCounter, std::vector<double>{}));
  return families_.back().get();
}

MetricFamily* MetricsRegistry::Gauge(const std::string& name, const std::string& help) {
  families_.push_back(
      std::make_unique<MetricFamily>(name, help, MetricFamily::Type::kGauge, std::vector<double>{}));
  return families_.back().get();
}

MetricFamily* MetricsRegistry::Histogram(const std::string& name, const std::string& help,
                                         std::vector<double> buckets) {
  families_.push_back(std::make_unique<MetricFamily>(name, help, MetricFamily::Type::kHistogram,
                                                     std::move(buckets)));
  return families_.back().get();
}

std::string MetricsRegistry::Render() const {
  std::string out;
  for (const auto& f : families_) f->Render(&out);
  return out;
}

ServerMetrics::ServerMetrics(MetricsRegistry* r)
    : runs_started(r->Counter("sluice_runs_started_total", "Runs started, by pipeline.")),
      runs_succeeded(r->Counter("sluice_runs_succeeded_total", "Runs that succeeded, by pipeline.")),
      runs_failed(r->Counter("sluice_runs_failed_total",
                             "Runs that ended Failed, Error or Cancelled, by pipeline.")),
      step_duration(r->Histogram("sluice_step_duration_seconds",
                                 "Step instance wall time, by pipeline, step and operator.",
                                 {0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400})),
      cache_hits(r->Counter("sluice_cache_hits_total", "Step instances served from the cache.")),
      ready_queue(r->Gauge("sluice_ready_queue_depth",
                           "Step instances whose upstreams are done, waiting for a free slot or "
                           "budget (all runs).")),
      runs_queued(r->Gauge("sluice_runs_queued", "Runs accepted and waiting for a free worker slot.")),
      runs_active(r->Gauge("sluice_runs_active", "Runs executing now.")),
      runs_deleted(r->Counter("sluice_runs_deleted_total",
                              "Finished runs deleted by a history limit, by pipeline.")),
      scheduler_lag(r->Gauge("sluice_scheduler_lag_seconds",
                             "Seconds between a cron time and the launch of its run, by pipeline "
                             "(latest launch).")),
      scheduled_runs(r->Counter("sluice_scheduled_runs_total",
                                "Cron times handled, by pipeline and outcome (launched, "
                                "skipped_deadline, skipped_forbid, replaced, duplicate, error).")),
      pipelines_loaded(r->Gauge("sluice_pipelines", "Pipeline files loaded, by lint status.")),
      http_requests(r->Counter("sluice_http_requests_total", "API requests, by status code.")),
      http_connections_open(
          r->Gauge("sluice_http_connections_open", "HTTP connections open now (admitted).")),
      http_connections_refused(r->Counter(
          "sluice_http_connections_refused_total",
          "HTTP connections refused at accept: over http.maxConnectionsPerClient (client), "
          "http.maxConnections (total), or while stopping.")) {}

}  // namespace sluice::server
