#pragma once
// The store: where runs, step attempts, artifacts and lineage are recorded.
//
// The default implementation is SQLite in WAL mode under `.sluice/`
// (engine/store/sqlite_store.h); a team's server keeps the same records on
// PostgreSQL (engine/store/pg_store.h). OpenStore (engine/store/open_store.h)
// opens either. Every write is durable when the call returns, so a `kill -9` of
// sluice at any moment leaves a consistent store from which `sluice resume`
// continues.
//
// The lineage model follows ML Metadata: contexts (pipeline, pipeline
// version, run), executions (one per step attempt), artifacts (content
// digest, URI, type, size, properties) and events linking executions to
// their input and output artifacts. Each execution carries a snapshot: the
// fully resolved step (secrets redacted), params, input digests, code digest,
// pipeline file digest and git state, tool versions, outputs, exit code,
// timings and log location.
//
// Thread-safety: implementations are safe to call from several threads, and
// several processes may open the same store (readers while a run writes).

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"

namespace sluice {

using TimePoint = std::chrono::system_clock::time_point;

// Phase of a whole run.
enum class RunPhase { kPending, kRunning, kSucceeded, kFailed, kError, kCancelled };

// Phase of one step instance. Keeps user failures, system errors and the
// reasons a step did not run apart (Argo's node phases, plus kCached).
enum class NodePhase {
  kPending,    // not started yet
  kRunning,    // an attempt is in flight (or waiting for its retry backoff)
  kSucceeded,  // ran and succeeded
  kFailed,     // user failure: non-zero exit, after all retries
  kError,      // system error: could not start, lost, executor failure, timeout
  kSkipped,    // its `when` was false, or an upstream was skipped
  kOmitted,    // not run because an upstream failed or the run stopped early
  kCancelled,  // the run was cancelled while it ran or waited
  kCached,     // not run: outputs reused from an earlier identical execution
};

const char* RunPhaseName(RunPhase phase);    // "Running", "Succeeded", ...
const char* NodePhaseName(NodePhase phase);  // "Pending", "Cached", ...
std::optional<RunPhase> ParseRunPhase(const std::string& name);
std::optional<NodePhase> ParseNodePhase(const std::string& name);
bool IsTerminal(NodePhase phase);
bool IsTerminal(RunPhase phase);

// A stored, content-addressed artifact.
struct ArtifactRecord {
  std::string digest;  // "sha256:<hex>"; for a directory, the digest of its manifest
  std::string uri;     // where its bytes are, e.g. "file:///abs/.sluice/cas/sha256/ab/<hex>"
  ArtifactType type = ArtifactType::kOther;
  int64_t size = 0;    // bytes (sum of files for a directory)
  bool is_directory = false;
  Json properties = Json::object();  // user properties
};

// A named output/input of one step instance.
struct ArtifactBinding {
  std::string name;
  ArtifactRecord artifact;
};

struct RunRecord {
  std::string id;        // e.g. "retrain-20261125-153012-a1b2"
  std::string pipeline;  // metadata.name
  std::string pipeline_file;    // absolute path
  std::string pipeline_digest;  // sha256 of the file's bytes
  std::string pipeline_yaml;    // the file's content (pipeline version)
  std::string git_commit;       // "" when not in a git repo
  bool git_dirty = false;
  Json params = Json::object();  // bound values, secrets redacted
  std::string executor;
  RunPhase phase = RunPhase::kPending;
  std::string message;
  std::string resumed_from;  // run id this one continues, or ""
  TimePoint created_at{};
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> finished_at;
  std::string host;
  int pid = 0;  // the sluice process driving it, while Running
  bool no_cache = false;  // started with --no-cache: no step reuses earlier outputs
  // Where the run kept artifact bytes beyond the local store
  // (ArtifactStore::Location(): "s3://bucket/prefix"); "" = the local store
  // only. resume and rerun use it again.
  std::string artifacts;
};

// The current state of one step instance within a run.
struct StepRecord {
  std::string run_id;
  std::string instance;  // "train[1]", or the step name
  std::string step;      // "train"
  int index = -1;        // foreach index, -1 when not a foreach instance
  Json item;             // foreach item, null otherwise
  NodePhase phase = NodePhase::kPending;
  int attempts = 0;
  int exit_code = -1;
  std::string message;
  std::string log_path;  // of the latest attempt
  std::string cache_key;
  std::string cached_from;  // "run/instance" whose outputs were reused
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> finished_at;
  Json output_params = Json::object();  // name -> string
  Json metrics = Json::object();        // name -> number
  std::vector<ArtifactBinding> outputs;
  std::vector<ArtifactBinding> inputs;
};

// One attempt of one step instance: an MLMD execution.
struct ExecutionRecord {
  int64_t id = 0;  // assigned by the store
  std::string run_id;
  std::string instance;
  int attempt = 1;
  std::string outcome;  // TaskOutcomeName, or "Running"/"Cached"
  int exit_code = -1;
  std::string message;
  std::string log_path;
  std::string external_id;
  std::string cache_key;
  TimePoint started_at{};
  std::optional<TimePoint> finished_at;
  Json snapshot = Json::object();  // see the file comment; secrets redacted
  // A light snapshot (a cache hit's): when non-zero, `snapshot` holds only
  // the keys that differ from the snapshot of execution `snapshot_base` (the
  // execution whose outputs the hit reuses). A Store that keeps it so
  // returns the merged, full snapshot from every read (base keys, then these
  // on top), with snapshot_base still set; 0 = `snapshot` is complete.
  int64_t snapshot_base = 0;
  // When non-empty, the snapshot as JSON object text, which a Store records
  // instead of `snapshot` (a cache hit's light snapshot, written directly
  // on that hot path). Only writes take it; reads fill `snapshot`.
  std::string snapshot_text;
};

// A cache hit: the step record whose outputs are reused, and the id of its
// execution (the one that produced them), or 0 when the store cannot tell.
struct CacheHit {
  StepRecord step;
  int64_t execution_id = 0;
};

// Filters for ListRuns. Empty fields match everything.
struct RunFilter {
  std::string pipeline;
  std::optional<RunPhase> phase;
  std::optional<TimePoint> since;
  int limit = 50;
};

// One change to what a service serves: a deploy, a traffic shift, a promote,
// a rollback. Written by the deploy and traffic-validation operators; it is
// also an execution in lineage (execution_id), linked to the model artifact.
// `sluice lineage --deployed SERVICE` reads the newest records of a service.
struct DeploymentRecord {
  int64_t id = 0;             // assigned by the store
  std::string service;        // e.g. "breast-cancer"
  std::string namespace_;     // Kubernetes namespace, or "local"
  std::string executor;       // "local" | "kubernetes"
  std::string action;         // "deploy" | "shift" | "promote" | "rollback" | "undeploy"
  std::string version;        // deployment version label, e.g. "v3" or the run id
  std::string model_digest;   // "sha256:..." of the model artifact now serving
  std::string baseline_digest;  // the model it runs beside (canary), or ""
  double traffic_percent = 100.0;  // share of traffic the model gets after this action
  std::string endpoint;       // URL clients use
  std::string run_id;
  std::string instance;       // step instance that made the change
  int64_t execution_id = 0;   // 0 when not linked
  TimePoint at{};
  Json details = Json::object();  // operator-specific: ports, pids, k8s object names
};

// One write made through the server's API (or a webhook), as the audit log
// keeps it: who, what, when and the answer. Never a token value, a request
// body or a parameter value; `route` is the route's pattern, not the path.
struct AuditEntry {
  int64_t id = 0;         // assigned by the store, increasing
  TimePoint at{};         // when the answer was sent; {} = now
  std::string who;        // the identity's name (a token's name), or "webhook:github"
  std::string role;       // the identity's role then: "viewer", "runner", "admin", or ""
  std::string method;     // "POST", "DELETE"
  std::string route;      // e.g. "/api/v1/runs/{run}/cancel"
  std::string run_id;     // the run it acted on or created, or ""
  std::string pipeline;   // the pipeline of that run or route, or ""
  int code = 0;           // the HTTP status answered
};

// Filters for ListAudit. Empty fields match everything.
struct AuditFilter {
  std::optional<TimePoint> since;  // entries at or after this time
  int limit = 100;                 // newest N; 0 = all
};

// Writes applied together (LevelDB's WriteBatch): the Runner collects what
// happened in one scheduling pass (cache hits, finished attempts, step
// state changes) and records it with one Store::Write, so a run of many
// cached steps costs one transaction per pass instead of three per step.
struct StoreBatch {
  // An execution and its events. `record.id == 0`: a new, already finished
  // execution (a cache hit) is inserted with its INPUT and OUTPUT events;
  // otherwise the started execution `record.id` is finished, as
  // Store::FinishExecution does.
  struct Execution {
    ExecutionRecord record;
    std::vector<ArtifactBinding> inputs, outputs;
  };
  std::vector<Execution> executions;  // applied first, in order
  std::vector<StepRecord> steps;      // then each as Store::PutStep, in order

  bool empty() const { return executions.empty() && steps.empty(); }
};

class Store {
 public:
  virtual ~Store() = default;

  // Runs. CreateRun fails with kAlreadyExists for a duplicate id.
  virtual Status CreateRun(const RunRecord& run) = 0;
  virtual Status UpdateRun(const RunRecord& run) = 0;
  // Accepts a unique prefix of the id; kNotFound / kInvalidArgument (ambiguous).
  virtual Result<RunRecord> GetRun(const std::string& id_or_prefix) = 0;
  virtual Result<std::vector<RunRecord>> ListRuns(const RunFilter& filter) = 0;

  // Step instances: created or replaced as a whole.
  virtual Status PutStep(const StepRecord& step) = 0;
  virtual Result<std::vector<StepRecord>> ListSteps(const std::string& run_id) = 0;
  virtual Result<StepRecord> GetStep(const std::string& run_id, const std::string& instance) = 0;

  // Executions. StartExecution assigns and returns the id; FinishExecution
  // records the outcome together with the step's output and input events in
  // one transaction.
  virtual Result<int64_t> StartExecution(const ExecutionRecord& execution) = 0;
  virtual Status FinishExecution(const ExecutionRecord& execution,
                                 const std::vector<ArtifactBinding>& inputs,
                                 const std::vector<ArtifactBinding>& outputs) = 0;
  virtual Result<std::vector<ExecutionRecord>> ListExecutions(const std::string& run_id) = 0;

  // Applies `batch`. SqliteStore applies it in one transaction: all of it
  // or, on error, none of it (a kill -9 meanwhile leaves none of it). The
  // default applies it record by record through StartExecution,
  // FinishExecution and PutStep, stopping at the first error, which it
  // returns.
  virtual Status Write(const StoreBatch& batch);

  // Cache: the latest successful step whose cache key matches and that
  // finished after `not_before`, or kNotFound.
  virtual Result<StepRecord> FindCached(const std::string& cache_key,
                                        std::optional<TimePoint> not_before) = 0;
  // As FindCached, with the reused execution's id, so that a hit can record
  // a light snapshot (ExecutionRecord::snapshot_base). The default calls
  // FindCached and gives execution_id 0 (the hit then records a full
  // snapshot).
  virtual Result<CacheHit> FindCacheHit(const std::string& cache_key,
                                        std::optional<TimePoint> not_before);

  // Whether Write may run on another thread while the caller's thread calls
  // FindCacheHit (and whether the Runner may so record a pass of cache hits
  // in the background; engine/store/store_writer.h). False by default.
  virtual bool ConcurrentWrites() const { return false; }

  // Lineage queries, each one indexed lookup, so a walk over a
  // store of millions of executions touches only the nodes it returns.
  // GetArtifact accepts a unique digest prefix ("sha256:ab12" or "ab12").
  virtual Result<ArtifactRecord> GetArtifact(const std::string& digest_or_prefix) = 0;
  virtual Result<ExecutionRecord> GetExecution(int64_t execution_id) = 0;
  // Executions with an OUTPUT event / an INPUT event for the artifact.
  virtual Result<std::vector<ExecutionRecord>> ProducersOf(const std::string& digest) = 0;
  virtual Result<std::vector<ExecutionRecord>> ConsumersOf(const std::string& digest) = 0;
  // The artifacts an execution read / wrote, with their input/output names.
  virtual Result<std::vector<ArtifactBinding>> InputsOf(int64_t execution_id) = 0;
  virtual Result<std::vector<ArtifactBinding>> OutputsOf(int64_t execution_id) = 0;
  // Every artifact digest recorded ("sha256:<hex>"), sorted: what `sluice
  // gc` must keep in the artifact store (engine/server/retention.h). The
  // default cannot list them (kFailedPrecondition), and gc then refuses.
  virtual Result<std::vector<std::string>> ArtifactDigests() {
    return Error(Status::FailedPrecondition("this store cannot list its artifacts"));
  }

  // Deletes a finished run and what was recorded only for it, in one
  // transaction: its step records, executions and their events, deployment
  // records and run context, and the artifact records no remaining event or
  // deployment names (their bytes stay in the artifact store until `sluice
  // gc`; log files and step directories are the caller's to remove, see
  // engine/server/retention.h). Pipeline versions are kept.
  // Errors: kNotFound (exact id only); kFailedPrecondition when the run has
  // not ended, when a cached step of another run reuses its outputs (that
  // run's lineage leads here), or when it deployed or produced what a service
  // serves now; the message names the runs or services. The default
  // implementation cannot delete (kFailedPrecondition).
  virtual Status DeleteRun(const std::string& run_id) {
    return Status::FailedPrecondition("this store cannot delete run " + run_id);
  }

  // The audit log: append-only, never touched by DeleteRun. AppendAudit
  // records one entry (its id and, when unset, its time are the store's);
  // ListAudit returns entries newest first. The defaults keep no log
  // (kFailedPrecondition).
  virtual Status AppendAudit(const AuditEntry& entry) {
    (void)entry;
    return Status::FailedPrecondition("this store keeps no audit log");
  }
  virtual Result<std::vector<AuditEntry>> ListAudit(const AuditFilter& filter) {
    (void)filter;
    return Error(Status::FailedPrecondition("this store keeps no audit log"));
  }

  // Deployments. Append-only history; ListDeployments returns the
  // newest first, for one service or (service == "") all services.
  virtual Result<int64_t> RecordDeployment(const DeploymentRecord& record) = 0;
  virtual Result<std::vector<DeploymentRecord>> ListDeployments(const std::string& service,
                                                                int limit) = 0;
};

using StorePtr = std::unique_ptr<Store>;

// Content-addressed storage of artifact bytes.
class ArtifactStore {
 public:
  virtual ~ArtifactStore() = default;

  // Hashes the file or directory at `path` and copies it into the store
  // (no-op when the digest is already present). Returns its record.
  virtual Result<ArtifactRecord> Put(const std::string& path, ArtifactType type) = 0;

  // Local path of a stored artifact; kNotFound when its bytes are gone.
  virtual Result<std::string> LocalPath(const std::string& digest) = 0;

  // Hex SHA-256 of the bytes of the regular file at `path` (a step's code
  // file). The default reads the file; FileArtifactStore skips files whose
  // stat shows them unchanged since they were last hashed. Errors: kNotFound,
  // kPermissionDenied, kInternal.
  virtual Result<std::string> FileDigest(const std::string& path);

  // Where LocalPath() puts (or finds) `digest` on this machine, without
  // fetching it: the path a step is given when the bytes go to a pod
  // straight from the store. The default is LocalPath(). Errors:
  // kInvalidArgument (malformed digest).
  virtual Result<std::string> CachePath(const std::string& digest);

  // The record of an artifact already in the store, checked without
  // fetching it (one HEAD for a remote store); `type` and `size` are the
  // caller's, `is_directory` the store's. Errors: kNotFound when it is not
  // stored, kInvalidArgument (malformed digest), request errors. The
  // default asks LocalPath().
  virtual Result<ArtifactRecord> Stat(const std::string& digest, ArtifactType type, int64_t size);

  // The bytes of the small object `name` (a name under the store's root,
  // e.g. a launcher's result), at most `limit` bytes. The default has no
  // such objects: kNotFound. Errors: kNotFound, kFailedPrecondition (larger
  // than `limit`), request errors.
  virtual Result<std::string> ReadObject(const std::string& name, int64_t limit);
  // Where the bytes are kept beyond the local store, as a URL a later
  // command can open again ("s3://bucket/prefix"); "" for the local store
  // alone (the default).
  virtual std::string Location() const { return ""; }

  // The shared cache (engine/run/shared_cache.h): a succeeded step's cache
  // entry, JSON text, kept under its cache `key` where other machines' stores
  // find it. The default store shares nothing: Put keeps nothing and Get
  // finds nothing (kNotFound). Get sets *where to a name of the entry for
  // messages and records (e.g. "s3://bucket/prefix/cache/KEY.json").
  virtual Status PutCacheEntry(const std::string& key, const std::string& json) {
    (void)key;
    (void)json;
    return Status::Ok();
  }
  virtual Result<std::string> GetCacheEntry(const std::string& key, std::string* where) {
    (void)where;
    return tl::unexpected<Status>(Status::NotFound("no shared cache entry for " + key));
  }
};

using ArtifactStorePtr = std::unique_ptr<ArtifactStore>;

}  // namespace sluice
