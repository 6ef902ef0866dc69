// Lineage query latency on a filled store (see fill_store.cc):
//
//   fill_store /tmp/big 1000000
//   lineage_bench --store=/tmp/big
//
// --store takes a state directory (SQLite) or a postgres:// URL.
// Measures an upstream query from the newest run's registered model (the
// question "which data and code produced the model now serving"), and a
// downstream query from a dataset.
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>

#include "engine/store/lineage.h"
#include "engine/store/open_store.h"

namespace sluice {
namespace {

std::string g_store_dir;

// The digest written as `output` by step `instance` of the newest run.
Result<LineageTarget> NewestOutput(Store* store, const std::string& instance,
                                   const std::string& output) {
  RunFilter filter;
  filter.limit = 1;
  auto runs = store->ListRuns(filter);
  if (!runs) return Error(runs.error());
  if (runs->empty()) return Error(Status::NotFound("store has no runs"));
  auto executions = store->ListExecutions((*runs)[0].id);
  if (!executions) return Error(executions.error());
  for (const auto& e : *executions) {
    if (e.instance != instance) continue;
    auto outputs = store->OutputsOf(e.id);
    if (!outputs) return Error(outputs.error());
    for (const auto& b : *outputs) {
      if (b.name != output) continue;
      LineageTarget t;
      t.kind = LineageTarget::Kind::kArtifact;
      t.digest = b.artifact.digest;
      t.run_id = e.run_id;
      t.label = e.run_id + "/" + instance + "/" + output;
      return t;
    }
  }
  return Error(Status::NotFound("newest run has no " + instance + "/" + output));
}

StorePtr OpenOrDie() {
  auto store = OpenStore(g_store_dir, {.create_if_missing = false});
  if (!store) {
    std::fprintf(stderr, "lineage_bench: %s\n", store.error().ToString().c_str());
    std::exit(2);
  }
  return std::move(*store);
}

void BM_UpstreamOfRegisteredModel(benchmark::State& state) {
  auto store = OpenOrDie();
  auto target = NewestOutput(store.get(), "register", "registered_model");
  if (!target) {
    state.SkipWithError(target.error().ToString().c_str());
    return;
  }
  size_t nodes = 0;
  for (auto _ : state) {
    auto graph = QueryLineage(store.get(), *target, {});
    if (!graph) {
      state.SkipWithError(graph.error().ToString().c_str());
      return;
    }
    nodes = graph->executions.size() + graph->artifacts.size();
    benchmark::DoNotOptimize(graph);
  }
  state.counters["nodes"] = static_cast<double>(nodes);
}
BENCHMARK(BM_UpstreamOfRegisteredModel)->Unit(benchmark::kMillisecond);

void BM_DownstreamOfDataset(benchmark::State& state) {
  auto store = OpenOrDie();
  auto target = NewestOutput(store.get(), "prepare", "dataset");
  if (!target) {
    state.SkipWithError(target.error().ToString().c_str());
    return;
  }
  LineageOptions options;
  options.downstream = true;
  size_t nodes = 0;
  for (auto _ : state) {
    auto graph = QueryLineage(store.get(), *target, options);
    if (!graph) {
      state.SkipWithError(graph.error().ToString().c_str());
      return;
    }
    nodes = graph->executions.size() + graph->artifacts.size();
  }
  state.counters["nodes"] = static_cast<double>(nodes);
}
BENCHMARK(BM_DownstreamOfDataset)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--store=", 8) == 0) sluice::g_store_dir = argv[i] + 8;
  if (sluice::g_store_dir.empty()) {
    std::fprintf(stderr, "usage: lineage_bench --store=DIR|postgres://URL [benchmark flags]\n");
    return 2;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
