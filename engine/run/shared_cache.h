#pragma once
// The shared cache: a succeeded step's cache entry (its cache key -> the
// digests of its outputs, its output params and metrics) kept in an artifact
// store other machines share (ArtifactStore::PutCacheEntry, e.g. an S3
// bucket), so that a step computed on CI is a cache hit on a laptop with
// the same inputs. The Runner looks here when its own store has no hit.
//
// An entry is JSON:
//   {"key": K, "source": "RUN/INSTANCE", "finished_at": MILLIS,
//    "exit_code": 0, "output_params": {...}, "metrics": {...},
//    "outputs": [{"name", "digest", "type", "size", "is_directory"}]}
// Its outputs' bytes are the store's own artifacts (content-addressed).

#include <optional>
#include <string>

#include "engine/status.h"
#include "engine/store.h"

namespace sluice {

// The entry of `step`, which succeeded at `finished` under `key`.
std::string SharedCacheEntry(const std::string& key, const StepRecord& step, TimePoint finished);

// The hit the shared cache of `artifacts` has for `key`, as
// Store::FindCacheHit returns one (execution_id 0; step.cached_from names
// the entry, `where`), when it finished at or after `not_before`.
// Errors: kNotFound (no entry, too old, or a store that shares none), the
// store's errors reading it, kFailedPrecondition for an entry that is not
// one (named with `where`).
Result<CacheHit> FindSharedCacheHit(ArtifactStore& artifacts, const std::string& key,
                                    std::optional<TimePoint> not_before);

}  // namespace sluice
