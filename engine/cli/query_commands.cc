// sluice status / show / runs / logs: read-only views of the store. They
// open the store without creating it, so a mistyped --store is reported
// instead of leaving an empty store behind, and they work from another
// terminal while a run is writing (WAL readers never block the writer).

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

#include "dsl/quantity.h"
#include "dsl/suggest.h"
#include "engine/cli/commands.h"
#include "engine/cli/output.h"
#include "engine/task_note.h"
#include "engine/file_lock.h"
#include "engine/store/provenance.h"
#include "engine/store/record_json.h"

namespace sluice::cli {

namespace {

std::string ExitText(const StepRecord& s) {
  return s.exit_code >= 0 ? std::to_string(s.exit_code) : "-";
}

std::string OneLine(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// For a Running run whose driving sluice process is gone (kill -9, a crash,
// a reboot), what `status` adds to its phase: nobody will finish the run
// until it is resumed. "" otherwise, and for a run driven on another host.
std::string DriverGoneNote(const std::string& state_dir, const RunRecord& run,
                           const std::vector<StepRecord>& steps) {
  if (run.phase != RunPhase::kRunning) return "";
  if (!run.host.empty() && run.host != HostName()) return "";
  auto driven = IsRunDriven(state_dir, run.id);
  if (!driven) return "";
  // Runs recorded without a lock file: their pid is all there is.
  bool alive = driven->has_value() ? **driven : (run.pid > 0 && ::kill(run.pid, 0) == 0);
  if (alive) return "";
  size_t running = std::count_if(steps.begin(), steps.end(),
                                 [](const StepRecord& s) { return s.phase == NodePhase::kRunning; });
  std::string driver = run.pid > 0 ? "driver pid " + std::to_string(run.pid) : std::string("driver");
  std::string what = running == 0 ? "continues it"
                                  : "adopts its " + std::to_string(running) + " running step" +
                                        (running == 1 ? "" : "s");
  return " (" + driver + " gone; `sluice resume " + run.id + "` " + what + ")";
}

std::string RunHeader(const RunRecord& run, const std::string& phase_note = "") {
  std::string out;
  out += "Run:       " + run.id + "\n";
  out += "Pipeline:  " + run.pipeline + " (" + run.pipeline_file + ")\n";
  out += std::string("Phase:     ") + RunPhaseName(run.phase) + phase_note + "\n";
  if (!run.message.empty()) out += "Message:   " + OneLine(run.message) + "\n";
  out += "Created:   " + FormatTime(run.created_at) + " UTC\n";
  if (run.started_at) out += "Duration:  " + ElapsedText(run.started_at, run.finished_at) + "\n";
  if (!run.resumed_from.empty()) out += "Resumes:   " + run.resumed_from + "\n";
  return out;
}

// The step rows of status and show; `wide` adds when each step started and
// finished and the run/step whose outputs a cache hit reused.
std::string StepTable(const std::vector<StepRecord>& steps, bool wide = false) {
  std::vector<std::string> header = {"STEP", "PHASE", "ATTEMPTS", "DURATION", "EXIT"};
  if (wide) header.insert(header.end(), {"STARTED (UTC)", "FINISHED (UTC)", "REUSED FROM"});
  header.push_back("MESSAGE");
  Table table(header);
  for (const auto& s : steps) {
    std::string message = s.message;
    if (s.phase == NodePhase::kCached && !s.cached_from.empty() && message.empty()) {
      message = "outputs reused from " + s.cached_from;
    }
    // A running step that its executor noted as waiting in a queue.
    const bool queued = s.phase == NodePhase::kRunning && s.message.rfind(kQueuedNotePrefix, 0) == 0;
    std::vector<std::string> row = {s.instance, queued ? "Queued" : NodePhaseName(s.phase),
                                    std::to_string(s.attempts),
                                    ElapsedText(s.started_at, s.finished_at), ExitText(s)};
    if (wide) {
      row.push_back(s.started_at ? FormatTime(*s.started_at) : "-");
      row.push_back(s.finished_at ? FormatTime(*s.finished_at) : "-");
      row.push_back(s.cached_from.empty() ? "-" : s.cached_from);
    }
    row.push_back(OneLine(message));
    table.AddRow(std::move(row));
  }
  return table.ToString();
}

}  // namespace

int ShowStatus(const StatusOptions& options) {
  auto opened = OpenRun(options.store, options.run);
  if (!opened) return Fail(opened.error());
  Store* store = opened->store.get();
  const RunRecord* run = &opened->run;
  auto steps = store->ListSteps(run->id);
  if (!steps) {
    PrintError(steps.error().message());
    return kExitSystem;
  }
  if (options.format == "json" || options.format == "yaml") {
    Json out = {{"run", RunRecordJson(*run, RecordView::kCli)}, {"steps", Json::array()}};
    for (const auto& s : *steps) out["steps"].push_back(StepRecordJson(s, RecordView::kCli));
    PrintRecords(out, options.format);
    return kExitOk;
  }
  if (options.format == "name") {
    for (const auto& s : *steps) std::cout << s.instance << "\n";
    return kExitOk;
  }
  std::cout << RunHeader(*run, DriverGoneNote(ResolveStateDir(options.store), *run, *steps)) << "\n" << StepTable(*steps, options.format == "wide");
  return kExitOk;
}

int Show(const StatusOptions& options) {
  auto opened = OpenRun(options.store, options.run);
  if (!opened) return Fail(opened.error());
  Store* store = opened->store.get();
  const RunRecord* run = &opened->run;
  auto steps = store->ListSteps(run->id);
  auto executions = store->ListExecutions(run->id);
  if (!steps || !executions) {
    PrintError(!steps ? steps.error().message() : executions.error().message());
    return kExitSystem;
  }
  if (options.format == "name") {
    std::cout << run->id << "\n";
    return kExitOk;
  }
  if (options.format == "json" || options.format == "yaml") {
    Json out = {{"run", RunRecordJson(*run, RecordView::kCli)}, {"steps", Json::array()}, {"executions", Json::array()}};
    for (const auto& s : *steps) out["steps"].push_back(StepRecordJson(s, RecordView::kCli));
    for (const auto& e : *executions) {
      out["executions"].push_back({{"id", e.id},
                                   {"instance", e.instance},
                                   {"attempt", e.attempt},
                                   {"outcome", e.outcome},
                                   {"exit_code", e.exit_code},
                                   {"message", e.message},
                                   {"log_path", e.log_path},
                                   {"cache_key", e.cache_key},
                                   {"started_at", FormatIsoTime(e.started_at)},
                                   {"finished_at", IsoTimeOrNull(e.finished_at)}});
    }
    PrintRecords(out, options.format);
    return kExitOk;
  }
  std::cout << RunHeader(*run, DriverGoneNote(ResolveStateDir(options.store), *run, *steps));
  if (!run->git_commit.empty()) {
    std::cout << "Git:       " << run->git_commit << (run->git_dirty ? " (dirty)" : "") << "\n";
  }
  std::cout << "File:      sha256:" << run->pipeline_digest << "\n";
  if (!run->params.empty()) {
    std::cout << "\nParams:\n";
    for (const auto& [name, value] : run->params.items()) {
      std::cout << "  " << name << " = "
                << (value.is_string() ? value.get<std::string>() : value.dump()) << "\n";
    }
  }
  std::cout << "\n" << StepTable(*steps);

  Table outputs({"STEP", "KIND", "NAME", "VALUE"});
  bool any_output = false;
  for (const auto& s : *steps) {
    for (const auto& [name, value] : s.output_params.items()) {
      outputs.AddRow({s.instance, "param", name,
                      OneLine(value.is_string() ? value.get<std::string>() : value.dump())});
      any_output = true;
    }
    for (const auto& [name, value] : s.metrics.items()) {
      outputs.AddRow({s.instance, "metric", name, value.dump()});
      any_output = true;
    }
    for (const auto& b : s.outputs) {
      outputs.AddRow({s.instance, std::string("artifact (") + ArtifactTypeName(b.artifact.type) + ")",
                      b.name, ShortDigest(b.artifact.digest) + "  " + std::to_string(b.artifact.size) + " bytes"});
      any_output = true;
    }
  }
  if (any_output) std::cout << "\nOutputs:\n" << outputs.ToString();

  Table cached({"STEP", "REUSED FROM"});
  bool any_cached = false;
  for (const auto& s : *steps) {
    if (s.phase == NodePhase::kCached) {
      cached.AddRow({s.instance, s.cached_from});
      any_cached = true;
    }
  }
  if (any_cached) std::cout << "\nCache hits:\n" << cached.ToString();
  return kExitOk;
}

namespace {

// `--since DURATION` ("2h", "7d") as the time that long ago into `*since`;
// "" leaves it unset. False, after printing why, when it is no duration.
bool SinceFlag(const std::string& text, std::optional<TimePoint>* since) {
  if (text.empty()) return true;
  auto d = dsl::ParseDuration(text);
  if (!d) {
    PrintError("--since: " + d.error().message());
    return false;
  }
  *since = std::chrono::system_clock::now() - *d;
  return true;
}

}  // namespace

int Runs(const RunsOptions& options) {
  RunFilter filter;
  filter.pipeline = options.pipeline;
  filter.limit = options.limit;
  if (!options.status.empty()) {
    std::string name = options.status;
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    name[0] = static_cast<char>(::toupper(name[0]));
    filter.phase = ParseRunPhase(name);
    if (!filter.phase) {
      PrintError("unknown run status '" + options.status +
                 "'; use one of Pending, Running, Succeeded, Failed, Error, Cancelled");
      return kExitUsage;
    }
  }
  if (!SinceFlag(options.since, &filter.since)) return kExitUsage;
  auto store = OpenExisting(options.store);
  if (!store) {
    PrintError(store.error().message());
    return ExitCodeFor(store.error());
  }
  auto runs = (*store)->ListRuns(filter);
  if (!runs) {
    PrintError(runs.error().message());
    return kExitSystem;
  }
  if (options.format == "json" || options.format == "yaml") {
    Json out = Json::array();
    for (const auto& r : *runs) out.push_back(RunRecordJson(r, RecordView::kCli));
    PrintRecords(out, options.format);
    return kExitOk;
  }
  if (options.format == "name") {
    for (const auto& r : *runs) std::cout << r.id << "\n";
    return kExitOk;
  }
  const bool wide = options.format == "wide";
  std::vector<std::string> header = {"RUN", "PIPELINE", "PHASE", "CREATED (UTC)", "DURATION"};
  if (wide) header.insert(header.end(), {"RESUMES", "FILE", "MESSAGE"});
  Table table(header);
  for (const auto& r : *runs) {
    std::vector<std::string> row = {r.id, r.pipeline, RunPhaseName(r.phase), FormatTime(r.created_at),
                                    ElapsedText(r.started_at, r.finished_at)};
    if (wide) {
      row.insert(row.end(), {r.resumed_from.empty() ? "-" : r.resumed_from, r.pipeline_file, OneLine(r.message)});
    }
    table.AddRow(std::move(row));
  }
  std::cout << table.ToString();
  return kExitOk;
}

int Audit(const AuditOptions& options) {
  AuditFilter filter;
  filter.limit = options.limit;
  if (!SinceFlag(options.since, &filter.since)) return kExitUsage;
  auto store = OpenExisting(options.store);
  if (!store) {
    PrintError(store.error().message());
    return ExitCodeFor(store.error());
  }
  auto entries = (*store)->ListAudit(filter);
  if (!entries) {
    PrintError(entries.error().message());
    return kExitSystem;
  }
  if (options.format == "json" || options.format == "yaml") {
    Json out = Json::array();
    for (const auto& e : *entries) out.push_back(AuditEntryJson(e));
    PrintRecords(out, options.format);
    return kExitOk;
  }
  Table table({"TIME (UTC)", "WHO", "ROLE", "REQUEST", "RUN", "PIPELINE", "CODE"});
  for (const auto& e : *entries)
    table.AddRow({FormatTime(e.at), e.who, e.role.empty() ? "-" : e.role, e.method + " " + e.route,
                  e.run_id.empty() ? "-" : e.run_id, e.pipeline.empty() ? "-" : e.pipeline,
                  std::to_string(e.code)});
  std::cout << table.ToString();
  return kExitOk;
}

namespace {

// Copies bytes of `path` from `*offset` to stdout; returns false when the
// file cannot be opened (not created yet).
bool CopyNewBytes(const std::string& path, off_t* offset) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, *offset);
    if (n <= 0) break;
    std::cout.write(buf, n);
    *offset += n;
  }
  ::close(fd);
  std::cout.flush();
  return true;
}

}  // namespace

int Logs(const LogsOptions& options) {
  auto opened = OpenRun(options.store, options.run);
  if (!opened) return Fail(opened.error());
  Store* store = opened->store.get();
  const RunRecord* run = &opened->run;
  auto step = store->GetStep(run->id, options.step);
  if (!step) {
    // A foreach step's name: say which instances there are.
    auto steps = store->ListSteps(run->id);
    std::vector<std::string> instances;
    if (steps) {
      for (const auto& s : *steps) {
        if (s.step == options.step) instances.push_back(s.instance);
      }
    }
    std::string msg = "run " + run->id + " has no step instance '" + options.step + "'";
    if (!instances.empty()) {
      msg += "; it is a foreach step: name one of";
      for (const auto& i : instances) msg += " " + i;
    } else if (steps) {
      std::vector<std::string> names;
      for (const auto& s : *steps) names.push_back(s.instance);
      msg += dsl::DidYouMean(options.step, names);
    }
    PrintError(msg);
    return kExitUsage;
  }

  // A cache hit ran nothing: its log is the one of the attempt whose
  // outputs it reused.
  if (step->phase == NodePhase::kCached && !step->cached_from.empty() && options.attempt == 0) {
    const std::string& from = step->cached_from;
    const size_t slash = from.find('/');
    auto source = slash == std::string::npos
                      ? Result<StepRecord>(Error(Status::NotFound("no step")))
                      : store->GetStep(from.substr(0, slash), from.substr(slash + 1));
    if (source && !source->log_path.empty()) {
      std::cerr << "sluice: step " << step->instance << " was Cached: the log of " << from
                << ", whose outputs it reused\n";
      off_t offset = 0;
      if (!CopyNewBytes(source->log_path, &offset))
        std::cerr << "sluice: the log of " << from << " is gone (" << source->log_path << ")\n";
      return kExitOk;
    }
  }

  std::string log_path = step->log_path;
  if (options.attempt > 0) {
    auto executions = store->ListExecutions(run->id);
    if (!executions) {
      PrintError(executions.error().message());
      return kExitSystem;
    }
    log_path.clear();
    for (const auto& e : *executions) {
      if (e.instance == step->instance && e.attempt == options.attempt) log_path = e.log_path;
    }
    if (log_path.empty()) {
      PrintError("step " + step->instance + " has no attempt " + std::to_string(options.attempt) +
                 " (it made " + std::to_string(step->attempts) + ")");
      return kExitUsage;
    }
  }

  // An ended step, or a step of an ended run, has nothing more to follow.
  const bool ended = IsTerminal(step->phase) || IsTerminal(run->phase);
  if (!options.follow || ended) {
    off_t offset = 0;
    if (log_path.empty() || !CopyNewBytes(log_path, &offset)) {
      std::cerr << "sluice: step " << step->instance << " has no log yet (phase "
                << NodePhaseName(step->phase) << ")\n";
    }
    return kExitOk;
  }

  // Follow: print what is there, then poll the file and the step's phase.
  // A retry switches to the new attempt's log.
  off_t offset = 0;
  int attempts = step->attempts;
  for (;;) {
    if (!log_path.empty()) CopyNewBytes(log_path, &offset);
    if (IsTerminal(step->phase) && options.attempt == 0) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto now = store->GetStep(run->id, step->instance);
    if (!now) {
      PrintError(now.error().message());
      return kExitSystem;
    }
    auto run_now = store->GetRun(run->id);
    if (options.attempt == 0 && now->log_path != log_path && !now->log_path.empty()) {
      if (!log_path.empty()) CopyNewBytes(log_path, &offset);
      log_path = now->log_path;
      offset = 0;
      if (now->attempts != attempts) {
        std::cout << "--- attempt " << now->attempts << " ---\n";
        attempts = now->attempts;
      }
    }
    *step = std::move(*now);
    // A run that ended without reaching this step: nothing more will come.
    if (run_now && IsTerminal(run_now->phase) && !IsTerminal(step->phase)) break;
    if (options.attempt > 0 && (IsTerminal(step->phase) || step->attempts > options.attempt)) {
      CopyNewBytes(log_path, &offset);
      break;
    }
  }
  if (!log_path.empty()) CopyNewBytes(log_path, &offset);
  return kExitOk;
}

Dispatch RegisterQueryCommands(CLI::App& app, std::string& store) {
  auto status = std::make_shared<StatusOptions>();
  auto* status_cmd = app.add_subcommand("status", "Phase of a run and of each of its steps");
  status_cmd->add_option("RUN", status->run, "Run id, unique prefix, or latest")->required();
  status_cmd->add_option("--store", store, kStoreFlagHelp);
  AddOutputOption(status_cmd, &status->format, {"text", "wide", "json", "yaml", "name"});
  auto* show_cmd = app.add_subcommand(
      "show", "A run in detail: params, steps, outputs, metrics, artifacts, cache hits");
  show_cmd->add_option("RUN", status->run, "Run id, unique prefix, or latest")->required();
  show_cmd->add_option("--store", store, kStoreFlagHelp);
  AddOutputOption(show_cmd, &status->format, {"text", "json", "yaml", "name"});

  auto logs = std::make_shared<LogsOptions>();
  auto* logs_cmd = app.add_subcommand("logs", "Print a step's output (stdout and stderr)");
  logs_cmd->add_option("RUN", logs->run, "Run id, unique prefix, or latest")->required();
  logs_cmd->add_option("STEP", logs->step, "Step instance, e.g. prepare or train[1]")->required();
  logs_cmd->add_flag("-f,--follow", logs->follow, "Keep printing until the step ends");
  logs_cmd->add_option("--attempt", logs->attempt, "Attempt number (default: the latest)")
      ->check(CLI::PositiveNumber);
  logs_cmd->add_option("--store", store, kStoreFlagHelp);

  auto runs = std::make_shared<RunsOptions>();
  auto* runs_cmd = app.add_subcommand("runs", "List runs, newest first");
  runs_cmd->add_option("--pipeline", runs->pipeline, "Only runs of this pipeline (metadata.name)");
  runs_cmd->add_option("--status", runs->status,
                       "Only runs in this phase (Running, Succeeded, Failed, Error, Cancelled)");
  runs_cmd->add_option("--since", runs->since, "Only runs created within this duration, e.g. 2h or 7d");
  runs_cmd->add_option("--limit", runs->limit, "At most this many runs (default 50)")
      ->check(CLI::NonNegativeNumber);
  AddOutputOption(runs_cmd, &runs->format, {"text", "wide", "json", "yaml", "name"});
  runs_cmd->add_option("--store", store, kStoreFlagHelp);

  auto audit = std::make_shared<AuditOptions>();
  auto* audit_cmd = app.add_subcommand(
      "audit", "The server's audit log: every write through its API (who, what, when, the answer), newest first");
  audit_cmd->add_option("--since", audit->since, "Only entries within this duration, e.g. 2h or 7d");
  audit_cmd->add_option("--limit", audit->limit, "At most this many entries (default 50; 0 = all)")
      ->check(CLI::NonNegativeNumber);
  AddOutputOption(audit_cmd, &audit->format, {"text", "json", "yaml"});
  audit_cmd->add_option("--store", store, kStoreFlagHelp);

  return [&store, status, status_cmd, show_cmd, logs, logs_cmd, runs, runs_cmd, audit,
          audit_cmd]() -> std::optional<int> {
    status->store = logs->store = runs->store = audit->store = store;
    if (*audit_cmd) return Audit(*audit);
    if (*status_cmd) return ShowStatus(*status);
    if (*show_cmd) return Show(*status);
    if (*logs_cmd) return Logs(*logs);
    if (*runs_cmd) return Runs(*runs);
    return std::nullopt;
  };
}

}  // namespace sluice::cli
