#pragma once
// The server-side subcommands of `sluice`: serve, submit, backfill, and the
// retention commands `runs delete` and `gc` (engine/server/retention.h).

#include <string>

#include "engine/cli/commands.h"

namespace sluice::cli {

// Registers serve, submit, backfill and gc on `app`, and delete under its
// `runs` subcommand when that is registered already. `store` is main's
// --store value, which their --store options also set; it is read at
// dispatch and must outlive the Dispatch.
Dispatch RegisterServerCommands(CLI::App& app, std::string& store);

}  // namespace sluice::cli
