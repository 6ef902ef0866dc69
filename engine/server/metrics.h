#pragma once
// A small Prometheus metrics registry: counters, gauges and histograms with
// labels, rendered in the text exposition format (version 0.0.4).
//
// Families are created once (at server start) and live as long as the
// registry; Inc/Set/Observe are thread-safe and cheap (one mutex per family).

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sluice::server {

using Labels = std::vector<std::pair<std::string, std::string>>;

// One metric family: a name, help text, type, and a value per label set.
class MetricFamily {
 public:
  enum class Type { kCounter, kGauge, kHistogram };

  MetricFamily(std::string name, std::string help, Type type, std::vector<double> buckets);

  // Counter: adds `delta` (>= 0). Gauge: adds `delta` (any sign).
  void Inc(const Labels& labels, double delta = 1.0);
  // Gauge: sets the value.
  void Set(const Labels& labels, double value);
  // Histogram: records one observation.
  void Observe(const Labels& labels, double value);
  // Current value of a counter/gauge (0 when never set); for tests.
  double Value(const Labels& labels) const;
  // Observation count of a histogram series; for tests.
  uint64_t Count(const Labels& labels) const;

  // Appends "# HELP", "# TYPE" and one line per series (histograms: _bucket
  // with le, _sum, _count).
  void Render(std::string* out) const;

  const std::string& name() const { return name_; }

 private:
  struct Series {
    double value = 0;               // counter/gauge
    std::vector<uint64_t> buckets;  // histogram, cumulative at render time
    double sum = 0;
    uint64_t count = 0;
  };
  static std::string Key(const Labels& labels);

  std::string name_, help_;
  Type type_;
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<std::string, Series> series_;  // key: rendered label set
};

// Owns the families; renders them in registration order.
class MetricsRegistry {
 public:
  // Returned pointers stay valid for the registry's lifetime.
  MetricFamily* Counter(const std::string& name, const std::string& help);
  MetricFamily* Gauge(const std::string& name, const std::string& help);
  MetricFamily* Histogram(const std::string& name, const std::string& help,
                          std::vector<double> buckets);
  // The whole exposition text.
  std::string Render() const;

 private:
  std::vector<std::unique_ptr<MetricFamily>> families_;
};

// Escapes a label value for the exposition format (\\, \", \n).
std::string EscapeLabelValue(const std::string& value);

// The server's metric families, all named sluice_*.
struct ServerMetrics {
  explicit ServerMetrics(MetricsRegistry* registry);

  MetricFamily* runs_started;      // counter {pipeline}
  MetricFamily* runs_succeeded;    // counter {pipeline}
  MetricFamily* runs_failed;       // counter {pipeline} (Failed, Error, Cancelled)
  MetricFamily* step_duration;     // histogram seconds {pipeline, step, operator}
  MetricFamily* cache_hits;        // counter {pipeline}
  MetricFamily* ready_queue;       // gauge: step instances ready, waiting for a slot (all runs)
  MetricFamily* runs_queued;       // gauge: runs waiting for a worker slot
  MetricFamily* runs_active;       // gauge: runs executing now
  MetricFamily* runs_deleted;      // counter {pipeline}: finished runs deleted by retention
  MetricFamily* scheduler_lag;     // gauge seconds {pipeline}: launch time - cron time
  MetricFamily* scheduled_runs;    // counter {pipeline, outcome}
  MetricFamily* pipelines_loaded;  // gauge {status: ok|error}
  MetricFamily* http_requests;     // counter {code}
  MetricFamily* http_connections_open;     // gauge: admitted connections open now
  MetricFamily* http_connections_refused;  // counter {reason: client|total|stopping}
};

}  // namespace sluice::server
