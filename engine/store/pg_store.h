#pragma once
// PgStore: the Store on a PostgreSQL server, for a team's `sluice serve`
// replicas sharing one store. Selected by a `postgres://` or
// `postgresql://` URL (libpq's connection URI) wherever a store is named
// (OpenStore, engine/store/open_store.h).
//
// Schema: the tables and views of SqliteStore (engine/store/sqlite_store.h,
// docs/store.md) with PostgreSQL types: times are BIGINT milliseconds since
// the epoch, JSON is TEXT as written, flags are BOOLEAN, ids are identity
// columns, and the text keys that are ordered or scanned by prefix use the
// "C" collation, so that the order is bytewise as in SQLite whatever the
// database's locale. The schema version is the one row of `sluice_schema`;
// migrations run in one transaction at open, under a transaction-scoped
// advisory lock, so that replicas opening the store together migrate once.
//
// Durability: every write is committed when the call returns (the server's
// synchronous_commit decides when that is on disk).
//
// Concurrency: one connection per PgStore, shared behind a mutex, with its
// prepared statements cached. A connection that broke is reset before the
// next call; a call that finds the server gone is kUnavailable. Writers in
// several processes serialise on row locks; a lock wait longer than
// StoreOptions::busy_timeout is kUnavailable.
//
// Secrets: the URL's password never appears in a Status message (MaskStoreUrl
// replaces it); the URL is kept only to open the connection.

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/store.h"
#include "engine/store/open_store.h"

struct pg_conn;
struct pg_result;

namespace sluice {

class PgStore : public Store {
 public:
  // The newest schema version this build knows.
  static constexpr int kSchemaVersion = 2;

  // Connects to `url` (postgres://user:password@host:port/db?options, or
  // libpq's key=value form) and applies any pending migrations.
  // `options.create_if_missing` false: a database without a sluice schema is
  // kNotFound. Errors: kUnavailable (server unreachable, authentication
  // failed), kFailedPrecondition (written by a newer sluice, or a database
  // holding tables that are not a sluice store), kNotFound, kInternal. The
  // messages name the URL with its password masked.
  static Result<std::unique_ptr<PgStore>> Open(const std::string& url, StoreOptions options = {});

  ~PgStore() override;
  PgStore(const PgStore&) = delete;
  PgStore& operator=(const PgStore&) = delete;

  // The URL with its password masked: what logs and messages may show.
  const std::string& display_url() const { return display_url_; }

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
  Result<CacheHit> FindCacheHit(const std::string& cache_key,
                                std::optional<TimePoint> not_before) override;
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

  // The schema version of the database (the row of sluice_schema).
  Result<int> SchemaVersion();

 private:
  class Rows;  // a query's result (defined in pg_store.cc)
  using Param = std::optional<std::string>;  // a text parameter, or NULL

  PgStore(pg_conn* conn, std::string url, std::string display_url, Duration busy_timeout);

  Status Migrate(bool create_if_missing);
  // Runs `sql` (a literal: the prepared-statement cache's key) with
  // `params` as $1, $2, ... The caller holds mu_. Errors carry `what` and
  // the server's message; last_sqlstate_ holds the error's SQLSTATE.
  Result<Rows> Query(const char* sql, const std::vector<Param>& params, const std::string& what);
  // Runs `sql` (no parameters, several statements allowed) outside the
  // statement cache. The caller holds mu_.
  Status Exec(const char* sql, const std::string& what);
  // Resets a broken connection (dropping the statement cache); kUnavailable
  // when the server stays unreachable. The caller holds mu_.
  Status EnsureConnectedLocked();
  // Runs `body` in one transaction: BEGIN, then COMMIT when it returns Ok,
  // else ROLLBACK and its error. Holds mu_ for the call.
  template <class Body>
  Status Transaction(Body&& body);
  Status ErrorFrom(pg_result* result, const std::string& what);

  Result<int64_t> EnsureContextLocked(const std::string& type, const std::string& name, int64_t parent_id,
                                      TimePoint created_at);
  Result<int64_t> EnsurePipelineVersionLocked(const RunRecord& run);
  Status UpsertArtifactOnceLocked(const ArtifactRecord& artifact, std::unordered_set<std::string>* upserted);
  Result<int64_t> InsertExecutionLocked(const ExecutionRecord& execution);
  Status FinishExecutionLocked(const ExecutionRecord& execution, const std::vector<ArtifactBinding>& inputs,
                               const std::vector<ArtifactBinding>& outputs,
                               std::unordered_set<std::string>* upserted);
  Status InsertEventsLocked(int64_t execution_id, const std::vector<ArtifactBinding>& inputs,
                            const std::vector<ArtifactBinding>& outputs,
                            std::unordered_set<std::string>* upserted);
  Status PutStepLocked(const StepRecord& step, std::unordered_set<std::string>* upserted);
  Status DeleteRunLocked(const std::string& run_id);
  // Executions read by `sql` with `params`, light snapshots merged.
  Result<std::vector<ExecutionRecord>> QueryExecutionsLocked(const char* sql, const std::vector<Param>& params);
  Result<std::vector<StepRecord>> QueryStepsLocked(const char* sql, const std::vector<Param>& params,
                                                   const std::string& what);
  Result<std::vector<ArtifactBinding>> EventArtifacts(int64_t execution_id, const char* type);

  std::mutex mu_;
  pg_conn* conn_;                                        // guarded by mu_
  std::unordered_map<const char*, std::string> prepared_;  // SQL literal -> statement name; guarded by mu_
  std::string last_sqlstate_;                            // of the last failed query; guarded by mu_
  bool in_transaction_ = false;                          // inside Transaction's body; guarded by mu_
  const std::string url_;
  const std::string display_url_;
  const Duration busy_timeout_;
};

using PgStorePtr = std::unique_ptr<PgStore>;

}  // namespace sluice
