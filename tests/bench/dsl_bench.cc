// Front-end cost: parse + lint (+ DAG and cycle check) of a 10,000-step
// pipeline by dsl::LoadPipelineString, against a bare yaml-cpp load
// (YAML::Load) of the same text. The goal (issue 2) is a ratio <= 1.2.
//
//   ninja -C build dsl_bench && build/tests/dsl/dsl_bench
//
// The pipeline is a layered diamond: 100 steps per layer, each step depending
// on two steps of the layer above, one by `depends` and one by a template
// reference to its output parameter.
//
// Measured 2026-11-25 on the device machine (H100 host, 16 cores, idle; the
// binary built on Debian 12 with -O2): 10,000 steps, 2.2 MB of YAML, median
// of 5 repetitions:
//   YAML::Load                    724 ms
//   LoadPipelineString            561 ms   0.77x
//   LoadPipelineString + plan     628 ms   0.87x  (PipelineGraph::Build, Plan, first Ready)
//   YAML::LoadFile                715 ms
//   LoadPipelineFile              556 ms   0.78x
// LoadPipeline is faster than a bare yaml-cpp load because it builds its own
// flat node tree from yaml-cpp's event parser instead of YAML::Node.

#include <cstdio>
#include <fstream>
#include <string>

#include <unistd.h>

#include <benchmark/benchmark.h>
#include <yaml-cpp/yaml.h>

#include "dsl/dsl.h"
#include "engine/graph.h"
#include "engine/plan.h"

namespace {

std::string MakePipeline(int n) {
  const int width = 100;
  std::string y =
      "apiVersion: sluice.dev/v1\nkind: Pipeline\nmetadata: {name: bench}\n"
      "params:\n  flag: {type: bool, default: true}\n"
      "defaults:\n  timeout: 10m\n  resources: {cpu: 100m, memory: 64Mi}\nsteps:\n";
  for (int i = 0; i < n; ++i) {
    std::string name = "s" + std::to_string(i);
    y += "  - name: " + name + "\n";
    std::string arg = "x";
    if (i >= width) {
      int layer_start = (i / width - 1) * width;
      int a = layer_start + (i % width), b = layer_start + ((i + 1) % width);
      y += "    depends: [s" + std::to_string(a) + "]\n";
      arg = "{{ steps.s" + std::to_string(b) + ".outputs.params.out }}";
    }
    y += "    command: [/bin/true, \"" + arg + "\", \"{{ params.flag }}\"]\n";
    y += "    outputs:\n      params: [{name: out, path: out.txt}]\n";
  }
  return y;
}

const std::string& Pipeline() {
  static const std::string text = MakePipeline(10000);
  return text;
}

void BM_YamlCppLoad(benchmark::State& state) {
  for (auto _ : state) {
    YAML::Node n = YAML::Load(Pipeline());
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(state.iterations() * Pipeline().size());
}
BENCHMARK(BM_YamlCppLoad)->Unit(benchmark::kMillisecond);

void BM_LoadPipeline(benchmark::State& state) {
  for (auto _ : state) {
    sluice::dsl::LoadResult r = sluice::dsl::LoadPipelineString(Pipeline(), "bench.yaml");
    if (!r.ok()) state.SkipWithError("the generated pipeline does not load");
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(state.iterations() * Pipeline().size());
}
BENCHMARK(BM_LoadPipeline)->Unit(benchmark::kMillisecond);

// Parse + lint + plan: what `sluice run` does before the first step starts
// (the engine's Boost.Graph DAG, the planner and its first ready set).
void BM_LoadAndPlan(benchmark::State& state) {
  for (auto _ : state) {
    sluice::dsl::LoadResult r = sluice::dsl::LoadPipelineString(Pipeline(), "bench.yaml");
    if (!r.ok()) {
      state.SkipWithError("the generated pipeline does not load");
      break;
    }
    auto graph = sluice::PipelineGraph::Build(*r.spec);
    if (!graph) {
      state.SkipWithError("the graph does not build");
      break;
    }
    sluice::PlanOptions options;
    options.slots = 2;
    sluice::Plan plan(*graph, options);
    auto ready = plan.Ready(sluice::TimePoint{});
    benchmark::DoNotOptimize(ready);
  }
}
BENCHMARK(BM_LoadAndPlan)->Unit(benchmark::kMillisecond);

// The same comparison from a file, as `sluice lint` does it (LoadPipelineFile
// also hashes the file's bytes for spec.file_digest).
const std::string& PipelinePath() {
  static const std::string path = [] {
    std::string p = "/tmp/sluice_dsl_bench_" + std::to_string(::getpid()) + ".yaml";
    std::ofstream(p) << Pipeline();
    return p;
  }();
  return path;
}

void BM_YamlCppLoadFile(benchmark::State& state) {
  for (auto _ : state) {
    YAML::Node n = YAML::LoadFile(PipelinePath());
    benchmark::DoNotOptimize(n);
  }
}
BENCHMARK(BM_YamlCppLoadFile)->Unit(benchmark::kMillisecond);

void BM_LoadPipelineFile(benchmark::State& state) {
  for (auto _ : state) {
    sluice::dsl::LoadResult r = sluice::dsl::LoadPipelineFile(PipelinePath());
    if (!r.ok()) state.SkipWithError("the generated pipeline does not load");
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_LoadPipelineFile)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::remove(PipelinePath().c_str());
  return 0;
}
