// Fuzz target: pipeline YAML through what `sluice lint` and `sluice graph`
// run (dsl::LoadPipelineString, both diagnostic formats, the DAG), plus the
// parse cache's entry decoder, which reads files from disk.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "dsl/dsl.h"
#include "dsl/yaml_cache.h"
#include "engine/graph.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Inputs are small, but never let one reach the user's parse cache.
  setenv("SLUICE_PARSE_CACHE", "off", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  sluice::dsl::LoadResult result = sluice::dsl::LoadPipelineString(text, "fuzz.yaml");
  (void)sluice::dsl::FormatDiagnosticsText(result.diagnostics);
  (void)sluice::dsl::FormatDiagnosticsJson(result.diagnostics);
  if (result.spec) {
    auto graph = sluice::PipelineGraph::Build(*result.spec);
    if (graph) {
      (void)graph->ToDot();
      (void)graph->ToMermaid();
    }
  }
  (void)sluice::dsl::DecodeYamlDocument(text);
  return 0;
}
