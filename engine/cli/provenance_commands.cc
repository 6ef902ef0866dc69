// sluice lineage / export openlineage / plan / reproduce / checkout / diff,
// and run --openlineage. See docs/lineage.md.
//
// Read-only commands open the store without creating it. `reproduce` writes
// a new run (linked to the original through resumed_from) and executes its
// steps with the local executor, one at a time.

#include "engine/cli/provenance_commands.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <httplib.h>

#include "dsl/dsl.h"
#include "engine/cli/commands.h"
#include "engine/store/artifact_store.h"
#include "engine/run/cache_explain.h"
#include "engine/cli/output.h"
#include "engine/store/lineage.h"
#include "engine/store/openlineage.h"
#include "engine/store/provenance.h"
#include "engine/store/s3_artifact_store.h"
#include "engine/run_id.h"
#include "engine/sha256.h"
#include "engine/store/open_store.h"
#include "executors/local/local_executor.h"

namespace sluice::cli {

namespace fs = std::filesystem;

namespace {

const Json& Field(const Json& obj, const char* key) {
  static const Json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

std::string Text(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "(none)";
  return v.dump();
}

// The final execution of each instance of a run: the latest that succeeded
// (Succeeded or Cached), else the latest attempt. In execution-id order.
std::vector<ExecutionRecord> FinalExecutions(const std::vector<ExecutionRecord>& all) {
  std::map<std::string, const ExecutionRecord*> best;
  for (const auto& e : all) {
    const bool ok = e.outcome == "Succeeded" || e.outcome == "Cached";
    auto it = best.find(e.instance);
    if (it == best.end()) {
      best[e.instance] = &e;
      continue;
    }
    const bool best_ok = it->second->outcome == "Succeeded" || it->second->outcome == "Cached";
    if (ok || !best_ok) it->second = &e;
  }
  std::vector<ExecutionRecord> out;
  for (const auto& [_, e] : best) out.push_back(*e);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

// ---------------------------------------------------------------- lineage

int Lineage(const std::string& store_flag, const std::string& target_text, const std::string& deployed,
            bool downstream, const std::string& format, int max_depth) {
  auto store = OpenExisting(store_flag);
  if (!store) return Fail(store.error());
  LineageTarget target;
  std::string header;
  if (!deployed.empty()) {
    if (!target_text.empty()) {
      PrintError("give either an artifact/run/step or --deployed SERVICE, not both");
      return kExitUsage;
    }
    auto deps = (*store)->ListDeployments(deployed, 1);
    if (!deps) return Fail(deps.error());
    if (deps->empty()) {
      PrintError("no deployment of service '" + deployed +
                 "' is recorded in this store; `sluice lineage --deployed` reads the records that deploy "
                 "steps write (is --store the one the deploying run used?)");
      return kExitUsage;
    }
    const DeploymentRecord& d = deps->front();
    if (d.action == "undeploy" || d.model_digest.empty()) {
      PrintError("service '" + deployed + "' serves no model: its latest change was '" + d.action + "' at " +
                 FormatTime(d.at) + " UTC by " + d.run_id + "/" + d.instance);
      return kExitFailed;
    }
    target.kind = LineageTarget::Kind::kArtifact;
    target.digest = d.model_digest;
    target.label = "model served by " + deployed;
    header = "Service " + deployed + " (" + d.namespace_ + ", " + d.executor + ") serves model " +
             ShortDigest(d.model_digest) + " at " + std::to_string(static_cast<int>(d.traffic_percent)) +
             "% traffic since " + FormatTime(d.at) + " UTC (" + d.action + " by " + d.run_id + "/" + d.instance +
             (d.version.empty() ? "" : ", version " + d.version) + ")\n";
    if (downstream) {
      PrintError("--deployed shows what produced the serving model; --downstream does not apply");
      return kExitUsage;
    }
  } else {
    if (target_text.empty()) {
      PrintError("lineage needs an ARTIFACT (digest prefix or RUN/STEP/NAME), a RUN/STEP, a RUN, or --deployed SERVICE");
      return kExitUsage;
    }
    // `latest` (alone or as RUN in RUN/STEP[/NAME]) is the newest run, as
    // in every command that takes a run.
    std::string text = target_text;
    if (text == "latest" || text.rfind("latest/", 0) == 0) {
      auto latest = FindRun(**store, "latest");
      if (!latest) return Fail(latest.error());
      text = latest->id + text.substr(6);
    }
    auto t = ResolveLineageTarget(store->get(), text);
    if (!t) return Fail(t.error());
    target = *t;
  }
  LineageOptions options;
  options.downstream = downstream;
  options.max_depth = max_depth;
  auto graph = QueryLineage(store->get(), target, options);
  if (!graph) return Fail(graph.error());
  if (format == "json" || format == "yaml") {
    Json j = RenderLineageJson(*graph);
    if (!deployed.empty()) {
      auto deps = (*store)->ListDeployments(deployed, 1);
      if (deps && !deps->empty()) {
        const auto& d = deps->front();
        j["deployment"] = {{"service", d.service},   {"namespace", d.namespace_}, {"executor", d.executor},
                           {"action", d.action},     {"version", d.version},      {"model_digest", d.model_digest},
                           {"traffic_percent", d.traffic_percent}, {"endpoint", d.endpoint},
                           {"run_id", d.run_id},     {"instance", d.instance},    {"at", FormatIsoTime(d.at)}};
      }
    }
    PrintRecords(j, format);
  } else if (format == "dot") {
    std::cout << RenderLineageDot(*graph);
  } else {
    std::cout << header << RenderLineageText(*graph, downstream);
  }
  return kExitOk;
}

// ---------------------------------------------------------------- export

Result<std::vector<Json>> EventsOf(Store* store, const std::string& run_text) {
  auto run = FindRun(*store, run_text);
  if (!run) return Error(run.error());
  auto execs = store->ListExecutions(run->id);
  if (!execs) return Error(execs.error());
  std::vector<std::vector<ArtifactBinding>> inputs, outputs;
  for (const auto& e : *execs) {
    auto in = store->InputsOf(e.id);
    if (!in) return Error(in.error());
    auto out = store->OutputsOf(e.id);
    if (!out) return Error(out.error());
    inputs.push_back(std::move(*in));
    outputs.push_back(std::move(*out));
  }
  return BuildOpenLineageEvents(*run, *execs, inputs, outputs, OpenLineageOptions{});
}

// Writes events as JSON lines to stdout ("" or "-"), a file, or POSTs each
// to an http(s) URL (e.g. Marquez's http://host:5000/api/v1/lineage).
Status SendEvents(const std::vector<Json>& events, const std::string& to) {
  if (to.empty() || to == "-") {
    for (const auto& e : events) std::cout << e.dump() << "\n";
    return Status::Ok();
  }
  if (to.rfind("http://", 0) == 0 || to.rfind("https://", 0) == 0) {
    const size_t scheme_end = to.find("://") + 3;
    const size_t slash = to.find('/', scheme_end);
    const std::string base = slash == std::string::npos ? to : to.substr(0, slash);
    const std::string path = slash == std::string::npos ? "/api/v1/lineage" : to.substr(slash);
    httplib::Client client(base);
    client.set_connection_timeout(10, 0);
    client.set_read_timeout(30, 0);
    for (const auto& e : events) {
      auto res = client.Post(path, e.dump(), "application/json");
      if (!res)
        return Status::Unavailable("OpenLineage endpoint " + to + ": " + httplib::to_string(res.error()) +
                                   "; is the server (e.g. Marquez) running and reachable?");
      if (res->status < 200 || res->status >= 300)
        return Status::FailedPrecondition("OpenLineage endpoint " + to + " answered HTTP " +
                                          std::to_string(res->status) + ": " + res->body.substr(0, 300));
    }
    return Status::Ok();
  }
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  if (!out) return Status::InvalidArgument("--to " + to + ": cannot open the file for writing");
  for (const auto& e : events) out << e.dump() << "\n";
  out.close();
  if (!out) return Status::Internal("--to " + to + ": write failed");
  return Status::Ok();
}

int ExportOpenLineage(const std::string& store_flag, const std::vector<std::string>& runs, const std::string& to) {
  auto store = OpenExisting(store_flag);
  if (!store) return Fail(store.error());
  std::vector<Json> all;
  for (const auto& r : runs) {
    auto events = EventsOf(store->get(), r);
    if (!events) return Fail(events.error());
    all.insert(all.end(), events->begin(), events->end());
  }
  Status s = SendEvents(all, to);
  if (!s.ok()) {
    PrintError(s.message());
    return kExitSystem;
  }
  if (!to.empty() && to != "-")
    std::cerr << "sluice: exported " << all.size() << " OpenLineage events to " << to << "\n";
  return kExitOk;
}

// ---------------------------------------------------------------- plan

int Plan(const std::string& store_flag, const std::string& file, const std::vector<std::string>& param_flags,
         bool no_cache, const std::string& executor, const std::string& format, const std::string& artifacts_flag,
         const std::string& artifacts_endpoint) {
  auto values = ParseParamFlags(param_flags);
  if (!values) return Fail(values.error());
  auto loaded = dsl::LoadPipelineFile(file);
  if (!loaded.ok()) {
    std::cerr << dsl::FormatDiagnosticsText(loaded.diagnostics);
    std::cerr << "sluice: " << loaded.ErrorCount() << " error" << (loaded.ErrorCount() == 1 ? "" : "s") << " in "
              << file << "\n";
    return kExitUsage;
  }
  auto params = dsl::BindParams(*loaded.spec, *values);
  if (!params) return Fail(params.error());
  const std::string state_dir = ResolveStateDir(store_flag);
  StoreOptions so;
  so.create_if_missing = false;
  auto store = OpenStore(StoreLocation(store_flag), so);
  std::vector<StepPrediction> predictions;
  // The bucket a run would use: its shared cache counts too.
  ArtifactStorePtr shared;
  if (std::string url = artifacts_flag.empty() ? loaded.spec->artifacts : artifacts_flag; !url.empty()) {
    auto opened = OpenArtifactStore(url, artifacts_endpoint, state_dir);
    if (!opened) return Fail(opened.error());
    shared = std::move(*opened);
  }
  if (!store) {
    // No store yet: nothing can be a hit.
    auto empty = OpenStore((fs::temp_directory_path() / ("sluice-plan-empty-" + std::to_string(getpid()))).string());
    if (!empty) return Fail(empty.error());
    PredictOptions po;
    po.no_cache = no_cache;
    po.default_executor = executor;
    po.shared = shared.get();
    auto p = PredictCache(*loaded.spec, *params, empty->get(), state_dir, po);
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("sluice-plan-empty-" + std::to_string(getpid())), ec);
    if (!p) return Fail(p.error());
    predictions = std::move(*p);
  } else {
    PredictOptions po;
    po.no_cache = no_cache;
    po.default_executor = executor;
    po.shared = shared.get();
    auto p = PredictCache(*loaded.spec, *params, store->get(), state_dir, po);
    if (!p) return Fail(p.error());
    predictions = std::move(*p);
  }
  if (format == "json" || format == "yaml") {
    Json arr = Json::array();
    for (const auto& p : predictions)
      arr.push_back({{"step", p.instance},
                     {"verdict", VerdictName(p.verdict)},
                     {"reuse_from", p.reuse_from},
                     {"reasons", p.reasons}});
    PrintRecords(arr, format);
    return kExitOk;
  }
  Table table({"STEP", "CACHE", "WHY"});
  int hits = 0, runs = 0, waits = 0;
  for (const auto& p : predictions) {
    std::string why;
    if (p.verdict == StepPrediction::Verdict::kHit) {
      why = "reuses " + p.reuse_from;
      ++hits;
    } else {
      for (const auto& r : p.reasons) why += (why.empty() ? "" : "; ") + r;
      ++(p.verdict == StepPrediction::Verdict::kRun ? runs : waits);
    }
    table.AddRow({p.instance, VerdictName(p.verdict), why});
  }
  std::cout << table.ToString();
  std::cout << hits << " cached, " << runs << " to run, " << waits << " waiting on upstream steps\n";
  return kExitOk;
}

// ---------------------------------------------------------------- checkout

Status CopyOut(const std::string& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to.parent_path(), ec);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec) return Status::Internal("copying " + from + " to " + to.string() + ": " + ec.message());
  // Copies of read-only CAS files are made writable: this is a scratch copy.
  if (fs::is_directory(to, ec)) {
    for (auto it = fs::recursive_directory_iterator(to, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (!it->is_symlink()) fs::permissions(it->path(), fs::perms::owner_write, fs::perm_options::add, ec);
  }
  fs::permissions(to, fs::perms::owner_write, fs::perm_options::add, ec);
  return Status::Ok();
}

// A recorded run and its executions (checkout, reproduce).
struct RunExecutions {
  OpenedRun opened;
  std::vector<ExecutionRecord> execs;
};

Result<RunExecutions> OpenRunExecutions(const std::string& store_flag, const std::string& run_text) {
  auto opened = OpenRun(store_flag, run_text);
  if (!opened) return Error(opened.error());
  auto execs = opened->store->ListExecutions(opened->run.id);
  if (!execs) return Error(execs.error());
  return RunExecutions{std::move(*opened), std::move(*execs)};
}

int Checkout(const std::string& store_flag, const std::string& run_text, const std::string& instance,
             const std::string& dir) {
  const std::string state_dir = ResolveStateDir(store_flag);
  auto loaded = OpenRunExecutions(store_flag, run_text);
  if (!loaded) return Fail(loaded.error());
  Store* store = loaded->opened.store.get();
  const RunRecord* run = &loaded->opened.run;
  const std::vector<ExecutionRecord>* execs = &loaded->execs;
  std::optional<ExecutionRecord> exec;
  for (const auto& e : FinalExecutions(*execs))
    if (e.instance == instance) exec = e;
  if (!exec) {
    std::string known;
    for (const auto& e : FinalExecutions(*execs)) known += (known.empty() ? "" : ", ") + e.instance;
    PrintError("run " + run->id + " has no execution of step '" + instance + "'; its steps: " + known);
    return kExitUsage;
  }
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    PrintError(dir + " exists and is not empty; give a new or empty directory");
    return kExitUsage;
  }
  fs::create_directories(dir, ec);
  if (ec) {
    PrintError("cannot create " + dir + ": " + ec.message());
    return kExitSystem;
  }
  FileArtifactStore artifacts(state_dir);
  auto in = store->InputsOf(exec->id);
  auto out = store->OutputsOf(exec->id);
  if (!in) return Fail(in.error());
  if (!out) return Fail(out.error());
  std::map<std::string, int> seen;
  auto materialize = [&](const ArtifactBinding& b, const std::string& kind) -> Status {
    auto path = artifacts.LocalPath(b.artifact.digest);
    if (!path)
      return Status::NotFound(kind + " '" + b.name + "' (" + b.artifact.digest +
                              ") is no longer in the artifact store " + state_dir + "/cas");
    int n = seen[kind + "/" + b.name]++;
    fs::path to = fs::path(dir) / kind / (n == 0 ? b.name : b.name + "." + std::to_string(n));
    Status s = CopyOut(*path, to);
    if (s.ok())
      std::cout << kind << "/" << to.filename().string() << "  " << ShortDigest(b.artifact.digest) << "\n";
    return s;
  };
  for (const auto& b : *in) {
    Status s = materialize(b, "inputs");
    if (!s.ok()) return Fail(s);
  }
  for (const auto& b : *out) {
    Status s = materialize(b, "outputs");
    if (!s.ok()) return Fail(s);
  }
  Json snap = exec->snapshot;
  snap["execution_id"] = exec->id;
  snap["run_id"] = exec->run_id;
  snap["outcome"] = exec->outcome;
  {
    std::ofstream f(fs::path(dir) / "snapshot.json");
    f << snap.dump(2) << "\n";
  }
  std::cout << "snapshot.json\n";
  if (!exec->log_path.empty() && fs::exists(exec->log_path, ec)) {
    fs::copy_file(exec->log_path, fs::path(dir) / "step.log", fs::copy_options::overwrite_existing, ec);
    if (!ec) std::cout << "step.log\n";
  }
  std::cerr << "sluice: checked out " << run->id << "/" << instance << " (execution " << exec->id << ", "
            << exec->outcome << ") into " << dir << "\n";
  return kExitOk;
}

// ---------------------------------------------------------------- diff

int Diff(const std::string& store_flag, const std::string& a_text, const std::string& b_text) {
  auto store = OpenExisting(store_flag);
  if (!store) return Fail(store.error());
  auto a = FindRun(**store, a_text);
  if (!a) return Fail(a.error());
  auto b = FindRun(**store, b_text);
  if (!b) return Fail(b.error());
  std::ostringstream out;
  int differences = 0;
  auto line = [&](const std::string& s) {
    out << "  " << s << "\n";
    ++differences;
  };
  out << "--- " << a->id << "\n+++ " << b->id << "\n";
  out << "params:\n";
  {
    std::set<std::string> keys;
    for (auto it = a->params.begin(); it != a->params.end(); ++it) keys.insert(it.key());
    for (auto it = b->params.begin(); it != b->params.end(); ++it) keys.insert(it.key());
    for (const auto& k : keys) {
      const Json& x = Field(a->params, k.c_str());
      const Json& y = Field(b->params, k.c_str());
      if (x != y) line(k + ": " + Text(x) + " → " + Text(y));
    }
  }
  out << "pipeline:\n";
  if (a->pipeline != b->pipeline) line("name: " + a->pipeline + " → " + b->pipeline);
  if (a->pipeline_digest != b->pipeline_digest)
    line("file digest: " + ShortDigest(a->pipeline_digest) + " → " + ShortDigest(b->pipeline_digest));
  auto git = [](const RunRecord& r) {
    return r.git_commit.empty() ? std::string("(not in git)") : r.git_commit.substr(0, 12) + (r.git_dirty ? "+dirty" : "");
  };
  if (git(*a) != git(*b)) line("git commit: " + git(*a) + " → " + git(*b));
  if (a->phase != b->phase) line(std::string("phase: ") + RunPhaseName(a->phase) + " → " + RunPhaseName(b->phase));

  auto steps_a = (*store)->ListSteps(a->id);
  auto steps_b = (*store)->ListSteps(b->id);
  auto ex_a = (*store)->ListExecutions(a->id);
  auto ex_b = (*store)->ListExecutions(b->id);
  if (!steps_a || !steps_b || !ex_a || !ex_b) {
    PrintError("reading the runs' steps failed");
    return kExitSystem;
  }
  std::map<std::string, StepRecord> sa, sb;
  std::vector<std::string> order;
  for (const auto& s : *steps_a) {
    sa[s.instance] = s;
    order.push_back(s.instance);
  }
  for (const auto& s : *steps_b) {
    if (!sa.count(s.instance)) order.push_back(s.instance);
    sb[s.instance] = s;
  }
  std::map<std::string, ExecutionRecord> ea, eb;
  for (const auto& e : FinalExecutions(*ex_a)) ea[e.instance] = e;
  for (const auto& e : FinalExecutions(*ex_b)) eb[e.instance] = e;
  out << "steps:\n";
  for (const auto& inst : order) {
    if (!sa.count(inst)) {
      line(inst + ": only in " + b->id);
      continue;
    }
    if (!sb.count(inst)) {
      line(inst + ": only in " + a->id);
      continue;
    }
    const StepRecord& x = sa[inst];
    const StepRecord& y = sb[inst];
    std::vector<std::string> what;
    if (x.phase != y.phase) what.push_back(std::string("phase ") + NodePhaseName(x.phase) + " → " + NodePhaseName(y.phase));
    if (ea.count(inst) && eb.count(inst)) {
      for (auto& r : ExplainKeyChange(ea[inst].snapshot, eb[inst].snapshot)) what.push_back(r);
    }
    std::map<std::string, std::string> oa, ob;
    for (const auto& o : x.outputs) oa[o.name] = o.artifact.digest;
    for (const auto& o : y.outputs) ob[o.name] = o.artifact.digest;
    std::set<std::string> names;
    for (const auto& [n, _] : oa) names.insert(n);
    for (const auto& [n, _] : ob) names.insert(n);
    for (const auto& n : names)
      if (oa[n] != ob[n])
        what.push_back("output " + n + ": " + (oa[n].empty() ? "(none)" : ShortDigest(oa[n])) + " → " +
                       (ob[n].empty() ? "(none)" : ShortDigest(ob[n])));
    // Each key of two JSON objects whose values differ, in key order.
    auto differing = [&](const std::string& label, const Json& before, const Json& after) {
      std::set<std::string> keys;
      for (auto it = before.begin(); it != before.end(); ++it) keys.insert(it.key());
      for (auto it = after.begin(); it != after.end(); ++it) keys.insert(it.key());
      for (const auto& k : keys)
        if (Field(before, k.c_str()) != Field(after, k.c_str()))
          what.push_back(label + " " + k + ": " + Text(Field(before, k.c_str())) + " → " +
                         Text(Field(after, k.c_str())));
    };
    differing("output param", x.output_params, y.output_params);
    differing("metric", x.metrics, y.metrics);
    for (const auto& w : what) line(inst + ": " + w);
  }
  std::cout << out.str();
  if (differences == 0) std::cout << "no differences\n";
  return differences == 0 ? kExitOk : kExitFailed;
}

// ---------------------------------------------------------------- reproduce

std::string NewReproId(const std::string& original) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%d-%H%M%S", &tm);
  return original + "-repro-" + buf;
}

void ReplaceAll(std::string* s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  size_t pos = 0;
  while ((pos = s->find(from, pos)) != std::string::npos) {
    s->replace(pos, from.size(), to);
    pos += to.size();
  }
}

struct ReproStep {
  ExecutionRecord original;
  std::vector<ArtifactBinding> inputs;
  std::vector<ArtifactBinding> outputs;
  StepRecord step;
  std::string skip;  // why it is not re-executed, or ""
};

// The run being reproduced, its store and where its files are: what every
// step of a reproduction reads.
struct ReproSource {
  Store* store;
  const RunRecord* run;
  std::string state_dir;
  fs::path pipeline_dir;
  FileArtifactStore* artifacts;
};

// Prints why the run cannot be reproduced; returns kExitUsage.
int CannotReproduce(const RunRecord& run, const std::string& why) {
  PrintError("cannot reproduce run " + run.id + ": " + why);
  return kExitUsage;
}

// Why the final execution `e` is not re-executed, in *skip ("" when it is).
// An exit code when the run cannot be reproduced at all.
std::optional<int> SkipReason(const RunRecord& run, const ExecutionRecord& e, std::string* skip) {
  const Json& snap = e.snapshot;
  const Json& material = Field(snap, "cache_key_material");
  const Json& declared = Field(material, "outputs");
  if (e.outcome != "Succeeded" && e.outcome != "Cached") {
    *skip = "did not succeed in " + run.id;
  } else if (Field(snap, "operator").is_string() && snap["operator"] != "container") {
    *skip = "operator " + Text(snap["operator"]) + " (side effects): not re-executed";
  } else if (!material.is_object()) {
    return CannotReproduce(run, "step " + e.instance +
                                    " was recorded by an older sluice that did not keep its declared "
                                    "outputs in the snapshot");
  } else if (!declared.is_object() || declared.empty()) {
    *skip = "declares no outputs (side effects only): not re-executed";
  }
  return std::nullopt;
}

// A step whose command, workdir or env held a secret cannot be re-executed:
// the secret is not recorded.
std::optional<int> CheckNoSecrets(const RunRecord& run, const ExecutionRecord& e) {
  const Json& snap = e.snapshot;
  for (const auto& a : Field(snap, "argv"))
    if (a.is_string() && a.get<std::string>().find("<redacted>") != std::string::npos)
      return CannotReproduce(run, "the command of step " + e.instance +
                                      " held a secret, which is not recorded");
  if (Text(Field(snap, "workdir")).find("<redacted>") != std::string::npos)
    return CannotReproduce(run, "the workdir of step " + e.instance +
                                    " held a secret, which is not recorded");
  const Json& env = Field(snap, "env");
  for (auto it = env.begin(); env.is_object() && it != env.end(); ++it)
    if (it.value().is_string() && it.value().get<std::string>().find("<redacted>") != std::string::npos)
      return CannotReproduce(run, "env " + it.key() + " of step " + e.instance +
                                      " is a secret, which is not recorded");
  return std::nullopt;
}

// Every code file the step's cache key digested must be as it was.
std::optional<int> CheckCodeFiles(const ReproSource& src, const ExecutionRecord& e) {
  const RunRecord& run = *src.run;
  const Json& code_files = Field(e.snapshot, "code_files");
  for (auto it = code_files.begin(); code_files.is_object() && it != code_files.end(); ++it) {
    fs::path p = fs::path(it.key()).is_absolute() ? fs::path(it.key()) : src.pipeline_dir / it.key();
    auto d = Sha256File(p.string());
    const std::string now = d ? "sha256:" + *d : "";
    if (now != Text(it.value()))
      return CannotReproduce(
          run, "code file " + it.key() + " of step " + e.instance +
                   (d ? " changed since the run (recorded " + ShortDigest(Text(it.value())) + ", now " +
                            ShortDigest(now) + ")"
                      : " is gone (" + p.string() + ")") +
                   (run.git_commit.empty() ? std::string("; restore it and try again")
                                           : "; check out commit " + run.git_commit.substr(0, 12) +
                                                 " (git checkout) and try again"));
  }
  return std::nullopt;
}

// Checks that the final execution `e` can be re-executed and gathers what
// that needs into *rs. An exit code (the error printed) when the run cannot
// be reproduced.
std::optional<int> PrepareReproStep(const ReproSource& src, const ExecutionRecord& e, ReproStep* rs) {
  rs->original = e;
  auto step = src.store->GetStep(src.run->id, e.instance);
  if (step) rs->step = *step;
  if (auto code = SkipReason(*src.run, e, &rs->skip)) return code;
  if (rs->skip.empty()) {
    if (auto code = CheckNoSecrets(*src.run, e)) return code;
    if (auto code = CheckCodeFiles(src, e)) return code;
    auto in = src.store->InputsOf(e.id);
    if (!in) return Fail(in.error());
    for (const auto& b : *in)
      if (!src.artifacts->LocalPath(b.artifact.digest))
        return CannotReproduce(*src.run, "input '" + b.name + "' of step " + e.instance + " (" +
                                             b.artifact.digest + ") is no longer in the artifact store " +
                                             src.state_dir + "/cas");
    rs->inputs = std::move(*in);
  }
  auto out = src.store->OutputsOf(e.id);
  if (!out) return Fail(out.error());
  rs->outputs = std::move(*out);
  return std::nullopt;
}

// Records the reproduction's run (Running, linked to the original through
// resumed_from) in *repro. An exit code when its id is invalid or the store
// fails.
std::optional<int> CreateReproRun(Store* store, const RunRecord& run, const std::string& new_id,
                                  RunRecord* repro) {
  *repro = run;
  repro->id = new_id.empty() ? NewReproId(run.id) : new_id;
  if (Status s = ValidateRunId(repro->id); !s.ok()) {
    PrintError(new_id.empty() ? s.message() + "; give the reproduction an id with --run-id"
                              : "--run-id: " + s.message());
    return kExitUsage;
  }
  repro->resumed_from = run.id;
  repro->message = "reproduction of " + run.id;
  repro->phase = RunPhase::kRunning;
  repro->created_at = std::chrono::system_clock::now();
  repro->started_at = repro->created_at;
  repro->finished_at.reset();
  repro->pid = static_cast<int>(getpid());
  {
    char host[256] = {0};
    if (gethostname(host, sizeof(host) - 1) == 0) repro->host = host;
  }
  Status cs = store->CreateRun(*repro);
  if (!cs.ok()) return Fail(cs);
  return std::nullopt;
}

// Where the original run's files were and where the reproduction's are:
// paths in a recorded command, env and workdir move from one to the other.
struct ReproPaths {
  std::string old_prefix;  // <store>/runs/<original>/
  std::string new_prefix;  // <store>/runs/<reproduction>/
};

// The task that re-executes `rs` as its snapshot recorded it, in the
// reproduction's directories (created here).
Task ReproTask(const ReproStep& rs, const RunRecord& run, const RunRecord& repro, const ReproPaths& paths,
               TaskId id) {
  const ExecutionRecord& e = rs.original;
  const Json& snap = e.snapshot;
  Task task;
  task.id = id;
  task.run_id = repro.id;
  task.pipeline = run.pipeline;
  task.step = Text(Field(snap, "step"));
  task.instance = e.instance;
  task.attempt = 1;
  for (const auto& a : Field(snap, "argv")) {
    std::string s = a.get<std::string>();
    ReplaceAll(&s, paths.old_prefix, paths.new_prefix);
    task.argv.push_back(std::move(s));
  }
  const Json& env = Field(snap, "env");
  for (auto it = env.begin(); env.is_object() && it != env.end(); ++it) {
    std::string v = Text(it.value());
    ReplaceAll(&v, paths.old_prefix, paths.new_prefix);
    task.env[it.key()] = v;
  }
  task.env["SLUICE_RUN_ID"] = repro.id;
  task.workdir = Text(Field(snap, "workdir"));
  ReplaceAll(&task.workdir, paths.old_prefix, paths.new_prefix);
  std::error_code ec;
  fs::create_directories(task.workdir, ec);
  task.log_path = paths.new_prefix + "logs/" + e.instance + ".attempt1.log";
  task.image = Field(snap, "image").is_string() ? snap["image"].get<std::string>() : "";
  if (Field(snap, "timeout_ms").is_number_integer())
    task.timeout = Duration(snap["timeout_ms"].get<int64_t>());
  return task;
}

// The records of one re-executed step, kept up to date as it runs.
struct ReproRecords {
  StepRecord step;
  ExecutionRecord execution;
  bool execution_recorded = false;  // StartExecution gave it an id
};

// Records the step Running and starts its execution record, whose snapshot
// is the original's with the new command, workdir and log.
ReproRecords StartReproRecords(Store* store, const ReproStep& rs, const RunRecord& run,
                               const RunRecord& repro, const Task& task) {
  const ExecutionRecord& e = rs.original;
  ReproRecords records;
  StepRecord& rec = records.step;
  rec.run_id = repro.id;
  rec.instance = e.instance;
  rec.step = task.step;
  rec.index = rs.step.index;
  rec.item = rs.step.item;
  rec.phase = NodePhase::kRunning;
  rec.attempts = 1;
  rec.log_path = task.log_path;
  rec.cache_key = e.cache_key;
  rec.started_at = std::chrono::system_clock::now();
  rec.inputs = rs.inputs;
  (void)store->PutStep(rec);

  ExecutionRecord& ex = records.execution;
  ex.run_id = repro.id;
  ex.instance = e.instance;
  ex.attempt = 1;
  ex.outcome = "Running";
  ex.log_path = task.log_path;
  ex.cache_key = e.cache_key;
  ex.started_at = *rec.started_at;
  Json snap = e.snapshot;
  snap["argv"] = task.argv;
  snap["workdir"] = task.workdir;
  snap["log_path"] = task.log_path;
  snap["attempt"] = 1;
  snap["reproduces"] = run.id + "/" + e.instance;
  snap.erase("cached_from");
  ex.snapshot = snap;
  auto id = store->StartExecution(ex);
  if (id) ex.id = *id;
  records.execution_recorded = id.has_value();
  return records;
}

// Runs `task` to its end on `executor`; a task that cannot start is an
// error result.
TaskResult RunToEnd(Executor& executor, const Task& task) {
  Status started = executor.Start(task);
  if (!started.ok()) {
    TaskResult r;
    r.outcome = TaskOutcome::kError;
    r.message = "could not start: " + started.message();
    return r;
  }
  std::optional<TaskResult> result;
  while (!(result = executor.Wait(std::chrono::seconds(1)))) {
  }
  return *result;
}

// What a step's re-execution produced, compared with the original.
struct ReproComparison {
  std::vector<ArtifactBinding> outputs;
  std::vector<std::string> differs;  // what differs from the original, one entry per output
  std::string problem;               // why the step failed to reproduce, or ""
};

// Stores the declared outputs of a re-executed step (artifacts, output
// params, metrics; the last two also into *rec) and compares each with the
// original's.
ReproComparison CompareOutputs(FileArtifactStore& artifacts, const ReproStep& rs, const Task& task,
                               StepRecord* rec) {
  ReproComparison cmp;
  const Json& declared = rs.original.snapshot["cache_key_material"]["outputs"];
  std::map<std::string, std::string> before;
  std::map<std::string, ArtifactType> types;
  for (const auto& b : rs.outputs) {
    before[b.name] = b.artifact.digest;
    types[b.name] = b.artifact.type;
  }
  const Json& arts = Field(declared, "artifacts");
  for (auto it = arts.begin(); arts.is_object() && it != arts.end(); ++it) {
    fs::path p = fs::path(task.workdir) / Text(it.value());
    auto put = artifacts.Put(p.string(), types.count(it.key()) ? types[it.key()] : ArtifactType::kOther);
    if (!put) {
      cmp.problem = "output " + it.key() + " at " + Text(it.value()) + ": " + put.error().message();
      break;
    }
    cmp.outputs.push_back({it.key(), *put});
    if (put->digest != before[it.key()])
      cmp.differs.push_back(it.key() + " " + ShortDigest(before[it.key()]) + " → " + ShortDigest(put->digest));
  }
  const Json& oparams = Field(declared, "params");
  for (auto it = oparams.begin(); cmp.problem.empty() && oparams.is_object() && it != oparams.end(); ++it) {
    std::ifstream f(fs::path(task.workdir) / Text(it.value()), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string v = ss.str();
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.pop_back();
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.erase(v.begin());
    rec->output_params[it.key()] = v;
    if (Field(rs.step.output_params, it.key().c_str()) != Json(v))
      cmp.differs.push_back("param " + it.key() + " " + Text(Field(rs.step.output_params, it.key().c_str())) +
                            " → " + v);
  }
  if (cmp.problem.empty() && Field(declared, "metrics").is_string()) {
    std::ifstream f(fs::path(task.workdir) / declared["metrics"].get<std::string>(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    Json m = Json::parse(ss.str(), nullptr, false);
    if (m.is_object()) rec->metrics = m;
    if (m != rs.step.metrics) cmp.differs.push_back("metrics " + rs.step.metrics.dump() + " → " + m.dump());
  }
  return cmp;
}

// Records how the step's re-execution ended: its execution and step records.
void FinishReproRecords(Store* store, const RunRecord& run, const ReproStep& rs, const TaskResult& result,
                        const ReproComparison& cmp, ReproRecords* records) {
  ExecutionRecord& ex = records->execution;
  Json out_digests = Json::object();
  for (const auto& b : cmp.outputs) out_digests[b.name] = b.artifact.digest;
  ex.snapshot["outputs"] = out_digests;
  ex.snapshot["exit_code"] = result.exit_code;
  ex.exit_code = result.exit_code;
  ex.finished_at = std::chrono::system_clock::now();
  ex.outcome = cmp.problem.empty() ? "Succeeded"
                                   : TaskOutcomeName(result.outcome == TaskOutcome::kSucceeded
                                                         ? TaskOutcome::kFailed
                                                         : result.outcome);
  ex.message = cmp.problem.empty() ? (cmp.differs.empty() ? "bit-identical to " : "differs from ") + run.id +
                                         "/" + rs.original.instance
                                   : cmp.problem;
  if (records->execution_recorded) (void)store->FinishExecution(ex, rs.inputs, cmp.outputs);
  StepRecord& rec = records->step;
  rec.phase = cmp.problem.empty() ? NodePhase::kSucceeded : NodePhase::kFailed;
  rec.exit_code = result.exit_code;
  rec.outputs = cmp.outputs;
  rec.finished_at = ex.finished_at;
  rec.message = ex.message;
  (void)store->PutStep(rec);
}

// The report of a reproduction: a row per step, and which steps failed or
// produced different outputs.
struct ReproReport {
  Table table{{"STEP", "RESULT", "DETAIL"}};
  std::vector<std::string> nondeterministic;
  bool failed = false;
};

// Re-executes one prepared step in the reproduction and reports it.
void ReproduceStep(const ReproSource& src, const RunRecord& repro, const ReproPaths& paths, Executor& executor,
                   TaskId task_id, const ReproStep& rs, ReproReport* report) {
  const ExecutionRecord& e = rs.original;
  if (!rs.skip.empty()) {
    report->table.AddRow({e.instance, "skipped", rs.skip});
    return;
  }
  Task task = ReproTask(rs, *src.run, repro, paths, task_id);
  ReproRecords records = StartReproRecords(src.store, rs, *src.run, repro, task);
  TaskResult result = RunToEnd(executor, task);
  ReproComparison cmp;
  if (result.outcome == TaskOutcome::kSucceeded) {
    cmp = CompareOutputs(*src.artifacts, rs, task, &records.step);
  } else {
    cmp.problem = std::string(TaskOutcomeName(result.outcome)) +
                  (result.exit_code >= 0 ? " (exit " + std::to_string(result.exit_code) + ")" : "") +
                  (result.message.empty() ? "" : ": " + result.message) + "; log: " + task.log_path;
  }
  FinishReproRecords(src.store, *src.run, rs, result, cmp, &records);
  if (!cmp.problem.empty()) {
    report->failed = true;
    report->table.AddRow({e.instance, "failed", cmp.problem});
  } else if (cmp.differs.empty()) {
    std::string detail;
    for (const auto& b : cmp.outputs)
      detail += (detail.empty() ? "" : ", ") + b.name + " " + ShortDigest(b.artifact.digest);
    report->table.AddRow({e.instance, "identical", detail});
  } else {
    report->nondeterministic.push_back(e.instance);
    std::string detail;
    for (const auto& d : cmp.differs) detail += (detail.empty() ? "" : "; ") + d;
    report->table.AddRow({e.instance, "DIFFERS", detail});
  }
}

// Records the reproduction's end and prints the report; the exit code.
int FinishReproduction(Store* store, const RunRecord& run, const ReproReport& report, RunRecord* repro) {
  repro->phase = report.failed ? RunPhase::kFailed : RunPhase::kSucceeded;
  repro->finished_at = std::chrono::system_clock::now();
  repro->message = "reproduction of " + run.id +
                   (report.nondeterministic.empty() ? ": bit-identical" : ": outputs differ");
  (void)store->UpdateRun(*repro);
  std::cout << report.table.ToString();
  if (report.failed) {
    std::cout << "Some steps failed to run again; see their logs.\n";
    return kExitFailed;
  }
  if (report.nondeterministic.empty()) {
    std::cout << "All re-executed steps produced bit-identical outputs.\n";
    return kExitOk;
  }
  std::string list;
  for (const auto& n : report.nondeterministic) list += (list.empty() ? "" : ", ") + n;
  std::cout << "Non-deterministic steps (outputs differ from " << run.id << "): " << list << "\n";
  return kExitFailed;
}

int Reproduce(const std::string& store_flag, const std::string& run_text, const std::string& new_id) {
  const std::string state_dir = ResolveStateDir(store_flag);
  auto loaded = OpenRunExecutions(store_flag, run_text);
  if (!loaded) return Fail(loaded.error());
  Store* store = loaded->opened.store.get();
  const RunRecord* run = &loaded->opened.run;
  const std::vector<ExecutionRecord>* execs = &loaded->execs;
  FileArtifactStore artifacts(state_dir);
  const ReproSource src{store, run, state_dir, fs::path(run->pipeline_file).parent_path(), &artifacts};

  // Check everything first: nothing runs unless every step can.
  std::vector<ReproStep> steps;
  for (const auto& e : FinalExecutions(*execs)) {
    ReproStep rs;
    if (auto code = PrepareReproStep(src, e, &rs)) return *code;
    steps.push_back(std::move(rs));
  }

  // Nothing to compare is not a reproduction: say so, and exit 2 (as for any
  // run that cannot be reproduced) before a new run is recorded.
  if (std::all_of(steps.begin(), steps.end(), [](const ReproStep& rs) { return !rs.skip.empty(); })) {
    std::string why;
    for (const auto& rs : steps) why += "\n  " + rs.original.instance + ": " + rs.skip;
    return CannotReproduce(*run, "nothing would be re-executed" +
                                     (steps.empty() ? std::string(" (it recorded no step executions)")
                                                    : ":" + why));
  }

  RunRecord repro;
  if (auto code = CreateReproRun(store, *run, new_id, &repro)) return *code;
  std::cout << "Reproducing run " << run->id << " as " << repro.id << "\n";

  LocalExecutorOptions lo;
  lo.parallelism = 1;
  auto executor = NewLocalExecutor(lo);
  const ReproPaths paths{(fs::path(state_dir) / "runs" / run->id).string() + "/",
                         (fs::path(state_dir) / "runs" / repro.id).string() + "/"};
  std::error_code ec;
  fs::create_directories(paths.new_prefix + "logs", ec);

  ReproReport report;
  TaskId next_id = 1;
  for (const ReproStep& rs : steps) {
    TaskId task_id = rs.skip.empty() ? next_id++ : 0;
    ReproduceStep(src, repro, paths, *executor, task_id, rs, &report);
  }
  return FinishReproduction(store, *run, report, &repro);
}

// The provenance subcommands' options and the --openlineage option of
// run/resume/rerun, registered on the app by the constructor.
class ProvenanceCommands {
 public:
  // Adds the subcommands to `app`, and `--openlineage` to the existing
  // run/resume/rerun subcommands when present. Borrows `app` and `store`
  // (main's --store value, read at dispatch); both must outlive this object.
  ProvenanceCommands(CLI::App* app, std::string* store);

  // After app.parse(): the exit code of the chosen provenance subcommand, or
  // nullopt when another subcommand was chosen.
  std::optional<int> DispatchChosen();

  // Called before run/resume/rerun start: the time that AfterRun looks for
  // runs this process finished after.
  void MarkRunStart();

  // After run/resume/rerun returned `exit_code`: exports the run this
  // process drove as OpenLineage when --openlineage was given (a failure to
  // export is reported, and turns an exit code 0 into 3). Returns the exit
  // code to use.
  int AfterRun(int exit_code);

 private:
  CLI::App* app_;
  std::string* store_;
  CLI::App* lineage_ = nullptr;
  CLI::App* export_ = nullptr;
  CLI::App* export_openlineage_ = nullptr;
  CLI::App* plan_ = nullptr;
  CLI::App* reproduce_ = nullptr;
  CLI::App* checkout_ = nullptr;
  CLI::App* diff_ = nullptr;

  // Options.
  std::string target_;
  bool downstream_ = false;
  std::string format_ = "text";
  int max_depth_ = 64;
  std::string deployed_;
  std::vector<std::string> runs_;
  std::string to_;
  std::string file_;
  std::vector<std::string> params_;
  bool no_cache_ = false;
  std::string executor_;
  std::string run_;
  std::string step_;
  std::string dir_;
  std::string run_id_;
  std::string openlineage_;  // run/resume/rerun --openlineage
  std::string artifacts_;           // plan --artifacts
  std::string artifacts_endpoint_;  // plan --artifacts-endpoint
  long long run_started_ms_ = 0;
};

ProvenanceCommands::ProvenanceCommands(CLI::App* app, std::string* store) : app_(app), store_(store) {
  constexpr const char* kStoreHelp = kStoreFlagHelp;
  lineage_ = app->add_subcommand(
      "lineage", "What produced an artifact, step or run (upstream), or what was built from it (--downstream)");
  lineage_->add_option("TARGET", target_,
                       "Artifact digest prefix, RUN/STEP/NAME (an output), RUN/STEP, or RUN");
  lineage_->add_flag("--downstream", downstream_, "What was built from the target, instead of what produced it");
  lineage_->add_option("--deployed", deployed_,
                       "The model a service serves now (its newest deployment record), and what produced it");
  AddOutputOption(lineage_, &format_, {"text", "json", "yaml", "dot"});
  lineage_->add_option("--max-depth", max_depth_, "Artifact hops to follow (default 64)")
      ->check(CLI::PositiveNumber);
  lineage_->add_option("--store", *store_, kStoreHelp);

  export_ = app->add_subcommand("export", "Export lineage to other tools");
  export_->require_subcommand(1);
  export_openlineage_ = export_->add_subcommand(
      "openlineage", "Runs as OpenLineage RunEvents (JSON lines, or POSTed to an endpoint such as Marquez)");
  export_openlineage_->add_option("RUN", runs_, "Run ids or unique prefixes")->required();
  export_openlineage_->add_option(
      "--to", to_, "FILE (JSON lines), or http(s)://HOST/api/v1/lineage to POST each event (default: stdout)");
  export_openlineage_->add_option("--store", *store_, kStoreHelp);

  plan_ = app->add_subcommand("plan", "Predict, before running, which steps would be cache hits and why not");
  plan_->add_option("FILE", file_, "Pipeline file")->required();
  plan_->add_option("-p,--param", params_, "Parameter value NAME=VALUE (repeatable)")
      ->allow_extra_args(false)
      ->type_name("NAME=VALUE");
  plan_->add_flag("--no-cache", no_cache_, "Predict a run with --no-cache");
  plan_->add_option("--executor", executor_, "Executor for steps that name none");
  AddOutputOption(plan_, &format_, {"text", "json", "yaml"});
  plan_->add_option("--store", *store_, kStoreHelp);
  plan_->add_option("--artifacts", artifacts_, "Also look in the shared cache of this bucket, s3://BUCKET/PREFIX "
                                               "(default: the pipeline's artifacts:)");
  plan_->add_option("--artifacts-endpoint", artifacts_endpoint_, kArtifactsEndpointFlagHelp);

  reproduce_ = app->add_subcommand(
      "reproduce", "Re-execute every step of a run from its snapshots; report which outputs are bit-identical");
  reproduce_->add_option("RUN", run_, "Run id or unique prefix")->required();
  reproduce_->add_option("--run-id", run_id_, "Id for the new run (default: RUN-repro-<time>)");
  reproduce_->add_option("--store", *store_, kStoreHelp);

  checkout_ = app->add_subcommand(
      "checkout", "Copy a step's inputs, outputs, snapshot.json and log into a directory, to debug it");
  checkout_->add_option("RUN", run_, "Run id or unique prefix")->required();
  checkout_->add_option("STEP", step_, "Step instance, e.g. train or train[1]")->required();
  checkout_->add_option("DIR", dir_, "New or empty directory")->required();
  checkout_->add_option("--store", *store_, kStoreHelp);

  diff_ = app->add_subcommand("diff", "What differs between two runs: params, pipeline, code, inputs, outputs, metrics");
  diff_->add_option("RUN1", run_, "Run id or unique prefix")->required();
  diff_->add_option("RUN2", step_, "Run id or unique prefix")->required();
  diff_->add_option("--store", *store_, kStoreHelp);

  for (const char* name : {"run", "resume", "rerun"}) {
    CLI::App* cmd = nullptr;
    try {
      cmd = app->get_subcommand(name);
    } catch (const CLI::OptionNotFound&) {
      cmd = nullptr;
    }
    if (cmd)
      cmd->add_option("--openlineage", openlineage_,
                      "When the run ends, export it as OpenLineage events to FILE or an http(s):// endpoint");
  }
}

std::optional<int> ProvenanceCommands::DispatchChosen() {
  if (*lineage_) return Lineage(*store_, target_, deployed_, downstream_, format_, max_depth_);
  if (*export_openlineage_) return ExportOpenLineage(*store_, runs_, to_);
  if (*plan_) return Plan(*store_, file_, params_, no_cache_, executor_, format_, artifacts_, artifacts_endpoint_);
  if (*reproduce_) return Reproduce(*store_, run_, run_id_);
  if (*checkout_) return Checkout(*store_, run_, step_, dir_);
  if (*diff_) return Diff(*store_, run_, step_);
  return std::nullopt;
}

void ProvenanceCommands::MarkRunStart() {
  run_started_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
}

int ProvenanceCommands::AfterRun(int exit_code) {
  if (openlineage_.empty()) return exit_code;
  auto store = OpenExisting(*store_);
  if (!store) {
    PrintError("--openlineage: " + store.error().message());
    return exit_code == kExitOk ? kExitSystem : exit_code;
  }
  RunFilter filter;
  filter.limit = 500;
  auto runs = (*store)->ListRuns(filter);
  if (!runs) {
    PrintError("--openlineage: " + runs.error().message());
    return exit_code == kExitOk ? kExitSystem : exit_code;
  }
  const RunRecord* mine = nullptr;
  const TimePoint started{std::chrono::milliseconds(run_started_ms_ - 1000)};
  for (const auto& r : *runs) {
    if (r.pid != static_cast<int>(getpid()) || !r.finished_at || *r.finished_at < started) continue;
    if (!mine || *r.finished_at > *mine->finished_at) mine = &r;
  }
  if (!mine) {
    PrintError("--openlineage: this process recorded no finished run; nothing exported");
    return exit_code == kExitOk ? kExitSystem : exit_code;
  }
  auto events = EventsOf(store->get(), mine->id);
  if (!events) {
    PrintError("--openlineage: " + events.error().message());
    return exit_code == kExitOk ? kExitSystem : exit_code;
  }
  Status s = SendEvents(*events, openlineage_);
  if (!s.ok()) {
    PrintError("--openlineage: " + s.message());
    return exit_code == kExitOk ? kExitSystem : exit_code;
  }
  std::cerr << "sluice: exported " << events->size() << " OpenLineage events of " << mine->id << " to "
            << openlineage_ << "\n";
  return exit_code;
}

}  // namespace

Dispatch RegisterProvenanceCommands(CLI::App& app, std::string& store, Dispatch& run_commands) {
  auto provenance = std::make_shared<ProvenanceCommands>(&app, &store);
  run_commands = [provenance, run = std::move(run_commands)]() -> std::optional<int> {
    provenance->MarkRunStart();
    std::optional<int> code = run();
    if (!code) return std::nullopt;
    return provenance->AfterRun(*code);
  };
  return [provenance] { return provenance->DispatchChosen(); };
}

}  // namespace sluice::cli
