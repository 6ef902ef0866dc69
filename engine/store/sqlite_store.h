#pragma once
// SqliteStore: the embedded default Store, one SQLite file
// `<state_dir>/sluice.db`.
//
// Durability: WAL journal with synchronous=NORMAL. A committed transaction is
// in the WAL (in the OS page cache) when the call returns, so a crash or
// `kill -9` of the sluice process never loses it and never corrupts the
// file. Only an OS crash or power loss may drop the last few transactions
// (the store stays consistent: WAL frames are checksummed). This is the
// trade that keeps a step's bookkeeping to a few tens of microseconds.
//
// Concurrency: readers in other processes (`sluice status` in another
// terminal) never block the writer and see committed state; writers take the
// lock with BEGIN IMMEDIATE and wait up to `busy_timeout` for each other.
// Within a process one connection is shared behind a mutex, with its
// prepared statements cached; cache lookups use a second connection of
// their own, so a Write on another thread (engine/store/store_writer.h) never
// holds them up.
//
// Schema (ML Metadata's shape, see docs/store.md):
//   contexts        pipeline / pipeline_version / run, parent links
//   pipeline_versions  a version keyed by the file's digest, with its YAML text
//   runs            one row per run (the run context's attributes)
//   executions      one row per step attempt, with its snapshot and cache key;
//                   a cache hit's snapshot is light: only what differs from
//                   the execution named by snapshot_base (merged on read)
//   artifacts       content digest (PK), uri, type, size, properties
//   events          execution <-> artifact, INPUT or OUTPUT, with the name
//   steps           the current state of each step instance (fast status)
//   deployments     append-only history of what each service serves
//   audit_log       append-only: every write through the server's API
//   associations / attributions   views (context <-> execution / artifact)
// The schema version is `PRAGMA user_version`; migrations run in one
// transaction at open.

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/store.h"
#include "engine/store/open_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace sluice {

// The options of OpenStore (engine/store/open_store.h), which opens a
// SqliteStore.
using SqliteStoreOptions = StoreOptions;

// A pipeline version: the file's digest and its text.
struct PipelineVersionRecord {
  std::string pipeline;
  std::string digest;
  std::string yaml;
  std::string file;
  TimePoint created_at{};
};

class SqliteStore : public Store {
 public:
  // The newest schema version this build knows.
  static constexpr int kSchemaVersion = 5;

  // Opens (and by default creates) `<state_dir>/sluice.db`, applying any
  // pending migrations. Errors: kNotFound (missing and !create_if_missing),
  // kFailedPrecondition (written by a newer sluice, or not a sluice store),
  // kUnavailable (locked for longer than busy_timeout), kInternal.
  static Result<std::unique_ptr<SqliteStore>> Open(const std::string& state_dir,
                                                   SqliteStoreOptions options = {});

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // Path of the database file.
  const std::string& path() const { return path_; }

  // Store interface; see engine/store.h.
  Status CreateRun(const RunRecord& run) override;
  Status UpdateRun(const RunRecord& run) override;
  Result<RunRecord> GetRun(const std::string& id_or_prefix) override;
  Result<std::vector<RunRecord>> ListRuns(const RunFilter& filter) override;
  Status PutStep(const StepRecord& step) override;
  Result<std::vector<StepRecord>> ListSteps(const std::string& run_id) override;
  Result<StepRecord> GetStep(const std::string& run_id, const std::string& instance) override;
  Result<int64_t> StartExecution(const ExecutionRecord& execution) override;
  Status FinishExecution(const ExecutionRecord& execution,
                         const std::vector<ArtifactBinding>& inputs,
                         const std::vector<ArtifactBinding>& outputs) override;
  // One transaction for the whole batch (see Store::Write).
  Status Write(const StoreBatch& batch) override;
  Result<std::vector<ExecutionRecord>> ListExecutions(const std::string& run_id) override;
  Result<StepRecord> FindCached(const std::string& cache_key,
                                std::optional<TimePoint> not_before) override;
  // One indexed lookup that reads only what a hit uses (no inputs or item).
  Result<CacheHit> FindCacheHit(const std::string& cache_key,
                                std::optional<TimePoint> not_before) override;
  bool ConcurrentWrites() const override { return true; }
  Status DeleteRun(const std::string& run_id) override;
  Result<int64_t> RecordDeployment(const DeploymentRecord& record) override;
  Result<std::vector<DeploymentRecord>> ListDeployments(const std::string& service,
                                                        int limit) override;
  Status AppendAudit(const AuditEntry& entry) override;
  Result<std::vector<AuditEntry>> ListAudit(const AuditFilter& filter) override;

  Result<ArtifactRecord> GetArtifact(const std::string& digest_or_prefix) override;
  Result<ExecutionRecord> GetExecution(int64_t execution_id) override;
  Result<std::vector<ExecutionRecord>> ProducersOf(const std::string& digest) override;
  Result<std::vector<ExecutionRecord>> ConsumersOf(const std::string& digest) override;
  Result<std::vector<ArtifactBinding>> InputsOf(int64_t execution_id) override;
  Result<std::vector<ArtifactBinding>> OutputsOf(int64_t execution_id) override;
  Result<std::vector<std::string>> ArtifactDigests() override;

  // A pipeline version by file digest; kNotFound.
  Result<PipelineVersionRecord> GetPipelineVersion(const std::string& digest);

  // The schema version of the open file (PRAGMA user_version).
  Result<int> SchemaVersion();
  // Runs `PRAGMA integrity_check`; "ok" when the file is sound.
  Result<std::string> IntegrityCheck();

 private:
  SqliteStore(sqlite3* db, std::string path, Duration busy_timeout);

  // A prepared statement in use: binds, steps, and resets when it goes out
  // of scope (defined in sqlite_store.cc).
  class Statement;

  Status Migrate();
  // The cached prepared statement for `sql` (reset, bindings cleared),
  // prepared on first use; `sql` must be a literal (the cache's key). The
  // caller holds mu_. Errors as Error("preparing <sql>").
  Result<Statement> Prepare(const char* sql);
  Status Exec(const char* sql);
  Status Begin();
  Status Commit();
  void Rollback();
  // Runs `body` (returning Status) in one write transaction: BEGIN
  // IMMEDIATE, then COMMIT when it returns Ok, else ROLLBACK and its error.
  // The caller holds mu_.
  template <class Body>
  Status TransactionLocked(Body&& body);
  // TransactionLocked, holding mu_ for the call.
  template <class Body>
  Status Transaction(Body&& body);
  Status Error(const std::string& what) const;
  // As Error, for any connection of the store's (the lookup connection too).
  static Status ErrorOn(sqlite3* db, const std::string& what);
  Status UpsertArtifactLocked(const ArtifactRecord& artifact);
  // The bodies of StartExecution, FinishExecution and PutStep without the
  // lock and the transaction, for Write() to share. `upserted` (may be
  // null) holds the digests already upserted in this transaction, so that a
  // batch records each artifact once.
  Result<int64_t> InsertExecutionLocked(const ExecutionRecord& execution);
  Status FinishExecutionLocked(const ExecutionRecord& execution, const std::vector<ArtifactBinding>& inputs,
                               const std::vector<ArtifactBinding>& outputs,
                               std::unordered_set<std::string>* upserted);
  Status PutStepLocked(const StepRecord& step, std::unordered_set<std::string>* upserted);
  Status InsertEventsLocked(int64_t execution_id, const std::vector<ArtifactBinding>& inputs,
                            const std::vector<ArtifactBinding>& outputs,
                            std::unordered_set<std::string>* upserted);
  Status UpsertArtifactOnceLocked(const ArtifactRecord& artifact, std::unordered_set<std::string>* upserted);
  Result<int64_t> EnsureContextLocked(const std::string& type, const std::string& name,
                                      int64_t parent_id, TimePoint created_at);
  Status EnsurePipelineVersionLocked(const RunRecord& run, int64_t* version_id);
  // Runs `stmt` to the end; light snapshots come back merged.
  Result<std::vector<ExecutionRecord>> QueryExecutions(Statement& stmt);
  // Replaces each light snapshot (snapshot_base != 0) by the full one: its
  // base's keys, then its own on top.
  Status ResolveSnapshotsLocked(std::vector<ExecutionRecord>* executions);
  Result<std::vector<ArtifactBinding>> EventArtifacts(int64_t execution_id, const char* type);

  std::mutex mu_;
  sqlite3* db_;
  std::string path_;
  std::unordered_map<const char*, sqlite3_stmt*> statements_;  // keyed by the SQL literal
  Duration busy_timeout_;

  // The cache lookup's own connection and statement, opened on first use.
  // WAL readers never wait for the writer, and a lookup sees every
  // committed transaction.
  std::mutex lookup_mu_;
  sqlite3* lookup_db_ = nullptr;             // guarded by lookup_mu_
  sqlite3_stmt* lookup_stmt_ = nullptr;      // guarded by lookup_mu_
  Status OpenLookupLocked();
};

using SqliteStorePtr = std::unique_ptr<SqliteStore>;

}  // namespace sluice
