#include "engine/store/sqlite_store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <mutex>
#include <filesystem>
#include <system_error>
#include <type_traits>
#include <utility>

#include "engine/json_text.h"
#include "engine/store/store_columns.h"

namespace sluice {

namespace {

namespace fs = std::filesystem;

// Migrations, in order; migration i brings the schema from version i to i+1.
// Never edit a released entry: append a new one.
//
// Associations (context <-> execution) and attributions (context <->
// artifact) are views, so that a step costs no extra rows for them.
constexpr const char* kMigrations[] = {
    // 0 -> 1: the ML-Metadata-shaped lineage model.
    R"sql(
CREATE TABLE contexts (
  id          INTEGER PRIMARY KEY,
  type        TEXT NOT NULL CHECK (type IN ('pipeline', 'pipeline_version', 'run')),
  name        TEXT NOT NULL,
  parent_id   INTEGER REFERENCES contexts(id),
  properties  TEXT NOT NULL DEFAULT '{}',
  created_at  INTEGER NOT NULL,
  UNIQUE (type, name)
);

CREATE TABLE pipeline_versions (
  context_id  INTEGER PRIMARY KEY REFERENCES contexts(id),
  pipeline    TEXT NOT NULL,
  digest      TEXT NOT NULL,
  file        TEXT NOT NULL,
  yaml        TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE INDEX pipeline_versions_by_digest ON pipeline_versions(digest);

CREATE TABLE runs (
  id               TEXT PRIMARY KEY,
  context_id       INTEGER NOT NULL UNIQUE REFERENCES contexts(id),
  version_id       INTEGER NOT NULL REFERENCES contexts(id),
  pipeline         TEXT NOT NULL,
  pipeline_file    TEXT NOT NULL,
  pipeline_digest  TEXT NOT NULL,
  git_commit       TEXT NOT NULL,
  git_dirty        INTEGER NOT NULL,
  params           TEXT NOT NULL,
  executor         TEXT NOT NULL,
  phase            TEXT NOT NULL,
  message          TEXT NOT NULL,
  resumed_from     TEXT NOT NULL,
  created_at       INTEGER NOT NULL,
  started_at       INTEGER,
  finished_at      INTEGER,
  host             TEXT NOT NULL,
  pid              INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX runs_by_created ON runs(created_at);
CREATE INDEX runs_by_pipeline ON runs(pipeline, created_at);

CREATE TABLE executions (
  id           INTEGER PRIMARY KEY,
  run_id       TEXT NOT NULL REFERENCES runs(id),
  instance     TEXT NOT NULL,
  attempt      INTEGER NOT NULL,
  outcome      TEXT NOT NULL,
  exit_code    INTEGER NOT NULL,
  message      TEXT NOT NULL,
  log_path     TEXT NOT NULL,
  external_id  TEXT NOT NULL,
  cache_key    TEXT NOT NULL,
  started_at   INTEGER NOT NULL,
  finished_at  INTEGER,
  snapshot     TEXT NOT NULL
);
CREATE INDEX executions_by_run ON executions(run_id, instance, attempt);
CREATE INDEX executions_by_cache_key ON executions(cache_key) WHERE cache_key <> '';

CREATE TABLE artifacts (
  digest        TEXT PRIMARY KEY,
  uri           TEXT NOT NULL,
  type          TEXT NOT NULL,
  size          INTEGER NOT NULL,
  is_directory  INTEGER NOT NULL,
  properties    TEXT NOT NULL,
  created_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
  execution_id  INTEGER NOT NULL REFERENCES executions(id),
  artifact      TEXT NOT NULL REFERENCES artifacts(digest),
  type          TEXT NOT NULL CHECK (type IN ('INPUT', 'OUTPUT')),
  name          TEXT NOT NULL,
  created_at    INTEGER NOT NULL,
  PRIMARY KEY (execution_id, type, name, artifact)
) WITHOUT ROWID;
CREATE INDEX events_by_artifact ON events(artifact, type);

CREATE TABLE steps (
  run_id         TEXT NOT NULL REFERENCES runs(id),
  instance       TEXT NOT NULL,
  step           TEXT NOT NULL,
  idx            INTEGER NOT NULL,
  item           TEXT NOT NULL,
  phase          TEXT NOT NULL,
  attempts       INTEGER NOT NULL,
  exit_code      INTEGER NOT NULL,
  message        TEXT NOT NULL,
  log_path       TEXT NOT NULL,
  cache_key      TEXT NOT NULL,
  cached_from    TEXT NOT NULL,
  started_at     INTEGER,
  finished_at    INTEGER,
  output_params  TEXT NOT NULL,
  metrics        TEXT NOT NULL,
  outputs        TEXT NOT NULL,
  inputs         TEXT NOT NULL,
  PRIMARY KEY (run_id, instance)
) WITHOUT ROWID;
CREATE INDEX steps_by_cache_key ON steps(cache_key, finished_at)
  WHERE cache_key <> '' AND phase = 'Succeeded';

CREATE TABLE deployments (
  id               INTEGER PRIMARY KEY,
  service          TEXT NOT NULL,
  namespace        TEXT NOT NULL,
  executor         TEXT NOT NULL,
  action           TEXT NOT NULL,
  version          TEXT NOT NULL,
  model_digest     TEXT NOT NULL,
  baseline_digest  TEXT NOT NULL,
  traffic_percent  REAL NOT NULL,
  endpoint         TEXT NOT NULL,
  run_id           TEXT NOT NULL,
  instance         TEXT NOT NULL,
  execution_id     INTEGER,
  at               INTEGER NOT NULL,
  details          TEXT NOT NULL
);
CREATE INDEX deployments_by_service ON deployments(service, at);

CREATE VIEW associations AS
  SELECT r.context_id AS context_id, e.id AS execution_id
  FROM executions e JOIN runs r ON r.id = e.run_id;
CREATE VIEW attributions AS
  SELECT DISTINCT r.context_id AS context_id, ev.artifact AS artifact
  FROM events ev JOIN executions e ON e.id = ev.execution_id JOIN runs r ON r.id = e.run_id
  WHERE ev.type = 'OUTPUT';
)sql",
    // 1 -> 2: light snapshots for cache hits. A hit's execution keeps only
    // the snapshot keys that differ from the execution it reuses, named by
    // snapshot_base (no foreign key: deleting a run would then scan every
    // execution; DeleteRun already keeps a run whose outputs a cached step
    // of another run reuses, which is the run the base execution is in).
    // Also drops executions_by_cache_key: no query reads it (FindCached
    // looks keys up in steps), and every execution paid a random-page
    // insert into it.
    R"sql(
ALTER TABLE executions ADD COLUMN snapshot_base INTEGER;
DROP INDEX IF EXISTS executions_by_cache_key;
)sql",
    // 2 -> 3: a run's cache setting (`run --no-cache`), which a resume of
    // the run keeps.
    R"sql(
ALTER TABLE runs ADD COLUMN no_cache INTEGER NOT NULL DEFAULT 0;
)sql",
    // 3 -> 4: where a run kept its artifact bytes (an S3 URL; '' = the
    // local store), which resume and rerun use again.
    R"sql(
ALTER TABLE runs ADD COLUMN artifacts TEXT NOT NULL DEFAULT '';
)sql",
    // 4 -> 5: the server's audit log of writes. No foreign keys: an entry
    // outlives the run it names (DeleteRun, retention).
    R"sql(
CREATE TABLE audit_log (
  id        INTEGER PRIMARY KEY,
  at        INTEGER NOT NULL,
  who       TEXT NOT NULL,
  role      TEXT NOT NULL,
  method    TEXT NOT NULL,
  route     TEXT NOT NULL,
  run_id    TEXT NOT NULL,
  pipeline  TEXT NOT NULL,
  code      INTEGER NOT NULL
);
CREATE INDEX audit_log_by_at ON audit_log(at);
)sql",
};

constexpr int kMigrationCount = static_cast<int>(std::size(kMigrations));
static_assert(kMigrationCount == SqliteStore::kSchemaVersion);

std::string ColumnText(sqlite3_stmt* s, int i) {
  const unsigned char* t = sqlite3_column_text(s, i);
  return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(s, i)) : "";
}

std::optional<TimePoint> ColumnTime(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
  return FromMillis(sqlite3_column_int64(s, i));
}

// A row id bound as itself when set (> 0), as NULL otherwise.
std::optional<int64_t> IdOrNull(int64_t id) { return id > 0 ? std::optional<int64_t>(id) : std::nullopt; }

// Smallest string greater than every string that starts with `prefix`
// (bytewise), for range scans. 0xff never occurs in UTF-8 text.
std::string PrefixUpperBound(const std::string& prefix) { return prefix + "\xff"; }

constexpr const char* kRunColumns =
    "id, pipeline, pipeline_file, pipeline_digest, git_commit, git_dirty, params, executor, "
    "phase, message, resumed_from, created_at, started_at, finished_at, host, pid, "
    "(SELECT yaml FROM pipeline_versions v WHERE v.context_id = runs.version_id), no_cache, artifacts";

RunRecord ReadRun(sqlite3_stmt* s) {
  RunRecord r;
  r.id = ColumnText(s, 0);
  r.pipeline = ColumnText(s, 1);
  r.pipeline_file = ColumnText(s, 2);
  r.pipeline_digest = ColumnText(s, 3);
  r.git_commit = ColumnText(s, 4);
  r.git_dirty = sqlite3_column_int(s, 5) != 0;
  r.params = ParseJson(sqlite3_column_text(s, 6), Json::object());
  r.executor = ColumnText(s, 7);
  r.phase = ParseRunPhase(ColumnText(s, 8)).value_or(RunPhase::kError);
  r.message = ColumnText(s, 9);
  r.resumed_from = ColumnText(s, 10);
  r.created_at = FromMillis(sqlite3_column_int64(s, 11));
  r.started_at = ColumnTime(s, 12);
  r.finished_at = ColumnTime(s, 13);
  r.host = ColumnText(s, 14);
  r.pid = sqlite3_column_int(s, 15);
  r.pipeline_yaml = ColumnText(s, 16);
  r.no_cache = sqlite3_column_int(s, 17) != 0;
  r.artifacts = ColumnText(s, 18);
  return r;
}

#define SLUICE_STEP_COLUMNS                                                              \
  "run_id, instance, step, idx, item, phase, attempts, exit_code, message, log_path, "  \
  "cache_key, cached_from, started_at, finished_at, output_params, metrics, outputs, " \
  "inputs"

StepRecord ReadStep(sqlite3_stmt* s) {
  StepRecord r;
  r.run_id = ColumnText(s, 0);
  r.instance = ColumnText(s, 1);
  r.step = ColumnText(s, 2);
  r.index = sqlite3_column_int(s, 3);
  r.item = ParseJson(sqlite3_column_text(s, 4), Json());
  r.phase = ParseNodePhase(ColumnText(s, 5)).value_or(NodePhase::kError);
  r.attempts = sqlite3_column_int(s, 6);
  r.exit_code = sqlite3_column_int(s, 7);
  r.message = ColumnText(s, 8);
  r.log_path = ColumnText(s, 9);
  r.cache_key = ColumnText(s, 10);
  r.cached_from = ColumnText(s, 11);
  r.started_at = ColumnTime(s, 12);
  r.finished_at = ColumnTime(s, 13);
  r.output_params = ParseJson(sqlite3_column_text(s, 14), Json::object());
  r.metrics = ParseJson(sqlite3_column_text(s, 15), Json::object());
  r.outputs = BindingsFromText(sqlite3_column_text(s, 16));
  r.inputs = BindingsFromText(sqlite3_column_text(s, 17));
  return r;
}

#define SLUICE_EXECUTION_COLUMNS                                                      \
  "id, run_id, instance, attempt, outcome, exit_code, message, log_path, external_id, " \
  "cache_key, started_at, finished_at, snapshot, snapshot_base"

ExecutionRecord ReadExecution(sqlite3_stmt* s) {
  ExecutionRecord e;
  e.id = sqlite3_column_int64(s, 0);
  e.run_id = ColumnText(s, 1);
  e.instance = ColumnText(s, 2);
  e.attempt = sqlite3_column_int(s, 3);
  e.outcome = ColumnText(s, 4);
  e.exit_code = sqlite3_column_int(s, 5);
  e.message = ColumnText(s, 6);
  e.log_path = ColumnText(s, 7);
  e.external_id = ColumnText(s, 8);
  e.cache_key = ColumnText(s, 9);
  e.started_at = FromMillis(sqlite3_column_int64(s, 10));
  e.finished_at = ColumnTime(s, 11);
  e.snapshot = ParseJson(sqlite3_column_text(s, 12), Json::object());
  e.snapshot_base = sqlite3_column_int64(s, 13);  // NULL reads as 0
  return e;
}


// An artifact from the columns digest, uri, type, size, is_directory,
// properties, starting at column `first`.
ArtifactRecord ReadArtifact(sqlite3_stmt* s, int first) {
  ArtifactRecord a;
  a.digest = ColumnText(s, first);
  a.uri = ColumnText(s, first + 1);
  a.type = ParseArtifactType(ColumnText(s, first + 2));
  a.size = sqlite3_column_int64(s, first + 3);
  a.is_directory = sqlite3_column_int(s, first + 4) != 0;
  a.properties = ParseJson(sqlite3_column_text(s, first + 5), Json::object());
  return a;
}

DeploymentRecord ReadDeployment(sqlite3_stmt* s) {
  DeploymentRecord d;
  d.id = sqlite3_column_int64(s, 0);
  d.service = ColumnText(s, 1);
  d.namespace_ = ColumnText(s, 2);
  d.executor = ColumnText(s, 3);
  d.action = ColumnText(s, 4);
  d.version = ColumnText(s, 5);
  d.model_digest = ColumnText(s, 6);
  d.baseline_digest = ColumnText(s, 7);
  d.traffic_percent = sqlite3_column_double(s, 8);
  d.endpoint = ColumnText(s, 9);
  d.run_id = ColumnText(s, 10);
  d.instance = ColumnText(s, 11);
  d.execution_id = sqlite3_column_int64(s, 12);
  d.at = FromMillis(sqlite3_column_int64(s, 13));
  d.details = ParseJson(sqlite3_column_text(s, 14), Json::object());
  return d;
}

AuditEntry ReadAudit(sqlite3_stmt* s) {
  AuditEntry a;
  a.id = sqlite3_column_int64(s, 0);
  a.at = FromMillis(sqlite3_column_int64(s, 1));
  a.who = ColumnText(s, 2);
  a.role = ColumnText(s, 3);
  a.method = ColumnText(s, 4);
  a.route = ColumnText(s, 5);
  a.run_id = ColumnText(s, 6);
  a.pipeline = ColumnText(s, 7);
  a.code = sqlite3_column_int(s, 8);
  return a;
}

}  // namespace

// ---------------------------------------------------------------------------
// Statements and transactions

class SqliteStore::Statement {
 public:
  explicit Statement(sqlite3_stmt* s) : s_(s) {}
  Statement(Statement&& other) noexcept : s_(std::exchange(other.s_, nullptr)) {}
  Statement& operator=(Statement&&) = delete;
  // Resets the statement, so that it releases its read snapshot and can be
  // reused.
  ~Statement() {
    if (s_) sqlite3_reset(s_);
  }

  // Binds `values` to the parameters ?1, ?2, ... in order (see BindAt).
  template <class... V>
  Statement& Bind(const V&... values) {
    int i = 0;
    (BindAt(++i, values), ...);
    return *this;
  }
  // Binds parameter `i` (1-based, as in SQLite): a bool as 0/1, an integer,
  // a double, a time as milliseconds since the epoch, an empty optional as
  // NULL, anything else as text.
  template <class V>
  void BindAt(int i, const V& v) {
    if constexpr (std::is_same_v<V, bool>) {
      sqlite3_bind_int(s_, i, v ? 1 : 0);
    } else if constexpr (std::is_integral_v<V>) {
      sqlite3_bind_int64(s_, i, v);
    } else if constexpr (std::is_floating_point_v<V>) {
      sqlite3_bind_double(s_, i, v);
    } else if constexpr (std::is_same_v<V, TimePoint>) {
      sqlite3_bind_int64(s_, i, ToMillis(v));
    } else if constexpr (requires { v.has_value(); }) {
      if (v) {
        BindAt(i, *v);
      } else {
        sqlite3_bind_null(s_, i);
      }
    } else {
      std::string_view text(v);
      sqlite3_bind_text(s_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    }
  }

  // One step: SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(s_); }
  // One step of a write: true when it is done.
  bool Done() { return Step() == SQLITE_DONE; }
  // Steps to the end, collecting `read(stmt)` for each row. Errors as
  // Error(what).
  template <class Read>
  auto Rows(Read&& read, const std::string& what)
      -> Result<std::vector<std::invoke_result_t<Read&, sqlite3_stmt*>>> {
    std::vector<std::invoke_result_t<Read&, sqlite3_stmt*>> out;
    int rc;
    while ((rc = Step()) == SQLITE_ROW) out.push_back(read(s_));
    if (rc != SQLITE_DONE) return sluice::Error(Error(what));
    return out;
  }
  // The statement, to read the current row's columns.
  sqlite3_stmt* get() const { return s_; }
  // The connection's last error, as SqliteStore::ErrorOn.
  Status Error(const std::string& what) const { return ErrorOn(sqlite3_db_handle(s_), what); }

 private:
  sqlite3_stmt* s_;
};

template <class Body>
Status SqliteStore::TransactionLocked(Body&& body) {
  SLUICE_RETURN_IF_ERROR(Begin());
  Status st = body();
  if (!st.ok()) {
    Rollback();
    return st;
  }
  return Commit();
}

template <class Body>
Status SqliteStore::Transaction(Body&& body) {
  std::lock_guard<std::mutex> lock(mu_);
  return TransactionLocked(std::forward<Body>(body));
}


// ---------------------------------------------------------------------------
// Open / migrate

SqliteStore::SqliteStore(sqlite3* db, std::string path, Duration busy_timeout)
    : db_(db), path_(std::move(path)), busy_timeout_(busy_timeout) {}

SqliteStore::~SqliteStore() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
  sqlite3_finalize(lookup_stmt_);
  sqlite3_close_v2(lookup_db_);
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& state_dir,
                                                       SqliteStoreOptions options) {
  std::error_code ec;
  fs::path dir = fs::absolute(state_dir, ec);
  if (ec) dir = state_dir;
  std::string path = (dir / "sluice.db").string();
  if (!options.create_if_missing && !fs::exists(path, ec)) {
    return sluice::Error(Status::NotFound(
        "no sluice store at " + dir.string() +
        " (run a pipeline there first, or point --store at an existing store)"));
  }
  // An empty sluice.db is a valid, empty database to SQLite. Beside the
  // runs/ or cas/ of an earlier store it is that store's database truncated
  // or replaced: opening it would start a new store whose first `gc` deletes
  // every artifact in cas/.
  if (fs::is_regular_file(path, ec) && fs::file_size(path, ec) == 0 && !ec) {
    std::string held;
    for (const char* sub : {"runs", "cas"}) {
      std::error_code ec2;
      if (fs::is_directory(dir / sub, ec2) && !fs::is_empty(dir / sub, ec2))
        held += std::string(held.empty() ? "" : " and ") + sub + "/";
    }
    if (!held.empty())
      return sluice::Error(Status::FailedPrecondition(
          "store " + path + " is empty (0 bytes), but " + dir.string() + " holds " + held +
          " of an earlier store: its database was truncated or replaced. Restore sluice.db (with "
          "sluice.db-wal, if there is one) from a backup; to start a new store instead, move " + held +
          " out of " + dir.string() + " first"));
  }
  if (options.create_if_missing) {
    fs::create_directories(dir, ec);
    if (ec) {
      return sluice::Error(Status::FailedPrecondition("cannot create store directory " +
                                                      dir.string() + ": " + ec.message()));
    }
  }
  // SQLite's memory statistics take a process-wide mutex on every
  // allocation, which the cache lookups and the background writer
  // (engine/store/store_writer.h) would then contend for; sluice reads none of
  // them. Possible only before SQLite initializes (then a no-op).
  static std::once_flag memstatus_off;
  std::call_once(memstatus_off, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
              (options.create_if_missing ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return sluice::Error(Status::FailedPrecondition("cannot open store " + path + ": " + msg));
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(options.busy_timeout.count()));
  // Closing does not checkpoint: the WAL's frames move into the database
  // file at the automatic checkpoints of later commits (every 1,000 pages),
  // not at exit, where copying a run's last frames and syncing the file
  // took about as long as re-running 10,000 cached steps. The WAL stays
  // valid on disk; a reader or writer opening the store uses it, and
  // journal_size_limit (below) truncates it after a checkpoint.
  sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  std::unique_ptr<SqliteStore> store(new SqliteStore(db, path, options.busy_timeout));
  // journal_mode must be set outside a transaction; it is persistent.
  // A 32 MiB page cache (SQLite's default is 2 MiB): a 10,000-step run's
  // cache lookups and writes then stay in memory instead of re-reading
  // pages with pread.
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                             "PRAGMA foreign_keys=ON", "PRAGMA temp_store=MEMORY", "PRAGMA cache_size=-32768",
                             "PRAGMA journal_size_limit=67108864"}) {
    Status st = store->Exec(pragma);
    if (!st.ok()) return sluice::Error(st.WithContext("opening store " + path));
  }
  Status st = store->Migrate();
  if (!st.ok()) return sluice::Error(st.WithContext("opening store " + path));
  return store;
}

Status SqliteStore::Migrate() {
  std::lock_guard<std::mutex> lock(mu_);
  auto read_version = [this](int* version) -> Status {
    auto s = Prepare("PRAGMA user_version");
    if (!s) return s.error();
    if (s->Step() != SQLITE_ROW) return Error("reading schema version");
    *version = sqlite3_column_int(s->get(), 0);
    return Status::Ok();
  };
  int version = 0;
  SLUICE_RETURN_IF_ERROR(read_version(&version));
  if (version == kMigrationCount) return Status::Ok();
  // Another process may be migrating too: take the write lock, then look again.
  return TransactionLocked([&]() -> Status {
    SLUICE_RETURN_IF_ERROR(read_version(&version));
    if (version > kMigrationCount) {
      return Status::FailedPrecondition(
          "the store's schema version is " + std::to_string(version) + " but this sluice knows up to " +
          std::to_string(kMigrationCount) + "; use a newer sluice, or another --store");
    }
    if (version == 0) {
      // A brand-new file must be empty: refuse to take over someone else's database.
      auto s = Prepare("SELECT count(*) FROM sqlite_master");
      if (!s) return s.error();
      if (s->Step() == SQLITE_ROW && sqlite3_column_int(s->get(), 0) != 0) {
        return Status::FailedPrecondition(
            "the file is an SQLite database that is not a sluice store; point --store elsewhere");
      }
    }
    for (int v = version; v < kMigrationCount; ++v) {
      char* err = nullptr;
      if (sqlite3_exec(db_, kMigrations[v], nullptr, nullptr, &err) != SQLITE_OK) {
        Status st = Status::Internal("migration " + std::to_string(v) + " -> " + std::to_string(v + 1) +
                                     " failed: " + (err ? err : "unknown error"));
        sqlite3_free(err);
        return st;
      }
      sqlite3_free(err);
    }
    std::string pragma = "PRAGMA user_version=" + std::to_string(kMigrationCount);
    return Exec(pragma.c_str());
  });
}

// ---------------------------------------------------------------------------
// Low-level helpers (caller holds mu_)

Status SqliteStore::Error(const std::string& what) const { return ErrorOn(db_, what); }

Status SqliteStore::ErrorOn(sqlite3* db, const std::string& what) {
  int code = sqlite3_extended_errcode(db);
  std::string msg = what + ": " + sqlite3_errmsg(db);
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Unavailable(msg + " (another sluice process holds the store's write lock)");
    case SQLITE_CONSTRAINT:
      if (code == SQLITE_CONSTRAINT_PRIMARYKEY || code == SQLITE_CONSTRAINT_UNIQUE) {
        return Status::AlreadyExists(msg);
      }
      return Status::FailedPrecondition(msg);
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
      return Status::FailedPrecondition(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::FailedPrecondition(msg + " (the store file is damaged or not a sluice store)");
    default:
      return Status::Internal(msg);
  }
}


Result<SqliteStore::Statement> SqliteStore::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) {
    sqlite3_reset(it->second);
    sqlite3_clear_bindings(it->second);
    return Statement(it->second);
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    return sluice::Error(Error(std::string("preparing ") + sql));
  }
  statements_.emplace(sql, stmt);
  return Statement(stmt);
}

Status SqliteStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);
    return Error(sql);
  }
  return Status::Ok();
}

Status SqliteStore::Begin() {
  auto s = Prepare("BEGIN IMMEDIATE");
  if (!s) return s.error();
  if (!s->Done()) return Error("starting a write transaction");
  return Status::Ok();
}

Status SqliteStore::Commit() {
  auto s = Prepare("COMMIT");
  if (!s) {
    Rollback();
    return s.error();
  }
  if (!s->Done()) {
    Status err = Error("committing");
    Rollback();
    return err;
  }
  return Status::Ok();
}

void SqliteStore::Rollback() {
  if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

Result<int64_t> SqliteStore::EnsureContextLocked(const std::string& type, const std::string& name,
                                                 int64_t parent_id, TimePoint created_at) {
  auto s = Prepare(
      "INSERT INTO contexts(type, name, parent_id, created_at) VALUES (?1, ?2, ?3, ?4) "
      "ON CONFLICT(type, name) DO UPDATE SET type = excluded.type RETURNING id");
  if (!s) return sluice::Error(s.error());
  s->Bind(type, name, IdOrNull(parent_id), created_at);
  if (s->Step() != SQLITE_ROW) return sluice::Error(Error("recording " + type + " " + name));
  return sqlite3_column_int64(s->get(), 0);
}

Status SqliteStore::EnsurePipelineVersionLocked(const RunRecord& run, int64_t* version_id) {
  auto pipeline_id = EnsureContextLocked("pipeline", run.pipeline, 0, run.created_at);
  if (!pipeline_id) return pipeline_id.error();
  auto vid = EnsureContextLocked("pipeline_version", run.pipeline + "@" + run.pipeline_digest,
                                 *pipeline_id, run.created_at);
  if (!vid) return vid.error();
  auto s = Prepare(
      "INSERT OR IGNORE INTO pipeline_versions(context_id, pipeline, digest, file, yaml, "
      "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!s) return s.error();
  s->Bind(*vid, run.pipeline, run.pipeline_digest, run.pipeline_file, run.pipeline_yaml, run.created_at);
  if (!s->Done()) return Error("recording pipeline version");
  *version_id = *vid;
  return Status::Ok();
}

Status SqliteStore::UpsertArtifactLocked(const ArtifactRecord& a) {
  auto s = Prepare(
      "INSERT INTO artifacts(digest, uri, type, size, is_directory, properties, created_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
      "ON CONFLICT(digest) DO UPDATE SET uri = excluded.uri, "
      "properties = json_patch(artifacts.properties, excluded.properties) "
      // A cache hit names artifacts already recorded: leave their row (and
      // its page) alone unless something changes.
      "WHERE artifacts.uri <> excluded.uri OR excluded.properties <> '{}'");
  if (!s) return s.error();
  s->Bind(a.digest, a.uri, ArtifactTypeName(a.type), a.size, a.is_directory,
          DumpJson(a.properties.is_object() ? a.properties : Json::object()), std::chrono::system_clock::now());
  if (!s->Done()) return Error("recording artifact " + a.digest);
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Runs

Status SqliteStore::CreateRun(const RunRecord& run) {
  if (run.id.empty()) return Status::InvalidArgument("a run needs an id");
  return Transaction([&]() -> Status {
    int64_t version_id = 0;
    SLUICE_RETURN_IF_ERROR(EnsurePipelineVersionLocked(run, &version_id));
    auto run_ctx = EnsureContextLocked("run", run.id, version_id, run.created_at);
    if (!run_ctx) return run_ctx.error();
    auto s = Prepare(
        "INSERT INTO runs(id, context_id, version_id, pipeline, pipeline_file, pipeline_digest, "
        "git_commit, git_dirty, params, executor, phase, message, resumed_from, created_at, "
        "started_at, finished_at, host, pid, no_cache, artifacts) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)");
    if (!s) return s.error();
    s->Bind(run.id, *run_ctx, version_id, run.pipeline, run.pipeline_file, run.pipeline_digest, run.git_commit,
            run.git_dirty, DumpJson(run.params), run.executor, RunPhaseName(run.phase), run.message,
            run.resumed_from, run.created_at, run.started_at, run.finished_at, run.host, run.pid, run.no_cache,
            run.artifacts);
    if (!s->Done()) {
      Status err = Error("creating run " + run.id);
      if (err.code() == StatusCode::kAlreadyExists) {
        err = Status::AlreadyExists("run " + run.id + " already exists");
      }
      return err;
    }
    return Status::Ok();
  });
}

Status SqliteStore::UpdateRun(const RunRecord& run) {
  return Transaction([&]() -> Status {
    // The file may have changed (resume after an edit): record that version too.
    int64_t version_id = 0;
    SLUICE_RETURN_IF_ERROR(EnsurePipelineVersionLocked(run, &version_id));
    auto s = Prepare(
        "UPDATE runs SET version_id = ?2, pipeline_file = ?3, pipeline_digest = ?4, "
        "git_commit = ?5, git_dirty = ?6, params = ?7, executor = ?8, phase = ?9, message = ?10, "
        "resumed_from = ?11, started_at = ?12, finished_at = ?13, host = ?14, pid = ?15, "
        "no_cache = ?16, artifacts = ?17 "
        "WHERE id = ?1");
    if (!s) return s.error();
    s->Bind(run.id, version_id, run.pipeline_file, run.pipeline_digest, run.git_commit, run.git_dirty,
            DumpJson(run.params), run.executor, RunPhaseName(run.phase), run.message, run.resumed_from,
            run.started_at, run.finished_at, run.host, run.pid, run.no_cache, run.artifacts);
    if (!s->Done()) return Error("updating run " + run.id);
    if (sqlite3_changes(db_) == 0) return Status::NotFound("no run " + run.id);
    return Status::Ok();
  });
}

Result<RunRecord> SqliteStore::GetRun(const std::string& id_or_prefix) {
  if (id_or_prefix.empty()) return sluice::Error(Status::InvalidArgument("empty run id"));
  std::lock_guard<std::mutex> lock(mu_);
  static const std::string kExact = std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?1";
  {
    auto s = Prepare(kExact.c_str());
    if (!s) return sluice::Error(s.error());
    s->Bind(id_or_prefix);
    int rc = s->Step();
    if (rc == SQLITE_ROW) return ReadRun(s->get());
    if (rc != SQLITE_DONE) return sluice::Error(Error("reading run " + id_or_prefix));
  }
  static const std::string kPrefix = std::string("SELECT ") + kRunColumns +
                                     " FROM runs WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT 6";
  auto s = Prepare(kPrefix.c_str());
  if (!s) return sluice::Error(s.error());
  auto matches = s->Bind(id_or_prefix, PrefixUpperBound(id_or_prefix)).Rows(ReadRun, "reading run " + id_or_prefix);
  if (!matches) return sluice::Error(matches.error());
  if (matches->empty()) {
    return sluice::Error(
        Status::NotFound("no run '" + id_or_prefix + "' in this store (`sluice runs` lists them)"));
  }
  if (matches->size() > 1) {
    std::string msg = "run id prefix '" + id_or_prefix + "' is ambiguous; it matches ";
    for (size_t i = 0; i < matches->size() && i < 5; ++i) {
      msg += (i ? ", " : "") + (*matches)[i].id;
    }
    if (matches->size() > 5) msg += ", ...";
    return sluice::Error(Status::InvalidArgument(msg + "; give more characters"));
  }
  return std::move(matches->front());
}

Result<std::vector<RunRecord>> SqliteStore::ListRuns(const RunFilter& filter) {
  std::lock_guard<std::mutex> lock(mu_);
  static const std::string kSql =
      std::string("SELECT ") + kRunColumns +
      " FROM runs WHERE (?1 = '' OR pipeline = ?1) AND (?2 = '' OR phase = ?2) "
      "AND (?3 IS NULL OR created_at >= ?3) ORDER BY created_at DESC, id DESC LIMIT ?4";
  auto s = Prepare(kSql.c_str());
  if (!s) return sluice::Error(s.error());
  s->Bind(filter.pipeline, filter.phase ? RunPhaseName(*filter.phase) : "", filter.since,
          filter.limit > 0 ? filter.limit : -1);
  return s->Rows(ReadRun, "listing runs");
}

// ---------------------------------------------------------------------------
// Steps

Status SqliteStore::PutStep(const StepRecord& step) {
  bool has_artifacts = !step.outputs.empty() || !step.inputs.empty();
  // A single statement needs no explicit transaction; artifacts need one.
  if (has_artifacts) return Transaction([&] { return PutStepLocked(step, nullptr); });
  std::lock_guard<std::mutex> lock(mu_);
  return PutStepLocked(step, nullptr);
}

Status SqliteStore::UpsertArtifactOnceLocked(const ArtifactRecord& artifact,
                                             std::unordered_set<std::string>* upserted) {
  if (upserted && !upserted->insert(artifact.digest).second) return Status::Ok();
  return UpsertArtifactLocked(artifact);
}

Status SqliteStore::PutStepLocked(const StepRecord& step, std::unordered_set<std::string>* upserted) {
  for (const auto* list : {&step.outputs, &step.inputs}) {
    for (const auto& b : *list) SLUICE_RETURN_IF_ERROR(UpsertArtifactOnceLocked(b.artifact, upserted));
  }
  // An upsert updates the row in place; INSERT OR REPLACE would delete it
  // and insert it again (the same row: the table has no rowid).
  auto s = Prepare(
      "INSERT INTO steps(" SLUICE_STEP_COLUMNS
      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) "
      "ON CONFLICT(run_id, instance) DO UPDATE SET step = excluded.step, idx = excluded.idx, "
      "item = excluded.item, phase = excluded.phase, attempts = excluded.attempts, "
      "exit_code = excluded.exit_code, message = excluded.message, log_path = excluded.log_path, "
      "cache_key = excluded.cache_key, cached_from = excluded.cached_from, started_at = excluded.started_at, "
      "finished_at = excluded.finished_at, output_params = excluded.output_params, metrics = excluded.metrics, "
      "outputs = excluded.outputs, inputs = excluded.inputs");
  if (!s) return s.error();
  s->Bind(step.run_id, step.instance, step.step, step.index, DumpJson(step.item), NodePhaseName(step.phase),
          step.attempts, step.exit_code, step.message, step.log_path, step.cache_key, step.cached_from,
          step.started_at, step.finished_at, DumpJson(step.output_params), DumpJson(step.metrics),
          BindingsJsonText(step.outputs), BindingsJsonText(step.inputs));
  if (!s->Done()) {
    Status err = Error("recording step " + step.run_id + "/" + step.instance);
    if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_FOREIGNKEY) {
      err = Status::NotFound("no run " + step.run_id + " for step " + step.instance);
    }
    return err;
  }
  return Status::Ok();
}

Result<std::vector<StepRecord>> SqliteStore::ListSteps(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  // rowid order is not available (WITHOUT ROWID); order by start, then name,
  // with never-started steps last, which is the order a user reads a run in.
  auto s = Prepare("SELECT " SLUICE_STEP_COLUMNS
                   " FROM steps WHERE run_id = ?1 "
                   "ORDER BY started_at IS NULL, started_at, step, idx, instance");
  if (!s) return sluice::Error(s.error());
  return s->Bind(run_id).Rows(ReadStep, "reading steps");
}

Result<StepRecord> SqliteStore::GetStep(const std::string& run_id, const std::string& instance) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare("SELECT " SLUICE_STEP_COLUMNS " FROM steps WHERE run_id = ?1 AND instance = ?2");
  if (!s) return sluice::Error(s.error());
  auto steps = s->Bind(run_id, instance).Rows(ReadStep, "reading steps");
  if (!steps) return sluice::Error(steps.error());
  if (steps->empty()) {
    return sluice::Error(Status::NotFound("run " + run_id + " has no step '" + instance + "'"));
  }
  return std::move(steps->front());
}

Result<StepRecord> SqliteStore::FindCached(const std::string& cache_key,
                                           std::optional<TimePoint> not_before) {
  if (cache_key.empty()) return sluice::Error(Status::NotFound("empty cache key"));
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare("SELECT " SLUICE_STEP_COLUMNS
                   " FROM steps WHERE cache_key = ?1 AND phase = 'Succeeded' "
                   "AND cache_key <> '' AND (?2 IS NULL OR finished_at >= ?2) "
                   "ORDER BY finished_at DESC LIMIT 1");
  if (!s) return sluice::Error(s.error());
  auto steps = s->Bind(cache_key, not_before).Rows(ReadStep, "reading steps");
  if (!steps) return sluice::Error(steps.error());
  if (steps->empty()) return sluice::Error(Status::NotFound("no cached result for " + cache_key));
  return std::move(steps->front());
}


// Selects only what a hit uses: not the step's inputs, which it records
// itself. The reused execution is the step's last attempt, the one that
// succeeded (nothing runs again in a run after its step succeeded): read
// from the index executions_by_run alone, not from the executions rows.
constexpr const char* kCacheHitSql =
    "SELECT run_id, instance, step, idx, exit_code, cached_from, started_at, finished_at, "
    "output_params, metrics, outputs, "
    "(SELECT e.id FROM executions e WHERE e.run_id = steps.run_id AND e.instance = steps.instance "
    " ORDER BY e.attempt DESC, e.id DESC LIMIT 1) "
    "FROM steps WHERE cache_key = ?1 AND phase = 'Succeeded' "
    "AND cache_key <> '' AND (?2 IS NULL OR finished_at >= ?2) "
    "ORDER BY finished_at DESC LIMIT 1";

Status SqliteStore::OpenLookupLocked() {
  if (lookup_stmt_) return Status::Ok();
  auto fail = [this](const std::string& what) {
    std::string msg = what + " " + path_ + ": " + (lookup_db_ ? sqlite3_errmsg(lookup_db_) : "out of memory");
    sqlite3_finalize(lookup_stmt_);
    sqlite3_close_v2(lookup_db_);
    lookup_stmt_ = nullptr;
    lookup_db_ = nullptr;
    return Status::Internal(msg);
  };
  if (sqlite3_open_v2(path_.c_str(), &lookup_db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK)
    return fail("opening a lookup connection to");
  sqlite3_extended_result_codes(lookup_db_, 1);
  sqlite3_db_config(lookup_db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  sqlite3_busy_timeout(lookup_db_, static_cast<int>(busy_timeout_.count()));
  // Reads through a memory map: a lookup re-reads pages after each commit
  // of the writer (SQLite then drops the connection's page cache), and
  // mapped pages cost no system call or copy.
  if (sqlite3_exec(lookup_db_, "PRAGMA cache_size=-16384; PRAGMA mmap_size=1073741824", nullptr, nullptr,
                   nullptr) != SQLITE_OK)
    return fail("configuring the lookup connection to");
  if (sqlite3_prepare_v3(lookup_db_, kCacheHitSql, -1, SQLITE_PREPARE_PERSISTENT, &lookup_stmt_, nullptr) !=
      SQLITE_OK)
    return fail("preparing the cache lookup on");
  return Status::Ok();
}

Result<CacheHit> SqliteStore::FindCacheHit(const std::string& cache_key,
                                           std::optional<TimePoint> not_before) {
  if (cache_key.empty()) return sluice::Error(Status::NotFound("empty cache key"));
  std::lock_guard<std::mutex> lock(lookup_mu_);
  SLUICE_RETURN_IF_ERROR_RESULT(OpenLookupLocked());
  Statement stmt(lookup_stmt_);
  stmt.Bind(cache_key, not_before);  // both parameters, every time
  int rc = stmt.Step();
  if (rc == SQLITE_DONE) return sluice::Error(Status::NotFound("no cached result for " + cache_key));
  if (rc != SQLITE_ROW) return sluice::Error(stmt.Error("looking up cache key " + cache_key));
  sqlite3_stmt* s = stmt.get();
  CacheHit hit;
  StepRecord& r = hit.step;
  r.run_id = ColumnText(s, 0);
  r.instance = ColumnText(s, 1);
  r.step = ColumnText(s, 2);
  r.index = sqlite3_column_int(s, 3);
  r.phase = NodePhase::kSucceeded;
  r.exit_code = sqlite3_column_int(s, 4);
  r.cache_key = cache_key;
  r.cached_from = ColumnText(s, 5);
  r.started_at = ColumnTime(s, 6);
  r.finished_at = ColumnTime(s, 7);
  r.output_params = ParseJson(sqlite3_column_text(s, 8), Json::object());
  r.metrics = ParseJson(sqlite3_column_text(s, 9), Json::object());
  r.outputs = BindingsFromText(sqlite3_column_text(s, 10));
  hit.execution_id = sqlite3_column_int64(s, 11);
  return hit;
}

// ---------------------------------------------------------------------------
// Executions

Result<int64_t> SqliteStore::StartExecution(const ExecutionRecord& e) {
  std::lock_guard<std::mutex> lock(mu_);
  return InsertExecutionLocked(e);
}

Result<int64_t> SqliteStore::InsertExecutionLocked(const ExecutionRecord& e) {
  auto s = Prepare(
      "INSERT INTO executions(run_id, instance, attempt, outcome, exit_code, message, log_path, "
      "external_id, cache_key, started_at, finished_at, snapshot, snapshot_base) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");
  if (!s) return sluice::Error(s.error());
  s->Bind(e.run_id, e.instance, e.attempt, e.outcome.empty() ? "Running" : e.outcome, e.exit_code, e.message,
          e.log_path, e.external_id, e.cache_key, e.started_at, e.finished_at, SnapshotColumn(e),
          IdOrNull(e.snapshot_base));
  if (!s->Done()) {
    if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_FOREIGNKEY) {
      return sluice::Error(Status::NotFound("no run " + e.run_id + " for execution of " + e.instance));
    }
    return sluice::Error(Error("recording execution of " + e.run_id + "/" + e.instance));
  }
  return sqlite3_last_insert_rowid(db_);
}

Status SqliteStore::FinishExecution(const ExecutionRecord& e,
                                    const std::vector<ArtifactBinding>& inputs,
                                    const std::vector<ArtifactBinding>& outputs) {
  return Transaction([&] { return FinishExecutionLocked(e, inputs, outputs, nullptr); });
}

Status SqliteStore::FinishExecutionLocked(const ExecutionRecord& e, const std::vector<ArtifactBinding>& inputs,
                                          const std::vector<ArtifactBinding>& outputs,
                                          std::unordered_set<std::string>* upserted) {
  {
    auto s = Prepare(
        "UPDATE executions SET outcome = ?2, exit_code = ?3, message = ?4, log_path = ?5, "
        "external_id = ?6, cache_key = ?7, finished_at = ?8, snapshot = ?9 WHERE id = ?1");
    if (!s) return s.error();
    s->Bind(e.id, e.outcome, e.exit_code, e.message, e.log_path, e.external_id, e.cache_key,
            e.finished_at ? *e.finished_at : std::chrono::system_clock::now(), SnapshotColumn(e));
    if (!s->Done()) return Error("finishing execution");
    if (sqlite3_changes(db_) == 0) return Status::NotFound("no execution " + std::to_string(e.id));
  }
  return InsertEventsLocked(e.id, inputs, outputs, upserted);
}

Status SqliteStore::InsertEventsLocked(int64_t execution_id, const std::vector<ArtifactBinding>& inputs,
                                       const std::vector<ArtifactBinding>& outputs,
                                       std::unordered_set<std::string>* upserted) {
  int64_t now = ToMillis(std::chrono::system_clock::now());
  for (const auto* list : {&inputs, &outputs}) {
    const char* type = list == &inputs ? "INPUT" : "OUTPUT";
    for (const auto& b : *list) {
      SLUICE_RETURN_IF_ERROR(UpsertArtifactOnceLocked(b.artifact, upserted));
      auto ev = Prepare(
          "INSERT OR IGNORE INTO events(execution_id, artifact, type, name, created_at) "
          "VALUES (?1, ?2, ?3, ?4, ?5)");
      if (!ev) return ev.error();
      if (!ev->Bind(execution_id, b.artifact.digest, type, b.name, now).Done()) {
        return Error("recording event " + b.name);
      }
    }
  }
  return Status::Ok();
}

Status SqliteStore::Write(const StoreBatch& batch) {
  if (batch.empty()) return Status::Ok();
  return Transaction([&]() -> Status {
    std::unordered_set<std::string> upserted;
    for (const auto& e : batch.executions) {
      if (e.record.id != 0) {
        SLUICE_RETURN_IF_ERROR(FinishExecutionLocked(e.record, e.inputs, e.outputs, &upserted));
        continue;
      }
      auto id = InsertExecutionLocked(e.record);
      if (!id) return id.error();
      SLUICE_RETURN_IF_ERROR(InsertEventsLocked(*id, e.inputs, e.outputs, &upserted));
    }
    for (const auto& step : batch.steps) SLUICE_RETURN_IF_ERROR(PutStepLocked(step, &upserted));
    return Status::Ok();
  });
}

Result<std::vector<ExecutionRecord>> SqliteStore::ListExecutions(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare("SELECT " SLUICE_EXECUTION_COLUMNS " FROM executions WHERE run_id = ?1 ORDER BY id");
  if (!s) return sluice::Error(s.error());
  auto out = s->Bind(run_id).Rows(ReadExecution, "listing executions of " + run_id);
  if (!out) return out;
  SLUICE_RETURN_IF_ERROR_RESULT(ResolveSnapshotsLocked(&*out));
  return out;
}

// ---------------------------------------------------------------------------
// Deleting runs

Status SqliteStore::DeleteRun(const std::string& run_id) {
  if (run_id.empty()) return Status::InvalidArgument("empty run id");
  return Transaction([&]() -> Status {
    using Rows = std::vector<std::vector<std::string>>;
    // Runs `sql` with `args` to completion, each row's columns as text.
    auto rows = [&](const char* sql, const std::vector<std::string>& args) -> Result<Rows> {
      auto q = Prepare(sql);
      if (!q) return sluice::Error(q.error());
      for (size_t i = 0; i < args.size(); ++i) q->BindAt(static_cast<int>(i) + 1, args[i]);
      auto read = [](sqlite3_stmt* s) {
        std::vector<std::string> row;
        for (int c = 0; c < sqlite3_column_count(s); ++c) row.push_back(ColumnText(s, c));
        return row;
      };
      return q->Rows(read, std::string("deleting run ") + run_id);
    };
    auto firsts = [](const Rows& list) {
      std::vector<std::string> out;
      for (const auto& row : list) out.push_back(row[0]);
      return out;
    };

    auto run = rows("SELECT phase, context_id, host, pid FROM runs WHERE id = ?1", {run_id});
    if (!run) return run.error();
    if (run->empty()) return DeleteRunNotFound(run_id);
    const std::vector<std::string>& r = run->front();
    std::optional<RunPhase> phase = ParseRunPhase(r[0]);
    if (!phase || !IsTerminal(*phase)) return DeleteRunNotEnded(run_id, r[0], r[3], r[2]);
    // Cached steps of other runs name this run in cached_from ("<run>/<instance>"):
    // their outputs' lineage leads to its executions, and the cache finds them here.
    auto reusers = rows("SELECT DISTINCT run_id FROM steps WHERE cached_from >= ?1 AND cached_from < ?2 "
                        "AND run_id <> ?3 ORDER BY run_id LIMIT 4",
                        {run_id + "/", run_id + "0", run_id});
    if (!reusers) return reusers.error();
    if (!reusers->empty()) return DeleteRunReused(run_id, firsts(*reusers));
    // What each service serves now (its newest record, unless undeployed):
    // keep the run that deployed it and the runs that produced the model.
    auto serving = rows("SELECT d.service FROM deployments d "
                        "WHERE d.id = (SELECT d2.id FROM deployments d2 WHERE d2.service = d.service "
                        "              ORDER BY d2.at DESC, d2.id DESC LIMIT 1) "
                        "AND d.action <> 'undeploy' AND (d.run_id = ?1 OR EXISTS ("
                        "  SELECT 1 FROM executions e JOIN events ev ON ev.execution_id = e.id "
                        "  WHERE e.run_id = ?1 AND ev.type = 'OUTPUT' AND e.outcome <> 'Cached' "
                        "  AND ev.artifact IN (d.model_digest, d.baseline_digest))) "
                        "ORDER BY d.service",
                        {run_id});
    if (!serving) return serving.error();
    if (!serving->empty()) return DeleteRunServing(run_id, firsts(*serving));

    auto digests = rows("SELECT DISTINCT ev.artifact FROM events ev JOIN executions e ON e.id = ev.execution_id "
                        "WHERE e.run_id = ?1",
                        {run_id});
    if (!digests) return digests.error();
    for (const char* sql : {
             "DELETE FROM events WHERE execution_id IN (SELECT id FROM executions WHERE run_id = ?1)",
             "DELETE FROM executions WHERE run_id = ?1",
             "DELETE FROM steps WHERE run_id = ?1",
             "DELETE FROM deployments WHERE run_id = ?1",
             "DELETE FROM runs WHERE id = ?1",
             "DELETE FROM contexts WHERE type = 'run' AND name = ?1",
         }) {
      if (auto done = rows(sql, {run_id}); !done) return done.error();
    }
    for (const auto& d : *digests) {
      auto done = rows("DELETE FROM artifacts WHERE digest = ?1 "
                       "AND NOT EXISTS (SELECT 1 FROM events WHERE artifact = ?1) "
                       "AND NOT EXISTS (SELECT 1 FROM deployments WHERE model_digest = ?1 "
                       "                OR baseline_digest = ?1)",
                       {d[0]});
      if (!done) return done.error();
    }
    return Status::Ok();
  });
}

Result<std::vector<std::string>> SqliteStore::ArtifactDigests() {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare("SELECT digest FROM artifacts ORDER BY digest");
  if (!s) return sluice::Error(s.error());
  return s->Rows([](sqlite3_stmt* row) { return ColumnText(row, 0); }, "listing artifacts");
}

// ---------------------------------------------------------------------------
// Deployments

Result<int64_t> SqliteStore::RecordDeployment(const DeploymentRecord& d) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(
      "INSERT INTO deployments(service, namespace, executor, action, version, model_digest, "
      "baseline_digest, traffic_percent, endpoint, run_id, instance, execution_id, at, details) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
  if (!s) return sluice::Error(s.error());
  s->Bind(d.service, d.namespace_, d.executor, d.action, d.version, d.model_digest, d.baseline_digest,
          d.traffic_percent, d.endpoint, d.run_id, d.instance, IdOrNull(d.execution_id),
          d.at == TimePoint{} ? std::chrono::system_clock::now() : d.at, DumpJson(d.details));
  if (!s->Done()) {
    return sluice::Error(Error("recording deployment of " + d.service));
  }
  return sqlite3_last_insert_rowid(db_);
}

Result<std::vector<DeploymentRecord>> SqliteStore::ListDeployments(const std::string& service,
                                                                   int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(
      "SELECT id, service, namespace, executor, action, version, model_digest, baseline_digest, "
      "traffic_percent, endpoint, run_id, instance, execution_id, at, details FROM deployments "
      "WHERE (?1 = '' OR service = ?1) ORDER BY at DESC, id DESC LIMIT ?2");
  if (!s) return sluice::Error(s.error());
  return s->Bind(service, limit > 0 ? limit : -1).Rows(ReadDeployment, "listing deployments");
}

// ---------------------------------------------------------------------------
// Audit log

Status SqliteStore::AppendAudit(const AuditEntry& a) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(
      "INSERT INTO audit_log(at, who, role, method, route, run_id, pipeline, code) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!s) return s.error();
  s->Bind(a.at == TimePoint{} ? std::chrono::system_clock::now() : a.at, a.who, a.role, a.method,
          a.route, a.run_id, a.pipeline, a.code);
  if (!s->Done()) return Error("recording an audit entry of " + a.who);
  return Status::Ok();
}

Result<std::vector<AuditEntry>> SqliteStore::ListAudit(const AuditFilter& filter) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(
      "SELECT id, at, who, role, method, route, run_id, pipeline, code FROM audit_log "
      "WHERE (?1 IS NULL OR at >= ?1) ORDER BY id DESC LIMIT ?2");
  if (!s) return sluice::Error(s.error());
  return s->Bind(filter.since, filter.limit > 0 ? filter.limit : -1).Rows(ReadAudit, "listing the audit log");
}

// ---------------------------------------------------------------------------
// Lineage queries

Result<ArtifactRecord> SqliteStore::GetArtifact(const std::string& digest_or_prefix) {
  std::string prefix = digest_or_prefix;
  if (prefix.rfind("sha256:", 0) != 0) prefix = "sha256:" + prefix;
  if (prefix.size() <= 7) return sluice::Error(Status::InvalidArgument("empty artifact digest"));
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(
      "SELECT digest, uri, type, size, is_directory, properties FROM artifacts "
      "WHERE digest >= ?1 AND digest < ?2 ORDER BY digest LIMIT 6");
  if (!s) return sluice::Error(s.error());
  auto matches = s->Bind(prefix, PrefixUpperBound(prefix))
                     .Rows([](sqlite3_stmt* row) { return ReadArtifact(row, 0); }, "reading artifact");
  if (!matches) return sluice::Error(matches.error());
  if (matches->empty()) {
    return sluice::Error(Status::NotFound("no artifact " + digest_or_prefix + " in this store"));
  }
  if (matches->size() > 1 && matches->front().digest != prefix) {
    return sluice::Error(Status::InvalidArgument("artifact digest prefix '" + digest_or_prefix +
                                                 "' is ambiguous; give more characters"));
  }
  return std::move(matches->front());
}

Result<std::vector<ExecutionRecord>> SqliteStore::QueryExecutions(Statement& s) {
  auto out = s.Rows(ReadExecution, "reading executions");
  if (!out) return out;
  SLUICE_RETURN_IF_ERROR_RESULT(ResolveSnapshotsLocked(&*out));
  return out;
}

Status SqliteStore::ResolveSnapshotsLocked(std::vector<ExecutionRecord>* executions) {
  return ResolveLightSnapshots(executions, [this](int64_t id) -> Result<std::pair<Json, int64_t>> {
    auto s = Prepare("SELECT snapshot, snapshot_base FROM executions WHERE id = ?1");
    if (!s) return sluice::Error(s.error());
    int rc = s->Bind(id).Step();
    if (rc == SQLITE_ROW)
      return std::pair<Json, int64_t>(ParseJson(sqlite3_column_text(s->get(), 0), Json::object()),
                                      sqlite3_column_int64(s->get(), 1));
    if (rc != SQLITE_DONE) return sluice::Error(Error("reading the snapshot of execution " + std::to_string(id)));
    // A base that is gone (never, while DeleteRun keeps reused runs) leaves
    // the light snapshot as it is.
    return std::pair<Json, int64_t>(Json::object(), 0);
  });
}

Result<ExecutionRecord> SqliteStore::GetExecution(int64_t execution_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare("SELECT " SLUICE_EXECUTION_COLUMNS " FROM executions WHERE id = ?1");
  if (!s) return sluice::Error(s.error());
  auto out = QueryExecutions(s->Bind(execution_id));
  if (!out) return sluice::Error(out.error());
  if (out->empty()) {
    return sluice::Error(Status::NotFound("no execution " + std::to_string(execution_id)));
  }
  return std::move(out->front());
}

Result<std::vector<ExecutionRecord>> SqliteStore::ProducersOf(const std::string& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(
      "SELECT " SLUICE_EXECUTION_COLUMNS " FROM executions WHERE id IN "
      "(SELECT execution_id FROM events WHERE artifact = ?1 AND type = 'OUTPUT') ORDER BY id");
  if (!s) return sluice::Error(s.error());
  return QueryExecutions(s->Bind(digest));
}

Result<std::vector<ExecutionRecord>> SqliteStore::ConsumersOf(const std::string& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(
      "SELECT " SLUICE_EXECUTION_COLUMNS " FROM executions WHERE id IN "
      "(SELECT execution_id FROM events WHERE artifact = ?1 AND type = 'INPUT') ORDER BY id");
  if (!s) return sluice::Error(s.error());
  return QueryExecutions(s->Bind(digest));
}

Result<std::vector<ArtifactBinding>> SqliteStore::EventArtifacts(int64_t execution_id,
                                                                 const char* type) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(
      "SELECT ev.name, a.digest, a.uri, a.type, a.size, a.is_directory, a.properties "
      "FROM events ev JOIN artifacts a ON a.digest = ev.artifact "
      "WHERE ev.execution_id = ?1 AND ev.type = ?2 ORDER BY ev.name, a.digest");
  if (!s) return sluice::Error(s.error());
  auto read = [](sqlite3_stmt* row) { return ArtifactBinding{ColumnText(row, 0), ReadArtifact(row, 1)}; };
  return s->Bind(execution_id, type).Rows(read, "reading events");
}

Result<std::vector<ArtifactBinding>> SqliteStore::InputsOf(int64_t execution_id) {
  return EventArtifacts(execution_id, "INPUT");
}

Result<std::vector<ArtifactBinding>> SqliteStore::OutputsOf(int64_t execution_id) {
  return EventArtifacts(execution_id, "OUTPUT");
}

Result<PipelineVersionRecord> SqliteStore::GetPipelineVersion(const std::string& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(
      "SELECT pipeline, digest, yaml, file, created_at FROM pipeline_versions WHERE digest = ?1 "
      "ORDER BY created_at DESC LIMIT 1");
  if (!s) return sluice::Error(s.error());
  int rc = s->Bind(digest).Step();
  if (rc == SQLITE_DONE) {
    return sluice::Error(Status::NotFound("no pipeline version with digest " + digest));
  }
  if (rc != SQLITE_ROW) return sluice::Error(Error("reading pipeline version"));
  sqlite3_stmt* row = s->get();
  PipelineVersionRecord v;
  v.pipeline = ColumnText(row, 0);
  v.digest = ColumnText(row, 1);
  v.yaml = ColumnText(row, 2);
  v.file = ColumnText(row, 3);
  v.created_at = FromMillis(sqlite3_column_int64(row, 4));
  return v;
}

Result<int> SqliteStore::SchemaVersion() {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare("PRAGMA user_version");
  if (!s) return sluice::Error(s.error());
  if (s->Step() != SQLITE_ROW) return sluice::Error(Error("reading schema version"));
  return sqlite3_column_int(s->get(), 0);
}

Result<std::string> SqliteStore::IntegrityCheck() {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, "PRAGMA integrity_check", -1, &s, nullptr) != SQLITE_OK) {
    return sluice::Error(Error("integrity check"));
  }
  std::string out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (!out.empty()) out += "\n";
    out += ColumnText(s, 0);
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) return sluice::Error(Error("integrity check"));
  return out;
}

}  // namespace sluice
