// sluice lint / sluice graph.

#include <iostream>

#include <CLI/CLI.hpp>

#include "dsl/dsl.h"
#include "engine/cli/commands.h"
#include "engine/cli/output.h"
#include "engine/graph.h"

namespace sluice::cli {

int Lint(const LintOptions& options) {
  std::vector<dsl::Diagnostic> all;
  size_t errors = 0;
  for (const auto& file : options.files) {
    dsl::LoadResult result = dsl::LoadPipelineFile(file);
    errors += result.ErrorCount();
    all.insert(all.end(), result.diagnostics.begin(), result.diagnostics.end());
  }
  if (options.format == "json") {
    std::cout << dsl::FormatDiagnosticsJson(all);
  } else if (options.format == "yaml") {
    PrintRecords(Json::parse(dsl::FormatDiagnosticsJson(all)), "yaml");
  } else {
    std::cout << dsl::FormatDiagnosticsText(all);
    if (errors > 0) {
      std::cerr << errors << (errors == 1 ? " error" : " errors") << " in "
                << options.files.size() << (options.files.size() == 1 ? " file" : " files") << "\n";
    }
  }
  return errors > 0 ? kExitFailed : kExitOk;
}

int Graph(const GraphOptions& options) {
  dsl::LoadResult result = dsl::LoadPipelineFile(options.file);
  if (!result.ok()) {
    std::cerr << dsl::FormatDiagnosticsText(result.diagnostics);
    return kExitUsage;
  }
  auto graph = PipelineGraph::Build(*result.spec);
  if (!graph) {
    PrintError(graph.error().message());
    return kExitUsage;
  }
  std::cout << (options.format == "mermaid" ? graph->ToMermaid() : graph->ToDot());
  return kExitOk;
}

Dispatch RegisterLintCommands(CLI::App& app) {
  auto lint = std::make_shared<LintOptions>();
  auto* lint_cmd = app.add_subcommand("lint", "Validate pipeline files; report every problem");
  lint_cmd->add_option("FILE", lint->files, "Pipeline files")->required();
  AddOutputOption(lint_cmd, &lint->format, {"text", "json", "yaml"});

  auto graph = std::make_shared<GraphOptions>();
  auto* graph_cmd = app.add_subcommand("graph", "Print a pipeline's DAG as Graphviz DOT or Mermaid");
  graph_cmd->add_option("FILE", graph->file, "Pipeline file")->required();
  graph_cmd->add_option("--format", graph->format, "Output format (default dot)")
      ->check(CLI::IsMember({"dot", "mermaid"}));

  return [lint, lint_cmd, graph, graph_cmd]() -> std::optional<int> {
    if (*lint_cmd) return Lint(*lint);
    if (*graph_cmd) return Graph(*graph);
    return std::nullopt;
  };
}

}  // namespace sluice::cli
