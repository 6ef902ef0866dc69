#include "engine/server/metrics.h"

#include <gtest/gtest.h>

namespace sluice::server {
namespace {

TEST(MetricsRegistryTest, RendersPrometheusTextFormat) {
  MetricsRegistry r;
  MetricFamily* runs = r.Counter("sluice_runs_started_total", "Runs started.");
  MetricFamily* depth = r.Gauge("sluice_ready_queue_depth", "Queued runs.");
  MetricFamily* dur = r.Histogram("sluice_step_duration_seconds", "Step time.", {1, 10});
  runs->Inc({{"pipeline", "retrain"}});
  runs->Inc({{"pipeline", "retrain"}});
  runs->Inc({{"pipeline", "say \"hi\"\n"}});
  depth->Set({}, 3);
  dur->Observe({{"pipeline", "p"}, {"step", "train"}, {"operator", "container"}}, 0.5);
  dur->Observe({{"pipeline", "p"}, {"step", "train"}, {"operator", "container"}}, 4);
  dur->Observe({{"pipeline", "p"}, {"step", "train"}, {"operator", "container"}}, 20);
  EXPECT_EQ(r.Render(), R"(# HELP sluice_runs_started_total Runs started.
# TYPE sluice_runs_started_total counter
sluice_runs_started_total{pipeline="retrain"} 2
sluice_runs_started_total{pipeline="say \"hi\"\n"} 1
# HELP sluice_ready_queue_depth Queued runs.
# TYPE sluice_ready_queue_depth gauge
sluice_ready_queue_depth 3
# HELP sluice_step_duration_seconds Step time.
# TYPE sluice_step_duration_seconds histogram
sluice_step_duration_seconds_bucket{pipeline="p",step="train",operator="container",le="1"} 1
sluice_step_duration_seconds_bucket{pipeline="p",step="train",operator="container",le="10"} 2
sluice_step_duration_seconds_bucket{pipeline="p",step="train",operator="container",le="+Inf"} 3
sluice_step_duration_seconds_sum{pipeline="p",step="train",operator="container"} 24.5
sluice_step_duration_seconds_count{pipeline="p",step="train",operator="container"} 3
)");
  EXPECT_EQ(runs->Value({{"pipeline", "retrain"}}), 2);
  EXPECT_EQ(dur->Count({{"pipeline", "p"}, {"step", "train"}, {"operator", "container"}}), 3u);
}

TEST(MetricsRegistryTest, EmptyGaugeRendersZero) {
  MetricsRegistry r;
  r.Gauge("g", "A gauge.");
  EXPECT_EQ(r.Render(), "# HELP g A gauge.\n# TYPE g gauge\ng 0\n");
}

}  // namespace
}  // namespace sluice::server
