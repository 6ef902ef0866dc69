#pragma once
// dsl: pipeline YAML text -> validated PipelineSpec, with every problem
// reported at once as file:line:col diagnostics.
//
// The same validator serves `sluice lint`, `sluice run` and `sluice serve`:
// nothing that fails here starts running.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/operator.h"
#include "engine/spec.h"
#include "engine/status.h"

namespace sluice::dsl {

enum class Severity { kError, kWarning };

// One problem found in a pipeline file.
struct Diagnostic {
  SourceLocation loc;
  Severity severity = Severity::kError;
  std::string message;  // what is wrong, and what to do ("did you mean 'retries'?")

  // "file:line:col: error: message"
  std::string ToString() const;
};

// The outcome of loading a pipeline: a spec when there were no errors, and
// all diagnostics (errors and warnings) in file order.
struct LoadResult {
  std::optional<PipelineSpec> spec;
  std::vector<Diagnostic> diagnostics;

  bool ok() const { return spec.has_value(); }
  size_t ErrorCount() const;
};

// How to load a pipeline.
struct LoadOptions {
  // The step types a pipeline may use, and their config checks; null means
  // OperatorRegistry::Global(). Borrowed for the duration of the call.
  const OperatorRegistry* operators = nullptr;
};

// Reads, parses and validates the pipeline at `path`. A file that cannot be
// read is reported as a diagnostic on `path`, not as a crash. Fills
// spec.file (as given) and spec.file_digest (sha256 of the bytes).
LoadResult LoadPipelineFile(const std::string& path, const LoadOptions& options = {});

// As LoadPipelineFile, on text already in memory; `file_name` is used in
// diagnostics.
LoadResult LoadPipelineString(std::string_view text, const std::string& file_name,
                              const LoadOptions& options = {});

// Text ("file:line:col: error: msg" per line) or JSON (an array of
// {file, line, column, severity, message}) rendering of diagnostics.
std::string FormatDiagnosticsText(const std::vector<Diagnostic>& diagnostics);
std::string FormatDiagnosticsJson(const std::vector<Diagnostic>& diagnostics);

// Binds run-time parameters given as strings (`-p name=value`) to the
// pipeline's typed params, applying defaults. Returns a JSON object
// name -> typed value. Errors (kInvalidArgument), all in one message:
// unknown parameter (with "did you mean"), value not of the declared type
// ("parameter 'epochs' expects int, got 'ten'"), required parameter missing.
// List values are given as JSON arrays or comma-separated text.
Result<Json> BindParams(const PipelineSpec& spec,
                        const std::map<std::string, std::string>& values);

// The step fields that hold templates, as passed to ForEachStepTemplate.
enum class TemplateField { kCommand, kEnv, kWorkdir, kInputs, kWhen, kForeach };

// Calls `fn` for every template of `step`: each command item, each non-secret
// env value, workdir, each input, when and a foreach expression. A `when`
// without {{ }} is a bare expression (expr::References(text, false)); every
// other field is a template.
void ForEachStepTemplate(const StepSpec& step,
                         const std::function<void(const Template&, TemplateField)>& fn);

// The steps `step` depends on: its explicit `depends` first, then every step
// named by a `steps.X...` reference in its templates, each once, in the
// order ForEachStepTemplate visits the templates (command before inputs).
// Self-references are left out. Templates that do not parse are skipped (a validated spec
// has none).
std::vector<std::string> StepDependencies(const StepSpec& step);

}  // namespace sluice::dsl
