// Fills a sluice store with many runs of a retrain-shaped pipeline, so that
// lineage query times can be checked on a store of realistic size:
//
//   fill_store STORE [EXECUTIONS=1000000]
//
// STORE is a state directory (SQLite) or a postgres:// URL (an empty
// database), as --store takes.
// Each run: prepare -> dataset; train[0..7] (dataset -> model); evaluate[0..7]
// (model -> metrics); select (8 models -> best); register (best -> registry):
// 19 executions. Every 10th run reads a new dataset; the others reuse the
// previous dataset's digest (as cache hits do), so popular artifacts have
// many consumers, as in a real store.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/sha256.h"
#include "engine/store/open_store.h"

using namespace sluice;

namespace {

ArtifactRecord Make(const std::string& seed, ArtifactType type) {
  ArtifactRecord a;
  a.digest = "sha256:" + Sha256Hex(seed);
  a.uri = "file:///store/cas/sha256/" + a.digest.substr(7, 2) + "/" + a.digest.substr(7);
  a.type = type;
  a.size = 1000 + static_cast<int64_t>(seed.size());
  return a;
}

bool Check(const Status& st) {
  if (!st.ok()) std::fprintf(stderr, "fill_store: %s\n", st.ToString().c_str());
  return st.ok();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: fill_store STORE [EXECUTIONS]\n");
    return 2;
  }
  const long target = argc > 2 ? std::atol(argv[2]) : 1000000;
  auto opened = OpenStore(argv[1]);
  if (!opened) {
    std::fprintf(stderr, "fill_store: %s\n", opened.error().ToString().c_str());
    return 1;
  }
  Store* store = opened->get();
  const auto t0 = std::chrono::steady_clock::now();
  const TimePoint base = std::chrono::system_clock::now() - std::chrono::hours(24 * 365);
  long executions = 0;
  ArtifactRecord dataset;
  for (long run_index = 0; executions < target; ++run_index) {
    RunRecord run;
    run.id = "bench-" + std::to_string(run_index);
    run.pipeline = "retrain";
    run.pipeline_file = "/repo/examples/retrain/pipeline.yaml";
    run.pipeline_digest = "sha256:" + Sha256Hex("pipeline");
    run.phase = RunPhase::kSucceeded;
    run.created_at = base + std::chrono::seconds(run_index * 30);
    run.started_at = run.created_at;
    run.finished_at = run.created_at + std::chrono::seconds(20);
    if (!Check(store->CreateRun(run))) return 1;
    int second = 0;
    auto exec = [&](const std::string& instance, std::vector<ArtifactBinding> in,
                    std::vector<ArtifactBinding> out) -> bool {
      ExecutionRecord e;
      e.run_id = run.id;
      e.instance = instance;
      e.outcome = "Running";
      e.started_at = run.created_at + std::chrono::seconds(second++);
      e.snapshot = {{"params", {{"seed", run_index}}}, {"code_digest", "sha256:" + Sha256Hex(instance)}};
      auto id = store->StartExecution(e);
      if (!id) return Check(id.error());
      e.id = *id;
      e.outcome = "Succeeded";
      e.exit_code = 0;
      e.finished_at = e.started_at + std::chrono::seconds(1);
      ++executions;
      return Check(store->FinishExecution(e, in, out));
    };
    if (run_index % 10 == 0) dataset = Make("dataset-" + std::to_string(run_index), ArtifactType::kDataset);
    if (!exec("prepare", {}, {{"dataset", dataset}})) return 1;
    std::vector<ArtifactBinding> models;
    for (int i = 0; i < 8; ++i) {
      auto model = Make(run.id + "-model-" + std::to_string(i), ArtifactType::kModel);
      models.push_back({"models", model});
      if (!exec("train[" + std::to_string(i) + "]", {{"dataset", dataset}}, {{"model", model}})) return 1;
    }
    for (int i = 0; i < 8; ++i) {
      auto metrics = Make(run.id + "-metrics-" + std::to_string(i), ArtifactType::kMetrics);
      if (!exec("evaluate[" + std::to_string(i) + "]", {{"model", models[i].artifact}},
                {{"metrics", metrics}}))
        return 1;
    }
    auto best = Make(run.id + "-best", ArtifactType::kModel);
    if (!exec("select", models, {{"best_model", best}})) return 1;
    auto registry = Make(run.id + "-registry", ArtifactType::kModel);
    if (!exec("register", {{"model", best}}, {{"registered_model", registry}})) return 1;
    if (run_index % 5000 == 0) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "fill_store: %ld executions, %ld runs, %.1f s\n", executions, run_index + 1, secs);
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("fill_store: wrote %ld executions in %.1f s (%.0f/s) to %s\n", executions, secs,
              executions / secs, MaskStoreUrl(argv[1]).c_str());
  return 0;
}
