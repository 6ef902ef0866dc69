#pragma once
// The commands that serve editors and shells rather than pipelines:
//   sluice schema                   the pipeline format's JSON Schema
//   sluice completion bash|zsh|fish a completion script for the shell
//   sluice __complete WORD...       (hidden) the candidates for the last WORD,
//                                   which the completion scripts call back
// docs/cli.md documents them.

#include <optional>
#include <string>
#include <vector>

#include "engine/cli/commands.h"

namespace sluice::cli {

// The JSON Schema of the pipeline format: dsl/pipeline.schema.json as it
// was when the binary was built (embedded at build time, byte for byte).
const std::string& PipelineSchemaText();

// The completion script of `shell` ("bash", "zsh" or "fish"), or nullopt for
// another shell. The script asks `sluice __complete` for every candidate, so
// it never goes stale when commands or flags change.
std::optional<std::string> CompletionScript(const std::string& shell);

// The completion candidates for the last of `words` (the command line after
// the program name; the last word is the one being completed, possibly
// empty), one per line, read from the command tree of `app` and, for RUN
// and STEP arguments, from the store (`--store` on the line, else .sluice):
// subcommands, flags, values of -o/--format, run ids and `latest`, the step
// instances of the run named before. The single line "__files__" asks the
// shell for file names (FILE, DIR and file-valued flags). A missing or
// unreadable store gives no run ids; never fails.
std::vector<std::string> CompletionCandidates(CLI::App* app, const std::vector<std::string>& words);

// Registers schema and completion on `app`. `sluice __complete WORD...` is
// answered by main.cc before parsing (CompletionCandidates), since its words
// are not sluice's options.
Dispatch RegisterToolingCommands(CLI::App& app);

}  // namespace sluice::cli
