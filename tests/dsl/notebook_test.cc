// dsl::ImportNotebook: tagged notebook cells into a pipeline and step
// scripts, and the exact message of each mistake it reports.
#include "dsl/notebook.h"

#include <gtest/gtest.h>

#include "dsl/dsl.h"

namespace sluice::dsl {
namespace {

// An nbformat 4 notebook around `cells` (JSON text of the cells list).
std::string Notebook(const std::string& cells) {
  return R"({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [)" + cells + "]}";
}

// The message of the import's error ("" when it succeeded).
std::string ErrorOf(const std::string& text) {
  auto r = ImportNotebook(text, "model.ipynb", {});
  return r ? "" : r.error().message();
}

TEST(ImportNotebook, TaggedCellsBecomeStepsParamsAndInputs) {
  const std::string nb = Notebook(R"(
    {"cell_type": "markdown", "metadata": {}, "source": "# Title"},
    {"cell_type": "code", "metadata": {"tags": ["imports"]}, "source": ["import math\n"]},
    {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "rate = 0.5\nname = 'x'\nn = 3\nok = True\nxs = [1, 2]\n"},
    {"cell_type": "code", "metadata": {"tags": ["step:load", "hide-input"]}, "source": "data = list(range(n))\n"},
    {"cell_type": "code", "metadata": {}, "source": "%matplotlib inline\n"},
    {"cell_type": "code", "metadata": {"tags": ["block:train-model"]}, "source": "w = rate * sum(data)\n"},
    {"cell_type": "code", "metadata": {"tags": ["step:report", "after:load", "prev:train-model"]}, "source": "s = w\n"},
    {"cell_type": "code", "metadata": {"tags": ["metrics"]}, "source": "score = w / 2\n"})");
  auto r = ImportNotebook(nb, "dir/My Model.ipynb", {});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->steps, (std::vector<std::string>{"load", "train-model", "report"}));
  EXPECT_EQ(r->params, (std::vector<std::string>{"rate", "name", "n", "ok", "xs"}));
  EXPECT_EQ(r->files.at("pipeline.yaml"),
            R"(# Made by `sluice import notebook`: each step runs steps/<name>.py,
# the notebook's cells for that step.
apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: my-model
  description: "Imported from the notebook My Model.ipynb"
params:
  rate: {type: number, default: 0.5}
  name: {type: string, default: "x"}
  n: {type: int, default: 3}
  ok: {type: bool, default: true}
  xs: {type: list, default: [1,2]}
steps:
  - name: load
    command: [python3, "{{ pipeline.dir }}/steps/load.py", --param, "rate={{ params.rate }}", --param, "name={{ params.name }}", --param, "n={{ params.n }}", --param, "ok={{ params.ok }}", --param, "xs={{ params.xs }}"]
    code: [steps/load.py]
    outputs:
      artifacts:
        - {name: state, path: state.pkl, type: other}
  - name: train-model
    inputs:
      load: "{{ steps.load.outputs.artifacts.state }}"
    command: [python3, "{{ pipeline.dir }}/steps/train-model.py", --param, "rate={{ params.rate }}", --param, "name={{ params.name }}", --param, "n={{ params.n }}", --param, "ok={{ params.ok }}", --param, "xs={{ params.xs }}", --state, "{{ inputs.load }}"]
    code: [steps/train-model.py]
    outputs:
      artifacts:
        - {name: state, path: state.pkl, type: other}
  - name: report
    inputs:
      load: "{{ steps.load.outputs.artifacts.state }}"
      train_model: "{{ steps.train-model.outputs.artifacts.state }}"
    command: [python3, "{{ pipeline.dir }}/steps/report.py", --param, "rate={{ params.rate }}", --param, "name={{ params.name }}", --param, "n={{ params.n }}", --param, "ok={{ params.ok }}", --param, "xs={{ params.xs }}", --state, "{{ inputs.load }}", --state, "{{ inputs.train_model }}"]
    code: [steps/report.py]
    outputs:
      artifacts:
        - {name: state, path: state.pkl, type: other}
      metrics: metrics.json
)");
  // The pipeline lints clean.
  LoadResult lint = LoadPipelineString(r->files.at("pipeline.yaml"), "pipeline.yaml");
  EXPECT_EQ(FormatDiagnosticsText(lint.diagnostics), "");
  // Each script holds the imports cells, then its own cells; magics are comments.
  const std::string& load = r->files.at("steps/load.py");
  EXPECT_NE(load.find("# --- imports\nimport math\n\n# --- cell\ndata = list(range(n))\n\n# --- cell\n"
                      "# (not run: an IPython magic) %matplotlib inline\n"),
            std::string::npos)
      << load;
  EXPECT_EQ(load.find("metrics.json"), std::string::npos);
  // The metrics cell runs with the step's code and its names become metrics.
  const std::string& report = r->files.at("steps/report.py");
  EXPECT_NE(report.find("# --- cell\ns = w\n\n# --- cell\nscore = w / 2\n"), std::string::npos) << report;
  EXPECT_NE(report.find("for _source in [\"score = w / 2\\n\"]:"), std::string::npos) << report;
}

TEST(ImportNotebook, UntaggedCellsFollowTheLastTaggedCell) {
  auto r = ImportNotebook(Notebook(R"(
    {"cell_type": "code", "metadata": {"tags": ["step:a"]}, "source": "x = 1\n"},
    {"cell_type": "code", "metadata": {"tags": ["functions"]}, "source": "def f(): return 2\n"},
    {"cell_type": "code", "metadata": {}, "source": "def g(): return 3\n"},
    {"cell_type": "code", "metadata": {"tags": ["step:b"]}, "source": "y = f()\n"},
    {"cell_type": "code", "metadata": {"tags": ["skip"]}, "source": "print(y)\n"},
    {"cell_type": "code", "metadata": {}, "source": "z = g()\n"})"),
                          "nb.ipynb", {});
  ASSERT_TRUE(r) << r.error().message();
  for (const auto& step : {"steps/a.py", "steps/b.py"})
    EXPECT_NE(r->files.at(step).find("# --- imports\ndef f(): return 2\n\n# --- imports\ndef g(): return 3\n"),
              std::string::npos)
        << step;
  EXPECT_NE(r->files.at("steps/b.py").find("# --- cell\ny = f()\n\n# --- cell\nz = g()\n\n# --- what"),
            std::string::npos);
  EXPECT_EQ(r->files.at("steps/b.py").find("print(y)"), std::string::npos);
}

// "8load" is a valid step name; the input that carries its state must be an
// identifier, and the pipeline must lint clean.
TEST(ImportNotebook, AStepNameStartingWithADigitGivesAnIdentifierInput) {
  auto r = ImportNotebook(Notebook(R"(
    {"cell_type": "code", "metadata": {"tags": ["step:8load"]}, "source": "x = 1\n"},
    {"cell_type": "code", "metadata": {"tags": ["step:train"]}, "source": "y = x\n"})"),
                          "nb.ipynb", {});
  ASSERT_TRUE(r) << r.error().message();
  const std::string& yaml = r->files.at("pipeline.yaml");
  EXPECT_NE(yaml.find("      step_8load: \"{{ steps.8load.outputs.artifacts.state }}\"\n"), std::string::npos)
      << yaml;
  EXPECT_NE(yaml.find("--state, \"{{ inputs.step_8load }}\""), std::string::npos) << yaml;
  LoadResult lint = LoadPipelineString(yaml, "pipeline.yaml");
  EXPECT_TRUE(lint.diagnostics.empty()) << FormatDiagnosticsText(lint.diagnostics);
}

TEST(ImportNotebook, AStepThatWritesMetricsJsonDeclaresIt) {
  auto r = ImportNotebook(Notebook(R"(
    {"cell_type": "code", "metadata": {"tags": ["step:score"]},
     "source": "import json\njson.dump({'auc': 0.9}, open('metrics.json', 'w'))\n"})"),
                          "nb.ipynb", {});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_NE(r->files.at("pipeline.yaml").find("      metrics: metrics.json\n"), std::string::npos);
}

TEST(ImportNotebook, MistakesAreErrorsWithTheirPlace) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"cells\": [1,\n  ]}", "model.ipynb:2:3: not JSON: syntax error while parsing value - unexpected ']'; "
                                "expected '[', '{', or a literal"},
      {"{\"cells\": [", "model.ipynb:1:12: not JSON: syntax error while parsing value - unexpected end of input; "
                        "expected '[', '{', or a literal"},
      {std::string(70, '[') + std::string(70, ']'),
       "model.ipynb:1:65: JSON nested deeper than 64 levels; is it a notebook?"},
      {"[]", "model.ipynb: not a Jupyter notebook (a JSON object with 'cells')"},
      {R"({"nbformat": 3, "cells": []})",
       "model.ipynb: nbformat 3; sluice reads nbformat 4 (save it with Jupyter 4 or later)"},
      {Notebook(R"({"cell_type": "markdown", "metadata": {}, "source": "text"})"),
       "model.ipynb: no cell is tagged step:NAME; tag the first cell of each step"},
      {Notebook(R"({"cell_type": "code", "metadata": {}, "source": "x = 1"})"),
       "model.ipynb: cell 1 has code but comes before the first cell tagged step:NAME; tag it step:NAME, imports, "
       "functions, param or skip"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["stpe:load"]}, "source": "x = 1"})"),
       "model.ipynb: cell 1: unknown tag 'stpe:load'; did you mean 'step:load'? (sluice reads step:NAME, "
       "after:NAME, param, imports, functions, metrics and skip)"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["parm"]}, "source": "x = 1"})"),
       "model.ipynb: cell 1: unknown tag 'parm'; did you mean 'param'? (sluice reads step:NAME, after:NAME, param, "
       "imports, functions, metrics and skip)"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["stage:x"]}, "source": "x = 1"})"),
       "model.ipynb: cell 1: unknown tag 'stage:x' (sluice reads step:NAME, after:NAME, param, imports, functions, "
       "metrics and skip)"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["step:Load_Data"]}, "source": "x = 1"})"),
       "model.ipynb: cell 1: invalid step name 'Load_Data': use lower-case letters, digits and '-' (at most 63, "
       "starting and ending with a letter or digit); did you mean 'step:load-data'?"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["step: "]}, "source": "x = 1"})"),
       "model.ipynb: cell 1: tag 'step:' names no step; write step:NAME"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["step:a", "step:b"]}, "source": "x = 1"})"),
       "model.ipynb: cell 1: tagged step:a and step:b; a cell starts one step"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["after:a"]}, "source": "x = 1"})"),
       "model.ipynb: cell 1: after: goes on the cell tagged step:NAME that starts the step"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["step:a", "param"]}, "source": "x = 1"})"),
       "model.ipynb: cell 1: a cell is one of a step's cells (step:, metrics), an imports/functions cell or the "
       "param cell; split it"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["step:a"]}, "source": "x = 1"},
                   {"cell_type": "code", "metadata": {"tags": ["step:a"]}, "source": "y = 1"})"),
       "model.ipynb: cell 2: step 'a' already starts at cell 1"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["step:train"]}, "source": "x = 1"},
                   {"cell_type": "code", "metadata": {"tags": ["step:eval", "after:trian"]}, "source": "y = 1"})"),
       "model.ipynb: cell 2: after:trian names no step; did you mean 'train'? (the steps: train, eval)"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["step:a", "after:c"]}, "source": "x = 1"},
                   {"cell_type": "code", "metadata": {"tags": ["step:b"]}, "source": "y = 1"},
                   {"cell_type": "code", "metadata": {"tags": ["step:c"]}, "source": "z = 1"})"),
       "model.ipynb: cell 1: the after: tags make a cycle: a -> b -> c -> a"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["step:a", "after:a"]}, "source": "x = 1"})"),
       "model.ipynb: cell 1: the after: tags make a cycle: a -> a"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["param"]}, "source": "lr = 1e-3\nn = len(xs)\n"})"),
       "model.ipynb: cell 1 (tagged param), line 2: 'n = len(xs)' is not `name = literal` (a number, True/False, "
       "a quoted string or a list of those)"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["param"]}, "source": "lr = 1\nlr = 2\n"})"),
       "model.ipynb: cell 1 (tagged param), line 2: param 'lr' is set twice"},
      {Notebook(R"({"cell_type": "code", "metadata": {"tags": ["param"]}, "source": "_args = 1\n"})"),
       "model.ipynb: cell 1 (tagged param), line 1: param '_args' starts with '_', which the step scripts keep for "
       "their own names; rename it"},
      {std::string(kMaxNotebookBytes + 1, ' '), "model.ipynb: larger than 16 MiB; is it a notebook?"},
  };
  for (const auto& [text, message] : cases) EXPECT_EQ(ErrorOf(text), message) << text.substr(0, 200);
}

TEST(ImportNotebook, PastALimitIsAnError) {
  EXPECT_EQ(ErrorOf(R"({"nbformat": 4, "cells": [], "x": 1e999})"),
            "model.ipynb: not JSON: number overflow parsing '1e999'");
  std::string params;
  for (size_t i = 0; i <= kMaxNotebookParams; ++i) params += "p" + std::to_string(i) + " = 0\\n";
  EXPECT_EQ(ErrorOf(Notebook(R"({"cell_type": "code", "metadata": {"tags": ["param"]}, "source": ")" + params +
                             "\"}")),
            "model.ipynb: cell 1 (tagged param), line 257: more than 256 params");
  // Each step script repeats the imports cells.
  std::string cells = R"({"cell_type": "code", "metadata": {"tags": ["imports"]}, "source": ")" +
                      std::string(1'100'000, 'x') + "\"}";
  for (int i = 0; i < 65; ++i)
    cells += R"(, {"cell_type": "code", "metadata": {"tags": ["step:s)" + std::to_string(i) + "\"]}, \"source\": \"\"}";
  EXPECT_EQ(ErrorOf(Notebook(cells)),
            "model.ipynb: the step scripts would hold more than 64 MiB of cells (each of the 65 steps repeats the "
            "1100000 bytes of imports and functions cells)");
}

TEST(ImportNotebook, TooManyCellsIsAnError) {
  std::string cells;
  for (size_t i = 0; i <= kMaxNotebookCells; ++i) cells += std::string(i ? "," : "") + "{}";
  EXPECT_EQ(ErrorOf(Notebook(cells)), "model.ipynb: more than 10000 cells");
}

}  // namespace
}  // namespace sluice::dsl
