#include "engine/server/backfill.h"

#include <ostream>

#include <date/date.h>

#include "dsl/dsl.h"
#include "engine/store/artifact_store.h"
#include "engine/store/artifact_stores.h"
#include "engine/store/s3_artifact_store.h"
#include "engine/server/api_json.h"
#include "engine/server/run_manager.h"
#include "engine/server/scheduler.h"
#include "engine/store/open_store.h"

namespace sluice::server {

int BackfillCommand(const BackfillCommandOptions& o, ExecutorsFactory executors,
                    std::ostream& out, std::ostream& err) {
  dsl::LoadResult loaded = dsl::LoadPipelineFile(o.pipeline_file);
  if (!loaded.spec) {
    err << dsl::FormatDiagnosticsText(loaded.diagnostics);
    return 2;
  }
  auto spec = std::make_shared<const PipelineSpec>(std::move(*loaded.spec));
  auto from = ParseIsoTime(o.from), to = ParseIsoTime(o.to);
  if (!from || !to) {
    err << "sluice backfill: --from/--to must be dates (2026-11-01) or RFC 3339 times "
           "(2026-11-01T06:00:00Z)\n";
    return 2;
  }
  BackfillOptions bo;
  bo.from = std::chrono::floor<std::chrono::seconds>(*from);
  // A bare date as --to means the whole day.
  bo.to = std::chrono::floor<std::chrono::seconds>(*to) +
          (o.to.size() == 10 ? std::chrono::seconds(86399) : std::chrono::seconds(0));
  bo.parallelism = std::max(1, o.parallelism);
  bo.max_runs = o.max_runs;
  auto planned = PlanBackfill(*spec, bo);
  if (!planned) {
    err << "sluice backfill: " << planned.error().message() << "\n";
    return 2;
  }
  auto store = OpenStore(o.store.empty() ? o.state_dir : o.store);
  if (!store) {
    err << "sluice backfill: " << store.error().message() << "\n";
    return 2;
  }
  ArtifactStorePtr artifacts;
  if (!o.dry_run) {
    auto opened = OpenArtifactStore(ChooseArtifactStore({{o.artifacts, "--artifacts"},
                                                         {spec->artifacts, "the pipeline's artifacts:"}})
                                        .url,
                                    o.artifacts_endpoint, o.state_dir);
    if (!opened) {
      err << "sluice backfill: " << opened.error().message() << "\n";
      return 2;
    }
    artifacts = std::move(*opened);
  }
  RunFactory factory = RunnerFactory(store->get(), artifacts.get(), std::move(executors));
  if (!factory && !o.dry_run) {
    err << "sluice backfill: this build has no Runner\n";
    return 2;
  }
  Store* st = store->get();
  auto run_one = [&](const ScheduledRun& run) -> Result<RunPhase> {
    auto existing = st->GetRun(run.run_id);
    if (existing && existing->id == run.run_id)
      return Error(Status::AlreadyExists("run " + run.run_id + " exists (" +
                                         RunPhaseName(existing->phase) + ")"));
    if (o.dry_run) return RunPhase::kPending;
    auto bound = dsl::BindParams(*spec, run.params);
    if (!bound) return Error(bound.error());
    RunOptions ro;
    ro.run_id = run.run_id;
    ro.params = *bound;
    ro.state_dir = o.state_dir;
    ro.default_executor = o.executor;
    ro.operator_commands = o.operator_commands;
    auto handle = factory(PrepareRun(spec, o.prepare, ro), ro);
    auto summary = handle->Run();
    if (!summary) return Error(summary.error());
    return summary->run.phase;
  };
  std::vector<BackfillOutcome> outcomes = RunBackfill(*planned, bo.parallelism, run_one);
  int code = 0;
  Json json = Json::array();
  for (const BackfillOutcome& oc : outcomes) {
    std::string result;
    if (oc.status.code() == StatusCode::kAlreadyExists) result = "exists";
    else if (!oc.status.ok()) result = "error: " + oc.status.message();
    else result = o.dry_run ? "planned" : RunPhaseName(oc.phase);
    if (!oc.status.ok() && oc.status.code() != StatusCode::kAlreadyExists) code = 1;
    if (oc.status.ok() && !o.dry_run && oc.phase != RunPhase::kSucceeded) code = 1;
    if (o.output == "json")
      json.push_back({{"time", date::format("%FT%TZ", oc.run.time)}, {"run_id", oc.run.run_id},
                      {"params", oc.run.params}, {"result", result}});
    else
      out << date::format("%FT%TZ", oc.run.time) << "  " << oc.run.run_id << "  " << result << "\n";
  }
  if (o.output == "json") out << json.dump() << "\n";
  return code;
}

}  // namespace sluice::server
