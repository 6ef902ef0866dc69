#pragma once
// The provenance subcommands of `sluice`: lineage, export openlineage, plan,
// reproduce, checkout and diff, plus the `--openlineage` option of
// run/resume/rerun. See docs/lineage.md.

#include <string>

#include "engine/cli/commands.h"

namespace sluice::cli {

// Registers lineage, export (openlineage), plan, reproduce, checkout and diff
// on `app`, and `--openlineage` on its run/resume/rerun subcommands, which
// must be registered already. `store` is main's --store value, which the
// subcommands' --store options also set; it is read at dispatch and must
// outlive the Dispatch. `run_commands`, the Dispatch of run/resume/rerun, is
// wrapped: after the run it drove, it exports that run as OpenLineage events
// when --openlineage was given (a failure to export is reported, and turns
// an exit code 0 into 3).
Dispatch RegisterProvenanceCommands(CLI::App& app, std::string& store, Dispatch& run_commands);

}  // namespace sluice::cli
