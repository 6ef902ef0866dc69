#pragma once
// Shared output helpers of the `sluice` CLI: exit codes, tables, times and
// JSON renderings of store records.

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "engine/store/open_store.h"
#include "engine/store.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace sluice::cli {

// Exit codes, documented in docs/cli.md. CI scripts depend on them.
inline constexpr int kExitOk = 0;          // success (lint: no errors)
inline constexpr int kExitFailed = 1;      // run: a step failed; lint: errors found
inline constexpr int kExitUsage = 2;       // bad command line, invalid pipeline or params, unknown run
inline constexpr int kExitSystem = 3;      // store unusable, executor missing, I/O errors
inline constexpr int kExitCancelled = 130; // run cancelled (SIGINT/SIGTERM)

// Exit code for a failed Status: user-fixable codes → kExitUsage, others →
// kExitSystem.
int ExitCodeFor(const Status& status);

// Prints "sluice: error: <message>" to stderr.
void PrintError(const std::string& message);

// Prints a failed Status as PrintError does and returns ExitCodeFor(status):
// `if (!x) return Fail(x.error());`.
int Fail(const Status& status);

// A plain text table: left-aligned columns separated by two spaces, the
// header row in upper case as given, no trailing spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string ToString() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// "2026-11-25 15:30:12" (UTC) and "2026-11-25T15:30:12.345Z".
std::string FormatTime(TimePoint t);
std::string FormatIsoTime(TimePoint t);
Json IsoTimeOrNull(const std::optional<TimePoint>& t);

// Wall time between `start` and `end` (now when end is unset), "-" without
// a start; spelled as FormatDuration ("1.5s", "2m3s").
std::string ElapsedText(const std::optional<TimePoint>& start, const std::optional<TimePoint>& end);
int64_t ElapsedMillis(const std::optional<TimePoint>& start, const std::optional<TimePoint>& end);

// The one output flag of every command that prints records, as kubectl's:
// `-o FORMAT`, with `--output` and `--format` as aliases. `formats` are the
// values the command accepts (its default first; docs/cli.md): "text" (the
// table), "wide" (the table with more columns), "json", "yaml", "name" (one
// id per line), or a command's own ("dot"). The option is owned by `cmd`.
CLI::Option* AddOutputOption(CLI::App* cmd, std::string* format, const std::vector<std::string>& formats);

// `value` as YAML (block style, two-space indent, strings quoted where plain
// YAML would read them as something else), ending with a newline.
std::string ToYaml(const Json& value);

// Prints `value` to stdout as `format` requests: "yaml" via ToYaml, anything
// else as indented JSON. For the json and yaml forms of a command's records.
void PrintRecords(const Json& value, const std::string& format);

// "sha256:0123456789ab" (the first 12 hex digits).
std::string ShortDigest(const std::string& digest);

// The run named on the command line: an id, a unique id prefix, or
// "latest" (the newest run). Errors as Store::GetRun; an unknown id's
// kNotFound names the closest recent run id ("did you mean").
Result<RunRecord> FindRun(Store& store, const std::string& name);

// The directory of a store's files (logs, step directories, the local
// artifact store): the absolute path of a --store value ("" → ".sluice" in
// the cwd); for a PostgreSQL URL, whose records live on the server,
// ".sluice" in the cwd.
std::string ResolveStateDir(const std::string& store_flag);

// What OpenStore opens for a --store value: a PostgreSQL URL as given, else
// ResolveStateDir's directory.
std::string StoreLocation(const std::string& store_flag);

// Opens the store at a --store value for reading what is there: kNotFound
// when no store exists yet (commands that inspect runs never create one).
Result<StorePtr> OpenExisting(const std::string& store_flag);

// An existing store and one run in it: where status, show, logs, checkout
// and reproduce start.
struct OpenedRun {
  StorePtr store;
  RunRecord run;
};

// OpenExisting(store_flag), then FindRun(run_name) in it. Errors as those two.
Result<OpenedRun> OpenRun(const std::string& store_flag, const std::string& run_name);

// `-p name=value` flags as a map (the last value of a name wins), for
// dsl::BindParams. kInvalidArgument for a flag without '=' or a name.
Result<std::map<std::string, std::string>> ParseParamFlags(const std::vector<std::string>& flags);

}  // namespace sluice::cli
