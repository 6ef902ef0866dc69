#pragma once
// What the runner needs for tasks that run through sluice-launcher
// (engine/launch.h): the pipeline's code packed as one directory artifact,
// and the artifacts a task's argv and env name by their store path.

#include <cstdint>
#include <string>
#include <vector>

#include "engine/status.h"
#include "engine/store.h"

namespace sluice {

// Bounds on the code directory shipped to pods.
struct CodeLimits {
  int64_t max_files = 10000;
  int64_t max_bytes = int64_t{256} << 20;
};

// Stores the directory `dir` (the pipeline's) as one directory artifact,
// leaving out `.git`, `.sluice` and `skip` (the store root, when inside
// `dir`); the copy is staged under `staging` (created, then removed).
// Errors: kFailedPrecondition "the pipeline directory <dir> holds more than
// N files (or bytes) ...; move data out of it", and the store's errors.
Result<ArtifactRecord> PackCode(ArtifactStore* store, const std::string& dir, const std::string& skip,
                                const std::string& staging, const CodeLimits& limits = {});

// The digests ("sha256:<hex>") of store paths "<store_root>/cas/sha256/<2>/<hex>"
// that occur in `text`, in order of appearance.
std::vector<std::string> StorePathDigests(const std::string& text, const std::string& store_root);

}  // namespace sluice
