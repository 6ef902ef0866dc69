#include "engine/run/cache_explain.h"

#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include "engine/store/artifact_store.h"
#include "engine/clock.h"
#include "engine/graph.h"
#include "engine/run/runner.h"

namespace sluice {

namespace fs = std::filesystem;

namespace {

// "sha256:0123456789ab" for a digest; other values as compact JSON.
std::string Short(const Json& v) {
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.rfind("sha256:", 0) == 0 && s.size() > 19) return s.substr(0, 19);
    return s;
  }
  if (v.is_null()) return "(none)";
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + Short(v[i]);
    return out + "]";
  }
  return v.dump();
}

std::string ArgvText(const Json& argv) {
  if (!argv.is_array()) return Short(argv);
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    std::string text = a.is_string() ? a.get<std::string>() : a.dump();
    // Input paths appear as their digests: shorten them as elsewhere.
    if (text.rfind("sha256:", 0) == 0 && text.size() == 71) text = text.substr(0, 19);
    out += text;
  }
  return out;
}

const Json& Field(const Json& obj, const char* key) {
  static const Json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

// Per-key differences of two objects: "<what> <key> changed: a → b",
// "<what> <key> added", "<what> <key> removed".
void DiffObjects(const Json& before, const Json& after, const std::string& what, bool show_values,
                 std::vector<std::string>* out) {
  std::set<std::string> keys;
  if (before.is_object())
    for (auto it = before.begin(); it != before.end(); ++it) keys.insert(it.key());
  if (after.is_object())
    for (auto it = after.begin(); it != after.end(); ++it) keys.insert(it.key());
  for (const auto& k : keys) {
    const Json& a = Field(before, k.c_str());
    const Json& b = Field(after, k.c_str());
    if (a == b) continue;
    if (a.is_null()) {
      out->push_back(what + " " + k + " added" + (show_values ? ": " + Short(b) : ""));
    } else if (b.is_null()) {
      out->push_back(what + " " + k + " removed");
    } else {
      out->push_back(what + " " + k + " changed" + (show_values ? ": " + Short(a) + " → " + Short(b) : ""));
    }
  }
}

// Text of a value as it appears in a rendered command.
std::string ScalarText(const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// True when argv `a` becomes `b` by substituting the changed input digests
// and param values alone: the command changed only because of changes that
// are reported already.
bool ArgvChangeExplained(const Json& a, const Json& b, std::pair<const Json&, const Json&> inputs,
                         std::pair<const Json&, const Json&> params) {
  if (!a.is_array() || !b.is_array() || a.size() != b.size()) return false;
  std::vector<std::pair<std::string, std::string>> subs;
  auto collect = [&](const Json& before, const Json& after) {
    if (!before.is_object() || !after.is_object()) return;
    for (auto it = before.begin(); it != before.end(); ++it) {
      auto jt = after.find(it.key());
      if (jt == after.end() || *jt == it.value()) continue;
      // Lists and objects render in commands as compact JSON, as dump() writes.
      subs.push_back({ScalarText(it.value()), ScalarText(*jt)});
    }
  };
  collect(inputs.first, inputs.second);
  collect(params.first, params.second);
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    if (!a[i].is_string() || !b[i].is_string()) return false;
    std::string t = a[i].get<std::string>();
    for (const auto& [from, to] : subs) {
      if (from.empty()) continue;
      std::string r;
      size_t pos = 0, hit;
      while ((hit = t.find(from, pos)) != std::string::npos) {
        r += t.substr(pos, hit - pos) + to;
        pos = hit + from.size();
      }
      t = r + t.substr(pos);
    }
    if (t != b[i].get<std::string>()) return false;
  }
  return true;
}

}  // namespace

const char* VerdictName(StepPrediction::Verdict verdict) {
  switch (verdict) {
    case StepPrediction::Verdict::kHit: return "hit";
    case StepPrediction::Verdict::kRun: return "run";
    case StepPrediction::Verdict::kWait: return "wait";
  }
  return "?";
}

std::vector<std::string> ExplainKeyChange(const Json& before, const Json& after) {
  std::vector<std::string> out;
  const Json& mb = Field(before, "cache_key_material");
  const Json& ma = Field(after, "cache_key_material");
  const bool material = mb.is_object() && ma.is_object();
  auto part = [&](const char* key) -> std::pair<const Json&, const Json&> {
    if (material) return {Field(mb, key), Field(ma, key)};
    return {Field(before, key), Field(after, key)};
  };
  if (material && Field(mb, "operator") != Field(ma, "operator"))
    out.push_back("operator changed: " + Short(Field(mb, "operator")) + " → " + Short(Field(ma, "operator")));
  {
    auto [a, b] = part("inputs");
    DiffObjects(a, b, "input", /*show_values=*/true, &out);
  }
  {
    // Code: per file when both snapshots list the files.
    const Json& fa = Field(before, "code_files");
    const Json& fb = Field(after, "code_files");
    const Json& ca = material ? Field(mb, "code") : Field(before, "code_digest");
    const Json& cb = material ? Field(ma, "code") : Field(after, "code_digest");
    if (ca != cb) {
      std::vector<std::string> files;
      if (fa.is_object() && fb.is_object()) DiffObjects(fa, fb, "code", /*show_values=*/true, &files);
      if (files.empty()) files.push_back("code changed: " + Short(ca) + " → " + Short(cb));
      out.insert(out.end(), files.begin(), files.end());
    }
  }
  {
    auto [a, b] = part("params");
    DiffObjects(a, b, "param", /*show_values=*/true, &out);
  }
  {
    auto [a, b] = part("argv");
    if (a != b && !ArgvChangeExplained(a, b, part("inputs"), part("params")))
      out.push_back("command changed: " + ArgvText(a) + " → " + ArgvText(b));
  }
  if (material) {
    DiffObjects(Field(mb, "env"), Field(ma, "env"), "env", /*show_values=*/false, &out);
    auto simple = [&](const char* key, const std::string& label, bool values) {
      const Json& a = Field(mb, key);
      const Json& b = Field(ma, key);
      if (a != b) out.push_back(label + " changed" + (values ? ": " + Short(a) + " → " + Short(b) : ""));
    };
    simple("image", "image", true);
    simple("item", "foreach item", true);
    simple("workdir", "workdir", true);
    simple("outputs", "declared outputs", false);
    simple("config", "operator config", false);
    simple("v", "cache key version", true);
  }
  return out;
}

namespace {

// Instances of a literal or range foreach (the Runner's expansion).
size_t ForEachCount(const ForEachSpec& fe) {
  if (fe.kind == ForEachSpec::Kind::kItems) return fe.items.size();
  const int64_t step = fe.range_step == 0 ? 1 : fe.range_step;
  const int64_t span = step > 0 ? fe.range_end - fe.range_start : fe.range_start - fe.range_end;
  const int64_t stride = step > 0 ? step : -step;
  return span <= 0 ? 0 : static_cast<size_t>((span + stride - 1) / stride);
}

// Newest-first index of successful executions per instance, loaded run by
// run on demand (a 10,000-step plan reads each run once).
class History {
 public:
  History(Store* store, std::string pipeline, std::string exclude_run, int history_runs)
      : store_(store), pipeline_(std::move(pipeline)), exclude_(std::move(exclude_run)),
        history_runs_(history_runs) {}

  Result<std::optional<ExecutionRecord>> Latest(const std::string& instance) {
    if (!listed_) {
      RunFilter filter;
      filter.pipeline = pipeline_;
      filter.limit = history_runs_;
      auto runs = store_->ListRuns(filter);
      if (!runs) return Error(runs.error());
      for (const auto& r : *runs)
        if (r.id != exclude_) runs_.push_back(r.id);
      listed_ = true;
    }
    for (size_t i = 0; i < runs_.size(); ++i) {
      if (i >= loaded_.size()) {
        auto execs = store_->ListExecutions(runs_[i]);
        if (!execs) return Error(execs.error());
        std::unordered_map<std::string, ExecutionRecord> latest;
        for (auto& e : *execs) {
          if (e.outcome != "Succeeded" && e.outcome != "Cached") continue;
          auto it = latest.find(e.instance);
          if (it == latest.end() || e.id > it->second.id) latest[e.instance] = std::move(e);
        }
        loaded_.push_back(std::move(latest));
      }
      auto it = loaded_[i].find(instance);
      if (it != loaded_[i].end()) return std::optional<ExecutionRecord>(it->second);
    }
    return std::optional<ExecutionRecord>();
  }

 private:
  Store* store_;
  std::string pipeline_;
  std::string exclude_;
  int history_runs_;
  bool listed_ = false;
  std::vector<std::string> runs_;
  std::vector<std::unordered_map<std::string, ExecutionRecord>> loaded_;
};

// Forwards reads to the real store; keeps the predicted run's own writes in
// memory. Used from the Runner's thread only.
class OverlayStore : public Store {
 public:
  explicit OverlayStore(Store* base) : base_(base) {}

  Status CreateRun(const RunRecord& run) override {
    run_ = run;
    return Status();
  }
  Status UpdateRun(const RunRecord& run) override {
    if (run.id == run_.id) run_ = run;
    return Status();
  }
  Result<RunRecord> GetRun(const std::string& id) override {
    if (!run_.id.empty() && id == run_.id) return run_;
    return base_->GetRun(id);
  }
  Result<std::vector<RunRecord>> ListRuns(const RunFilter& filter) override { return base_->ListRuns(filter); }
  Status PutStep(const StepRecord& step) override {
    if (!steps_.count(step.instance)) order_.push_back(step.instance);
    steps_[step.instance] = step;
    return Status();
  }
  Result<std::vector<StepRecord>> ListSteps(const std::string& run_id) override {
    if (run_id != run_.id) return base_->ListSteps(run_id);
    std::vector<StepRecord> out;
    for (const auto& i : order_) out.push_back(steps_[i]);
    return out;
  }
  Result<StepRecord> GetStep(const std::string& run_id, const std::string& instance) override {
    if (run_id != run_.id) return base_->GetStep(run_id, instance);
    auto it = steps_.find(instance);
    if (it == steps_.end()) return Error(Status::NotFound("no step " + instance));
    return it->second;
  }
  Result<int64_t> StartExecution(const ExecutionRecord& execution) override {
    ExecutionRecord e = execution;
    // Reads see the snapshot as a Json object, however it was written.
    if (!e.snapshot_text.empty()) {
      e.snapshot = Json::parse(e.snapshot_text, nullptr, /*allow_exceptions=*/false);
      e.snapshot_text.clear();
    }
    e.id = kFirstId + static_cast<int64_t>(executions_.size());
    executions_.push_back(e);
    return e.id;
  }
  Status FinishExecution(const ExecutionRecord&, const std::vector<ArtifactBinding>&,
                         const std::vector<ArtifactBinding>&) override {
    return Status();
  }
  Result<std::vector<ExecutionRecord>> ListExecutions(const std::string& run_id) override {
    if (run_id != run_.id) return base_->ListExecutions(run_id);
    return executions_;
  }
  Result<StepRecord> FindCached(const std::string& key, std::optional<TimePoint> not_before) override {
    return base_->FindCached(key, not_before);
  }
  Result<ArtifactRecord> GetArtifact(const std::string& d) override { return base_->GetArtifact(d); }
  Result<ExecutionRecord> GetExecution(int64_t id) override { return base_->GetExecution(id); }
  Result<std::vector<ExecutionRecord>> ProducersOf(const std::string& d) override { return base_->ProducersOf(d); }
  Result<std::vector<ExecutionRecord>> ConsumersOf(const std::string& d) override { return base_->ConsumersOf(d); }
  Result<std::vector<ArtifactBinding>> InputsOf(int64_t id) override { return base_->InputsOf(id); }
  Result<std::vector<ArtifactBinding>> OutputsOf(int64_t id) override { return base_->OutputsOf(id); }
  Result<int64_t> RecordDeployment(const DeploymentRecord&) override { return int64_t{0}; }
  Result<std::vector<DeploymentRecord>> ListDeployments(const std::string& service, int limit) override {
    return base_->ListDeployments(service, limit);
  }

  const std::vector<ExecutionRecord>& executions() const { return executions_; }
  const std::vector<std::string>& order() const { return order_; }
  const std::map<std::string, StepRecord>& steps() const { return steps_; }

 private:
  static constexpr int64_t kFirstId = int64_t{1} << 50;
  Store* base_;
  RunRecord run_;
  std::map<std::string, StepRecord> steps_;
  std::vector<std::string> order_;
  std::vector<ExecutionRecord> executions_;
};

// Hashes files in place instead of copying them into the store; uses the
// store's digest cache without writing it.
// With a shared store, its shared cache and its bytes answer what the local
// store cannot.
class PeekArtifactStore : public ArtifactStore {
 public:
  PeekArtifactStore(const std::string& state_dir, ArtifactStore* shared)
      : real_(state_dir),
        digests_((fs::path(state_dir) / "cas" / "digests").string(), /*read_only=*/true),
        shared_(shared) {}
  Result<std::string> FileDigest(const std::string& path) override { return digests_.Digest(path); }
  Result<ArtifactRecord> Put(const std::string& path, ArtifactType type) override {
    auto digest = FileArtifactStore::DigestOf(path, &digests_);
    if (!digest) return Error(digest.error());
    ArtifactRecord rec;
    rec.digest = *digest;
    rec.uri = "file://" + path;
    rec.type = type;
    std::error_code ec;
    rec.is_directory = fs::is_directory(path, ec);
    if (!rec.is_directory) rec.size = static_cast<int64_t>(fs::file_size(path, ec));
    return rec;
  }
  Result<std::string> LocalPath(const std::string& digest) override {
    auto local = real_.LocalPath(digest);
    if (local || !shared_ || local.error().code() != StatusCode::kNotFound) return local;
    return shared_->LocalPath(digest);
  }
  std::string Location() const override { return shared_ ? shared_->Location() : ""; }
  Result<std::string> GetCacheEntry(const std::string& key, std::string* where) override {
    if (!shared_) return ArtifactStore::GetCacheEntry(key, where);
    return shared_->GetCacheEntry(key, where);
  }

 private:
  FileArtifactStore real_;
  FileDigestCache digests_;
  ArtifactStore* shared_;
};

// Starts nothing: every task "fails" at once, so its dependents are omitted.
class PredictExecutor : public Executor {
 public:
  explicit PredictExecutor(std::string name) : name_(std::move(name)) {}
  std::string Name() const override { return name_; }
  bool CanRunMore() const override { return true; }
  Status Start(const Task& task) override {
    queue_.push_back(task.id);
    return Status();
  }
  std::optional<TaskResult> Wait(Duration) override {
    if (queue_.empty()) return std::nullopt;
    TaskResult r;
    r.id = queue_.front();
    queue_.pop_front();
    r.outcome = TaskOutcome::kFailed;
    r.exit_code = 1;
    r.message = "predicted: would run";
    return r;
  }
  void Cancel(TaskId, Duration) override {}
  void CancelAll(Duration) override {}
  size_t Running() const override { return queue_.size(); }

 private:
  std::string name_;
  std::deque<TaskId> queue_;
};

}  // namespace

Result<std::optional<ExecutionRecord>> LatestSuccessfulExecution(Store* store, const std::string& pipeline,
                                                                 const std::string& instance,
                                                                 const std::string& exclude_run,
                                                                 int history_runs) {
  History history(store, pipeline, exclude_run, history_runs);
  return history.Latest(instance);
}

Result<std::vector<StepPrediction>> PredictCache(const PipelineSpec& spec, const Json& params, Store* store,
                                                 const std::string& state_dir, const PredictOptions& options) {
  std::string tmpl = (fs::temp_directory_path() / "sluice-plan.XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) return Error(Status::Internal("cannot create a scratch directory under /tmp"));
  const std::string scratch = buf.data();
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{scratch};

  OverlayStore overlay(store);
  PeekArtifactStore artifacts(state_dir, options.shared);
  ExecutorRegistry executors;
  std::set<std::string> names{"local", "kubernetes"};
  if (!options.default_executor.empty()) names.insert(options.default_executor);
  if (!spec.executor.empty()) names.insert(spec.executor);
  for (const auto* list : {&spec.steps, &spec.finally_steps})
    for (const auto& s : *list)
      if (!s.executor.empty()) names.insert(s.executor);
  for (const auto& n : names) (void)executors.Register(n, std::make_unique<PredictExecutor>(n));

  FakeClock clock(std::chrono::system_clock::now());
  RunOptions run_options;
  run_options.run_id = "sluice-plan-prediction";
  run_options.params = params;
  run_options.keep_going = true;
  run_options.no_cache = options.no_cache;
  run_options.default_executor = options.default_executor;
  run_options.state_dir = scratch;
  run_options.clock = &clock;
  run_options.parallelism = 1 << 20;
  run_options.cpu_budget_millis = int64_t{1} << 40;
  run_options.memory_budget_bytes = int64_t{1} << 60;
  run_options.gpu_budget = 1 << 20;
  Runner runner(spec, &overlay, &artifacts, &executors, run_options);
  auto summary = runner.Run();
  if (!summary) return Error(summary.error());

  // First snapshot of each instance (attempt 1) and whether it was a hit.
  std::unordered_map<std::string, const ExecutionRecord*> first;
  for (const auto& e : overlay.executions())
    if (!first.count(e.instance)) first[e.instance] = &e;

  auto graph = PipelineGraph::Build(spec);
  History history(store, spec.name, "", options.history_runs);
  std::vector<StepPrediction> out;
  std::unordered_map<std::string, StepPrediction::Verdict> by_step;  // step name -> worst verdict
  for (const auto& instance : overlay.order()) {
    const StepRecord& rec = overlay.steps().at(instance);
    const StepSpec* step = spec.FindStep(rec.step);
    StepPrediction p;
    p.instance = instance;
    auto fe = first.find(instance);
    if (fe != first.end() && fe->second->outcome == "Cached") {
      p.verdict = StepPrediction::Verdict::kHit;
      p.reuse_from = Field(fe->second->snapshot, "cached_from").is_string()
                         ? fe->second->snapshot["cached_from"].get<std::string>()
                         : "";
    } else if (fe != first.end()) {
      p.verdict = StepPrediction::Verdict::kRun;
      const bool has_outputs =
          step && (!step->output_artifacts.empty() || !step->output_params.empty() || step->metrics_file);
      if (step && !step->cache.enabled) {
        p.reasons.push_back("cache disabled");
      } else if (options.no_cache) {
        p.reasons.push_back("--no-cache");
      } else if (!has_outputs) {
        p.reasons.push_back("declares no outputs: runs for its side effects");
      } else {
        auto prev = history.Latest(instance);
        if (!prev) return Error(prev.error());
        if (!*prev) {
          p.reasons.push_back("never ran");
        } else {
          const ExecutionRecord& pe = **prev;
          p.reasons = ExplainKeyChange(pe.snapshot, fe->second->snapshot);
          if (p.reasons.empty()) {
            if (pe.cache_key == fe->second->cache_key) {
              const std::string where = pe.run_id + "/" + pe.instance;
              if (step && step->cache.max_age)
                p.reasons.push_back("same cache key as " + where +
                                    ", but it is older than cache.maxAge or its outputs are gone from the "
                                    "artifact store");
              else
                p.reasons.push_back("same cache key as " + where + ", but its outputs are gone from the artifact store");
            } else {
              p.reasons.push_back("cache key changed in a redacted (secret) value");
            }
          }
        }
      }
    } else {
      p.verdict = StepPrediction::Verdict::kWait;
      if (rec.phase == NodePhase::kSkipped) {
        p.reasons.push_back("skipped: " + rec.message);
      } else {
        std::vector<std::string> ups;
        if (graph) {
          int node = graph->Find(rec.step);
          if (node >= 0)
            for (int u : graph->Upstream(node)) {
              const std::string& un = graph->step(u).name;
              auto v = by_step.find(un);
              if (v != by_step.end() && v->second != StepPrediction::Verdict::kHit) ups.push_back(un);
            }
        }
        if (ups.empty()) {
          p.reasons.push_back(rec.message.empty() ? "not reached" : rec.message);
        } else {
          std::string list;
          for (const auto& u : ups) list += (list.empty() ? "" : ", ") + u;
          std::string reason = "upstream " + list +
                               (ups.size() == 1 ? " will run, so its outputs are unknown"
                                                : " will run, so their outputs are unknown");
          // A foreach step that never expanded: say what that means for its
          // instances.
          if (step && step->foreach && rec.index < 0) {
            if (step->foreach->kind == ForEachSpec::Kind::kExpression) {
              reason += ", and so are the foreach items (" + step->foreach->expression.text +
                        "): how many instances will run is not known yet";
            } else {
              const size_t n = ForEachCount(*step->foreach);
              reason += "; its " + std::to_string(n) + " foreach instance" + (n == 1 ? "" : "s") +
                        " wait for it";
            }
          }
          p.reasons.push_back(std::move(reason));
        }
      }
    }
    auto [worst, inserted] = by_step.try_emplace(rec.step, p.verdict);
    if (!inserted && p.verdict != StepPrediction::Verdict::kHit) worst->second = p.verdict;
    out.push_back(std::move(p));
  }
  // In pipeline order (steps as written, then foreach index), not in the
  // order the Runner happened to consider them.
  if (graph) {
    std::unordered_map<std::string, std::pair<int, int>> rank;
    for (const auto& [instance, rec] : overlay.steps()) rank[instance] = {graph->Find(rec.step), rec.index};
    std::stable_sort(out.begin(), out.end(), [&](const StepPrediction& x, const StepPrediction& y) {
      return rank[x.instance] < rank[y.instance];
    });
  }
  return out;
}

}  // namespace sluice
