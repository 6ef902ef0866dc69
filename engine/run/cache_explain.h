#pragma once
// Cache explanations: why a step would (not) be a cache hit.
//
// There is one implementation of the cache key: CacheKey
// (engine/run/cache_key.h), which the run loop computes for every attempt.
// Every execution snapshot records the key's components as
// `cache_key_material` (secrets redacted). A key is computed from the
// instance's resolved scope: upstream steps' outputs (from cache hits),
// foreach items, `when`, input artifacts; resolving those is the run loop's
// work, so `PredictCache` runs the real Runner against a read-only overlay
// of the store, with an executor that starts nothing, rather than a second
// copy of that logic: each step whose key has a usable cache entry is reported
// as a hit (and from which run/step it would reuse outputs); every other
// step is compared, component by component, with the most recent successful
// execution of the same step instance of the same pipeline, and the
// differences are spelled out ("param seed changed: 1 → 2"). Nothing is
// written to the store or to the artifact store; scratch working
// directories live under a temporary directory that is removed afterwards.

#include <optional>
#include <string>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"
#include "engine/store.h"

namespace sluice {

// The predicted fate of one step instance.
struct StepPrediction {
  enum class Verdict {
    kHit,   // outputs would be reused from `reuse_from`
    kRun,   // would run; `reasons` say why it is not a hit
    kWait,  // depends on steps that will run (or is skipped); outcome unknown
  };
  std::string instance;    // "train" or "train[1]"
  Verdict verdict = Verdict::kRun;
  std::string reuse_from;  // kHit: "RUN/INSTANCE"
  std::vector<std::string> reasons;
};

const char* VerdictName(StepPrediction::Verdict verdict);  // "hit", "run", "wait"

struct PredictOptions {
  bool no_cache = false;         // as `sluice run --no-cache`
  std::string default_executor;  // as `sluice run --executor`
  int history_runs = 50;         // newest runs of the pipeline searched for a previous execution
  // An artifact store shared with other machines (e.g. the S3 store of the
  // pipeline's `artifacts:`), borrowed: its shared cache is looked in as a
  // run would, and the outputs of a hit found there are fetched from it into
  // the local store to check them. Null: the local store only.
  ArtifactStore* shared = nullptr;
};

// Predicts every step instance of a run of `spec` with bound `params`,
// against `store` and the artifacts under `state_dir` (read only). Instances
// are returned in the order the Runner would consider them. Errors: those
// of Runner::Run (unknown executor, ...) and of store reads.
Result<std::vector<StepPrediction>> PredictCache(const PipelineSpec& spec, const Json& params,
                                                 Store* store, const std::string& state_dir,
                                                 const PredictOptions& options);

// Human-readable differences between the cache-relevant parts of two
// execution snapshots (`before` recorded earlier, `after` predicted now):
// "input dataset changed: sha256:0123456789ab → sha256:fedcba987654",
// "code steps/train.py changed: sha256:… → sha256:…", "param seed changed: 1 → 2",
// "command changed: python train.py --lr 0.1 → python train.py --lr 0.2",
// "env MODE changed", "image changed: a → b", ... Empty when they agree.
// Uses `cache_key_material` when both have it, else the plain snapshot
// fields (code_digest, params, inputs, argv).
std::vector<std::string> ExplainKeyChange(const Json& before, const Json& after);

// The most recent execution of `instance` in a run of `pipeline` that
// succeeded (outcome Succeeded or Cached), searching the newest
// `history_runs` runs and skipping `exclude_run`; nullopt when none.
Result<std::optional<ExecutionRecord>> LatestSuccessfulExecution(Store* store, const std::string& pipeline,
                                                                 const std::string& instance,
                                                                 const std::string& exclude_run,
                                                                 int history_runs = 50);

}  // namespace sluice
