// Stand-in for run_command.cc while engine/runner.cc does not exist.

#include "engine/cli/commands.h"
#include "engine/cli/output.h"

namespace sluice::cli {

namespace {
int NotBuilt() {
  PrintError("this sluice was built without the run loop (engine/runner.cc)");
  return kExitSystem;
}
}  // namespace

int Run(const RunCommandOptions&) { return NotBuilt(); }
int Resume(const RunCommandOptions&) { return NotBuilt(); }
int Rerun(const RunCommandOptions&) { return NotBuilt(); }

}  // namespace sluice::cli
