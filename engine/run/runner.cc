#include "engine/run/runner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "engine/base64.h"
#include "engine/expr.h"
#include "engine/foreach_group.h"
#include "engine/file_lock.h"
#include "engine/graph.h"
#include "engine/json_text.h"
#include "engine/store/store_writer.h"
#include "engine/plan.h"
#include "engine/store/provenance.h"
#include "engine/run/cache_key.h"
#include "engine/run/operator_programs.h"
#include "engine/run/shared_cache.h"
#include "engine/run/task_builder.h"
#include "engine/run_id.h"
#include "engine/secret_mask.h"
#include "engine/sha256.h"
#include "engine/step_outputs.h"
#include "engine/task_note.h"
#include "engine/launch.h"
#include "engine/run/launcher_files.h"
#include "engine/text.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.0.0"
#endif

namespace fs = std::filesystem;

namespace sluice {

// ---------------------------------------------------------------------------
// ExecutorRegistry

// ---------------------------------------------------------------------------
// Runner

Runner::Runner(const PipelineSpec& spec, Store* store, ArtifactStore* artifacts, ExecutorRegistry* executors,
               RunOptions options)
    : spec_(spec),
      store_(store),
      artifacts_(artifacts),
      executors_(executors),
      options_(std::move(options)),
      clock_(options_.clock ? options_.clock : &system_clock_) {}

void Runner::Cancel() {
  std::lock_guard lock(cancel_mu_);
  if (cancel_requested_.exchange(true)) return;
  // Before the first finally step starts, every task is a main step's. After
  // it, the run loop cancels the main steps' tasks itself (CheckCancel).
  if (!finally_started_) {
    for (const auto& name : executors_->Names()) {
      if (Executor* e = executors_->Find(name)) e->CancelAll(options_.cancel_grace);
    }
  }
  clock_->Wake();
}

void Runner::Terminate(Duration grace) {
  std::lock_guard lock(cancel_mu_);
  terminate_requested_ = true;
  cancel_requested_ = true;
  for (const auto& name : executors_->Names()) {
    if (Executor* e = executors_->Find(name)) e->CancelAll(grace);
  }
  clock_->Wake();
}

namespace {

// An item that a minSuccessRatio step counts as failed.
bool IsFailedItem(NodePhase p) {
  return p == NodePhase::kFailed || p == NodePhase::kError || p == NodePhase::kOmitted;
}


std::string AtLoc(const SourceLocation& loc, const std::string& message) {
  std::string where = loc.ToString();
  return where.empty() ? message : where + ": " + message;
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}



// The largest launcher result read back.
constexpr int64_t kMaxLaunchResultBytes = int64_t{16} << 20;

AttemptResult ToAttemptResult(TaskOutcome o) {
  switch (o) {
    case TaskOutcome::kSucceeded: return AttemptResult::kSucceeded;
    case TaskOutcome::kFailed: return AttemptResult::kFailed;
    case TaskOutcome::kError: return AttemptResult::kError;
    case TaskOutcome::kTimedOut: return AttemptResult::kTimedOut;
    case TaskOutcome::kCancelled: return AttemptResult::kCancelled;
  }
  return AttemptResult::kError;
}

// An execution snapshot as its members' JSON texts by key. The object's
// text is the members joined in key order: byte for byte what dumping the
// same Json object writes, without building the tree. The run loop keeps a
// running attempt's snapshot this way and adds the members known at its
// end (outputs, exit_code), so that neither the start nor the end of a step
// serializes a tree.
class SnapshotMembers {
 public:
  void String(const std::string& key, std::string_view value) { AppendJsonString(&Slot(key), value); }
  void Int(const std::string& key, int64_t value) { Slot(key) += std::to_string(value); }
  // `json` is already JSON text, as JsonText() writes it.
  void Raw(const std::string& key, std::string_view json) { Slot(key) += json; }
  void Value(const std::string& key, const Json& value) { Slot(key) += JsonText(value); }
  // A list of strings.
  void Strings(const std::string& key, const std::vector<std::string>& values) {
    AppendJsonStrings(&Slot(key), values);
  }
  // An object of strings.
  void StringMap(const std::string& key, const std::map<std::string, std::string>& values) {
    AppendJsonStringMap(&Slot(key), values);
  }
  std::string Text() const {
    size_t size = 2;
    for (const auto& [k, m] : members_) size += m.size() + 1;
    std::string out;
    out.reserve(size);
    out.push_back('{');
    for (const auto& [k, m] : members_) {
      if (out.size() > 1) out.push_back(',');
      out += m;
    }
    out.push_back('}');
    return out;
  }

 private:
  // The member `key` with its value empty: `"key":`, to append the value to.
  std::string& Slot(const std::string& key) {
    std::string& m = members_[key];
    m.clear();
    AppendJsonString(&m, key);
    m.push_back(':');
    return m;
  }
  std::map<std::string, std::string> members_;  // key -> `"key":value`, ordered as a Json object's keys
};

}  // namespace

// The state of one Run(): everything the loop needs, built from the Runner.
class RunLoop {
 public:
  explicit RunLoop(Runner& r)
      : r_(r), spec_(r.spec_), opt_(r.options_), clock_(r.clock_),
        programs_(OperatorRegistry::OrGlobal(r.options_.operators),
                  r.options_.operator_commands, r.options_.state_dir) {}

  Result<RunSummary> Run();

 private:
  // Per instance (indexed like the plan's instances).
  struct Inst {
    StepRecord rec;
    bool initialized = false;
    bool ever_started = false;
    std::string workdir;
    std::map<std::string, std::string> artifact_paths;  // output name -> local path
    ExecutionRecord exec;
    SnapshotMembers snapshot;  // exec's snapshot while it runs (exec.snapshot_text is its text)
    std::vector<ArtifactBinding> inputs;
    std::vector<std::string> input_paths;  // the path each of `inputs` was given as
    std::string result_key;  // the launcher's result object; "" when the task runs with a shared filesystem
    Json item;  // the foreach item the templates see (rec.item is "<redacted>" for a secret one)
    Executor* executor = nullptr;
    bool dirty = false;  // rec changed since it was last written
  };
  // Per step (indexed like graph nodes).
  struct StepInfo {
    Executor* executor = nullptr;
    bool needs_scope = false;
    std::vector<std::string> param_refs;  // params the templates reference
    Json items = Json::array();           // foreach items once expanded
    std::optional<Json> scope_cache;      // steps.<name> value once terminal
    std::optional<Result<std::pair<std::string, Json>>> code;  // digest + per-file digests
    Json declared = Json::object();  // declared outputs, as the cache key holds them
    std::string declared_json;       // declared.dump()
    std::string config_json;         // the step's operator config, dumped
    // Templates of the step that read a secret (a secret param, or `item`
    // of a foreach over one): their rendered values are secrets too.
    std::set<std::string> secret_texts;
    bool items_secret = false;  // foreach items come from a secret
    bool config_secret = false;  // the operator config reads a secret
  };

  Status Prepare();
  Status SetUpResume();
  Status SettleOpenExecutions();
  void Schedule();
  void HandleExpand(int step);
  // One attempt of an instance on its way to start: what the steps of
  // StartInstance hand on to each other.
  struct Attempt {
    Attempt(int inst, int step, int attempt, const StepSpec& spec, TimePoint now)
        : inst(inst), step(step), attempt(attempt), spec(spec), now(now), builder(spec) {}
    int inst;
    int step;
    int attempt;
    const StepSpec& spec;
    TimePoint now;
    Json scope;             // what the templates see (null when they need none)
    TaskBuilder builder;    // the Task, rendered
    Json inputs = Json::object();         // input name -> rendered value
    Json input_digests = Json::object();  // input name -> artifact digest(s), null for none
    std::set<std::string> secret_inputs;  // inputs whose value reads a secret
    std::map<std::string, std::string> env_snapshot;  // env as recorded (secrets redacted)
    std::string base_dir;        // runs/<run>/steps/<instance>
    std::string log_path;
    std::string workdir_record;  // the workdir as recorded
    bool started_before = false;  // an earlier sluice process started it (adopted)
    const std::pair<std::string, Json>* code = nullptr;  // code digest and per-file digests
    CacheKey key;
    bool python_recorded = false;  // the snapshot records python_version_
  };

  // Starts attempt `attempt` of `inst`: evaluates `when`, renders the Task
  // (RenderTask, ResolveWorkdir), computes its cache key, reuses a cache
  // hit (TryCacheHit) or starts it (MakeWorkdir, Launch). Returns false when
  // the executor is full (the instance went back to the plan).
  bool StartInstance(int inst, int attempt);
  // The run loop's template rendering for `a`'s TaskBuilder: in a.scope,
  // recording what reads a secret, errors as "FILE:L:C: step 'I': FIELD: why".
  TaskBuilder::RenderText TemplateRenderer(const Attempt& a);
  // Renders inputs (bound to the artifacts they are), argv (or an operator
  // program's), env and SLUICE_RUN_ID into a.builder, and the env snapshot.
  Status RenderTask(Attempt& a);
  // The artifact input `in_name` of `inst` is when `value` is the path of
  // one (recorded in the instance's inputs): its digest; null otherwise.
  Json BindInput(int inst, const std::string& in_name, const Json& value);
  // The instance's working directory and log path for this attempt.
  Status ResolveWorkdir(Attempt& a);
  // SecretDigest for the cache key; "<redacted>" (and the error recorded)
  // when the digest key cannot be made.
  std::string KeyDigest(const std::string& value);
  CacheKey ComputeCacheKey(const Attempt& a);
  // Whether the cache is asked for `a` at all.
  bool LooksUpCache(const Attempt& a) const;
  // Finishes `a` as Cached when the store has a usable hit for its key.
  bool TryCacheHit(Attempt& a);
  std::vector<std::string> RedactedArgv(const Attempt& a) const;
  // The execution snapshot of a cache hit that reuses a recorded execution.
  std::string LightSnapshotText(const Attempt& a, const std::string& cached_from) const;
  // The full execution snapshot of `a`, as its members' texts.
  SnapshotMembers FullSnapshot(Attempt& a);
  // Empties and makes the attempt's working directory.
  Status MakeWorkdir(const Attempt& a);
  // Builds the Task, records the attempt as Running and starts it.
  void Launch(Attempt& a, SnapshotMembers snapshot);
  void FailInstance(int inst, AttemptResult result, const std::string& message, bool retryable);
  void HandleResult(const TaskResult& result);
  // Collects declared outputs; a non-empty message means the step failed.
  std::string CollectOutputs(int inst, AttemptResult* result);
  void DrainChanges();
  // Applies a Cancel() request to the plan and the executors, once.
  void CheckCancel();
  std::optional<TaskResult> WaitAny(Duration timeout);
  // Records what the executors noted about running tasks (TakeNotes) in
  // their steps' messages; a step that leaves a queue on its first attempt
  // starts then, so its duration is its run and not its wait.
  void ApplyNotes();

  Json BuildScope(int step, int inst);
  // For a step after minSuccessRatio steps: {step: [failed item names]} for
  // each of them (SLUICE_FAILED_ITEMS); nullopt when it follows none.
  std::optional<Json> FailedItems(int step);
  Json StepScope(int step);
  Json InstanceOutputsScope(int inst);
  const Result<std::pair<std::string, Json>>& CodeDigest(int step);
  void EnsureInst(int inst);
  void RegisterArtifactPaths(int inst);
  // Where artifact `digest` is on this host for a step: its local path, or
  // (for launcher tasks) the cache path it would be fetched to.
  Result<std::string> ArtifactPath(const std::string& digest);
  bool UsesLauncher(const Executor* ex) const { return opt_.launcher_executors.count(ex->Name()) > 0; }
  // Fills task->files for a launcher task; stores the code archive once.
  Status FillTaskFiles(const Attempt& a, Task* task);
  // The digest of the pipeline's directory stored as one directory artifact
  // (packed once per run): the code the launcher and the programs' pods run.
  Result<std::string> CodeArchive();
  // Fetches the inputs of a task that runs on this host (those it declares
  // and those its argv and env name by their store path) when only the
  // object store has them.
  Status FetchInputs(int inst, const Task& task);
  // CollectOutputs for a launcher task: from its result object.
  std::string CollectLauncherOutputs(int inst, AttemptResult* result);
  std::string Redact(std::string s) const;
  // Adds `value` to the values masked in logs and records. A derived value
  // (the result of an expression over a secret) shorter than
  // kMinDerivedMask characters is not masked: "6" or "true" would mask
  // most of a log and say little about the secret.
  void AddSecretValue(const std::string& value, bool derived);
  static constexpr size_t kMinDerivedMask = 4;
  // When template `text` of `step` reads a secret: records its rendered
  // value and the value of each of its `{{ }}` expressions as secrets and
  // returns true.
  bool Taint(int step, const std::string& text, const std::string& rendered, const Json& scope);
  // "<secret:HEX>": an HMAC-SHA256 of `value` under the store's digest key
  // (StateDir()/secret-digest.key, made on first use), for the cache key.
  // The digest tells equal values apart without revealing them.
  Result<std::string> SecretDigest(const std::string& value);
  void Put(const StepRecord& rec);
  // Marks `inst`'s record for the next Flush().
  void MarkDirty(int inst);
  // Writes what finished since the last call (executions and changed step
  // records) in one Store::Write. The loop calls it after starting the next
  // tasks, so store writes overlap with running steps; Schedule() also calls
  // it every kFlushEvery cache hits, so a long all-cached pass shows progress.
  // A batch without a success goes to the background writer unless
  // `synchronous` (the caller waits for it anyway).
  void Flush(bool synchronous = false);
  static constexpr size_t kFlushEvery = 1000;
  // Waits until the background writer (if any) has written every batch
  // Flush gave it; every direct store write calls it first, so the store
  // sees writes in the order the loop made them.
  void SyncStore();
  void Emit(RunEvent::Kind kind, const std::string& instance, NodePhase phase, int attempt,
            const std::string& message);
  // Tells opt_.observer that `inst` is terminal / how many instances wait.
  void ObserveFinished(int inst);
  void ObserveReady(int waiting);
  void Record(Status s) {
    if (!s.ok() && store_error_.ok()) store_error_ = s;
  }

  Runner& r_;
  const PipelineSpec& spec_;
  const RunOptions& opt_;
  Clock* clock_;
  OperatorPrograms programs_;  // steps that run as an operator's own program
  std::unique_ptr<PipelineGraph> graph_;
  std::unique_ptr<Plan> plan_;
  std::vector<Inst> insts_;
  std::vector<StepInfo> steps_;
  std::unordered_map<TaskId, int> tasks_;
  std::vector<Executor*> used_executors_;
  std::unordered_map<std::string, ArtifactRecord> path_to_artifact_;
  std::unordered_map<std::string, StepRecord> previous_;  // resume: instance -> record
  std::set<std::string> adopted_;  // resume: instances whose Running attempt is adopted
  std::unordered_map<std::string, ExecutionRecord> open_executions_;  // their open rows
  std::string rerun_of_;                                  // rerun: old run id
  std::set<int> rerun_steps_;                             // rerun: steps that must really run again
  RunRecord run_;
  std::string pipeline_dir_;
  std::string run_dir_;
  std::vector<std::string> secret_values_;  // values to mask (engine/secret_mask.h)
  std::set<std::string> secret_params_;     // names of the params declared secret
  std::string digest_key_;                  // SecretDigest's key, once read
  std::string python_version_;
  std::optional<Result<ArtifactRecord>> code_archive_;  // launcher tasks' code, stored once
  TaskId next_task_id_ = 1;
  bool cancelled_ = false;
  bool terminated_ = false;  // cancelled without the finally steps
  bool timed_out_ = false;
  Status store_error_;
  std::vector<int> dirty_;
  // Finished executions (cache hits with id 0) waiting for Flush().
  std::vector<StoreBatch::Execution> pending_executions_;
  // Writes Flush()'s batches on a thread of its own, where the store allows
  // it (Store::ConcurrentWrites); null otherwise.
  std::unique_ptr<StoreWriter> writer_;
  int ready_waiting_ = 0;  // last value given to observer.on_ready_waiting
  std::unique_ptr<RunDriverLock> driver_lock_;  // held while this loop drives the run
};

void RunLoop::ObserveFinished(int inst) {
  if (!opt_.observer.on_step_finished) return;
  opt_.observer.on_step_finished(insts_[inst].rec, graph_->step(plan_->InstanceStep(inst)));
}

void RunLoop::ObserveReady(int waiting) {
  if (!opt_.observer.on_ready_waiting || waiting == ready_waiting_) return;
  ready_waiting_ = waiting;
  opt_.observer.on_ready_waiting(waiting);
}

void RunLoop::Emit(RunEvent::Kind kind, const std::string& instance, NodePhase phase, int attempt,
                   const std::string& message) {
  if (!opt_.on_event) return;
  RunEvent e;
  e.kind = kind;
  e.instance = instance;
  e.phase = phase;
  e.attempt = attempt;
  e.message = Redact(message);
  opt_.on_event(e);
}

void RunLoop::Put(const StepRecord& rec) {
  SyncStore();
  Record(r_.store_->PutStep(rec));
}

void RunLoop::SyncStore() {
  if (writer_) Record(writer_->Wait());
}

void RunLoop::MarkDirty(int inst) {
  if (insts_[inst].dirty) return;
  insts_[inst].dirty = true;
  dirty_.push_back(inst);
}

void RunLoop::Flush(bool synchronous) {
  StoreBatch batch;
  batch.executions = std::move(pending_executions_);
  pending_executions_.clear();
  // A batch in which no step succeeded (a pass of cache hits, failures)
  // goes to the background writer: cache lookups never look for what it
  // holds. One with a success is written now, so that the next lookup can
  // find it.
  bool background = writer_ != nullptr && !synchronous;
  for (int i : dirty_)
    if (insts_[i].dirty && insts_[i].rec.phase == NodePhase::kSucceeded) background = false;
  // Written here, the records move into the batch and back (Write is
  // synchronous); the background writer gets copies.
  std::vector<int> written;
  written.reserve(dirty_.size());
  batch.steps.reserve(dirty_.size());
  for (int i : dirty_) {
    if (!insts_[i].dirty) continue;
    insts_[i].dirty = false;
    batch.steps.push_back(background ? insts_[i].rec : std::move(insts_[i].rec));
    written.push_back(i);
  }
  dirty_.clear();
  if (batch.empty()) return;
  if (background) {
    writer_->Submit(std::move(batch));
    return;
  }
  SyncStore();
  Record(r_.store_->Write(batch));
  for (size_t k = 0; k < written.size(); ++k) insts_[written[k]].rec = std::move(batch.steps[k]);
}

std::string RunLoop::Redact(std::string s) const {
  if (secret_values_.empty()) return s;
  return MaskValues(s, secret_values_, kRedacted);
}

namespace {

// Shorter base64 fragments of a secret are not masked (too common).
constexpr size_t kMinBase64Form = 4;

// The forms `value` takes inside base64 text: the whole encoding, and the
// characters that depend on `value` alone when it starts 0, 1 or 2 bytes
// into a longer encoded string (a "user:token" basic-auth header), as CI
// systems mask them.
std::vector<std::string> Base64Forms(const std::string& value) {
  std::vector<std::string> out{Base64Encode(value)};
  for (size_t k = 0; k < 3; ++k) {
    std::string enc = Base64Encode(std::string(k, '\0') + value);
    size_t first = (8 * k + 5) / 6, last = 8 * (k + value.size()) / 6;
    if (last > first && last - first >= kMinBase64Form) out.push_back(enc.substr(first, last - first));
  }
  return out;
}

}  // namespace

void RunLoop::AddSecretValue(const std::string& value, bool derived) {
  if (value.empty() || (derived && value.size() < kMinDerivedMask)) return;
  if (std::find(secret_values_.begin(), secret_values_.end(), value) != secret_values_.end()) return;
  secret_values_.push_back(value);
  if (derived) return;
  for (auto& b : Base64Forms(value))
    if (std::find(secret_values_.begin(), secret_values_.end(), b) == secret_values_.end())
      secret_values_.push_back(std::move(b));
}

bool RunLoop::Taint(int step, const std::string& text, const std::string& rendered, const Json& scope) {
  if (!steps_[step].secret_texts.count(text)) return false;
  AddSecretValue(rendered, /*derived=*/true);
  for (size_t open = text.find("{{"); open != std::string::npos; open = text.find("{{", open + 2)) {
    size_t close = text.find("}}", open + 2);
    if (close == std::string::npos) break;
    if (auto v = expr::Render(text.substr(open, close + 2 - open), scope)) AddSecretValue(*v, /*derived=*/true);
  }
  return true;
}

Result<std::string> RunLoop::SecretDigest(const std::string& value) {
  if (digest_key_.empty()) {
    const fs::path dir(opt_.state_dir.empty() ? ".sluice" : opt_.state_dir);
    const fs::path path = dir / "secret-digest.key";
    auto existing = ReadFile(path.string());
    if (!existing || existing->size() < 32) {
      // Made once per store: written to a temporary file, then linked into
      // place, so two processes that race agree on one key.
      std::random_device rd;
      std::string key;
      for (int i = 0; i < 32; ++i) key += static_cast<char>(rd() & 0xff);
      std::error_code ec;
      fs::create_directories(dir, ec);
      const std::string tmp = path.string() + "." + std::to_string(getpid()) + ".tmp";
      int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      bool written = fd >= 0 && ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size());
      if (fd >= 0) ::close(fd);
      if (written) (void)::link(tmp.c_str(), path.c_str());
      ::unlink(tmp.c_str());
      existing = ReadFile(path.string());
      if (!existing || existing->size() < 32)
        return Error(Status::FailedPrecondition("cannot create the secret digest key " + path.string() +
                                                " (the cache key of a step that uses a secret needs it)"));
    }
    digest_key_ = *existing;
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), digest_key_.data(), static_cast<int>(digest_key_.size()),
       reinterpret_cast<const unsigned char*>(value.data()), value.size(), mac, &len);
  static const char* kHex = "0123456789abcdef";
  std::string out = "<secret:";
  for (unsigned int i = 0; i < 16 && i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out + ">";
}

Status RunLoop::Prepare() {
  auto g = PipelineGraph::Build(spec_);
  if (!g) return g.error();
  graph_ = std::make_unique<PipelineGraph>(std::move(*g));
  const int n = graph_->size();
  steps_.resize(n);

  std::error_code ec;
  fs::path file = spec_.file.empty() ? fs::current_path(ec) / "pipeline.yaml" : fs::absolute(spec_.file, ec);
  pipeline_dir_ = file.parent_path().lexically_normal().string();

  for (const auto& p : spec_.params) {
    if (!p.secret) continue;
    secret_params_.insert(p.name);
    if (!opt_.params.contains(p.name)) continue;
    const Json& v = opt_.params[p.name];
    // A resumed run's record holds the placeholder, never the value: running
    // with it would pass "<redacted>" to the step as if it were the secret.
    if (v.is_string() && v.get<std::string>() == kRedacted)
      return Status::FailedPrecondition("parameter '" + p.name +
                                        "' is a secret, which is not recorded with a run; give its value again "
                                        "(-p " + p.name + "=VALUE)");
    AddSecretValue(v.is_string() ? v.get<std::string>() : v.dump(), /*derived=*/false);
    if (v.is_array())
      for (const auto& item : v) AddSecretValue(item.is_string() ? item.get<std::string>() : item.dump(), false);
  }
  // Whether a template reads a secret: a secret param, or `item` where the
  // foreach list comes from one.
  auto reads_secret = [&](const std::string& text, bool is_template, bool items_secret) {
    if (secret_params_.empty()) return false;
    if (is_template && text.find("{{") == std::string::npos) return false;
    auto refs = expr::References(text, is_template);
    if (!refs) return false;
    for (const auto& ref : *refs) {
      if (ref.path.size() >= 2 && ref.path[0] == "params" && secret_params_.count(ref.path[1])) return true;
      if (items_secret && !ref.path.empty() && ref.path[0] == "item") return true;
    }
    return false;
  };

  for (int v = 0; v < n; ++v) {
    const StepSpec& step = graph_->step(v);
    std::string name = !step.executor.empty()            ? step.executor
                       : !opt_.default_executor.empty() ? opt_.default_executor
                                                         : spec_.executor;
    if (name.empty()) name = "local";
    Executor* e = r_.executors_->Find(name);
    if (!e) {
      std::string known;
      for (const auto& k : r_.executors_->Names()) known += (known.empty() ? "" : ", ") + k;
      return Status::InvalidArgument(AtLoc(step.loc, "step '" + step.name + "' uses executor '" + name +
                                                          "', which is not available here (available: " +
                                                          (known.empty() ? "none" : known) + ")"));
    }
    steps_[v].executor = e;
    // A type that runs only on Kubernetes is refused here, before anything
    // starts, rather than failing its attempts one by one.
    const OperatorRegistry& operators = OperatorRegistry::OrGlobal(r_.options_.operators);
    if (const Operator* op = operators.Find(step.type); op && op->KubernetesOnly() && e->Name() != "kubernetes")
      return Status::InvalidArgument(
          AtLoc(step.loc, "step '" + step.name + "': " + LocalOperator(operators, step.type).error().message()));
    if (std::find(used_executors_.begin(), used_executors_.end(), e) == used_executors_.end())
      used_executors_.push_back(e);

    // Which templates need a scope, and which params they read.
    std::vector<std::pair<std::string, bool>> texts;  // text, is_template
    for (const auto& a : step.command) texts.push_back({a.text, true});
    for (const auto& e2 : step.env)
      if (!e2.secret) texts.push_back({e2.value.text, true});
    for (const auto& [k, t] : step.inputs) texts.push_back({t.text, true});
    if (step.when) texts.push_back({step.when->text, !step.when->IsLiteral()});
    if (step.foreach && step.foreach->kind == ForEachSpec::Kind::kExpression)
      texts.push_back({step.foreach->expression.text, true});
    if (step.workdir) texts.push_back({step.workdir->text, true});
    programs_.ForEachConfigString(step, [&](const std::string& text) { texts.push_back({text, true}); });
    StepInfo& info = steps_[v];
    info.items_secret = step.foreach && step.foreach->kind == ForEachSpec::Kind::kExpression &&
                        reads_secret(step.foreach->expression.text, true, false);
    for (const auto& [text, is_template] : texts)
      if (reads_secret(text, is_template, info.items_secret)) info.secret_texts.insert(text);
    if (programs_.RendersConfig(step))
      for (const auto& [text, is_template] : texts)
        if (info.secret_texts.count(text)) info.config_secret = true;
    std::set<std::string> params;
    for (const auto& [text, is_template] : texts) {
      if (is_template && text.find("{{") == std::string::npos) continue;
      steps_[v].needs_scope = true;
      auto refs = expr::References(text, is_template);
      if (!refs) continue;  // reported when rendered
      for (const auto& ref : *refs)
        if (ref.path.size() >= 2 && ref.path[0] == "params") params.insert(ref.path[1]);
    }
    if (!step.inputs.empty()) steps_[v].needs_scope = true;
    steps_[v].param_refs.assign(params.begin(), params.end());
    // The parts of the cache key that are the same for every instance.
    steps_[v].declared = CacheKey::DeclaredOutputs(step);
    steps_[v].declared_json = steps_[v].declared.dump();
    steps_[v].config_json = step.config.dump();
  }

  python_version_ = "";
  return Status::Ok();
}

Status RunLoop::SetUpResume() {
  if (opt_.resume_run_id.empty()) return Status::Ok();
  auto old = r_.store_->GetRun(opt_.resume_run_id);
  if (!old) return old.error().WithContext("resume");
  auto records = r_.store_->ListSteps(old->id);
  if (!records) return records.error().WithContext("resume");

  std::set<int> rerun;
  if (!opt_.rerun_from.empty()) {
    std::vector<int> nodes;
    for (const auto& name : opt_.rerun_from) {
      int v = graph_->Find(name);
      if (v < 0)
        return Status::InvalidArgument("rerun --from: pipeline '" + spec_.name + "' has no step '" + name + "'");
      nodes.push_back(v);
    }
    for (int v : graph_->DownstreamClosure(nodes)) rerun.insert(v);
    rerun_of_ = old->id;
    rerun_steps_ = rerun;
  } else {
    run_ = *old;
  }

  std::vector<SeedInstance> seeds;
  for (auto& rec : *records) {
    int step = graph_->Find(rec.step);
    if (step < 0 || rerun.count(step)) continue;
    bool kept = rec.phase == NodePhase::kSucceeded || rec.phase == NodePhase::kCached;
    // Outputs whose bytes are gone cannot be reused: run the step again.
    for (const auto& b : rec.outputs)
      if (kept && !r_.artifacts_->LocalPath(b.artifact.digest)) kept = false;
    if (!rerun_of_.empty()) {
      if (!kept) continue;  // a new run: nothing but kept instances carries over
      seeds.push_back({rec.instance, NodePhase::kCached, 0});
    } else {
      // An attempt still Running when the last sluice process died lives on
      // as a Kubernetes object, or a local process under its supervisor,
      // with a deterministic name: start the same attempt again so the
      // executor adopts it (or its recorded result), not a duplicate.
      const bool adopt = rec.phase == NodePhase::kRunning && rec.attempts > 0 &&
                         steps_[step].executor->AdoptsStartedAttempts();
      seeds.push_back({rec.instance, kept ? rec.phase : NodePhase::kPending,
                       adopt ? rec.attempts - 1 : rec.attempts});
      if (adopt) adopted_.insert(rec.instance);
    }
    previous_[rec.instance] = std::move(rec);
  }
  plan_->Seed(seeds);
  if (rerun_of_.empty()) SLUICE_RETURN_IF_ERROR(SettleOpenExecutions());
  return Status::Ok();
}

// Executions the dead sluice process left open ("Running", never finished).
// An adopted attempt keeps its row: StartAttempt continues it rather than
// recording the same attempt twice. Any other was lost with its process and
// is closed as an Error, so that lineage shows what happened to it.
Status RunLoop::SettleOpenExecutions() {
  auto executions = r_.store_->ListExecutions(run_.id);
  if (!executions) return executions.error().WithContext("resume");
  for (ExecutionRecord& e : *executions) {
    if (e.finished_at || e.outcome != "Running") continue;
    if (adopted_.count(e.instance)) {
      open_executions_[e.instance] = e;
      continue;
    }
    e.outcome = TaskOutcomeName(TaskOutcome::kError);
    e.message = "lost: the sluice process driving it (pid " + std::to_string(run_.pid) +
                ") died; the step runs again as attempt " + std::to_string(e.attempt + 1);
    e.finished_at = clock_->Now();
    SLUICE_RETURN_IF_ERROR(r_.store_->FinishExecution(e, {}, {}));
  }
  return Status::Ok();
}

void RunLoop::EnsureInst(int inst) {
  if (static_cast<int>(insts_.size()) < plan_->num_instances()) insts_.resize(plan_->num_instances());
  Inst& st = insts_[inst];
  if (st.initialized) return;
  st.initialized = true;
  st.rec.run_id = run_.id;
  st.rec.instance = plan_->InstanceName(inst);
  st.rec.step = graph_->step(plan_->InstanceStep(inst)).name;
  st.rec.index = plan_->InstanceIndex(inst);
  if (st.rec.index >= 0) {
    const Json& items = steps_[plan_->InstanceStep(inst)].items;
    if (st.rec.index < static_cast<int>(items.size())) {
      st.item = items[st.rec.index];
      st.rec.item = steps_[plan_->InstanceStep(inst)].items_secret ? Json(kRedacted) : st.item;
    }
  }
  auto it = previous_.find(st.rec.instance);
  if (it != previous_.end() && rerun_of_.empty()) {
    // Same-run resume: keep the attempt count and timings of the record.
    st.rec.attempts = it->second.attempts;
  }
}

void RunLoop::RegisterArtifactPaths(int inst) {
  Inst& st = insts_[inst];
  for (const auto& b : st.rec.outputs) {
    auto path = ArtifactPath(b.artifact.digest);
    if (!path) continue;
    st.artifact_paths[b.name] = *path;
    path_to_artifact_[*path] = b.artifact;
  }
}

Result<std::string> RunLoop::ArtifactPath(const std::string& digest) {
  if (opt_.launcher_executors.empty()) return r_.artifacts_->LocalPath(digest);
  // A launcher task fetches it in its pod; a local step fetches it before
  // it starts (FetchInputs).
  return r_.artifacts_->CachePath(digest);
}

Json RunLoop::InstanceOutputsScope(int inst) {
  const Inst& st = insts_[inst];
  Json artifacts = Json::object();
  for (const auto& [name, path] : st.artifact_paths) artifacts[name] = path;
  return Json{{"params", st.rec.output_params.is_object() ? st.rec.output_params : Json::object()},
              {"artifacts", std::move(artifacts)},
              {"metrics", st.rec.metrics.is_object() ? st.rec.metrics : Json::object()}};
}

// steps.<name> for a downstream step: the single instance's values, or for
// a foreach step lists over its instances in item order (null where an
// instance has no such value). Cached once the step is terminal.
Json RunLoop::StepScope(int step) {
  StepInfo& info = steps_[step];
  if (info.scope_cache) return *info.scope_cache;
  const StepSpec& spec = graph_->step(step);
  const auto& instances = plan_->StepInstances(step);
  Json out;
  if (!spec.foreach) {
    const int i = instances[0];
    EnsureInst(i);
    out = Json{{"phase", NodePhaseName(plan_->InstancePhase(i))}, {"outputs", InstanceOutputsScope(i)}};
  } else {
    // Lists over the instances; an unexpanded (omitted, skipped) or empty
    // foreach gives empty lists.
    std::vector<int> expanded;
    if (plan_->StepExpanded(step)) expanded = instances;
    // minSuccessRatio: the fan-in sees the items that did not fail
    // (SLUICE_FAILED_ITEMS names the others).
    if (MinSuccessRatio(spec))
      std::erase_if(expanded, [&](int i) { return IsFailedItem(plan_->InstancePhase(i)); });
    Json phases = Json::array();
    Json params = Json::object(), artifacts = Json::object(), metrics = Json::object();
    for (const auto& p : spec.output_params) params[p.name] = Json::array();
    for (const auto& a : spec.output_artifacts) artifacts[a.name] = Json::array();
    std::set<std::string> metric_names;
    for (int i : expanded) {
      EnsureInst(i);
      const Json& mm = insts_[i].rec.metrics;
      if (mm.is_object())
        for (auto it = mm.begin(); it != mm.end(); ++it) metric_names.insert(it.key());
    }
    for (const auto& m : metric_names) metrics[m] = Json::array();
    for (int i : expanded) {
      const Inst& st = insts_[i];
      phases.push_back(NodePhaseName(plan_->InstancePhase(i)));
      const Json& op = st.rec.output_params;
      for (auto it = params.begin(); it != params.end(); ++it)
        it.value().push_back(op.is_object() && op.contains(it.key()) ? op[it.key()] : Json());
      for (auto it = artifacts.begin(); it != artifacts.end(); ++it) {
        auto p = st.artifact_paths.find(it.key());
        it.value().push_back(p == st.artifact_paths.end() ? Json() : Json(p->second));
      }
      const Json& mm = st.rec.metrics;
      for (auto it = metrics.begin(); it != metrics.end(); ++it)
        it.value().push_back(mm.is_object() && mm.contains(it.key()) ? mm[it.key()] : Json());
    }
    out = Json{{"phase", std::move(phases)},
               {"outputs", Json{{"params", std::move(params)},
                                {"artifacts", std::move(artifacts)},
                                {"metrics", std::move(metrics)}}}};
  }
  if (plan_->StepTerminal(step)) info.scope_cache = out;
  return out;
}

std::optional<Json> RunLoop::FailedItems(int step) {
  std::optional<Json> out;
  for (int u : graph_->Upstream(step)) {
    if (!MinSuccessRatio(graph_->step(u))) continue;
    if (!out) out = Json::object();
    Json names = Json::array();
    if (plan_->StepExpanded(u))
      for (int i : plan_->StepInstances(u))
        if (IsFailedItem(plan_->InstancePhase(i))) names.push_back(plan_->InstanceName(i));
    (*out)[graph_->step(u).name] = std::move(names);
  }
  return out;
}

Json RunLoop::BuildScope(int step, int inst) {
  Json scope = Json::object();
  scope["params"] = opt_.params.is_object() ? opt_.params : Json::object();
  const bool is_finally = graph_->IsFinally(step);
  scope["run"] = Json{{"id", run_.id},
                      {"name", spec_.name},
                      {"status", is_finally ? RunPhaseName(plan_->MainPhase()) : "Running"}};
  scope["pipeline"] = Json{{"name", spec_.name}, {"dir", pipeline_dir_}};
  Json steps = Json::object();
  const std::string group = ForeachGroup(graph_->step(step));
  for (int u : graph_->Upstream(step)) {
    // Item i of a foreach group sees item i of the group's other steps.
    const int index = inst >= 0 ? plan_->InstanceIndex(inst) : -1;
    if (!group.empty() && index >= 0 && ForeachGroup(graph_->step(u)) == group && plan_->StepExpanded(u) &&
        index < static_cast<int>(plan_->StepInstances(u).size())) {
      const int ui = plan_->StepInstances(u)[index];
      EnsureInst(ui);
      steps[graph_->step(u).name] =
          Json{{"phase", NodePhaseName(plan_->InstancePhase(ui))}, {"outputs", InstanceOutputsScope(ui)}};
      continue;
    }
    steps[graph_->step(u).name] = StepScope(u);
  }
  scope["steps"] = std::move(steps);
  if (inst >= 0 && plan_->InstanceIndex(inst) >= 0) {
    scope["item"] = insts_[inst].item;
    scope["item_index"] = plan_->InstanceIndex(inst);
  }
  return scope;
}

const Result<std::pair<std::string, Json>>& RunLoop::CodeDigest(int step) {
  StepInfo& info = steps_[step];
  if (info.code) return *info.code;
  const StepSpec& spec = graph_->step(step);
  if (spec.code.empty()) {
    info.code = std::make_pair(std::string(), Json::object());
    return *info.code;
  }
  Sha256 h;
  Json files = Json::object();
  for (const auto& f : spec.code) {
    fs::path p = fs::path(f).is_absolute() ? fs::path(f) : fs::path(pipeline_dir_) / f;
    // Through the artifact store's digest cache: a file whose stat shows it
    // unchanged since it was last hashed (in this run or an earlier one) is
    // not read again, so steps sharing a script cost one read.
    auto d = r_.artifacts_->FileDigest(p.string());
    if (!d) {
      info.code = Error(Status(d.error().code(), AtLoc(spec.loc, "step '" + spec.name + "': code file '" + f +
                                                                      "' cannot be read at " + p.string() + ": " +
                                                                      d.error().message())));
      return *info.code;
    }
    files[f] = "sha256:" + *d;
    h.Update(f);
    h.Update("\0", 1);
    h.Update(*d);
    h.Update("\n", 1);
  }
  info.code = std::make_pair(spec.code.empty() ? std::string() : "sha256:" + h.HexDigest(), std::move(files));
  return *info.code;
}

void RunLoop::FailInstance(int inst, AttemptResult result, const std::string& message, bool retryable) {
  plan_->Finished(inst, result, message, clock_->Now(), retryable);
}

void RunLoop::HandleExpand(int step) {
  const StepSpec& spec = graph_->step(step);
  const ForEachSpec& fe = *spec.foreach;
  Json items = Json::array();
  switch (fe.kind) {
    case ForEachSpec::Kind::kItems:
      for (const auto& i : fe.items) items.push_back(i);
      break;
    case ForEachSpec::Kind::kRange: {
      int64_t stepv = fe.range_step == 0 ? 1 : fe.range_step;
      for (int64_t i = fe.range_start; stepv > 0 ? i < fe.range_end : i > fe.range_end; i += stepv)
        items.push_back(i);
      break;
    }
    case ForEachSpec::Kind::kExpression: {
      Json scope = BuildScope(step, -1);
      auto v = expr::RenderValue(fe.expression.text, scope);
      if (!v) {
        plan_->FailExpansion(step, AtLoc(fe.expression.loc, "step '" + spec.name + "': foreach: " + v.error().message()));
        return;
      }
      // An output parameter holding a JSON array (docs/dsl.md): its text.
      if (v->is_string()) {
        Json parsed = Json::parse(v->get<std::string>(), nullptr, /*allow_exceptions=*/false);
        if (!parsed.is_discarded() && parsed.is_array()) *v = std::move(parsed);
      }
      if (!v->is_array()) {
        plan_->FailExpansion(step, AtLoc(fe.expression.loc, "step '" + spec.name + "': foreach must yield a list, got " +
                                                                JsonTypeName(*v) + " " + Ellipsize(v->dump())));
        return;
      }
      items = std::move(*v);
      break;
    }
  }
  if (steps_[step].items_secret)
    for (const auto& item : items) AddSecretValue(item.is_string() ? item.get<std::string>() : item.dump(), true);
  steps_[step].items = std::move(items);
  plan_->Expand(step, static_cast<int>(steps_[step].items.size()));
  if (static_cast<int>(insts_.size()) < plan_->num_instances()) insts_.resize(plan_->num_instances());
}

bool RunLoop::StartInstance(int inst, int attempt) {
  const int step = plan_->InstanceStep(inst);
  Executor* ex = steps_[step].executor;
  if (!ex->CanRunMore()) {
    plan_->Return(inst);
    return false;
  }
  EnsureInst(inst);
  Attempt a(inst, step, attempt, graph_->step(step), clock_->Now());
  auto fail = [&](const Status& s) {
    FailInstance(inst, AttemptResult::kError, s.message(), /*retryable=*/false);
    return true;
  };
  if (steps_[step].needs_scope) a.scope = BuildScope(step, inst);
  if (a.spec.when) {
    const std::string& name = insts_[inst].rec.instance;
    auto ok = expr::EvaluateCondition(a.spec.when->text, a.scope);
    if (!ok)
      return fail(Status::InvalidArgument(
          AtLoc(a.spec.when->loc, "step '" + name + "': when: " + ok.error().message())));
    if (!*ok) {
      plan_->Finished(inst, AttemptResult::kSkipped, "when condition is false: " + a.spec.when->text, a.now);
      return true;
    }
  }
  if (Status s = RenderTask(a); !s.ok()) return fail(s);
  if (auto failed = FailedItems(step)) a.builder.task().env["SLUICE_FAILED_ITEMS"] = failed->dump();
  if (Status s = ResolveWorkdir(a); !s.ok()) return fail(s);
  const auto& code = CodeDigest(step);
  if (!code) return fail(code.error());
  a.code = &*code;
  a.key = ComputeCacheKey(a);

  const std::vector<std::string>& argv = a.builder.task().argv;
  const bool runs_python = !argv.empty() && argv[0].find("python") != std::string::npos;
  if (python_version_.empty() && runs_python) python_version_ = PythonVersion();
  a.python_recorded = !python_version_.empty() && runs_python;

  Inst& st = insts_[inst];
  st.rec.cache_key = a.key.key();
  st.rec.inputs = st.inputs;
  if (LooksUpCache(a) && TryCacheHit(a)) return true;
  SnapshotMembers snapshot = FullSnapshot(a);
  if (Status s = MakeWorkdir(a); !s.ok()) return fail(s);
  Launch(a, std::move(snapshot));
  return true;
}

TaskBuilder::RenderText RunLoop::TemplateRenderer(const Attempt& a) {
  return [this, &a](const Template& t, const std::string& field) -> Result<RenderedText> {
    if (t.IsLiteral()) return RenderedText{t.text, false};
    auto s = expr::Render(t.text, a.scope);
    if (!s)
      return Error(Status::InvalidArgument(
          AtLoc(t.loc, "step '" + insts_[a.inst].rec.instance + "': " + field + ": " + s.error().message())));
    const bool secret = Taint(a.step, t.text, *s, a.scope);
    return RenderedText{std::move(*s), secret};
  };
}

Status RunLoop::RenderTask(Attempt& a) {
  const StepInfo& info = steps_[a.step];
  Inst& st = insts_[a.inst];
  const std::string& name = st.rec.instance;
  // Inputs: paths (or lists of paths), with the artifacts they are.
  st.inputs.clear();
  st.input_paths.clear();
  auto inputs = a.builder.RenderInputs([&](const std::string& in_name, const Template& tmpl) -> Result<Json> {
    auto v = expr::RenderValue(tmpl.text, a.scope);
    if (!v)
      return Error(Status::InvalidArgument(
          AtLoc(tmpl.loc, "step '" + name + "': input '" + in_name + "': " + v.error().message())));
    if (Taint(a.step, tmpl.text, v->is_string() ? v->get<std::string>() : v->dump(), a.scope))
      a.secret_inputs.insert(in_name);
    if (v->is_array()) {
      Json ds = Json::array();
      for (const auto& item : *v) ds.push_back(BindInput(a.inst, in_name, item));
      a.input_digests[in_name] = std::move(ds);
    } else {
      a.input_digests[in_name] = BindInput(a.inst, in_name, *v);
    }
    return std::move(*v);
  });
  if (!inputs) return inputs.error();
  a.inputs = std::move(*inputs);
  if (info.needs_scope) a.scope["inputs"] = a.inputs;

  const TaskBuilder::RenderText render = TemplateRenderer(a);
  SLUICE_RETURN_IF_ERROR(a.builder.RenderArgv(render));
  // A program that starts pods of its own on the cluster (a deploy's
  // server) gets the run's code as the launcher's steps do: by digest.
  Json run_extra = Json::object();
  if (programs_.Runs(a.spec) && !opt_.launcher_executors.empty()) {
    auto code = CodeArchive();
    if (!code) return code.error().WithContext("step '" + name + "': packing the pipeline's code");
    run_extra["code_archive"] = *code;
    run_extra["code_dir"] = pipeline_dir_;
  }
  SLUICE_RETURN_IF_ERROR(programs_.Apply(a.spec, a.scope, run_.id, name, run_extra, info.config_secret,
                                         [&](const std::string& v) { AddSecretValue(v, /*derived=*/true); },
                                         &a.builder));
  // The Kubernetes executor passes a secretKeyRef and never the value, so
  // the host needs no copy of the secret.
  const bool by_reference = info.executor->Name() == "kubernetes";
  SLUICE_RETURN_IF_ERROR(a.builder.RenderEnv(render, [&](const EnvVarSpec& e) -> Result<std::string> {
    std::string var = "SLUICE_SECRET_" + EnvVarName(e.secret->name) + "_" + EnvVarName(e.secret->key);
    const char* value = by_reference ? "" : std::getenv(var.c_str());
    if (!value)
      return Error(Status::FailedPrecondition(
          AtLoc(e.loc, "step '" + name + "': env " + e.name + ": secret '" + e.secret->name + "' key '" +
                           e.secret->key + "' is not set; export " + var + " before running")));
    AddSecretValue(value, /*derived=*/false);
    return std::string(value);
  }));
  Task& task = a.builder.task();
  task.env["SLUICE_RUN_ID"] = run_.id;
  // Secret and secret-derived values are recorded as "<redacted>".
  for (const auto& var : task.secret_env) a.env_snapshot[var] = kRedacted;
  for (const auto& var : a.builder.derived_env()) a.env_snapshot[var] = kRedacted;
  for (const auto& [k, v] : task.env)
    if (!a.env_snapshot.contains(k)) a.env_snapshot[k] = Redact(v);
  return Status::Ok();
}

Json RunLoop::BindInput(int inst, const std::string& in_name, const Json& value) {
  if (!value.is_string()) return Json();
  const std::string path = value.get<std::string>();
  auto it = path_to_artifact_.find(path);
  if (it == path_to_artifact_.end() && fs::path(path).is_absolute()) {
    std::error_code ec;
    if (fs::exists(path, ec)) {
      auto rec = r_.artifacts_->Put(path, ArtifactType::kOther);
      if (rec) it = path_to_artifact_.emplace(path, *rec).first;
    }
  }
  if (it == path_to_artifact_.end()) return Json();
  insts_[inst].inputs.push_back({in_name, it->second});
  insts_[inst].input_paths.push_back(path);
  return it->second.digest;
}

Status RunLoop::ResolveWorkdir(Attempt& a) {
  Inst& st = insts_[a.inst];
  const std::string& name = st.rec.instance;
  // Working directory: fresh for every attempt, made only when the attempt
  // really runs (after the cache lookup, MakeWorkdir).
  // (Plain strings: run_dir_ has no trailing '/', and a cache hit needs no
  // fs::path.)
  a.base_dir = run_dir_ + "/steps/" + name;
  st.workdir = a.base_dir;
  bool workdir_secret = false;
  auto w = a.builder.RenderWorkdir(TemplateRenderer(a));
  if (!w) return w.error();
  if (*w) {
    const std::string& dir = (*w)->text;
    // A relative workdir is a directory in the store: its name would hold
    // the secret there.
    workdir_secret = (*w)->secret;
    if (workdir_secret && !fs::path(dir).is_absolute())
      return Status::InvalidArgument(AtLoc(a.spec.workdir->loc, "step '" + name +
                                                                    "': workdir: a relative workdir that uses a "
                                                                    "secret would name a directory in the store "
                                                                    "after it; use an absolute path"));
    st.workdir = fs::path(dir).is_absolute() ? dir : (fs::path(a.base_dir) / dir).string();
  }
  a.log_path = run_dir_ + "/logs/" + name + ".attempt" + std::to_string(a.attempt) + ".log";
  // A sub-pipeline's steps ("eval/score") log in a folder per level.
  if (name.find('/') != std::string::npos) {
    std::error_code dir_ec;
    fs::create_directories(fs::path(a.log_path).parent_path(), dir_ec);
    if (dir_ec)
      return Status::Unavailable("step '" + name + "': cannot create the log folder " +
                                 fs::path(a.log_path).parent_path().string() + ": " + dir_ec.message());
  }
  // This attempt was started by an earlier sluice process (resume after a
  // kill -9): the executor adopts it, so its working directory is kept and
  // the cache is not asked.
  std::error_code log_ec;
  a.started_before = steps_[a.step].executor->AdoptsStartedAttempts() && fs::exists(a.log_path, log_ec);
  a.workdir_record = workdir_secret ? std::string(kRedacted) : Redact(st.workdir);
  return Status::Ok();
}

std::string RunLoop::KeyDigest(const std::string& value) {
  auto d = SecretDigest(value);
  if (!d) {
    Record(d.error());
    return std::string(kRedacted);
  }
  return *d;
}

CacheKey RunLoop::ComputeCacheKey(const Attempt& a) {
  const StepInfo& info = steps_[a.step];
  const Task& task = a.builder.task();
  const CacheKeyParts parts{.step = a.spec,
                            .argv = task.argv,
                            .argv_secret = a.builder.argv_secret(),
                            .env = task.env,
                            .secret_env = task.secret_env,
                            .derived_env = a.builder.derived_env(),
                            .inputs = a.inputs,
                            .input_digests = a.input_digests,
                            .secret_inputs = a.secret_inputs,
                            .params = opt_.params,
                            .param_refs = info.param_refs,
                            .secret_params = secret_params_,
                            .code_digest = a.code->first,
                            .config_json = info.config_json,
                            .declared_json = info.declared_json,
                            .item = insts_[a.inst].item,
                            .item_secret = info.items_secret};
  return CacheKey::Compute(parts, [this](const std::string& v) { return KeyDigest(v); });
}

// The snapshot. A cache hit that knows the execution it reuses records a
// light one (ExecutionRecord::snapshot_base): only the keys that can differ
// from that execution's. Equal cache keys mean equal operator, image,
// params, item, code digest (and so code files: the digest hashes each
// file's name and digest), key material and, unless cache.ignoreInputs
// leaves some out, input digests; the store merges the rest back in on every
// read. The light snapshot is written as JSON text (one per hit, so no
// tree); the full one, which a running step's execution keeps, as a Json
// object.
namespace {

std::string ResourcesText(const Resources& r) {
  return JsonObjectText()
      .Int("cpu_millis", r.cpu_millis)
      .Int("gpu", r.gpu)
      .Int("memory_bytes", r.memory_bytes)
      .Finish();
}

}  // namespace

std::vector<std::string> RunLoop::RedactedArgv(const Attempt& a) const {
  const std::vector<std::string>& argv = a.builder.task().argv;
  const std::vector<bool>& secret = a.builder.argv_secret();
  std::vector<std::string> out;
  out.reserve(argv.size());
  for (size_t i = 0; i < argv.size(); ++i) out.push_back(secret[i] ? std::string(kRedacted) : Redact(argv[i]));
  return out;
}

std::string RunLoop::LightSnapshotText(const Attempt& a, const std::string& cached_from) const {
  const StepSpec& spec = a.spec;
  JsonObjectText t;
  t.Strings("argv", RedactedArgv(a))
      .Int("attempt", a.attempt)
      .String("cached_from", cached_from)
      .StringMap("env", a.env_snapshot)
      .String("git_commit", run_.git_commit)
      .Bool("git_dirty", run_.git_dirty);
  if (!spec.cache.ignore_inputs.empty()) t.Value("inputs", a.input_digests);
  t.String("instance", insts_[a.inst].rec.instance)
      .String("log_path", a.log_path)
      .String("pipeline_digest", spec_.file_digest)
      .String("pipeline_file", run_.pipeline_file);
  if (a.python_recorded) t.String("python_version", python_version_);
  t.Raw("resources", ResourcesText(spec.resources))
      .String("sluice_version", SLUICE_VERSION)
      .String("step", spec.name)
      .Raw("timeout_ms", spec.timeout ? std::to_string(spec.timeout->count()) : "null")
      .String("workdir", a.workdir_record);
  return t.Finish();
}

SnapshotMembers RunLoop::FullSnapshot(Attempt& a) {
  const StepSpec& spec = a.spec;
  const Inst& st = insts_[a.inst];
  SnapshotMembers snap;
  snap.String("step", spec.name);
  snap.String("instance", st.rec.instance);
  snap.Int("attempt", a.attempt);
  snap.Strings("argv", RedactedArgv(a));
  snap.StringMap("env", a.env_snapshot);
  snap.String("workdir", a.workdir_record);
  snap.Raw("resources", ResourcesText(spec.resources));
  snap.Raw("timeout_ms", spec.timeout ? std::to_string(spec.timeout->count()) : "null");
  snap.String("pipeline_file", run_.pipeline_file);
  snap.String("pipeline_digest", spec_.file_digest);
  snap.String("git_commit", run_.git_commit);
  snap.Raw("git_dirty", run_.git_dirty ? "true" : "false");
  snap.String("sluice_version", SLUICE_VERSION);
  snap.String("log_path", a.log_path);
  if (a.python_recorded) snap.String("python_version", python_version_);
  snap.Value("inputs", a.input_digests);
  snap.String("operator", spec.type);
  snap.String("image", spec.image);
  Json params = Json::object();
  for (const auto& p : steps_[a.step].param_refs)
    if (opt_.params.contains(p)) params[p] = secret_params_.count(p) ? Json(kRedacted) : opt_.params[p];
  snap.Value("params", params);
  snap.Value("item", st.rec.item);
  snap.String("code_digest", a.code->first);
  snap.Value("code_files", a.code->second);
  if (!spec.component_file.empty())
    snap.Raw("component", JsonObjectText()
                              .String("digest", "sha256:" + spec.component_digest)
                              .String("file", spec.component_file)
                              .Finish());
  snap.String("cache_key", a.key.key());
  // The key's components, secrets redacted, so `sluice plan` can say which
  // one changed and `sluice reproduce` knows the declared outputs. The
  // material is written as a dumped Json object is, so without secrets it is
  // recorded as it is.
  if (secret_values_.empty()) {
    snap.Raw("cache_key_material", a.key.material_text());
  } else {
    Json key_material = Json::parse(a.key.material_text());
    for (auto& v : key_material["argv"]) v = Redact(v.get<std::string>());
    for (auto& [k, v] : key_material["env"].items())
      if (v.is_string()) v = Redact(v.get<std::string>());
    snap.Value("cache_key_material", key_material);
  }
  return snap;
}

bool RunLoop::LooksUpCache(const Attempt& a) const {
  const StepSpec& spec = a.spec;
  // A step that declares no outputs runs for its side effects, so there is
  // nothing to reuse: it is never a cache hit.
  const bool has_outputs = !spec.output_artifacts.empty() || !spec.output_params.empty() || spec.metrics_file;
  // `rerun --from` asks for these steps to run again, not to be looked up.
  const bool forced = rerun_steps_.count(a.step) > 0;
  return spec.cache.enabled && !opt_.no_cache && has_outputs && !programs_.HasSideEffects(spec) && !forced &&
         !a.started_before;
}

bool RunLoop::TryCacheHit(Attempt& a) {
  const StepSpec& spec = a.spec;
  Inst& st = insts_[a.inst];
  std::optional<TimePoint> not_before;
  if (spec.cache.max_age) not_before = a.now - *spec.cache.max_age;
  auto hit = r_.store_->FindCacheHit(a.key.key(), not_before);
  // Not computed here: maybe on another machine sharing the artifact store.
  if (!hit && hit.error().code() == StatusCode::kNotFound) hit = FindSharedCacheHit(*r_.artifacts_, a.key.key(), not_before);
  // Outputs whose bytes are gone cannot be reused.
  std::vector<std::string> paths;
  bool usable = hit.has_value();
  for (size_t i = 0; usable && i < hit->step.outputs.size(); ++i) {
    const ArtifactRecord& out = hit->step.outputs[i].artifact;
    // With launcher tasks the bytes need only be in the store (one HEAD),
    // not on this host.
    auto path = opt_.launcher_executors.empty()                          ? r_.artifacts_->LocalPath(out.digest)
                : r_.artifacts_->Stat(out.digest, out.type, out.size) ? r_.artifacts_->CachePath(out.digest)
                                                                          : Result<std::string>(Error(Status::NotFound("")));
    if (path) paths.push_back(std::move(*path));
    else usable = false;
  }
  if (!usable) return false;
  StepRecord& src = hit->step;
  st.rec.output_params = std::move(src.output_params);
  st.rec.metrics = std::move(src.metrics);
  st.rec.outputs = std::move(src.outputs);
  st.rec.cached_from = src.cached_from.empty() ? src.run_id + "/" + src.instance : src.cached_from;
  st.rec.exit_code = src.exit_code;
  st.rec.attempts = a.attempt;
  if (!st.rec.started_at) st.rec.started_at = a.now;
  for (size_t i = 0; i < st.rec.outputs.size(); ++i) {
    st.artifact_paths[st.rec.outputs[i].name] = paths[i];
    path_to_artifact_[paths[i]] = st.rec.outputs[i].artifact;
  }
  ExecutionRecord ex_rec;
  ex_rec.run_id = run_.id;
  ex_rec.instance = st.rec.instance;
  ex_rec.attempt = a.attempt;
  ex_rec.outcome = "Cached";
  ex_rec.cache_key = a.key.key();
  ex_rec.started_at = a.now;
  ex_rec.finished_at = a.now;
  ex_rec.message = "outputs reused from " + st.rec.cached_from;
  if (hit->execution_id > 0) {
    ex_rec.snapshot_text = LightSnapshotText(a, st.rec.cached_from);
    ex_rec.snapshot_base = hit->execution_id;
  } else {
    SnapshotMembers snap = FullSnapshot(a);
    snap.String("cached_from", st.rec.cached_from);
    ex_rec.snapshot_text = snap.Text();
  }
  // Recorded with the step's Cached record by the next Flush(), in one
  // transaction with the other hits of this pass.
  pending_executions_.push_back({std::move(ex_rec), st.inputs, st.rec.outputs});
  plan_->Finished(a.inst, AttemptResult::kCached, "outputs reused from " + st.rec.cached_from, a.now);
  return true;
}

Status RunLoop::MakeWorkdir(const Attempt& a) {
  const Inst& st = insts_[a.inst];
  const std::string& name = st.rec.instance;
  const fs::path base(a.base_dir), workdir(st.workdir);
  std::error_code ec;
  // A fresh attempt starts in an empty directory. Made with one mkdir when
  // it is not there (the common case); one left by an earlier attempt or
  // run is emptied first.
  const bool made = !a.started_before && ::mkdir(a.base_dir.c_str(), 0777) == 0;
  if (!made && !a.started_before && (st.ever_started || errno == EEXIST)) fs::remove_all(base, ec);
  if (!made) fs::create_directories(base, ec);
  if (ec)
    return Status::Internal("step '" + name + "': cannot create its working directory " + base.string() + ": " +
                            ec.message());
  if (workdir != base) {
    fs::create_directories(workdir, ec);
    if (ec)
      return Status::Internal("step '" + name + "': cannot create workdir " + workdir.string() + ": " + ec.message());
  }
  return Status::Ok();
}

void RunLoop::Launch(Attempt& a, SnapshotMembers snapshot) {
  Inst& st = insts_[a.inst];
  const std::string& name = st.rec.instance;
  const TimePoint now = a.now;
  const int attempt = a.attempt;
  Executor* ex = steps_[a.step].executor;
  Task task = std::move(a.builder).Build(run_.id, spec_.name, name, attempt);
  task.id = next_task_id_++;
  task.operator_type = programs_.TaskOperatorType(a.spec);
  task.workdir = st.workdir;
  task.log_path = a.log_path;
  task.log_masks = secret_values_;
  st.result_key.clear();
  Status files = UsesLauncher(ex) ? FillTaskFiles(a, &task) : FetchInputs(a.inst, task);
  if (!files.ok()) {
    FailInstance(a.inst, AttemptResult::kError, Redact("step '" + name + "': " + files.message()), /*retryable=*/true);
    return;
  }
  if (!task.files.code_digest.empty()) snapshot.String("code_archive", task.files.code_digest);
  st.result_key = task.files.result_key;

  st.rec.phase = NodePhase::kRunning;
  st.rec.attempts = attempt;
  st.rec.log_path = a.log_path;
  st.rec.exit_code = -1;
  st.rec.message.clear();
  st.rec.finished_at.reset();
  if (!st.rec.started_at) st.rec.started_at = now;
  st.ever_started = true;

  st.exec = ExecutionRecord{};
  st.exec.run_id = run_.id;
  st.exec.instance = name;
  st.exec.attempt = attempt;
  st.exec.outcome = "Running";
  st.exec.log_path = a.log_path;
  st.exec.cache_key = a.key.key();
  st.exec.started_at = now;
  st.exec.snapshot_text = snapshot.Text();
  st.snapshot = std::move(snapshot);

  const bool is_finally = graph_->IsFinally(a.step);
  if (is_finally) {
    std::lock_guard lock(r_.cancel_mu_);
    r_.finally_started_ = true;
  }
  // The attempt's log file marks it as started for a later resume
  // (PrepareAttempt's started_before: keep its working directory, adopt it),
  // whether or not the executor writes the log before the step ends (the
  // Kubernetes executor copies it at the end). Made before Start: a kill -9
  // after the pod's create must find it.
  if (!a.log_path.empty()) {
    const int fd = ::open(a.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd >= 0) ::close(fd);
  }
  // Start first, record after: the step runs while the store writes.
  Status s = ex->Start(task);
  if (!s.ok()) {
    const std::string msg = Redact("could not start: " + s.message());
    st.exec.outcome = TaskOutcomeName(TaskOutcome::kError);
    st.exec.message = msg;
    st.exec.finished_at = clock_->Now();
    pending_executions_.push_back({std::move(st.exec), st.inputs, {}});
    st.exec = ExecutionRecord{};
    FailInstance(a.inst, AttemptResult::kError, msg, /*retryable=*/true);
    return;
  }
  st.executor = ex;
  tasks_[task.id] = a.inst;
  // One transaction records the step as Running with whatever waits to be
  // written (the results of the steps that ended before it, cache hits of
  // this pass): cache hits first, so that execution ids keep the order in
  // which steps finished.
  DrainChanges();
  MarkDirty(a.inst);
  Flush(/*synchronous=*/true);
  auto open = open_executions_.find(name);
  if (open != open_executions_.end() && open->second.attempt == attempt) {
    // Adopted on resume: the attempt's row from before the crash goes on.
    st.exec.id = open->second.id;
    st.exec.started_at = open->second.started_at;
    open_executions_.erase(open);
  } else {
    auto id = r_.store_->StartExecution(st.exec);
    if (id) st.exec.id = *id;
    else Record(id.error());
  }
  Emit(RunEvent::Kind::kStepStarted, name, NodePhase::kRunning, attempt, "");
  // A Cancel() that raced with Start() may have missed this task.
  if (r_.terminate_requested_.load() || (r_.cancel_requested_.load() && !is_finally))
    ex->Cancel(task.id, opt_.cancel_grace);
}

std::string RunLoop::CollectOutputs(int inst, AttemptResult* result) {
  const StepSpec& spec = graph_->step(plan_->InstanceStep(inst));
  Inst& st = insts_[inst];
  const std::string& name = st.rec.instance;
  std::error_code ec;
  for (const auto& a : spec.output_artifacts) {
    fs::path p = fs::path(st.workdir) / a.path;
    if (!fs::exists(p, ec)) {
      *result = AttemptResult::kFailed;
      return MissingArtifactMessage(name, a.name, a.path);
    }
    auto rec = r_.artifacts_->Put(p.string(), a.type);
    if (!rec) {
      *result = AttemptResult::kError;
      return "step '" + name + "': storing output artifact '" + a.name + "': " + rec.error().message();
    }
    st.rec.outputs.push_back({a.name, *rec});
  }
  for (const auto& p : spec.output_params) {
    auto value = ReadOutputParam(name, st.workdir, p.name, p.path);
    if (!value) {
      *result = AttemptResult::kFailed;
      return value.error().message();
    }
    st.rec.output_params[p.name] = std::move(*value);
  }
  if (spec.metrics_file) {
    auto m = ReadMetricsFile(name, st.workdir, *spec.metrics_file);
    if (!m) {
      *result = AttemptResult::kFailed;
      return m.error().message();
    }
    st.rec.metrics = std::move(*m);
  }
  RegisterArtifactPaths(inst);
  return "";
}

Result<std::string> RunLoop::CodeArchive() {
  if (!code_archive_) {
    code_archive_ = PackCode(r_.artifacts_, pipeline_dir_, opt_.state_dir, opt_.state_dir + "/tmp/code-" + run_.id);
  }
  if (!*code_archive_) return Error(code_archive_->error());
  return (*code_archive_)->digest;
}

Status RunLoop::FillTaskFiles(const Attempt& a, Task* task) {
  const StepSpec& spec = a.spec;
  const Inst& st = insts_[a.inst];
  TaskFiles& f = task->files;
  f.store_root = opt_.state_dir;
  std::set<std::string> seen;
  for (size_t i = 0; i < st.inputs.size(); ++i) {
    const ArtifactRecord& rec = st.inputs[i].artifact;
    if (seen.insert(rec.digest).second) {
      f.inputs.push_back({st.inputs[i].name, rec.digest, st.input_paths[i], rec.type});
    }
  }
  // Artifacts named in the command or env by their store path, without an
  // `inputs:` entry: fetched to that path too.
  auto scan = [&](const std::string& text) {
    for (const auto& digest : StorePathDigests(text, opt_.state_dir)) {
      if (!seen.insert(digest).second) continue;
      auto path = r_.artifacts_->CachePath(digest);
      if (path) f.inputs.push_back({"", digest, *path, ArtifactType::kOther});
    }
  };
  for (const auto& arg : task->argv) scan(arg);
  for (const auto& [k, v] : task->env) scan(v);
  for (const auto& o : spec.output_artifacts) f.outputs.push_back({o.name, "", o.path, o.type});
  for (const auto& p : spec.output_params) f.params.push_back({p.name, p.path});
  if (spec.metrics_file) f.metrics_file = *spec.metrics_file;
  auto code = CodeArchive();
  if (!code) return code.error();
  f.code_digest = *code;
  f.code_dir = pipeline_dir_;
  std::string instance;
  for (char c : st.rec.instance) instance += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ? c : '_';
  f.result_key = "results/" + run_.id + "/" + instance + "/attempt-" + std::to_string(a.attempt) + ".json";
  return Status::Ok();
}

Status RunLoop::FetchInputs(int inst, const Task& task) {
  if (opt_.launcher_executors.empty()) return Status::Ok();
  for (const auto& in : insts_[inst].inputs) {
    auto path = r_.artifacts_->LocalPath(in.artifact.digest);
    if (!path) return path.error().WithContext("input '" + in.name + "'");
  }
  auto fetch = [&](const std::string& text) -> Status {
    for (const auto& digest : StorePathDigests(text, opt_.state_dir)) {
      auto path = r_.artifacts_->LocalPath(digest);
      if (!path) return path.error();
    }
    return Status::Ok();
  };
  for (const auto& arg : task.argv) SLUICE_RETURN_IF_ERROR(fetch(arg));
  for (const auto& [k, v] : task.env) SLUICE_RETURN_IF_ERROR(fetch(v));
  return Status::Ok();
}

std::string RunLoop::CollectLauncherOutputs(int inst, AttemptResult* result) {
  const StepSpec& spec = graph_->step(plan_->InstanceStep(inst));
  Inst& st = insts_[inst];
  const std::string& name = st.rec.instance;
  auto text = r_.artifacts_->ReadObject(st.result_key, kMaxLaunchResultBytes);
  auto launched = text ? LaunchResultFromJson(*text) : Error(text.error());
  if (!launched) {
    *result = AttemptResult::kError;
    return "step '" + name + "': the launcher's result " + st.result_key + " cannot be read: " +
           launched.error().message();
  }
  if (!launched->error.empty()) {
    *result = AttemptResult::kFailed;
    return launched->error;
  }
  for (const auto& a : spec.output_artifacts) {
    auto out = launched->outputs.find(a.name);
    if (out == launched->outputs.end()) {
      *result = AttemptResult::kFailed;
      return MissingArtifactMessage(name, a.name, a.path);
    }
    auto rec = r_.artifacts_->Stat(out->second.digest, a.type, out->second.size);
    if (!rec) {
      *result = AttemptResult::kError;
      return "step '" + name + "': output artifact '" + a.name + "': " + rec.error().message();
    }
    st.rec.outputs.push_back({a.name, *rec});
  }
  st.rec.output_params = std::move(launched->params);
  st.rec.metrics = std::move(launched->metrics);
  RegisterArtifactPaths(inst);
  return "";
}

void RunLoop::HandleResult(const TaskResult& result) {
  auto it = tasks_.find(result.id);
  if (it == tasks_.end()) return;
  const int inst = it->second;
  tasks_.erase(it);
  Inst& st = insts_[inst];
  const TimePoint now = clock_->Now();
  AttemptResult ar = ToAttemptResult(result.outcome);
  std::string message = result.message;
  if (ar == AttemptResult::kSucceeded) {
    st.rec.outputs.clear();
    st.rec.output_params = Json::object();
    st.rec.metrics = Json::object();
    std::string why = st.result_key.empty() ? CollectOutputs(inst, &ar) : CollectLauncherOutputs(inst, &ar);
    if (!why.empty()) message = why;
  } else {
    st.rec.outputs.clear();
    // The launcher says why a step that exited 0 failed (a declared output
    // missing, an upload failing).
    if (!st.result_key.empty()) {
      auto text = r_.artifacts_->ReadObject(st.result_key, kMaxLaunchResultBytes);
      auto launched = text ? LaunchResultFromJson(*text) : Error(text.error());
      if (launched && !launched->error.empty()) message = launched->error;
    }
  }
  st.rec.exit_code = result.exit_code;
  st.exec.outcome = ar == AttemptResult::kSucceeded ? TaskOutcomeName(TaskOutcome::kSucceeded)
                    : ar == AttemptResult::kFailed  ? TaskOutcomeName(TaskOutcome::kFailed)
                                                    : TaskOutcomeName(result.outcome);
  if (ar == AttemptResult::kError && result.outcome == TaskOutcome::kSucceeded)
    st.exec.outcome = TaskOutcomeName(TaskOutcome::kError);
  st.exec.exit_code = result.exit_code;
  st.exec.message = Redact(message);
  st.exec.external_id = result.external_id;
  st.exec.finished_at = now;
  Json outputs = Json::object();
  for (const auto& b : st.rec.outputs) outputs[b.name] = b.artifact.digest;
  st.snapshot.Value("outputs", outputs);
  st.snapshot.Int("exit_code", result.exit_code);
  if (result.signal) st.snapshot.Int("signal", result.signal);
  st.exec.snapshot_text = st.snapshot.Text();
  st.snapshot = SnapshotMembers();
  // Shared with other machines when the artifact store is (best effort: the
  // run does not depend on it).
  if (ar == AttemptResult::kSucceeded && !st.exec.cache_key.empty() &&
      (!st.rec.outputs.empty() || !st.rec.output_params.empty() || !st.rec.metrics.empty()))
    (void)r_.artifacts_->PutCacheEntry(st.exec.cache_key, SharedCacheEntry(st.exec.cache_key, st.rec, now));
  pending_executions_.push_back({std::move(st.exec), st.inputs, st.rec.outputs});
  st.exec = ExecutionRecord{};
  plan_->Finished(inst, ar, message, now);
}

void RunLoop::DrainChanges() {
  const TimePoint now = clock_->Now();
  for (auto& c : plan_->TakeChanges()) {
    EnsureInst(c.instance);
    Inst& st = insts_[c.instance];
    if (c.kept) {
      auto it = previous_.find(st.rec.instance);
      if (it != previous_.end()) {
        StepRecord rec = it->second;
        if (!rerun_of_.empty()) {
          rec.run_id = run_.id;
          rec.phase = NodePhase::kCached;
          if (rec.cached_from.empty()) rec.cached_from = rerun_of_ + "/" + rec.instance;
          rec.message = "outputs reused from " + rec.cached_from;
          st.rec = std::move(rec);
          MarkDirty(c.instance);
          ObserveFinished(c.instance);
        } else {
          st.rec = std::move(rec);  // already in the store as it is
        }
        RegisterArtifactPaths(c.instance);
      }
      Emit(RunEvent::Kind::kStepFinished, st.rec.instance, st.rec.phase, st.rec.attempts, st.rec.message);
      continue;
    }
    st.rec.phase = c.phase;
    st.rec.message = Redact(c.message);
    if (c.retry_at) {
      MarkDirty(c.instance);
      Emit(RunEvent::Kind::kStepRetrying, st.rec.instance, c.phase, st.rec.attempts, c.message);
      continue;
    }
    if (IsTerminal(c.phase)) {
      st.rec.finished_at = now;
      if (c.phase != NodePhase::kSucceeded && c.phase != NodePhase::kCached) {
        // Outputs of a failed attempt are not outputs of the step.
        if (c.phase != NodePhase::kSkipped) st.rec.outputs.clear();
      }
    }
    MarkDirty(c.instance);
    if (IsTerminal(c.phase)) ObserveFinished(c.instance);
    Emit(RunEvent::Kind::kStepFinished, st.rec.instance, c.phase, st.rec.attempts, c.message);
  }
}

void RunLoop::Schedule() {
  while (true) {
    auto ready = plan_->Ready(clock_->Now());
    // Record what Ready() decided (kept, never-fitting instances) first:
    // kept instances' outputs feed the scopes of what starts now.
    DrainChanges();
    if (ready.empty()) break;
    bool full = false;
    for (const auto& n : ready) {
      if (n.kind == ReadyNode::Kind::kExpand) {
        HandleExpand(n.step);
      } else if (full) {
        plan_->Return(n.instance);
      } else if (!StartInstance(n.instance, n.attempt)) {
        full = true;
      }
    }
    DrainChanges();
    if (pending_executions_.size() >= kFlushEvery) Flush();
    if (full) break;
  }
}

std::optional<TaskResult> RunLoop::WaitAny(Duration timeout) {
  std::vector<Executor*> busy;
  for (Executor* e : used_executors_)
    if (e->Running() > 0) busy.push_back(e);
  if (busy.empty()) return std::nullopt;
  if (busy.size() == 1) return busy[0]->Wait(timeout);
  for (Executor* e : busy)
    if (auto r = e->Wait(Duration(0))) return r;
  return busy[0]->Wait(std::min(timeout, Duration(20)));
}

void RunLoop::ApplyNotes() {
  for (Executor* e : used_executors_) {
    auto* source = dynamic_cast<TaskNoteSource*>(e);
    if (source == nullptr) continue;
    for (TaskNote& n : source->TakeNotes()) {
      auto t = tasks_.find(n.id);
      if (t == tasks_.end()) continue;
      Inst& st = insts_[t->second];
      if (st.rec.phase != NodePhase::kRunning || st.rec.message == n.text) continue;
      const bool left_queue = n.text.empty() && st.rec.message.rfind(kQueuedNotePrefix, 0) == 0;
      if (left_queue && st.rec.attempts == 1) st.rec.started_at = clock_->Now();
      st.rec.message = std::move(n.text);
      Put(st.rec);
    }
  }
}

void RunLoop::CheckCancel() {
  if (!r_.cancel_requested_.load()) return;
  const bool terminate = r_.terminate_requested_.load();
  if (cancelled_ && (terminated_ || !terminate)) return;
  cancelled_ = true;
  terminated_ = terminate;
  plan_->Cancel(terminate ? Plan::CancelMode::kTerminate : Plan::CancelMode::kUser,
                "the run was cancelled");
  // Finally steps that run already go on unless the run is terminated.
  for (const auto& [id, inst] : tasks_)
    if (terminate || !graph_->IsFinally(plan_->InstanceStep(inst)))
      insts_[inst].executor->Cancel(id, opt_.cancel_grace);
  DrainChanges();
}

Result<RunSummary> RunLoop::Run() {
  if (Status s = Prepare(); !s.ok()) return Error(s);
  const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  PlanOptions po;
  po.slots = opt_.parallelism > 0 ? opt_.parallelism : hw;
  po.cpu_millis = opt_.cpu_budget_millis > 0 ? opt_.cpu_budget_millis : int64_t{hw} * 1000;
  if (opt_.memory_budget_bytes > 0) {
    po.memory_bytes = opt_.memory_budget_bytes;
  } else {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    po.memory_bytes = pages > 0 && page > 0 ? int64_t{pages} * page : 0;
  }
  po.gpu = opt_.gpu_budget;
  po.keep_going = opt_.keep_going;
  plan_ = std::make_unique<Plan>(*graph_, po);
  if (r_.store_->ConcurrentWrites()) writer_ = std::make_unique<StoreWriter>(r_.store_);

  const TimePoint start = clock_->Now();
  // One process drives a run at a time: a second one would start the steps
  // the first still runs.
  if (!opt_.resume_run_id.empty() && opt_.rerun_from.empty()) {
    auto lock = RunDriverLock::Acquire(opt_.state_dir, opt_.resume_run_id);
    if (!lock) return Error(lock.error());
    driver_lock_ = std::move(*lock);
  }
  if (Status s = SetUpResume(); !s.ok()) return Error(s);
  const bool same_run = !opt_.resume_run_id.empty() && rerun_of_.empty();
  if (!same_run) {
    run_ = RunRecord{};
    run_.id = opt_.run_id.empty() ? NewRunId(spec_.name, start) : opt_.run_id;
    // The id names the run's directory below: never a path out of the store.
    if (Status s = ValidateRunId(run_.id); !s.ok()) return Error(s);
    run_.created_at = start;
    run_.resumed_from = rerun_of_;
    auto lock = RunDriverLock::Acquire(opt_.state_dir, run_.id);
    if (!lock) return Error(lock.error());
    driver_lock_ = std::move(*lock);
  }
  run_.pipeline = spec_.name;
  if (!spec_.file.empty()) {
    std::error_code ec;
    run_.pipeline_file = fs::absolute(spec_.file, ec).lexically_normal().string();
    if (auto text = ReadFile(spec_.file)) run_.pipeline_yaml = *text;
    GitState git = GitStateOf(run_.pipeline_file);
    run_.git_commit = git.commit;
    run_.git_dirty = git.dirty;
  }
  run_.pipeline_digest = spec_.file_digest;
  run_.params = RedactSecretParams(spec_, opt_.params.is_object() ? opt_.params : Json::object());
  run_.executor = opt_.default_executor.empty() ? spec_.executor : opt_.default_executor;
  run_.no_cache = opt_.no_cache;
  run_.artifacts = r_.artifacts_->Location();
  run_.phase = RunPhase::kRunning;
  run_.message.clear();
  run_.started_at = start;
  run_.finished_at.reset();
  run_.host = HostName();
  run_.pid = static_cast<int>(getpid());
  {
    Status s = same_run ? r_.store_->UpdateRun(run_) : r_.store_->CreateRun(run_);
    if (!s.ok()) return Error(s.WithContext("recording run " + run_.id));
  }
  run_dir_ = (fs::path(opt_.state_dir.empty() ? ".sluice" : opt_.state_dir) / "runs" / run_.id).string();
  {
    std::error_code ec;
    fs::create_directories(fs::path(run_dir_) / "logs", ec);
    if (ec) return Error(Status::FailedPrecondition("cannot create " + run_dir_ + "/logs: " + ec.message()));
  }
  Emit(RunEvent::Kind::kRunStarted, "", NodePhase::kRunning, 0, run_.id);

  std::optional<TimePoint> deadline;
  if (spec_.timeout) deadline = start + *spec_.timeout;
  bool stuck = false;
  while (true) {
    CheckCancel();
    if (deadline && !timed_out_ && !cancelled_ && clock_->Now() >= *deadline) {
      timed_out_ = true;
      plan_->Cancel(Plan::CancelMode::kTimeout, "the run exceeded its timeout of " + FormatDuration(*spec_.timeout));
      // Only main steps are running or waiting now; finally steps start after.
      for (Executor* e : used_executors_) e->CancelAll(opt_.cancel_grace);
      DrainChanges();
    }
    Schedule();
    ObserveReady(plan_->ReadyWaiting());
    Flush();
    // A store that cannot record the run (a full disk): start nothing more
    // and stop what runs; the run ends Error with the cause (below).
    if (!store_error_.ok() && !cancelled_) {
      cancelled_ = true;
      plan_->Cancel(Plan::CancelMode::kUser, "the store cannot record the run: " + store_error_.message());
      for (Executor* e : used_executors_) e->CancelAll(opt_.cancel_grace);
      DrainChanges();
    }
    if (plan_->Done()) break;

    const TimePoint now = clock_->Now();
    std::optional<TimePoint> wake = plan_->NextWakeup();
    if (deadline && !timed_out_ && (!wake || *deadline < *wake)) wake = deadline;
    Duration timeout = std::chrono::hours(24);
    if (wake) {
      timeout = std::chrono::ceil<Duration>(*wake - now);
      if (timeout < Duration(0)) timeout = Duration(0);
    }
    if (!tasks_.empty()) {
      if (auto res = WaitAny(timeout)) {
        CheckCancel();  // a cancelled task's result must find the plan cancelled
        HandleResult(*res);
        // Take every other result that is already there before planning.
        while (!tasks_.empty()) {
          auto more = WaitAny(Duration(0));
          if (!more) break;
          HandleResult(*more);
        }
        DrainChanges();
      }
      ApplyNotes();
    } else if (wake) {
      if (timeout > Duration(0)) clock_->SleepFor(timeout);
    } else if (!r_.cancel_requested_.load()) {
      stuck = true;  // nothing runs, nothing is due: a bug, never a hang
      break;
    }
  }

  DrainChanges();
  ObserveReady(0);
  Flush();
  // Same-run resume: a foreach step that was omitted before its list was
  // known left a record under its own name; its instances replace it now.
  if (rerun_of_.empty()) {
    for (int v = 0; v < graph_->size(); ++v) {
      const StepSpec& step = graph_->step(v);
      auto it = previous_.find(step.name);
      if (!step.foreach || !plan_->StepExpanded(v) || it == previous_.end()) continue;
      StepRecord rec = it->second;
      const size_t n = plan_->StepInstances(v).size();
      rec.phase = plan_->StepPhase(v);
      rec.message = "expanded on resume into " + std::to_string(n) + " instance" + (n == 1 ? "" : "s") + ": " +
                    step.name + "[0].." + step.name + "[" + std::to_string(n - 1) + "]";
      rec.finished_at = clock_->Now();
      Put(rec);
    }
  }
  run_.phase = stuck ? RunPhase::kError : plan_->Phase();
  run_.message = stuck ? "internal error: the scheduler has nothing to run but the run is not done"
                       : Redact(plan_->PhaseMessage());
  if (run_.phase == RunPhase::kSucceeded) run_.message = Redact(plan_->ToleratedMessage());
  run_.finished_at = clock_->Now();
  SyncStore();
  if (!store_error_.ok()) {
    // Recorded if the store takes this one write (space freed, a transient
    // error); otherwise Run() returns the error and the run stays Running
    // in the store.
    run_.phase = RunPhase::kError;
    run_.message = Redact("the store could not record the run: " + store_error_.message());
  }
  Record(r_.store_->UpdateRun(run_));
  Emit(RunEvent::Kind::kRunFinished, "", NodePhase::kPending, 0,
       std::string(RunPhaseName(run_.phase)) + (run_.message.empty() ? "" : ": " + run_.message));

  RunSummary summary;
  summary.run = run_;
  // Sized once: grown by doubling, it would briefly hold room for almost
  // twice the records (196,608 for a foreach of 100,000).
  size_t reported = 0;
  for (int v = 0; v < graph_->size(); ++v) {
    for (int i : plan_->StepInstances(v)) reported += plan_->IsReported(i) ? 1 : 0;
  }
  summary.steps.reserve(reported);
  for (int v = 0; v < graph_->size(); ++v) {
    for (int i : plan_->StepInstances(v)) {
      if (!plan_->IsReported(i)) continue;
      EnsureInst(i);
      StepRecord rec = std::move(insts_[i].rec);  // the loop ends here
      rec.phase = plan_->InstancePhase(i);
      summary.steps.push_back(std::move(rec));
    }
  }
  if (!store_error_.ok()) return Error(store_error_.WithContext("recording run " + run_.id));
  return summary;
}

Result<RunSummary> Runner::Run() {
  RunLoop loop(*this);
  return loop.Run();
}

}  // namespace sluice
