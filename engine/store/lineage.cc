#include "engine/store/lineage.h"

#include <algorithm>
#include <cctype>
#include <deque>
#include <functional>
#include <set>
#include <sstream>

namespace sluice {
namespace {

bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c)) != 0;
  });
}

std::vector<std::string> SplitSlash(const std::string& text) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : text) {
    if (c == '/') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

std::string ShortDigest(const std::string& digest) {
  std::string hex = digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
  return "sha256:" + hex.substr(0, 12);
}

std::string HumanSize(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::ostringstream out;
  out.precision(u == 0 ? 0 : 1);
  out << std::fixed << v << " " << units[u];
  return out.str();
}

std::string FormatTime(TimePoint t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The latest execution of `instance` in `run_id`.
Result<ExecutionRecord> LatestExecution(Store* store, const std::string& run_id,
                                        const std::string& instance) {
  auto executions = store->ListExecutions(run_id);
  if (!executions) return Error(executions.error());
  const ExecutionRecord* best = nullptr;
  for (const auto& e : *executions)
    if (e.instance == instance && (best == nullptr || e.id > best->id)) best = &e;
  if (best == nullptr)
    return Error(Status::NotFound("run " + run_id + " has no execution of step '" + instance +
                                  "' (see `sluice show " + run_id + "`)"));
  return *best;
}

// Orders an artifact's producers for an upstream walk: an execution of the
// preferred run first, then ones that really ran (not cache hits), oldest
// first — the original producer of the bytes.
void OrderProducers(std::vector<ExecutionRecord>* producers, const std::string& prefer_run) {
  std::stable_sort(producers->begin(), producers->end(),
                   [&](const ExecutionRecord& a, const ExecutionRecord& b) {
                     bool ar = a.run_id == prefer_run, br = b.run_id == prefer_run;
                     if (ar != br) return ar;
                     bool ac = a.outcome == "Cached", bc = b.outcome == "Cached";
                     if (ac != bc) return !ac;
                     return a.id < b.id;
                   });
}

}  // namespace

Result<LineageTarget> ResolveLineageTarget(Store* store, const std::string& text) {
  LineageTarget target;
  target.label = text;
  std::vector<std::string> parts = SplitSlash(text);
  if (parts.size() == 3 || parts.size() == 2) {
    auto run = store->GetRun(parts[0]);
    if (!run) return Error(run.error());
    auto step = store->GetStep(run->id, parts[1]);
    if (!step) return Error(step.error());
    if (parts.size() == 2) {
      auto execution = LatestExecution(store, run->id, step->instance);
      if (!execution) return Error(execution.error());
      target.kind = LineageTarget::Kind::kExecution;
      target.execution_id = execution->id;
      target.run_id = run->id;
      return target;
    }
    std::string names;
    for (const auto& out : step->outputs) {
      if (out.name == parts[2]) {
        target.kind = LineageTarget::Kind::kArtifact;
        target.digest = out.artifact.digest;
        target.run_id = run->id;
        return target;
      }
      names += (names.empty() ? "" : ", ") + out.name;
    }
    return Error(Status::NotFound("step '" + step->instance + "' of run " + run->id +
                                  " has no output artifact '" + parts[2] + "'" +
                                  (names.empty() ? std::string(" (it has none)")
                                                 : " (it has: " + names + ")")));
  }
  if (parts.size() != 1)
    return Error(Status::InvalidArgument("cannot read '" + text +
                                         "': expected a digest, RUN, RUN/STEP or RUN/STEP/NAME"));
  std::string hex = text.rfind("sha256:", 0) == 0 ? text.substr(7) : text;
  if (hex.size() >= 4 && IsHex(hex)) {
    auto artifact = store->GetArtifact(text);
    if (artifact) {
      target.kind = LineageTarget::Kind::kArtifact;
      target.digest = artifact->digest;
      return target;
    }
    if (artifact.error().code() != StatusCode::kNotFound) return Error(artifact.error());
  }
  auto run = store->GetRun(text);
  if (run) {
    target.kind = LineageTarget::Kind::kRun;
    target.run_id = run->id;
    return target;
  }
  if (run.error().code() != StatusCode::kNotFound) return Error(run.error());
  return Error(Status::NotFound("no artifact digest or run id starts with '" + text +
                                "' (try `sluice runs`, or RUN/STEP/NAME)"));
}

Result<LineageGraph> QueryLineage(Store* store, const LineageTarget& target,
                                  const LineageOptions& options) {
  LineageGraph graph;
  graph.root = target;
  std::set<std::pair<int64_t, std::string>> edge_seen;
  auto add_edge = [&](int64_t id, const std::string& digest, const std::string& name, bool out) {
    std::string key = digest + (out ? "|o|" : "|i|") + name;
    if (edge_seen.insert({id, key}).second) graph.edges.push_back({id, digest, name, out});
  };
  auto too_big = [&] {
    if (graph.artifacts.size() + graph.executions.size() >= static_cast<size_t>(options.max_nodes)) {
      graph.truncated = true;
      return true;
    }
    return false;
  };
  // Loads an execution with its inputs and outputs, once.
  auto load_execution = [&](const ExecutionRecord& e) -> Result<LineageExecution*> {
    auto it = graph.executions.find(e.id);
    if (it != graph.executions.end()) return &it->second;
    LineageExecution le;
    le.execution = e;
    auto inputs = store->InputsOf(e.id);
    if (!inputs) return Error(inputs.error());
    auto outputs = store->OutputsOf(e.id);
    if (!outputs) return Error(outputs.error());
    le.inputs = std::move(*inputs);
    le.outputs = std::move(*outputs);
    for (const auto& b : le.inputs) {
      graph.artifacts.emplace(b.artifact.digest, b.artifact);
      add_edge(e.id, b.artifact.digest, b.name, false);
    }
    for (const auto& b : le.outputs) {
      graph.artifacts.emplace(b.artifact.digest, b.artifact);
      add_edge(e.id, b.artifact.digest, b.name, true);
    }
    return &graph.executions.emplace(e.id, std::move(le)).first->second;
  };

  // Frontier of artifacts to expand, with their depth and the run to prefer.
  struct Item {
    std::string digest;
    int depth;
    std::string prefer_run;
  };
  std::deque<Item> frontier;
  std::set<std::string> expanded;

  auto expand_execution = [&](LineageExecution* le, int depth) {
    const auto& bindings = options.downstream ? le->outputs : le->inputs;
    for (const auto& b : bindings) frontier.push_back({b.artifact.digest, depth + 1, le->execution.run_id});
  };

  switch (target.kind) {
    case LineageTarget::Kind::kArtifact: {
      auto artifact = store->GetArtifact(target.digest);
      if (!artifact) return Error(artifact.error());
      graph.artifacts.emplace(artifact->digest, *artifact);
      frontier.push_back({artifact->digest, 0, target.run_id});
      break;
    }
    case LineageTarget::Kind::kExecution: {
      auto e = store->GetExecution(target.execution_id);
      if (!e) return Error(e.error());
      auto le = load_execution(*e);
      if (!le) return Error(le.error());
      expand_execution(*le, 0);
      break;
    }
    case LineageTarget::Kind::kRun: {
      auto executions = store->ListExecutions(target.run_id);
      if (!executions) return Error(executions.error());
      for (const auto& e : *executions) {
        auto le = load_execution(e);
        if (!le) return Error(le.error());
        expand_execution(*le, 0);
      }
      break;
    }
  }

  while (!frontier.empty() && !too_big()) {
    Item item = frontier.front();
    frontier.pop_front();
    if (item.depth > options.max_depth) {
      graph.truncated = true;
      continue;
    }
    if (!expanded.insert(item.digest).second) continue;
    if (options.downstream) {
      auto consumers = store->ConsumersOf(item.digest);
      if (!consumers) return Error(consumers.error());
      for (const auto& e : *consumers) {
        if (too_big()) break;
        auto le = load_execution(e);
        if (!le) return Error(le.error());
        expand_execution(*le, item.depth);
      }
    } else {
      auto producers = store->ProducersOf(item.digest);
      if (!producers) return Error(producers.error());
      if (producers->empty()) continue;  // a source: nothing made it
      OrderProducers(&*producers, item.prefer_run);
      // One producer explains the bytes; cache hits and re-runs that wrote
      // identical content are not walked (they would repeat the same tree).
      auto le = load_execution(producers->front());
      if (!le) return Error(le.error());
      expand_execution(*le, item.depth);
    }
  }
  return graph;
}

namespace {

std::string DescribeExecution(const LineageExecution& le) {
  const ExecutionRecord& e = le.execution;
  std::ostringstream out;
  out << e.instance << "  (run " << e.run_id << ", attempt " << e.attempt << ", " << e.outcome
      << ", " << FormatTime(e.started_at) << ")";
  return out.str();
}

// Snapshot details worth showing under an execution.
std::vector<std::string> SnapshotLines(const Json& snapshot) {
  std::vector<std::string> lines;
  if (!snapshot.is_object()) return lines;
  auto str = [&](const char* key) -> std::string {
    auto it = snapshot.find(key);
    return (it != snapshot.end() && it->is_string()) ? it->get<std::string>() : "";
  };
  std::string code = str("code_digest");
  if (!code.empty()) {
    std::string line = "code " + ShortDigest(code);
    if (auto files = snapshot.find("code_files"); files != snapshot.end() && files->is_object()) {
      std::string names;
      for (auto it = files->begin(); it != files->end(); ++it) names += (names.empty() ? "" : ", ") + it.key();
      if (!names.empty()) line += " (" + names + ")";
    }
    lines.push_back(line);
  }
  if (auto params = snapshot.find("params"); params != snapshot.end() && params->is_object() &&
                                             !params->empty()) {
    std::string line = "params";
    for (auto it = params->begin(); it != params->end(); ++it)
      line += " " + it.key() + "=" + (it->is_string() ? it->get<std::string>() : it->dump());
    lines.push_back(line);
  }
  if (auto item = snapshot.find("item"); item != snapshot.end() && !item->is_null())
    lines.push_back("item " + (item->is_string() ? item->get<std::string>() : item->dump()));
  std::string git = str("git_commit");
  if (!git.empty()) {
    bool dirty = snapshot.value("git_dirty", false);
    lines.push_back("pipeline " + str("pipeline_file") + " @ git " + git.substr(0, 12) +
                    (dirty ? " (uncommitted changes)" : ""));
  } else if (!str("pipeline_digest").empty()) {
    lines.push_back("pipeline " + str("pipeline_file") + " " + ShortDigest(str("pipeline_digest")) +
                    " (not in git)");
  }
  return lines;
}

std::string DescribeArtifact(const std::string& name, const ArtifactRecord& a) {
  std::string out = name.empty() ? "" : name + " ";
  out += ShortDigest(a.digest) + "  (" + ArtifactTypeName(a.type) + ", " + HumanSize(a.size) +
         (a.is_directory ? ", directory" : "") + ")";
  return out;
}

}  // namespace

std::string RenderLineageText(const LineageGraph& graph, bool downstream) {
  // Adjacency for the walk direction.
  std::map<std::string, std::vector<int64_t>> artifact_children;  // digest -> executions
  std::map<int64_t, std::vector<std::pair<std::string, std::string>>> execution_children;
  for (const auto& edge : graph.edges) {
    bool artifact_to_execution = downstream ? !edge.output : edge.output;
    if (artifact_to_execution) {
      auto& v = artifact_children[edge.digest];
      if (std::find(v.begin(), v.end(), edge.execution_id) == v.end()) v.push_back(edge.execution_id);
    } else {
      execution_children[edge.execution_id].push_back({edge.name, edge.digest});
    }
  }
  // Upstream shows, per artifact, only the producer the walk expanded.
  std::ostringstream out;
  std::set<std::string> printed_artifacts;
  std::set<int64_t> printed_executions;
  std::function<void(int64_t, const std::string&, bool)> print_execution;
  std::function<void(const std::string&, const std::string&, const std::string&, bool)> print_artifact;

  print_artifact = [&](const std::string& digest, const std::string& name, const std::string& prefix,
                       bool last) {
    auto it = graph.artifacts.find(digest);
    if (it == graph.artifacts.end()) return;
    out << prefix << (last ? "└─ " : "├─ ") << DescribeArtifact(name, it->second);
    std::string child_prefix = prefix + (last ? "   " : "│  ");
    if (!printed_artifacts.insert(digest).second) {
      out << "  (shown above)\n";
      return;
    }
    out << "\n";
    auto children = artifact_children.find(digest);
    if (children == artifact_children.end()) {
      if (!downstream) out << child_prefix << "   (source: no recorded step wrote it)\n";
      return;
    }
    std::vector<int64_t> ids;
    for (int64_t id : children->second)
      if (graph.executions.count(id)) ids.push_back(id);
    for (size_t i = 0; i < ids.size(); ++i) print_execution(ids[i], child_prefix, i + 1 == ids.size());
  };

  print_execution = [&](int64_t id, const std::string& prefix, bool last) {
    const LineageExecution& le = graph.executions.at(id);
    out << prefix << (last ? "└─ " : "├─ ") << (downstream ? "read by " : "written by ")
        << DescribeExecution(le);
    std::string child_prefix = prefix + (last ? "   " : "│  ");
    if (!printed_executions.insert(id).second) {
      out << "  (shown above)\n";
      return;
    }
    out << "\n";
    for (const auto& line : SnapshotLines(le.execution.snapshot)) out << child_prefix << "   " << line << "\n";
    const auto& kids = execution_children[id];
    for (size_t i = 0; i < kids.size(); ++i)
      print_artifact(kids[i].second, kids[i].first, child_prefix, i + 1 == kids.size());
  };

  switch (graph.root.kind) {
    case LineageTarget::Kind::kArtifact: {
      auto it = graph.artifacts.find(graph.root.digest);
      if (it == graph.artifacts.end()) break;
      out << DescribeArtifact(graph.root.label == graph.root.digest ? "" : graph.root.label, it->second)
          << "\n";
      printed_artifacts.insert(graph.root.digest);
      auto children = artifact_children.find(graph.root.digest);
      if (children == artifact_children.end()) {
        out << (downstream ? "   (nothing recorded was built from it)\n"
                           : "   (source: no recorded step wrote it)\n");
        break;
      }
      std::vector<int64_t> ids;
      for (int64_t id : children->second)
        if (graph.executions.count(id)) ids.push_back(id);
      for (size_t i = 0; i < ids.size(); ++i) print_execution(ids[i], "", i + 1 == ids.size());
      break;
    }
    case LineageTarget::Kind::kExecution:
    case LineageTarget::Kind::kRun: {
      out << graph.root.label << "\n";
      std::vector<int64_t> roots;
      if (graph.root.kind == LineageTarget::Kind::kExecution) {
        roots.push_back(graph.root.execution_id);
      } else {
        for (const auto& [id, le] : graph.executions)
          if (le.execution.run_id == graph.root.run_id) roots.push_back(id);
      }
      for (size_t i = 0; i < roots.size(); ++i) print_execution(roots[i], "", i + 1 == roots.size());
      break;
    }
  }
  if (graph.truncated) out << "(truncated: raise --max-nodes or --max-depth to see more)\n";
  return out.str();
}

Json RenderLineageJson(const LineageGraph& graph) {
  Json j = Json::object();
  j["root"] = {{"label", graph.root.label}};
  switch (graph.root.kind) {
    case LineageTarget::Kind::kArtifact: j["root"]["artifact"] = graph.root.digest; break;
    case LineageTarget::Kind::kExecution: j["root"]["execution"] = graph.root.execution_id; break;
    case LineageTarget::Kind::kRun: j["root"]["run"] = graph.root.run_id; break;
  }
  j["artifacts"] = Json::array();
  for (const auto& [digest, a] : graph.artifacts)
    j["artifacts"].push_back({{"digest", digest}, {"uri", a.uri}, {"type", ArtifactTypeName(a.type)},
                              {"size", a.size}, {"directory", a.is_directory},
                              {"properties", a.properties}});
  j["executions"] = Json::array();
  for (const auto& [id, le] : graph.executions) {
    const auto& e = le.execution;
    j["executions"].push_back({{"id", id}, {"run", e.run_id}, {"step", e.instance},
                               {"attempt", e.attempt}, {"outcome", e.outcome},
                               {"exit_code", e.exit_code}, {"started_at", FormatTime(e.started_at)},
                               {"snapshot", e.snapshot}});
  }
  j["events"] = Json::array();
  for (const auto& edge : graph.edges)
    j["events"].push_back({{"execution", edge.execution_id}, {"artifact", edge.digest},
                           {"name", edge.name}, {"type", edge.output ? "OUTPUT" : "INPUT"}});
  j["truncated"] = graph.truncated;
  return j;
}

std::string RenderLineageDot(const LineageGraph& graph) {
  std::ostringstream out;
  auto quote = [](const std::string& s) {
    std::string q = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') q += '\\';
      q += c;
    }
    return q + "\"";
  };
  out << "digraph lineage {\n  rankdir=LR;\n";
  for (const auto& [digest, a] : graph.artifacts)
    out << "  " << quote(digest) << " [shape=note, label=" << quote(DescribeArtifact("", a)) << "];\n";
  for (const auto& [id, le] : graph.executions)
    out << "  " << quote("e" + std::to_string(id)) << " [shape=box, label="
        << quote(le.execution.instance + "\\nrun " + le.execution.run_id) << "];\n";
  for (const auto& edge : graph.edges) {
    std::string e = quote("e" + std::to_string(edge.execution_id));
    if (edge.output)
      out << "  " << e << " -> " << quote(edge.digest) << " [label=" << quote(edge.name) << "];\n";
    else
      out << "  " << quote(edge.digest) << " -> " << e << " [label=" << quote(edge.name) << "];\n";
  }
  out << "}\n";
  return out.str();
}

}  // namespace sluice
