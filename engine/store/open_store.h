#pragma once
// OpenStore: the one place that picks the Store implementation behind a
// store location. Code that records and reads runs, steps, lineage and
// deployments depends on this and engine/store.h only. A location is a
// state directory (the SQLite store, engine/store/sqlite_store.h) or a
// PostgreSQL URL, `postgres://...` or `postgresql://...`
// (engine/store/pg_store.h).

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

// Opens (and by default creates) the store at `location`, applying any
// pending migrations: a PostgreSQL URL (IsPostgresUrl), or a state
// directory and its SQLite file `<state_dir>/sluice.db`. The caller owns
// it. Errors: kNotFound (missing and !create_if_missing),
// kFailedPrecondition (written by a newer sluice, not a sluice store, or a
// truncated database beside an earlier store's files), kUnavailable (locked
// for longer than busy_timeout; a server that cannot be reached), kInternal.
// A URL's password never appears in an error (MaskStoreUrl).
Result<StorePtr> OpenStore(const std::string& location, const StoreOptions& options = {});

// Whether `location` names a PostgreSQL store: it starts with
// "postgres://" or "postgresql://".
bool IsPostgresUrl(const std::string& location);

// `location` with the password of a URL (user:PASSWORD@ and a password=
// query parameter) replaced by "***"; anything else unchanged. What logs,
// errors and API responses show of a store.
std::string MaskStoreUrl(const std::string& location);

// `text` with every occurrence of `location`'s password (as written in the
// URL and percent-decoded) replaced by "***".
std::string MaskStoreSecrets(const std::string& text, const std::string& location);

}  // namespace sluice
