// sluice run / resume / rerun: wire the store, the artifact store and the
// executors to a Runner, show live progress, and map the outcome to an exit
// code.
//
// Signals: SIGINT, SIGTERM and SIGUSR2 are blocked in every thread before
// any thread starts, and one watcher thread takes them with sigwait(): the
// first SIGINT/SIGTERM asks the Runner to cancel (SIGTERM to running steps,
// SIGKILL after the grace period, phases recorded Cancelled; the finally
// steps still run), the second (or a SIGUSR2, from `sluice cancel --now`)
// terminates the run: running steps, finally steps included, are killed at
// once and finally steps not started are Omitted; a third exits without
// waiting. Step processes get a clean signal mask from the local executor.
//
// Step logs: the local executor writes each attempt's output to a file; a
// tailer thread polls the files of running steps every 100 ms and prints
// complete lines as "[instance] line". When a step finishes, its file is
// drained on the runner's thread before the "done" line, so a step's lines
// always come before its result.

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <CLI/CLI.hpp>

#include "dsl/dsl.h"
#include "dsl/quantity.h"
#include "dsl/suggest.h"
#include "engine/store/artifact_store.h"
#include "engine/store/artifact_stores.h"
#include "engine/store/s3_artifact_store.h"
#include "engine/cli/commands.h"
#include "operators/serving/service_state.h"
#include "engine/cli/kubernetes_options.h"
#include "engine/cli/output.h"
#include "engine/file_lock.h"
#include "engine/process.h"
#include "engine/server/junit.h"
#include "engine/store/provenance.h"
#include "engine/run_id.h"
#include "engine/run/runner.h"
#include "engine/store/open_store.h"
#include "executors/local/local_executor.h"
#include "executors/local/supervisor.h"
#include "engine/compile/argo.h"
#include "engine/compile/manifests.h"
#include "engine/compile/serving_objects.h"
#include "executors/kubernetes/api/client.h"
#include "executors/kubernetes/api/kubeconfig.h"
#include "executors/kubernetes/kubernetes_executor.h"
#include "operators/kubernetes/manifests.h"

namespace sluice::cli {

namespace {

namespace fs = std::filesystem;

// "[15:30:12] done      " : the time and a word padded to one width.
std::string Clock();
std::string Prefix(const std::string& word) {
  std::string w = word;
  w.resize(std::max<size_t>(w.size(), 9), ' ');
  return "[" + Clock() + "] " + w + " ";
}

std::string Clock() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

// Serialises writes to stdout from the runner thread, the log tailer and
// the progress line's ticker.
std::mutex g_out_mu;

// The live progress line of a run on a terminal, "7/13 done, 2 running,
// 0 failed, 12s" (elapsed), kept as the last line: PrintLine erases it, prints its
// line and draws it again, and a ticker redraws it twice a second so the
// elapsed time moves. The total counts each step once until its foreach
// instances are seen, then its instances. Guarded by g_out_mu.
class ProgressLine {
 public:
  explicit ProgressLine(const PipelineSpec& spec) : start_(std::chrono::system_clock::now()) {
    for (const auto& s : spec.steps) planned_.insert(s.name);
    for (const auto& s : spec.finally_steps) planned_.insert(s.name);
  }

  // An instance is seen once: when it first starts (a retry starts it
  // again while it is still running), or when it finishes without having
  // started (a cache hit). Only the running ones are kept by name, so a
  // foreach of 100,000 items costs counters, not 100,000 names.
  void Started(const std::string& instance) {
    if (running_.insert(instance).second) Seen(instance);
  }
  void Finished(const std::string& instance, NodePhase phase) {
    if (running_.erase(instance) == 0) Seen(instance);
    ++done_;
    if (phase == NodePhase::kFailed || phase == NodePhase::kError) ++failed_;
  }

  // "\r<text>\x1b[K": the line drawn over the previous one.
  std::string Draw() const {
    size_t total = seen_;
    for (const auto& name : planned_)
      if (seen_per_step_.count(name) == 0) ++total;
    return "\r" + std::to_string(done_) + "/" + std::to_string(total) + " done, " +
           std::to_string(running_.size()) + " running, " + std::to_string(failed_) +
           " failed, " + Elapsed() + "\x1b[K";
  }
  static constexpr const char* kErase = "\r\x1b[K";

 private:
  void Seen(const std::string& instance) {
    ++seen_;
    ++seen_per_step_[instance.substr(0, instance.find('['))];
  }

  // Whole seconds ("12s", "3m05s"): a figure that changes once a second.
  std::string Elapsed() const {
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - start_).count();
    char buf[32];
    if (secs < 60) {
      std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(secs));
    } else {
      std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(secs / 60), static_cast<long long>(secs % 60));
    }
    return buf;
  }

  TimePoint start_;
  std::set<std::string> planned_, running_;
  std::map<std::string, size_t> seen_per_step_;  // step name -> instances seen
  size_t seen_ = 0, done_ = 0, failed_ = 0;
};

ProgressLine* g_progress = nullptr;  // set while a run draws one; under g_out_mu

void PrintLine(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_out_mu);
  if (g_progress != nullptr) {
    std::cout << ProgressLine::kErase << line << "\n" << g_progress->Draw() << std::flush;
  } else {
    std::cout << line << "\n" << std::flush;
  }
}

// Shows a ProgressLine while it lives, when stdout is a terminal; otherwise
// does nothing (plain lines only, for logs and pipes).
class ProgressTicker {
 public:
  explicit ProgressTicker(const PipelineSpec& spec) : line_(spec) {
    const char* term = std::getenv("TERM");
    if (::isatty(STDOUT_FILENO) != 1 || (term != nullptr && std::string(term) == "dumb")) return;
    {
      std::lock_guard<std::mutex> lock(g_out_mu);
      g_progress = &line_;
      std::cout << line_.Draw() << std::flush;
    }
    thread_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(mu_);
      while (!cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_; })) {
        std::lock_guard<std::mutex> out(g_out_mu);
        std::cout << line_.Draw() << std::flush;
      }
    });
  }
  ~ProgressTicker() { Stop(); }

  // Step events, from the runner's thread.
  void Started(const std::string& instance) {
    std::lock_guard<std::mutex> lock(g_out_mu);
    line_.Started(instance);
  }
  void Finished(const std::string& instance, NodePhase phase) {
    std::lock_guard<std::mutex> lock(g_out_mu);
    line_.Finished(instance, phase);
  }

  // Erases the line; later output is plain.
  void Stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    std::lock_guard<std::mutex> lock(g_out_mu);
    g_progress = nullptr;
    std::cout << ProgressLine::kErase << std::flush;
  }

 private:
  ProgressLine line_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Follows the log files of running steps and prints their lines.
class LogTailer {
 public:
  // Log files are at the layout engine/run/runner.h documents:
  // <state_dir>/runs/<run_id>/logs/<instance>.attempt<N>.log
  LogTailer(const std::string& state_dir, const std::string& run_id, bool enabled)
      : logs_dir_(state_dir + "/runs/" + run_id + "/logs/"), enabled_(enabled) {
    if (enabled_) thread_ = std::thread([this] { Loop(); });
  }
  ~LogTailer() { Stop(); }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // A new attempt of `instance` started: follow its log from the start.
  void Started(const std::string& instance, int attempt) {
    if (!enabled_) return;
    std::lock_guard<std::mutex> lock(mu_);
    Tail& t = tails_[instance];
    if (t.attempt != attempt) {
      DrainLocked(instance, t, /*final=*/true);
      t = Tail{};
      t.attempt = attempt;
      t.path = logs_dir_ + instance + ".attempt" + std::to_string(attempt) + ".log";
    }
  }

  // The attempt ended: print what is left (including a last partial line)
  // and stop following it.
  void Finished(const std::string& instance) {
    if (!enabled_) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tails_.find(instance);
    if (it == tails_.end()) return;
    DrainLocked(instance, it->second, /*final=*/true);
    tails_.erase(it);
  }

 private:
  struct Tail {
    int attempt = 0;
    std::string path;
    off_t offset = 0;
    std::string partial;
  };

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      for (auto& [instance, t] : tails_) DrainLocked(instance, t, /*final=*/false);
    }
  }

  // Caller holds mu_.
  void DrainLocked(const std::string& instance, Tail& t, bool final) {
    struct stat st;
    if (t.path.empty() || ::stat(t.path.c_str(), &st) != 0 || st.st_size <= t.offset) {
      if (final && !t.partial.empty()) {
        PrintLine("[" + instance + "] " + t.partial);
        t.partial.clear();
      }
      return;
    }
    std::ifstream in(t.path, std::ios::binary);
    if (!in) return;
    in.seekg(t.offset);
    std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    t.offset += static_cast<off_t>(chunk.size());
    t.partial += chunk;
    size_t start = 0;
    for (size_t nl; (nl = t.partial.find('\n', start)) != std::string::npos; start = nl + 1) {
      PrintLine("[" + instance + "] " + t.partial.substr(start, nl - start));
    }
    t.partial.erase(0, start);
    if (final && !t.partial.empty()) {
      PrintLine("[" + instance + "] " + t.partial);
      t.partial.clear();
    }
  }

  std::string logs_dir_;
  bool enabled_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::unordered_map<std::string, Tail> tails_;
  std::thread thread_;
};

// Takes SIGINT/SIGTERM with sigwait() on its own thread. Construct it before
// any other thread so that every thread inherits the blocked mask.
class SignalWatcher {
 public:
  SignalWatcher() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR2);  // `sluice cancel --now`
    sigaddset(&set_, SIGUSR1);  // our own "stop watching"
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
    thread_ = std::thread([this] { Loop(); });
  }
  ~SignalWatcher() {
    done_ = true;
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

  // The runner to cancel from now on. Before a runner is attached a signal
  // exits at once (nothing runs yet); after Detach() signals are ignored
  // (the run has ended and its summary is being printed).
  void Attach(Runner* runner, ExecutorRegistry* executors) {
    executors_.store(executors);
    runner_.store(runner);
    state_ = kAttached;
  }
  // Waits for a signal being handled (a Cancel() in progress) to finish, so
  // the runner and executors can be destroyed afterwards.
  void Detach() {
    std::lock_guard<std::mutex> lock(handling_mu_);
    state_ = kDetached;
    runner_.store(nullptr);
    executors_.store(nullptr);
  }

 private:
  // A kubeconfig credential plugin being waited for must not hold up the
  // exit or the cancellation (which uses the credentials it already has).
  static void StopExecPlugins() {
    k8s::InterruptExecPlugins();
  }
  void Loop() {
    for (;;) {
      int sig = 0;
      if (sigwait(&set_, &sig) != 0) continue;
      if (sig == SIGUSR1 && done_) return;
      if (sig == SIGUSR1) continue;
      if (state_ == kBefore) {
        StopExecPlugins();
        ::_exit(kExitCancelled);
      }
      std::lock_guard<std::mutex> lock(handling_mu_);
      if (state_ == kDetached) continue;
      int n = sig == SIGUSR2 ? std::max(2, ++count_) : ++count_;
      if (n == 1) {
        std::cerr << "\nsluice: " << (sig == SIGINT ? "interrupted" : "terminated")
                  << ": cancelling running steps; finally steps still run (Ctrl-C again to kill "
                     "everything now)\n";
        if (Runner* r = runner_.load()) r->Cancel();
        // After Cancel(): a start that fails for it is then seen as part of
        // the cancellation.
        StopExecPlugins();
      } else if (n == 2) {
        count_ = 2;
        std::cerr << (sig == SIGUSR2 ? "\nsluice: cancelled with --now: " : "sluice: ")
                  << "killing running steps; finally steps do not run\n";
        if (Runner* r = runner_.load()) r->Terminate(Duration(0));
      } else {
        ::_exit(kExitCancelled);
      }
    }
  }

  sigset_t set_;
  sigset_t old_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::atomic<int> count_{0};
  std::mutex handling_mu_;  // held while a signal is acted on
  enum State { kBefore, kAttached, kDetached };
  std::atomic<State> state_{kBefore};
  std::atomic<Runner*> runner_{nullptr};
  std::atomic<ExecutorRegistry*> executors_{nullptr};
};

}  // namespace

// The deploy / traffic-validation operators' program: next to this sluice
// binary (an install), in the build tree it was built in, or on PATH.
std::string FindServingBinary() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::vector<std::filesystem::path> candidates;
  if (!ec) candidates.push_back(self.parent_path() / "sluice-serving");
#ifdef SLUICE_SERVING_BUILD_PATH
  candidates.push_back(SLUICE_SERVING_BUILD_PATH);
#endif
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    size_t start = 0;
    while (start <= p.size()) {
      size_t end = p.find(':', start);
      if (end == std::string::npos) end = p.size();
      if (end > start) candidates.push_back(std::filesystem::path(p.substr(start, end - start)) / "sluice-serving");
      start = end + 1;
    }
  }
  for (const auto& c : candidates)
    if (::access(c.c_str(), X_OK) == 0) return c.string();
  return "";
}

namespace {

// The local services the run's deploy steps left serving (their model
// servers and canary proxy keep running after the run: that is the point),
// where each listens, and the command that stops it; "" when none.
std::string LeftRunning(const PipelineSpec& spec, const RunSummary& summary,
                        const std::string& state_dir, bool store_given) {
  std::set<std::string> services;
  for (const StepRecord& step : summary.steps) {
    const StepSpec* s = spec.FindStep(step.step);
    if (s == nullptr || s->type != "deploy" || !step.output_params.is_object()) continue;
    auto it = step.output_params.find("service");
    if (it != step.output_params.end() && it->is_string()) services.insert(it->get<std::string>());
  }
  std::string program = FindServingBinary();
  if (program.empty()) program = "sluice-serving";
  std::error_code ec;
  const std::filesystem::path cwd = std::filesystem::current_path(ec);
  const std::filesystem::path relative = std::filesystem::path(program).lexically_relative(cwd);
  if (!ec && !relative.empty() && *relative.begin() != "..") program = relative.string();
  std::ostringstream out;
  for (const std::string& service : services) {
    auto state = serving::LoadServiceState(state_dir, service);
    if (!state || !state->has_value() || !(*state)->proxy || !serving::IsAlive((*state)->proxy->process))
      continue;  // a Kubernetes service, or stopped already
    const serving::ServiceState& st = **state;
    out << "left running: service " << service << " at " << st.proxy->Endpoint()
        << " (canary proxy, pid " << st.proxy->process.pid << ")";
    for (const auto* backend : {&st.stable, &st.candidate}) {
      if (!*backend || !serving::IsAlive((*backend)->process)) continue;
      out << "; model server " << (*backend)->name << " at " << (*backend)->url << " (pid "
          << (*backend)->process.pid << ", " << (*backend)->traffic_percent << "% of the traffic)";
    }
    out << "\n  stop it: " << program << " undeploy --service " << service
        << (store_given ? " --state-dir " + state_dir : std::string()) << "\n";
  }
  return out.str();
}

}  // namespace

std::map<std::string, std::vector<std::string>> OperatorCommands() {
  std::map<std::string, std::vector<std::string>> commands;
  if (auto serving = FindServingBinary(); !serving.empty()) {
    commands["deploy"] = {serving, "deploy"};
    commands["traffic-validation"] = {serving, "validate"};
  }
  return commands;
}

namespace {

// Turns a stored, typed param value back into `-p` text for BindParams.
std::string ParamText(const Json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

struct Prepared {
  PipelineSpec spec;
  Json params;
};

// Loads and validates `file` (or, when it is gone, `stored_yaml`), then binds
// params. Prints diagnostics; returns nullopt with `*exit_code` set on error.
std::optional<Prepared> Prepare(const std::string& file, const std::string& stored_yaml,
                                const std::map<std::string, std::string>& values, int* exit_code) {
  dsl::LoadResult loaded;
  std::error_code ec;
  if (stored_yaml.empty() || fs::exists(file, ec)) {
    loaded = dsl::LoadPipelineFile(file);
  } else {
    std::cerr << "sluice: warning: " << file
              << " is gone; using the pipeline version recorded with the run\n";
    loaded = dsl::LoadPipelineString(stored_yaml, file);
  }
  if (!loaded.ok()) {
    std::cerr << dsl::FormatDiagnosticsText(loaded.diagnostics);
    std::cerr << "sluice: " << loaded.ErrorCount() << " error"
              << (loaded.ErrorCount() == 1 ? "" : "s") << " in " << file << "; nothing was run\n";
    *exit_code = kExitUsage;
    return std::nullopt;
  }
  for (const auto& d : loaded.diagnostics) std::cerr << d.ToString() << "\n";  // warnings
  auto params = dsl::BindParams(*loaded.spec, values);
  if (!params) {
    PrintError(params.error().message());
    *exit_code = kExitUsage;
    return std::nullopt;
  }
  return Prepared{std::move(*loaded.spec), std::move(*params)};
}

// The executor a step runs on (kubernetes_options.h).
std::string ExecutorOf(const StepSpec& step, const RunCommandOptions& options,
                       const PipelineSpec& spec) {
  return cli::ExecutorOf(step, options.executor, spec);
}

// True when some step runs on Kubernetes.
bool NeedsKubernetes(const RunCommandOptions& options, const PipelineSpec& spec) {
  return cli::NeedsKubernetes(spec, options.executor);
}

// The Kubernetes flags of `options` for pipeline `spec`, as `sluice serve`
// has them: the artifact store is --artifacts, else the pipeline's.
KubernetesFlags FlagsOf(const RunCommandOptions& options, const PipelineSpec& spec) {
  KubernetesFlags flags;
  flags.kubeconfig = options.kubeconfig;
  flags.context = options.context;
  flags.namespace_ = options.namespace_;
  flags.workspace_pvc = options.workspace_pvc;
  flags.workspace_host_dir = options.workspace_host_dir;
  flags.artifacts = !options.artifacts.empty() ? options.artifacts : spec.artifacts;
  flags.artifacts_endpoint = options.artifacts_endpoint;
  flags.launcher_image = options.launcher_image;
  return flags;
}

// The Kubernetes executor's settings, as `sluice serve` builds them
// (KubernetesOptionsFor).
Result<KubernetesExecutorOptions> KubernetesOptions(const RunCommandOptions& options,
                                                    const PipelineSpec& spec) {
  return KubernetesOptionsFor(FlagsOf(options, spec), &spec);
}

// run --dry-run: the objects the Kubernetes executor would create, printed
// as YAML by the code path of `sluice compile --target manifests`; runs
// nothing, needs no cluster and no store.
int DryRun(const RunCommandOptions& options, const Prepared& prepared) {
  const PipelineSpec& spec = prepared.spec;
  if (!NeedsKubernetes(options, spec)) {
    PrintError("--dry-run prints the Kubernetes objects a run would create, and no step of " +
               options.file + " runs on Kubernetes; add --executor kubernetes");
    return kExitUsage;
  }
  // The objects are printed all the same: a dry run shows what would be
  // applied, and says that the run itself would be refused.
  if (Status st = CheckFilesCanMove(spec, FlagsOf(options, spec), options.executor); !st.ok())
    std::cerr << "sluice: warning: a run would be refused: " << st.message() << "\n";
  auto k8s = KubernetesOptions(options, spec);
  if (!k8s) {
    PrintError(k8s.error().message());
    return kExitUsage;
  }
  compile::ManifestsOptions mo;
  mo.executor = std::move(*k8s);
  if (!options.run_id.empty()) mo.run_id = options.run_id;
  mo.serving = compile::OperatorServingObjects();  // deploy steps' Deployments and Services
  std::error_code ec;
  mo.pipeline_dir = fs::absolute(options.file, ec).parent_path().lexically_normal().string();
  // Every step is compiled (a Kubernetes step's dependencies may run
  // locally), and the objects of local steps are then left out; a local step
  // needs no image, so it gets a placeholder one.
  PipelineSpec all = spec;
  for (auto* list : {&all.steps, &all.finally_steps}) {
    for (auto& step : *list)
      if (step.image.empty() && ExecutorOf(step, options, spec) != "kubernetes") step.image = "<local>";
  }
  auto objects = compile::CompileToManifests(all, prepared.params, mo);
  if (!objects) {
    PrintError(objects.error().message());
    return ExitCodeFor(objects.error());
  }
  // Steps that run locally create no objects.
  std::vector<Json> shown;
  std::vector<std::string> local;
  for (Json& object : *objects) {
    std::string step = object["metadata"]["annotations"].value("sluice.dev/step", "");
    const StepSpec* s = spec.FindStep(step);
    if (s == nullptr || ExecutorOf(*s, options, spec) == "kubernetes") {
      shown.push_back(std::move(object));
    } else if (std::find(local.begin(), local.end(), step) == local.end()) {
      local.push_back(step);
    }
  }
  std::cout << compile::ToYaml(shown);
  if (!local.empty()) {
    std::string names;
    for (const auto& n : local) names += (names.empty() ? "" : ", ") + n;
    std::cerr << "sluice: dry run: " << local.size() << " step" << (local.size() == 1 ? "" : "s")
              << " run locally and create no Kubernetes objects: " << names << "\n";
  }
  return kExitOk;
}

const char* EventWord(const RunEvent& e) {
  switch (e.phase) {
    case NodePhase::kSucceeded: return "done";
    case NodePhase::kCached: return "cached";
    case NodePhase::kSkipped: return "skipped";
    case NodePhase::kOmitted: return "omitted";
    case NodePhase::kCancelled: return "cancelled";
    default: return "FAILED";
  }
}

// The steps of a run, one row each; with `skip_cached` (-q) the Cached
// steps are counted in one line after the table instead.
std::string SummaryTable(const RunSummary& summary) {
  Table table({"STEP", "PHASE", "ATTEMPTS", "DURATION", "EXIT"});
  for (const auto& s : summary.steps) {
    table.AddRow({s.instance, NodePhaseName(s.phase), std::to_string(s.attempts),
                  ElapsedText(s.started_at, s.finished_at),
                  s.exit_code >= 0 ? std::to_string(s.exit_code) : "-"});
  }
  return table.ToString();
}

int ExitCodeForRun(RunPhase phase) {
  switch (phase) {
    case RunPhase::kSucceeded: return kExitOk;
    case RunPhase::kCancelled: return kExitCancelled;
    default: return kExitFailed;
  }
}

// What the three commands share once the spec, params and run ids are known.
int Execute(const RunCommandOptions& options, Prepared prepared, const std::string& state_dir,
            Store* store, const std::string& run_id, const std::string& resume_run_id,
            const std::vector<std::string>& rerun_from, SignalWatcher* signals) {
  RunOptions run_options;
  run_options.run_id = run_id;
  run_options.params = std::move(prepared.params);
  run_options.parallelism = options.parallelism;
  run_options.keep_going = options.keep_going;
  run_options.no_cache = options.no_cache;
  run_options.default_executor = options.executor;
  run_options.state_dir = state_dir;
  run_options.operator_commands = OperatorCommands();
  run_options.resume_run_id = resume_run_id;
  run_options.rerun_from = rerun_from;
  if (!options.cpus.empty()) {
    auto cpu = dsl::ParseCpu(options.cpus);
    if (!cpu) {
      PrintError("--cpus: " + cpu.error().message());
      return kExitUsage;
    }
    run_options.cpu_budget_millis = *cpu;
  }
  if (!options.memory.empty()) {
    auto mem = dsl::ParseMemory(options.memory);
    if (!mem) {
      PrintError("--memory: " + mem.error().message());
      return kExitUsage;
    }
    run_options.memory_budget_bytes = *mem;
  }
  if (options.gpus >= 0) run_options.gpu_budget = options.gpus;
  // Operator steps bound for the cluster run here as its controllers, and
  // an all-Kubernetes run is not held back by this host's budgets; `sluice
  // serve` prepares its runs the same way (kubernetes_options.h).
  HostLimitFlags given;
  given.cpus = !options.cpus.empty();
  given.memory = !options.memory.empty();
  given.gpus = options.gpus >= 0;
  given.parallelism = options.parallelism != 0;
  PrepareRunForKubernetes(prepared.spec, FlagsOf(options, prepared.spec), given, run_options);

  const ArtifactStoreChoice choice =
      ChooseArtifactStore({{options.artifacts, "--artifacts"}, {prepared.spec.artifacts, "the pipeline's artifacts:"}});
  auto artifacts = OpenArtifactStore(choice.url, options.artifacts_endpoint, state_dir);
  if (!artifacts) return Fail(artifacts.error());
  ExecutorRegistry executors;
  LocalExecutorOptions local;
  local.parallelism = 0;  // the runner budgets slots (-j) itself
  Status st = RegisterLocalExecutor(executors, local);
  if (!st.ok()) {
    PrintError(st.message());
    return kExitSystem;
  }

  // The kubernetes executor connects to a cluster: set it up only when
  // something will run there.
  if (NeedsKubernetes(options, prepared.spec)) {
    if (Status files = CheckFilesCanMove(prepared.spec, FlagsOf(options, prepared.spec), options.executor); !files.ok()) {
      PrintError(files.message());
      return kExitUsage;
    }
    auto k8s = KubernetesOptions(options, prepared.spec);
    if (!k8s) {
      PrintError(k8s.error().message());
      return kExitUsage;
    }
    if (!k8s->manifests.object_storage.url.empty()) run_options.launcher_executors.insert("kubernetes");
    if (std::string warning = WorkspaceWarning(*k8s, state_dir); !warning.empty())
      std::cerr << "sluice: warning: " << warning << "\n";
    Status kst = RegisterKubernetesExecutor(executors, std::move(*k8s));
    if (!kst.ok()) {
      PrintError("kubernetes executor: " + kst.message());
      return kExitSystem;
    }
  }

  LogTailer tailer(state_dir, run_id, !options.quiet);
  ProgressTicker progress(prepared.spec);
  std::unordered_map<std::string, TimePoint> started;
  // -q prints one line per run (its outcome), none per step.
  run_options.on_event = [&](const RunEvent& e) {
    switch (e.kind) {
      case RunEvent::Kind::kRunStarted:
        break;
      case RunEvent::Kind::kStepStarted:
        started[e.instance] = std::chrono::system_clock::now();
        progress.Started(e.instance);
        if (!options.quiet) {
          PrintLine(Prefix("start") + e.instance +
                    (e.attempt > 1 ? " (attempt " + std::to_string(e.attempt) + ")" : ""));
        }
        tailer.Started(e.instance, e.attempt);
        break;
      case RunEvent::Kind::kStepRetrying:
        tailer.Finished(e.instance);
        if (options.quiet) break;
        PrintLine(Prefix("retry") + e.instance + " after attempt " +
                  std::to_string(e.attempt) + (e.message.empty() ? "" : ": " + e.message));
        break;
      case RunEvent::Kind::kStepFinished: {
        tailer.Finished(e.instance);
        progress.Finished(e.instance, e.phase);
        // Dropped now: a run of 100,000 instances keeps no name it is done with.
        std::optional<TimePoint> began;
        if (auto it = started.find(e.instance); it != started.end()) {
          began = it->second;
          started.erase(it);
        }
        if (options.quiet) break;
        std::string line = Prefix(EventWord(e)) + e.instance + "  " + NodePhaseName(e.phase);
        if (began) line += "  " + ElapsedText(*began, std::chrono::system_clock::now());
        if (e.attempt > 1) line += "  attempt " + std::to_string(e.attempt);
        if (!e.message.empty() && e.phase != NodePhase::kSucceeded) line += "  " + e.message;
        PrintLine(line);
        break;
      }
      case RunEvent::Kind::kLogLine:
        if (!options.quiet) PrintLine("[" + e.instance + "] " + e.message);
        break;
      case RunEvent::Kind::kRunFinished:
        break;
    }
  };

  if (!options.quiet) {
    PrintLine("sluice: run " + run_id + " of " + prepared.spec.name + " (store " + state_dir +
              (choice.url.empty() ? "" : ", artifacts " + (*artifacts)->Location()) + ")");
  }
  Runner runner(prepared.spec, store, artifacts->get(), &executors, std::move(run_options));
  signals->Attach(&runner, &executors);
  auto summary = runner.Run();
  signals->Detach();
  tailer.Stop();
  progress.Stop();
  if (!summary) {
    PrintError(summary.error().message());
    int code = ExitCodeFor(summary.error());
    return code == kExitOk ? kExitSystem : code;
  }
  std::lock_guard<std::mutex> lock(g_out_mu);
  if (!options.quiet) std::cout << "\n" << SummaryTable(*summary) << "\n";
  std::cout << "run " << summary->run.id << " " << RunPhaseName(summary->run.phase) << " in "
            << ElapsedText(summary->run.started_at, summary->run.finished_at);
  if (!summary->run.message.empty()) std::cout << ": " << summary->run.message;
  std::cout << "\n";
  if (summary->run.phase != RunPhase::kSucceeded && !options.quiet) {
    std::cout << "(sluice status " << summary->run.id << " / sluice logs " << summary->run.id
              << " STEP)\n";
  }
  std::cout << LeftRunning(prepared.spec, *summary, state_dir, !options.store.empty());
  std::cout.flush();
  if (!options.junit.empty()) {
    // CI systems show the steps as test cases (docs/ci.md).
    if (Status st = server::WriteJunitXml(*summary, options.junit); !st.ok()) {
      PrintError("--junit: " + st.message());
      return kExitSystem;
    }
  }
  return ExitCodeForRun(summary->run.phase);
}

}  // namespace

namespace {

// A --run-id names <store>/runs/<id>: checked before anything is loaded or
// made. True when it is absent or valid; else prints why.
bool RunIdFlagValid(const RunCommandOptions& options) {
  if (options.run_id.empty()) return true;
  Status s = ValidateRunId(options.run_id);
  if (!s.ok()) PrintError("--run-id: " + s.message());
  return s.ok();
}

}  // namespace

int Run(const RunCommandOptions& options) {
  SignalWatcher signals;  // first: every later thread inherits the mask
  if (!RunIdFlagValid(options)) return kExitUsage;
  auto values = ParseParamFlags(options.params);
  if (!values) {
    PrintError(values.error().message());
    return kExitUsage;
  }
  int code = kExitOk;
  auto prepared = Prepare(options.file, "", *values, &code);
  if (!prepared) return code;
  if (options.dry_run) return DryRun(options, *prepared);
  std::string state_dir = ResolveStateDir(options.store);
  auto store = OpenStore(StoreLocation(options.store), {.create_if_missing = true});
  if (!store) {
    PrintError(store.error().message());
    return kExitSystem;
  }
  std::string run_id = options.run_id.empty() ? NewRunId(prepared->spec.name, std::chrono::system_clock::now()) : options.run_id;
  return Execute(options, std::move(*prepared), state_dir, store->get(), run_id, "", {}, &signals);
}

namespace {

// Whether the process that drives `run` is alive: its lock when the run has
// one (robust against pid reuse), else whether its recorded pid exists.
bool DriverAlive(const std::string& state_dir, const RunRecord& run) {
  auto driven = IsRunDriven(state_dir, run.id);
  if (driven && driven->has_value()) return **driven;
  return run.pid > 0 && ::kill(run.pid, 0) == 0;
}

// resume and rerun: the old run's pipeline and params, with -p overrides.
int Continue(const RunCommandOptions& options, bool rerun) {
  SignalWatcher signals;
  if (!RunIdFlagValid(options)) return kExitUsage;
  std::string state_dir = ResolveStateDir(options.store);
  auto store = OpenStore(StoreLocation(options.store), {.create_if_missing = false});
  if (!store) {
    PrintError(store.error().message());
    return ExitCodeFor(store.error());
  }
  auto old = FindRun(**store, options.resume_run);
  if (!old) {
    PrintError(old.error().message());
    return ExitCodeFor(old.error());
  }
  if (!rerun && old->phase == RunPhase::kRunning && DriverAlive(state_dir, *old)) {
    PrintError("run " + old->id + " is still running (pid " + std::to_string(old->pid) +
               "); stop it first or wait for it");
    return kExitUsage;
  }
  std::map<std::string, std::string> values;
  for (const auto& [name, value] : old->params.items()) values[name] = ParamText(value);
  auto overrides = ParseParamFlags(options.params);
  if (!overrides) {
    PrintError(overrides.error().message());
    return kExitUsage;
  }
  for (const auto& [name, value] : *overrides) values[name] = value;
  // A secret param is recorded as "<redacted>", never its value: it must be
  // given again, as it was the first time.
  std::string missing;
  for (const auto& [name, value] : old->params.items())
    if (value == "<redacted>" && !overrides->count(name)) missing += " -p " + name + "=VALUE";
  if (!missing.empty()) {
    PrintError(std::string(rerun ? "rerun" : "resume") + ": run " + old->id +
               " has secret parameters, which are not recorded; give them again:" + missing);
    return kExitUsage;
  }
  int code = kExitOk;
  std::string file = options.file.empty() ? old->pipeline_file : options.file;
  auto prepared = Prepare(file, old->pipeline_yaml, values, &code);
  if (!prepared) return code;
  if (rerun) {
    for (const auto& step : options.rerun_from) {
      if (!prepared->spec.FindStep(step)) {
        std::vector<std::string> names;
        for (const auto* list : {&prepared->spec.steps, &prepared->spec.finally_steps})
          for (const StepSpec& s : *list) names.push_back(s.name);
        PrintError("--from: pipeline " + prepared->spec.name + " has no step '" + step + "'" +
                   dsl::DidYouMean(step, names));
        return kExitUsage;
      }
    }
  }
  std::string run_id = rerun ? (options.run_id.empty() ? NewRunId(prepared->spec.name, std::chrono::system_clock::now()) : options.run_id)
                             : old->id;
  // The run goes on where it ran: `run --executor kubernetes` is resumed on
  // Kubernetes (which adopts the objects still there) unless told otherwise.
  RunCommandOptions continued = options;
  if (continued.executor.empty()) continued.executor = old->executor;
  // Its artifact bytes are where it kept them, unless told otherwise.
  if (continued.artifacts.empty() && !old->artifacts.empty()) {
    continued.artifacts = old->artifacts;
    if (!options.quiet) {
      PrintLine("sluice: artifacts in " + old->artifacts + ", where run " + old->id +
                " kept them (--artifacts to use another store)");
    }
  }
  // A resume goes on as the run started: a --no-cache run takes no hits.
  if (!rerun && old->no_cache) continued.no_cache = true;
  return Execute(continued, std::move(*prepared), state_dir, store->get(), run_id, old->id,
                 rerun ? options.rerun_from : std::vector<std::string>{}, &signals);
}

}  // namespace

int Resume(const RunCommandOptions& options) { return Continue(options, /*rerun=*/false); }

int Rerun(const RunCommandOptions& options) { return Continue(options, /*rerun=*/true); }


// ---------------------------------------------------------------------------
// sluice cancel RUN
//
// A run is driven by the one sluice process recorded with it (RunRecord::host
// and ::pid). When that process is alive on this host, `cancel` sends it
// SIGTERM, which it handles exactly like Ctrl-C (the Runner cancels: local
// steps get SIGTERM then SIGKILL, Kubernetes objects are deleted with
// Background propagation, phases are recorded Cancelled), and waits, bounded
// by --wait, for that process to exit (a pidfd, no polling). When the process
// is gone (kill -9, a crash, a reboot), nobody will ever finish the run:
// `cancel` deletes the run's Kubernetes objects itself (by the run label)
// and records the run and its unfinished steps Cancelled.

namespace {

// The arguments of process `pid` (empty when it is gone or unreadable).
std::vector<std::string> ProcessArgs(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\0', start);
    if (end == std::string::npos) end = text.size();
    args.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return args;
}

// Records the run and its unfinished steps Cancelled.
Status RecordCancelled(Store& store, RunRecord run, const std::string& message) {
  const TimePoint now = std::chrono::system_clock::now();
  auto steps = store.ListSteps(run.id);
  if (!steps) return steps.error();
  for (StepRecord step : *steps) {
    if (IsTerminal(step.phase)) continue;
    step.phase = NodePhase::kCancelled;
    step.message = message;
    step.finished_at = now;
    if (Status st = store.PutStep(step); !st.ok()) return st;
  }
  run.phase = RunPhase::kCancelled;
  run.message = message;
  run.finished_at = now;
  run.pid = 0;
  return store.UpdateRun(run);
}

// Deletes every object of the run (label sluice.dev/run: Jobs, bare Pods,
// TFJobs, PyTorchJobs, TrainJobs, `type: resource` objects)
// in the namespaces its steps use; returns how many objects there were.
Result<size_t> DeleteRunObjects(const CancelOptions& options, const RunRecord& run,
                                const PipelineSpec& spec) {
  KubernetesFlags flags;
  flags.kubeconfig = options.kubeconfig;
  flags.context = options.context;
  flags.namespace_ = options.namespace_;
  auto built = KubernetesOptionsFor(flags, &spec);
  if (!built) return Error(built.error());
  const KubernetesExecutorOptions& k8s = *built;
  auto config = k8s::LoadRestConfig(k8s.kubeconfig);
  if (!config) return Error(config.error());
  auto client = k8s::Client::Create(*config);
  if (!client) return Error(client.error());
  std::vector<std::string> namespaces;
  auto add = [&](const std::string& ns) {
    if (!ns.empty() && std::find(namespaces.begin(), namespaces.end(), ns) == namespaces.end())
      namespaces.push_back(ns);
  };
  add(!k8s.manifests.namespace_.empty() ? k8s.manifests.namespace_
      : !config->namespace_.empty()     ? config->namespace_
                                        : "default");
  for (const auto* list : {&spec.steps, &spec.finally_steps}) {
    for (const auto& step : *list) {
      const Json& k = step.config.contains("kubernetes") ? step.config["kubernetes"] : Json();
      if (k.is_object() && k.contains("namespace") && k["namespace"].is_string())
        add(k["namespace"].get<std::string>());
    }
  }
  // The kinds a run's objects can have: sluice's own, each of its step
  // types' kinds (a TrainJob), and each kind its steps of any kind (`type:
  // resource`) name.
  std::vector<k8s::ResourceKind> kinds = {k8s::JobKind(), k8s::TFJobKind(), k8s::PyTorchJobKind(), k8s::PodKind()};
  for (const auto* list : {&spec.steps, &spec.finally_steps}) {
    for (const auto& step : *list) {
      const Operator* op = OperatorRegistry::Global().Find(step.type);
      if (!op || !op->Kind()) continue;
      std::optional<KubernetesKind> kind = op->Kind();
      if (kind->plural.empty()) {
        Task task;
        task.run_id = run.id;
        task.step = task.instance = step.name;
        task.config = step.config;
        auto object = op->KubernetesObject(task, {});
        kind = object ? op->KindOf(*object) : std::nullopt;
      }
      if (!kind) continue;
      k8s::ResourceKind rk{kind->api_version, kind->kind, kind->plural, true};
      if (std::none_of(kinds.begin(), kinds.end(), [&](const k8s::ResourceKind& k) { return k.plural == rk.plural; }))
        kinds.push_back(rk);
    }
  }
  const std::string selector = operators::RunSelector(run.id);
  size_t found = 0;
  for (const auto& ns : namespaces) {
    // Bare pods by their own label: a Job's pods go with their Job.
    for (const k8s::ResourceKind& kind : kinds) {
      const std::string which = kind.plural == "pods" ? k8s::BarePodSelector(run.id) : selector;
      auto list = (*client)->List(kind, ns, which);
      if (!list && list.error().code() == StatusCode::kNotFound) continue;  // no such CRD
      if (!list) return Error(list.error());
      if (list->items.empty()) continue;
      found += list->items.size();
      Status st = (*client)->DeleteCollection(kind, ns, which, k8s::Propagation::kBackground);
      if (!st.ok()) return Error(st);
    }
  }
  return found;
}

}  // namespace

int Cancel(const CancelOptions& options) {
  auto wait = dsl::ParseDuration(options.wait);
  if (!wait) {
    PrintError("--wait: " + wait.error().message());
    return kExitUsage;
  }
  auto opened = OpenRun(options.store, options.run);
  if (!opened) return Fail(opened.error());
  Store* store = opened->store.get();
  const RunRecord* run = &opened->run;
  if (IsTerminal(run->phase)) {
    PrintError("run " + run->id + " has already ended (" + RunPhaseName(run->phase) +
               "); there is nothing to cancel");
    return kExitUsage;
  }
  if (!run->host.empty() && run->host != HostName()) {
    PrintError("run " + run->id + " is driven by sluice process " + std::to_string(run->pid) +
               " on host '" + run->host + "'; run `sluice cancel` there");
    return kExitUsage;
  }

  // The driving process, if it is alive and still a sluice (pids are reused).
  std::vector<std::string> args = run->pid > 0 ? ProcessArgs(run->pid) : std::vector<std::string>{};
  bool alive = !args.empty() && fs::path(args[0]).filename().string().rfind("sluice", 0) == 0 &&
               run->pid != ::getpid();
  if (alive) {
    if (std::find(args.begin(), args.end(), "serve") != args.end()) {
      PrintError("run " + run->id + " is driven by `sluice serve` (pid " + std::to_string(run->pid) +
                 "); cancel it through the server: POST /api/v1/runs/" + run->id + "/cancel");
      return kExitUsage;
    }
    int pidfd = PidfdOpen(run->pid);
    const int signal = options.now ? SIGUSR2 : SIGTERM;
    if (::kill(run->pid, signal) != 0) {
      if (pidfd >= 0) ::close(pidfd);
      PrintError("cannot signal sluice process " + std::to_string(run->pid) + " driving run " +
                 run->id + ": " + std::strerror(errno));
      return kExitSystem;
    }
    std::cout << "sluice: cancelling run " << run->id << ": asked sluice process " << run->pid
              << (options.now ? " to stop now, without finally steps (SIGUSR2)\n"
                              : " to stop (SIGTERM); its finally steps still run\n")
              << std::flush;
    if (wait->count() == 0) {
      if (pidfd >= 0) ::close(pidfd);
      return kExitOk;
    }
    bool exited = false;
    if (pidfd >= 0) {
      exited = WaitForPidfd(pidfd, *wait);
      ::close(pidfd);
    }
    if (!exited) {
      PrintError("sluice process " + std::to_string(run->pid) + " has not stopped within " +
                 options.wait + "; it goes on cancelling (sluice status " + run->id + ")");
      return kExitSystem;
    }
    auto after = store->GetRun(run->id);
    if (!after) {
      PrintError(after.error().message());
      return kExitSystem;
    }
    std::cout << "run " << after->id << " " << RunPhaseName(after->phase) << "\n";
    return kExitOk;
  }

  // Nobody drives the run any more: clean up here.
  std::string how;
  auto loaded = dsl::LoadPipelineString(run->pipeline_yaml, run->pipeline_file);
  if (loaded.ok()) {
    RunCommandOptions ro;
    ro.executor = run->executor;
    if (NeedsKubernetes(ro, *loaded.spec)) {
      auto deleted = DeleteRunObjects(options, *run, *loaded.spec);
      if (!deleted) {
        PrintError("run " + run->id + ": cannot delete its Kubernetes objects: " +
                   deleted.error().message() + "; the run is left as it was");
        return kExitSystem;
      }
      how = "; deleted its " + std::to_string(*deleted) + " Kubernetes object" +
            (*deleted == 1 ? "" : "s");
    }
  }
  // Local steps outlive their driver under their supervisors: stop them.
  int stopped = 0;
  if (auto steps = store->ListSteps(run->id)) {
    for (const StepRecord& step : *steps) {
      if (!IsTerminal(step.phase) && !step.log_path.empty())
        stopped += local::SignalSupervisors(step.log_path, SIGTERM);
    }
  }
  if (stopped > 0) {
    how += "; stopped its " + std::to_string(stopped) + " local step process" + (stopped == 1 ? "" : "es");
  }
  std::string message = "cancelled by sluice cancel (the sluice process that drove it" +
                        (run->pid > 0 ? ", pid " + std::to_string(run->pid) + "," : std::string()) +
                        " was gone)";
  if (Status st = RecordCancelled(*store, *run, message); !st.ok()) {
    PrintError(st.message());
    return kExitSystem;
  }
  std::cout << "run " << run->id << " Cancelled: its sluice process was gone" << how << "\n";
  return kExitOk;
}

namespace {

// The options that run, resume and rerun share.
void AddRunOptions(CLI::App* cmd, RunCommandOptions& run, std::string& store) {
  cmd->add_option("-p,--param", run.params, "Parameter value NAME=VALUE (repeatable)")
      ->allow_extra_args(false)
      ->type_name("NAME=VALUE");
  cmd->add_option("-j,--parallelism", run.parallelism,
                  "Steps run at once (default: number of CPUs)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--keep-going", run.keep_going,
                "After a step fails, go on with the steps that do not depend on it");
  cmd->add_option("--store", store, kStoreFlagHelp);
  cmd->add_option("--executor", run.executor, "Executor for steps that name none (local, kubernetes)");
  cmd->add_flag("--no-cache", run.no_cache, "Run every step; do not reuse earlier outputs");
  cmd->add_option("--cpus", run.cpus, "CPU budget for local steps, e.g. 4 or 1500m (default: all)");
  cmd->add_option("--memory", run.memory, "Memory budget for local steps, e.g. 8Gi (default: all)");
  cmd->add_option("--gpus", run.gpus, "GPUs available to local steps (default 0)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("-q,--quiet", run.quiet, "Do not stream step output; progress and summary only");
  cmd->add_option("--run-id", run.run_id, "Id for the new run (default: <pipeline>-<time>-<random>)");
  cmd->add_option("--junit", run.junit, "Write the steps as a JUnit XML report to FILE (for CI)");
  cmd->add_flag("--wait", run.wait, "Wait for the run to end (what a local run always does; for CI scripts)");
  cmd->add_option("--kubeconfig", run.kubeconfig, "Kubeconfig file for the kubernetes executor");
  cmd->add_option("--context", run.context, "Kubeconfig context (default: current-context)");
  cmd->add_option("-n,--namespace", run.namespace_,
                  "Kubernetes namespace (default: the pipeline's, then the context's)");
  cmd->add_option("--workspace-pvc", run.workspace_pvc,
                  "Kubernetes: RWX PersistentVolumeClaim mounted into every pod at /sluice (artifacts between pods)");
  cmd->add_option("--workspace-host-dir", run.workspace_host_dir,
                  "Kubernetes: where this host sees the --workspace-pvc volume (put --store under it)");
  cmd->add_option("--artifacts", run.artifacts, kArtifactsFlagHelp);
  cmd->add_option("--artifacts-endpoint", run.artifacts_endpoint, kArtifactsEndpointFlagHelp);
  cmd->add_option("--launcher-image", run.launcher_image,
                  "Kubernetes with s3:// --artifacts: image holding /usr/local/bin/sluice-launcher (default: "
                  "ghcr.io/sluice-dev/sluice:<version>)");
}

}  // namespace

Dispatch RegisterRunCommands(CLI::App& app, std::string& store) {
  auto run = std::make_shared<RunCommandOptions>();
  auto* run_cmd = app.add_subcommand("run", "Run a pipeline, with live progress and a summary");
  run_cmd->add_option("FILE", run->file, "Pipeline file")->required();
  AddRunOptions(run_cmd, *run, store);
  run_cmd->add_flag("--dry-run", run->dry_run,
                    "Print the Kubernetes objects the run would create (with --executor kubernetes); run nothing");

  auto* resume_cmd = app.add_subcommand(
      "resume", "Continue a failed or interrupted run: keep succeeded steps, run the rest");
  resume_cmd->add_option("RUN", run->resume_run, "Run id, unique prefix, or latest")->required();
  resume_cmd->add_option("--file", run->file,
                         "Pipeline file (default: the run's file; its edits are recorded)");
  AddRunOptions(resume_cmd, *run, store);

  auto* rerun_cmd = app.add_subcommand(
      "rerun", "Run a step and everything downstream again, reusing the upstream outputs");
  rerun_cmd->add_option("RUN", run->resume_run, "Run id, unique prefix, or latest")->required();
  rerun_cmd->add_option("--from", run->rerun_from, "Step to run again (repeatable)")
      ->required()
      ->allow_extra_args(false);
  rerun_cmd->add_option("--file", run->file, "Pipeline file (default: the run's file)");
  AddRunOptions(rerun_cmd, *run, store);

  return [run, &store, run_cmd, resume_cmd, rerun_cmd]() -> std::optional<int> {
    run->store = store;
    if (*run_cmd) return Run(*run);
    if (*resume_cmd) return Resume(*run);
    if (*rerun_cmd) return Rerun(*run);
    return std::nullopt;
  };
}

Dispatch RegisterCancelCommand(CLI::App& app, std::string& store) {
  auto cancel = std::make_shared<CancelOptions>();
  auto* cancel_cmd = app.add_subcommand(
      "cancel", "Cancel a running run: stop its steps, delete its Kubernetes objects");
  cancel_cmd->add_option("RUN", cancel->run, "Run id, unique prefix, or latest")->required();
  cancel_cmd->add_option("--store", store, kStoreFlagHelp);
  cancel_cmd->add_option("--wait", cancel->wait,
                         "How long to wait for the run's sluice process to stop (default 60s; 0s: do not wait)");
  cancel_cmd->add_flag("--now", cancel->now,
                       "Stop at once: kill running steps and do not run the finally steps");
  cancel_cmd->add_option("--kubeconfig", cancel->kubeconfig,
                         "Kubeconfig file, to delete the objects of a run whose sluice process is gone");
  cancel_cmd->add_option("--context", cancel->context, "Kubeconfig context (default: current-context)");
  cancel_cmd->add_option("-n,--namespace", cancel->namespace_,
                         "Kubernetes namespace (default: the pipeline's, then the context's)");

  return [cancel, &store, cancel_cmd]() -> std::optional<int> {
    if (!*cancel_cmd) return std::nullopt;
    cancel->store = store;
    return Cancel(*cancel);
  };
}

}  // namespace sluice::cli
