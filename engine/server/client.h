#pragma once
// `sluice submit`: the CI client of `sluice serve`.
//
//   sluice submit retrain --server https://sluice.example:8080 -p seed=7
//     --wait --output json --junit report.xml
//
// The token comes from --token or the SLUICE_TOKEN environment variable.
//
// Exit codes (docs/ci.md), aligned with `sluice run` (docs/cli.md):
//   0    submitted (without --wait), or the run Succeeded
//   1    the run ended Failed or Error
//   2    the server refused the request: unknown pipeline, bad params (4xx),
//        or a missing/wrong token (401)
//   3    the server could not be reached, or answered 5xx / garbage
//   124  --timeout passed before the run ended (the run goes on, or is
//        cancelled with --cancel-on-timeout)
//   130  the run was Cancelled

#include <iosfwd>
#include <map>
#include <optional>
#include <string>

#include "engine/run/runner.h"
#include "engine/spec.h"

namespace sluice::server {

constexpr int kSubmitOk = 0;
constexpr int kSubmitRunFailed = 1;
constexpr int kSubmitRejected = 2;
constexpr int kSubmitUnreachable = 3;
constexpr int kSubmitTimedOut = 124;
constexpr int kSubmitCancelled = 130;

struct SubmitOptions {
  std::string server;                         // "http://host:port" or "https://..."
  std::string token;                          // "" = $SLUICE_TOKEN
  std::string pipeline;                       // metadata.name on the server
  std::map<std::string, std::string> params;  // -p name=value
  bool wait = false;                          // poll until the run ends
  bool follow_logs = false;                   // with wait: print step logs as they finish
  std::string output = "text";                // "text" | "json"
  std::string junit_path;                     // with wait: write JUnit XML here
  Duration poll_interval{1000};
  std::optional<Duration> timeout;            // with wait
  bool cancel_on_timeout = false;             // with timeout: cancel the run when it passes
  bool insecure_skip_verify = false;          // https without certificate checks (testing)
};

// Runs `sluice submit`: triggers the run, optionally waits, prints the
// result to `out` (text, or one JSON object with --output json) and errors
// to `err`. Returns the exit code above.
int SubmitCommand(const SubmitOptions& options, std::ostream& out, std::ostream& err);

// The JSON `--output json` prints for a finished (or submitted) run:
// {"run_id", "pipeline", "phase", "url", "message", "steps": [{"instance",
// "phase", "attempts", "exit_code", "duration_seconds", "message"}]}.
Json SubmitResultJson(const RunSummary& summary, const std::string& server);

}  // namespace sluice::server
