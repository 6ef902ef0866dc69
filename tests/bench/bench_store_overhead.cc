// What the store adds to a run (issue 3): runs a pipeline in-process with
// the real Runner and local executor, either with the store on (SQLite in
// WAL mode + the content-addressed artifact store, as `sluice run` does) or
// off (a store that records nothing and an artifact store that neither
// hashes nor copies), and prints the wall time of each repetition.
//
//   bench_store_overhead PIPELINE --mode on|off [-j N] [--reps R] [--work DIR]
//
// Each repetition gets its own state directory under --work (default: a
// fresh temporary directory), so nothing is a cache hit and the SQLite file
// starts empty, as in run_bench.sh. The pipeline's steps run for real; with
// the store off their outputs are left where the steps wrote them.
// Prints "mode=on reps=3 median=1.234s (1.2 1.3 1.2)". Not a test: see
// docs/performance.md.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "dsl/dsl.h"
#include "engine/store/artifact_store.h"
#include "engine/run/runner.h"
#include "engine/store/sqlite_store.h"
#include "executors/local/local_executor.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

// Records nothing; every lookup misses.
class NullStore : public Store {
 public:
  Status CreateRun(const RunRecord&) override { return Status::Ok(); }
  Status UpdateRun(const RunRecord&) override { return Status::Ok(); }
  Result<RunRecord> GetRun(const std::string& id) override { return Error(Status::NotFound("run " + id)); }
  Result<std::vector<RunRecord>> ListRuns(const RunFilter&) override { return std::vector<RunRecord>{}; }
  Status PutStep(const StepRecord&) override { return Status::Ok(); }
  Result<std::vector<StepRecord>> ListSteps(const std::string&) override { return std::vector<StepRecord>{}; }
  Result<StepRecord> GetStep(const std::string&, const std::string& instance) override {
    return Error(Status::NotFound(instance));
  }
  Result<int64_t> StartExecution(const ExecutionRecord&) override { return ++next_id_; }
  Status FinishExecution(const ExecutionRecord&, const std::vector<ArtifactBinding>&,
                         const std::vector<ArtifactBinding>&) override {
    return Status::Ok();
  }
  Status Write(const StoreBatch&) override { return Status::Ok(); }
  Result<std::vector<ExecutionRecord>> ListExecutions(const std::string&) override {
    return std::vector<ExecutionRecord>{};
  }
  Result<StepRecord> FindCached(const std::string& key, std::optional<TimePoint>) override {
    return Error(Status::NotFound(key));
  }
  Result<ArtifactRecord> GetArtifact(const std::string& d) override { return Error(Status::NotFound(d)); }
  Result<ExecutionRecord> GetExecution(int64_t) override { return Error(Status::NotFound("execution")); }
  Result<std::vector<ExecutionRecord>> ProducersOf(const std::string&) override {
    return std::vector<ExecutionRecord>{};
  }
  Result<std::vector<ExecutionRecord>> ConsumersOf(const std::string&) override {
    return std::vector<ExecutionRecord>{};
  }
  Result<std::vector<ArtifactBinding>> InputsOf(int64_t) override { return std::vector<ArtifactBinding>{}; }
  Result<std::vector<ArtifactBinding>> OutputsOf(int64_t) override { return std::vector<ArtifactBinding>{}; }
  Result<int64_t> RecordDeployment(const DeploymentRecord&) override { return int64_t{0}; }
  Result<std::vector<DeploymentRecord>> ListDeployments(const std::string&, int) override {
    return std::vector<DeploymentRecord>{};
  }

 private:
  int64_t next_id_ = 0;
};

// Neither hashes nor copies: an output "is" its path.
class NullArtifactStore : public ArtifactStore {
 public:
  Result<ArtifactRecord> Put(const std::string& path, ArtifactType type) override {
    ArtifactRecord r;
    r.digest = path;
    r.uri = "file://" + path;
    r.type = type;
    return r;
  }
  Result<std::string> LocalPath(const std::string& digest) override { return digest; }
};

int Usage() {
  std::fprintf(stderr, "usage: bench_store_overhead PIPELINE --mode on|off [-j N] [--reps R] [--work DIR]\n");
  return 2;
}

int Main(int argc, char** argv) {
  std::string pipeline, mode, work;
  int jobs = 2, reps = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--mode") mode = next();
    else if (a == "-j" || a == "--jobs") jobs = std::atoi(next().c_str());
    else if (a == "--reps") reps = std::atoi(next().c_str());
    else if (a == "--work") work = next();
    else if (!a.empty() && a[0] != '-' && pipeline.empty()) pipeline = a;
    else return Usage();
  }
  if (pipeline.empty() || (mode != "on" && mode != "off") || jobs < 1 || reps < 1) return Usage();
  if (work.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "sluice-store-bench-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) return 1;
    work = tmpl;
  }
  dsl::LoadResult loaded = dsl::LoadPipelineFile(pipeline);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s", dsl::FormatDiagnosticsText(loaded.diagnostics).c_str());
    return 1;
  }
  auto params = dsl::BindParams(*loaded.spec, {});
  if (!params) {
    std::fprintf(stderr, "%s\n", params.error().ToString().c_str());
    return 1;
  }

  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const std::string state = work + "/state-" + mode + "-" + std::to_string(r);
    const auto t0 = std::chrono::steady_clock::now();
    ExecutorRegistry executors;
    LocalExecutorOptions lo;
    lo.parallelism = jobs;
    if (Status s = RegisterLocalExecutor(executors, lo); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    std::unique_ptr<Store> store;
    std::unique_ptr<ArtifactStore> artifacts;
    if (mode == "on") {
      auto opened = SqliteStore::Open(state);
      if (!opened) {
        std::fprintf(stderr, "%s\n", opened.error().ToString().c_str());
        return 1;
      }
      store = std::move(*opened);
      artifacts = std::make_unique<FileArtifactStore>(state);
    } else {
      store = std::make_unique<NullStore>();
      artifacts = std::make_unique<NullArtifactStore>();
    }
    RunOptions o;
    o.run_id = "bench-" + std::to_string(r);
    o.params = *params;
    o.parallelism = jobs;
    o.state_dir = state;
    Runner runner(*loaded.spec, store.get(), artifacts.get(), &executors, o);
    auto summary = runner.Run();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!summary) {
      std::fprintf(stderr, "%s\n", summary.error().ToString().c_str());
      return 1;
    }
    if (summary->run.phase != RunPhase::kSucceeded) {
      std::fprintf(stderr, "run %s ended %s: %s\n", o.run_id.c_str(), RunPhaseName(summary->run.phase),
                   summary->run.message.c_str());
      return 1;
    }
    times.push_back(seconds);
  }
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  std::printf("mode=%s reps=%d median=%.3fs (", mode.c_str(), reps, sorted[sorted.size() / 2]);
  for (size_t i = 0; i < times.size(); ++i) std::printf("%s%.3f", i ? " " : "", times[i]);
  std::printf(")\n");
  return 0;
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) { return sluice::Main(argc, argv); }
