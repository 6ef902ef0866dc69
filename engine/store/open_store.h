#pragma once
// OpenStore: the one place that picks the Store implementation behind a
// state directory. Code that records and reads runs, steps, lineage and
// deployments depends on this and engine/store.h only; the SQLite store
// (engine/store/sqlite_store.h) is what it opens today.

#include <string>

#include "engine/spec.h"
#include "engine/status.h"
#include "engine/store.h"

namespace sluice {

struct StoreOptions {
  // Create `state_dir` and the database when missing. When false, a missing
  // store is kNotFound (what `sluice status` wants).
  bool create_if_missing = true;
  // How long a write waits for another process's write lock.
  Duration busy_timeout{10000};
};

// Opens (and by default creates) the store under `state_dir`, the SQLite
// file `<state_dir>/sluice.db`, applying any pending migrations. The caller
// owns it. Errors: kNotFound (missing and !create_if_missing),
// kFailedPrecondition (written by a newer sluice, not a sluice store, or a
// truncated database beside an earlier store's files), kUnavailable (locked
// for longer than busy_timeout), kInternal.
Result<StorePtr> OpenStore(const std::string& state_dir, const StoreOptions& options = {});

}  // namespace sluice
