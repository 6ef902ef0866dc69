#pragma once
// A Jupyter notebook into a pipeline: `sluice import notebook FILE.ipynb`
// (docs/notebooks.md).
//
// The notebook's code cells are tagged (cell metadata `tags`, as Jupyter's
// tag toolbar writes them, in the spirit of Kubeflow Kale's tags; Kale's
// spellings block:, prev:, pipeline-parameters and pipeline-metrics are
// read too):
//   step:NAME   this cell starts step NAME
//   after:NAME  (with step:) the step runs after NAME (repeatable; NAME may
//               be a step further down); without any after:, a step runs
//               after the step before it
//   param       `name = literal` lines: the pipeline's params, their types
//               from the literals (int, number, bool, string, list)
//   imports, functions
//               prepended to every step (imports, helper functions, classes)
//   metrics     code of the current step whose top-level numeric variables
//               (assigned, or a bare name) become the step's metrics
//   skip        not run
// An untagged code cell belongs to the step (or the imports) of the last
// cell tagged step:, metrics, imports or functions before it. Markdown and
// raw cells are ignored; IPython magics (`%...`, `!...`) are kept as
// comments, as they do not run in plain Python. Tags without ':' that are
// no typo of these are other tools' (hide-input, ...) and ignored.
//
// Each step becomes steps/<name>.py: the imports cells, then the variables
// of the steps it runs after (their `state` artifacts, pickled module-level
// values), the params (argv: --param name=value), its own cells, and finally
// its module-level values into state.pkl (its `state` artifact) and its
// metrics into metrics.json (merged with a metrics.json a cell wrote itself,
// as any sluice step reports metrics). Functions, classes and modules are
// not carried between steps: define them in an imports or functions cell.
//
// Pure: no I/O; the caller writes the files.

#include <map>
#include <string>
#include <vector>

#include "engine/status.h"

namespace sluice::dsl {

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
inline constexpr size_t kMaxNotebookParams = 256;
inline constexpr size_t kMaxNotebookOutputBytes = 64 * 1024 * 1024;  // the cells in all step scripts
inline constexpr size_t kMaxNotebookDepth = 64;  // JSON nesting ([ and {)

// Converts the notebook JSON `text`; `file` names it in messages and in the
// pipeline's description. Errors are kInvalidArgument, each starting with
// "`file`: " and naming the place: "LINE:COL: " for text that is not JSON or
// nests deeper than kMaxNotebookDepth, "cell N" (counting code cells from 1)
// for a cell's mistake: not notebook JSON (nbformat 4), past a limit (the
// step scripts, which all repeat the imports cells, past
// kMaxNotebookOutputBytes among them), a
// cell with an unknown tag (with a suggestion), a bad step name, a code cell
// before the first step:, a param line that is not `name = literal`, an
// after: that names no step, after: tags that make a cycle, no step: at all.
// The pipeline it returns lints clean (tests/fuzz/fuzz_notebook.cc checks).
Result<NotebookPipeline> ImportNotebook(const std::string& text, const std::string& file,
                                        const NotebookImportOptions& options);

}  // namespace sluice::dsl
