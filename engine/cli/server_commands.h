#pragma once
// The server-side subcommands of `sluice`: serve, submit, backfill.

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/server/backfill.h"
#include "engine/server/client.h"
#include "engine/server/server.h"

namespace sluice::cli {

class ServerCommands {
 public:
  // Adds the subcommands to `app`. `store` (the global --store) is borrowed
  // and read at Dispatch().
  ServerCommands(CLI::App* app, std::string* store);

  // After parsing: runs the chosen subcommand and returns its exit code, or
  // nullopt when none of these was chosen.
  std::optional<int> Dispatch();

 private:
  std::string* store_;
  CLI::App* serve_ = nullptr;
  CLI::App* submit_ = nullptr;
  CLI::App* backfill_ = nullptr;
  server::ServerOptions serve_options_;
  server::SubmitOptions submit_options_;
  std::vector<std::string> submit_params_;
  server::BackfillCommandOptions backfill_options_;
};

}  // namespace sluice::cli
