#pragma once
// A Jupyter notebook into a pipeline: `sluice import notebook FILE.ipynb`.
//
// The notebook's code cells are tagged (cell metadata `tags`, as Jupyter's
// tag toolbar writes them, in the spirit of Kale's tags):
//   step:NAME   this cell starts step NAME; untagged cells after it belong
//               to it too
//   after:NAME  (with step:) the step runs after NAME (repeatable); without
//               any after:, a step runs after the step before it
//   param       `name = literal` lines: the pipeline's params, their types
//               from the literals (int, number, bool, string, list)
//   imports     prepended to every step (imports, helper functions, classes)
//   metrics     one variable name per line: the step writes them (numbers)
//               to metrics.json, its declared metrics
//   skip        not run
// Markdown and raw cells are ignored; IPython magics (`%...`, `!...`) are
// kept as comments, as they do not run in plain Python.
//
// Each step becomes steps/<name>.py: the imports cells, then the variables
// of the steps it runs after (their `state` artifacts, pickled module-level
// values), the params (from --param name=value), its own cells, and finally
// its module-level values into state.pkl (its `state` artifact) and its
// metrics. Functions, classes and modules are not carried between steps:
// define them in an `imports` cell.
//
// Pure: no I/O; the caller writes the files.

#include <map>
#include <string>

#include "engine/status.h"

namespace sluice::compile {

struct NotebookImportOptions {
  std::string name;   // the pipeline's metadata.name; "" = from the file name
  std::string image;  // defaults.image; "" = none
};

// The files of the imported pipeline: "pipeline.yaml" and "steps/<name>.py",
// relative to the output directory.
struct NotebookPipeline {
  std::map<std::string, std::string> files;
  std::vector<std::string> steps;  // in the notebook's order
  std::vector<std::string> params;
};

// Limits on what a notebook may hold (a notebook is untrusted input).
inline constexpr size_t kMaxNotebookBytes = 16 * 1024 * 1024;
inline constexpr size_t kMaxNotebookCells = 10'000;
inline constexpr size_t kMaxNotebookSteps = 1'000;

// Converts the notebook JSON `text`; `file` names it in messages and in the
// pipeline's description. Errors (kInvalidArgument, naming the cell as
// "cell N" counting code cells from 1): not notebook JSON (nbformat 4), a
// cell tagged with an unknown tag, a bad step name, a code cell before the
// first step:, a param line that is not `name = literal`, an after: that
// names no earlier step, a metrics line that is not a variable name, past a
// limit.
Result<NotebookPipeline> ImportNotebook(const std::string& text, const std::string& file,
                                        const NotebookImportOptions& options);

}  // namespace sluice::compile
