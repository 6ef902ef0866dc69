#pragma once
// Test helper: a PipelineSpec from pipeline YAML text, through the real dsl.

#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "dsl/dsl.h"
#include "engine/spec.h"

namespace sluice::testing {

// Loads `yaml` as "pipeline.yaml"; fails the current test (and returns an
// empty spec) when the dsl reports errors.
inline PipelineSpec LoadSpec(std::string_view yaml) {
  dsl::LoadResult r = dsl::LoadPipelineString(yaml, "pipeline.yaml");
  if (!r.ok()) {
    ADD_FAILURE() << "pipeline does not load:\n" << dsl::FormatDiagnosticsText(r.diagnostics);
    return PipelineSpec{};
  }
  return std::move(*r.spec);
}

}  // namespace sluice::testing
