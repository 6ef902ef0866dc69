// Front-end cost: parse + lint (+ DAG and cycle check) of a 10,000-step
// pipeline by dsl::LoadPipelineString, against a bare yaml-cpp load
// (YAML::Load) of the same text. The goal (issue 2) is a ratio <= 1.2.
//
//   ninja -C build dsl_bench && build/tests/dsl/dsl_bench
//
// The pipeline is a layered diamond: 100 steps per layer, each step depending
// on two steps of the layer above, one by `depends` and one by a template
// reference to its output parameter.

#include <string>

#include <benchmark/benchmark.h>
#include <yaml-cpp/yaml.h>

#include "dsl/dsl.h"

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

}  // namespace

BENCHMARK_MAIN();
