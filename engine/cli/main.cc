// sluice: the command-line entry point. Registers every command group on a
// CLI11 app, parses the command line, and dispatches to the chosen command
// (commands.h). Exit codes: output.h and docs/cli.md.

#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/cli/commands.h"
#include "engine/cli/output.h"
#include "engine/cli/provenance_commands.h"
#include "engine/cli/server_commands.h"
#include "engine/cli/tooling_commands.h"
#include "operators/builtin.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.0.0"
#endif

namespace {

using namespace sluice::cli;

// Parses the command line: nullopt when a command is to run, else the exit
// code (help and --version print and give 0; a usage error prints and
// gives kExitUsage).
std::optional<int> Parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  // The step types this program knows, before anything reads a pipeline.
  if (sluice::Status s = sluice::operators::RegisterBuiltinOperators(sluice::OperatorRegistry::Global()); !s.ok()) {
    std::cerr << "sluice: " << s.message() << "\n";
    return 1;
  }
  CLI::App app{"sluice: ML pipelines on your machine, with lineage and caching", "sluice"};
  app.set_version_flag("--version", SLUICE_VERSION);
  app.require_subcommand(1);
  std::string store;
  app.add_option("--store", store, kStoreFlagHelp);
  app.footer(
      "Exit codes: 0 ok, 1 run failed / lint errors, 2 usage or invalid pipeline/params, "
      "3 system error, 130 cancelled. See docs/cli.md.");

  // Registered in the order `sluice --help` lists them.
  Dispatch lint = RegisterLintCommands(app);        // lint, graph
  Dispatch run = RegisterRunCommands(app, store);   // run, resume, rerun
  Dispatch cancel = RegisterCancelCommand(app, store);
  Dispatch query = RegisterQueryCommands(app, store);  // status, show, logs, runs
  Dispatch compile = RegisterCompileCommand(app);
  Dispatch import_run = RegisterImportCommand(app);
  // lineage, export, plan, reproduce, checkout, diff; wraps `run` for --openlineage.
  Dispatch provenance = RegisterProvenanceCommands(app, store, run);
  Dispatch server = RegisterServerCommands(app, store);  // serve, submit, backfill, runs delete, gc
  Dispatch tooling = RegisterToolingCommands(app);       // schema, completion

  // `sluice __complete WORD...` (the completion scripts' callback): its
  // words are a partial command line, never parsed as sluice's own options.
  if (argc >= 2 && std::string(argv[1]) == "__complete") {
    std::vector<std::string> words(argv + 2, argv + argc);
    if (words.empty()) words.emplace_back();
    for (const auto& candidate : CompletionCandidates(&app, words)) std::cout << candidate << "\n";
    return kExitOk;
  }
  if (auto code = Parse(app, argc, argv)) return *code;

  // `runs delete` (server) is asked before `runs` (query).
  for (const Dispatch* group : {&tooling, &lint, &compile, &import_run, &server, &provenance, &run,
                                &cancel, &query})
    if (auto code = (*group)()) return *code;
  return kExitUsage;
}
