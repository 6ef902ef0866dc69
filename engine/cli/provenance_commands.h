#pragma once
// The provenance subcommands of `sluice`: lineage, export
// openlineage, plan, reproduce, checkout and diff, plus the `--openlineage`
// option of run/resume/rerun. main.cc creates one ProvenanceCommands after
// its own subcommands, and asks it to dispatch after parsing.
// See docs/lineage.md.

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace sluice::cli {

class ProvenanceCommands {
 public:
  // Adds the subcommands to `app`, and `--openlineage` to the existing
  // run/resume/rerun subcommands when present. Borrows `app` and `store`
  // (main's --store value, read at dispatch); both must outlive this object.
  ProvenanceCommands(CLI::App* app, std::string* store);

  // After app.parse(): the exit code of the chosen provenance subcommand, or
  // nullopt when another subcommand was chosen.
  std::optional<int> Dispatch();

  // After run/resume/rerun returned `exit_code`: exports the run this
  // process drove as OpenLineage when --openlineage was given (a failure to
  // export is reported, and turns an exit code 0 into 3). Returns the exit
  // code to use.
  int AfterRun(int exit_code);

 private:
  CLI::App* app_;
  std::string* store_;
  CLI::App* lineage_ = nullptr;
  CLI::App* export_ = nullptr;
  CLI::App* export_openlineage_ = nullptr;
  CLI::App* plan_ = nullptr;
  CLI::App* reproduce_ = nullptr;
  CLI::App* checkout_ = nullptr;
  CLI::App* diff_ = nullptr;

  // Options.
  std::string target_;
  bool downstream_ = false;
  std::string format_ = "text";
  int max_depth_ = 64;
  std::string deployed_;
  std::vector<std::string> runs_;
  std::string to_;
  std::string file_;
  std::vector<std::string> params_;
  bool no_cache_ = false;
  std::string executor_;
  std::string run_;
  std::string step_;
  std::string dir_;
  std::string run_id_;
  std::string openlineage_;  // run/resume/rerun --openlineage
  long long run_started_ms_ = 0;
};

}  // namespace sluice::cli
