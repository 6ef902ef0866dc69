// Fuzz target: notebook JSON through `sluice import notebook`
// (dsl::ImportNotebook), and the property that whatever it accepts lints
// clean: every pipeline.yaml it writes loads without a diagnostic.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dsl/dsl.h"
#include "dsl/notebook.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("SLUICE_PARSE_CACHE", "off", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto imported = sluice::dsl::ImportNotebook(text, "fuzz.ipynb", {});
  if (!imported) return 0;
  const std::string& yaml = imported->files.at("pipeline.yaml");
  sluice::dsl::LoadResult lint = sluice::dsl::LoadPipelineString(yaml, "pipeline.yaml");
  if (!lint.diagnostics.empty()) {
    std::fprintf(stderr, "imported pipeline does not lint clean:\n%s\n%s", yaml.c_str(),
                 sluice::dsl::FormatDiagnosticsText(lint.diagnostics).c_str());
    std::abort();
  }
  return 0;
}
