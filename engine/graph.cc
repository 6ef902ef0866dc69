#include "engine/graph.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <utility>

#include <boost/graph/topological_sort.hpp>

#include "engine/expr.h"

namespace sluice {
namespace {


std::string AtLoc(const SourceLocation& loc, const std::string& message) {
  std::string where = loc.ToString();
  return where.empty() ? message : where + ": " + message;
}

// Appends the `steps.<name>` references of one template/expression.
Status CollectStepRefs(const std::string& text, bool is_template, const SourceLocation& loc,
                       bool from_when, std::vector<StepReference>& out) {
  if (is_template && text.find("{{") == std::string::npos) return Status::Ok();
  auto refs = expr::References(text, is_template);
  if (!refs) return Status(refs.error().code(), AtLoc(loc, refs.error().message()));
  for (const auto& r : *refs) {
    if (r.path.size() >= 2 && r.path[0] == "steps") out.push_back({r.path[1], loc, from_when});
  }
  return Status::Ok();
}

std::string DotQuote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string MermaidText(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"') out += "#quot;";
    else out += c;
  }
  return out;
}

std::string NodeLabel(const StepSpec& step, const std::string& newline) {
  std::string label = step.name + newline + step.type;
  if (step.foreach) label += " (foreach)";
  return label;
}

}  // namespace

Result<std::vector<StepReference>> StepReferences(const StepSpec& step) {
  std::vector<StepReference> out;
  for (const auto& arg : step.command)
    SLUICE_RETURN_IF_ERROR_RESULT(CollectStepRefs(arg.text, true, arg.loc, false, out));
  for (const auto& env : step.env) {
    if (env.secret) continue;
    SLUICE_RETURN_IF_ERROR_RESULT(CollectStepRefs(env.value.text, true, env.value.loc, false, out));
  }
  for (const auto& [name, tmpl] : step.inputs)
    SLUICE_RETURN_IF_ERROR_RESULT(CollectStepRefs(tmpl.text, true, tmpl.loc, false, out));
  if (step.when) {
    bool is_template = !step.when->IsLiteral();
    SLUICE_RETURN_IF_ERROR_RESULT(CollectStepRefs(step.when->text, is_template, step.when->loc, true, out));
  }
  if (step.foreach && step.foreach->kind == ForEachSpec::Kind::kExpression) {
    const Template& e = step.foreach->expression;
    SLUICE_RETURN_IF_ERROR_RESULT(CollectStepRefs(e.text, true, e.loc, false, out));
  }
  if (step.workdir)
    SLUICE_RETURN_IF_ERROR_RESULT(CollectStepRefs(step.workdir->text, true, step.workdir->loc, false, out));
  return out;
}

Result<PipelineGraph> PipelineGraph::Build(const PipelineSpec& spec) {
  PipelineGraph g;
  g.spec_ = &spec;
  for (const auto& s : spec.steps) g.steps_.push_back(&s);
  for (const auto& s : spec.finally_steps) g.steps_.push_back(&s);
  g.num_main_ = static_cast<int>(spec.steps.size());
  const int n = g.size();

  std::unordered_map<std::string, int> index;
  index.reserve(n * 2);
  for (int i = 0; i < n; ++i) {
    if (!index.emplace(g.steps_[i]->name, i).second)
      return Error(Status::InvalidArgument(
          AtLoc(g.steps_[i]->loc, "duplicate step name '" + g.steps_[i]->name + "'")));
  }

  // Collect edges with their reasons; (from, to) -> reasons.
  g.index_ = index;
  std::vector<std::vector<std::pair<int, unsigned>>> in(n);  // per `to`
  auto add = [&](int from, int to, unsigned reason) {
    for (auto& [f, r] : in[to]) {
      if (f == from) {
        r |= reason;
        return;
      }
    }
    in[to].push_back({from, reason});
  };
  for (int v = 0; v < n; ++v) {
    const StepSpec& step = *g.steps_[v];
    for (size_t i = 0; i < step.depends.size(); ++i) {
      auto it = index.find(step.depends[i]);
      if (it == index.end()) {
        SourceLocation loc = i < step.depends_loc.size() ? step.depends_loc[i] : step.loc;
        return Error(Status::InvalidArgument(AtLoc(
            loc, "step '" + step.name + "' depends on unknown step '" + step.depends[i] + "'")));
      }
      add(it->second, v, kEdgeDepends);
    }
    auto refs = StepReferences(step);
    if (!refs) return Error(refs.error());
    for (const auto& r : *refs) {
      auto it = index.find(r.step);
      if (it == index.end())
        return Error(Status::InvalidArgument(
            AtLoc(r.loc, "step '" + step.name + "' references unknown step '" + r.step + "'")));
      add(it->second, v, r.from_when ? kEdgeWhen : kEdgeReference);
    }
  }

  g.graph_ = Graph(n);
  g.upstream_.assign(n, {});
  g.downstream_.assign(n, {});
  for (int v = 0; v < n; ++v) {
    std::sort(in[v].begin(), in[v].end());
    for (auto [u, reasons] : in[v]) {
      boost::add_edge(u, v, EdgeProperty{reasons}, g.graph_);
      g.upstream_[v].push_back(u);
      g.downstream_[u].push_back(v);
    }
  }
  for (auto& d : g.downstream_) std::sort(d.begin(), d.end());

  // Cycle check with the path, before boost::topological_sort (which only
  // says "not a DAG"). Iterative DFS in file order.
  {
    std::vector<char> color(n, 0);  // 0 white, 1 on stack, 2 done
    std::vector<std::pair<int, size_t>> stack;
    for (int root = 0; root < n; ++root) {
      if (color[root]) continue;
      stack.push_back({root, 0});
      color[root] = 1;
      while (!stack.empty()) {
        auto& [u, next] = stack.back();
        if (next < g.downstream_[u].size()) {
          int w = g.downstream_[u][next++];
          if (color[w] == 1) {
            std::vector<int> cycle;
            size_t start = 0;
            while (stack[start].first != w) ++start;
            for (size_t k = start; k < stack.size(); ++k) cycle.push_back(stack[k].first);
            auto first = std::min_element(cycle.begin(), cycle.end());
            std::rotate(cycle.begin(), first, cycle.end());
            std::string path;
            for (int c : cycle) path += g.steps_[c]->name + " -> ";
            path += g.steps_[cycle.front()]->name;
            return Error(Status::InvalidArgument(
                AtLoc(g.steps_[cycle.front()]->loc, "dependency cycle: " + path)));
          }
          if (color[w] == 0) {
            color[w] = 1;
            stack.push_back({w, 0});
          }
        } else {
          color[u] = 2;
          stack.pop_back();
        }
      }
    }
  }

  std::vector<Graph::vertex_descriptor> reversed;
  reversed.reserve(n);
  boost::topological_sort(g.graph_, std::back_inserter(reversed));
  g.topo_.assign(reversed.rbegin(), reversed.rend());
  return g;
}

int PipelineGraph::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : it->second;
}

unsigned PipelineGraph::EdgeReasons(int from, int to) const {
  auto [e, found] = boost::edge(from, to, graph_);
  return found ? graph_[e].reasons : 0;
}

namespace {

// `nodes` and everything reachable from them through `next`, ascending.
std::vector<int> Closure(const std::vector<std::vector<int>>& next, const std::vector<int>& nodes) {
  const int n = static_cast<int>(next.size());
  std::vector<char> seen(n, 0);
  std::vector<int> todo(nodes.begin(), nodes.end());
  while (!todo.empty()) {
    int v = todo.back();
    todo.pop_back();
    if (v < 0 || v >= n || seen[v]) continue;
    seen[v] = 1;
    for (int w : next[v]) todo.push_back(w);
  }
  std::vector<int> out;
  for (int i = 0; i < n; ++i)
    if (seen[i]) out.push_back(i);
  return out;
}

}  // namespace

std::vector<int> PipelineGraph::UpstreamClosure(const std::vector<int>& nodes) const {
  return Closure(upstream_, nodes);
}

std::vector<int> PipelineGraph::DownstreamClosure(const std::vector<int>& nodes) const {
  return Closure(downstream_, nodes);
}

namespace {

// Main steps nothing else (among main steps) needs, and finally steps that
// need no other finally step: joined by dashed "then" edges in drawings.
std::vector<std::pair<int, int>> FinallyEdges(const PipelineGraph& g) {
  std::vector<int> sinks, roots;
  for (int v = 0; v < g.num_main(); ++v) {
    bool has_main_down = false;
    for (int w : g.Downstream(v))
      if (!g.IsFinally(w)) has_main_down = true;
    if (!has_main_down) sinks.push_back(v);
  }
  for (int v = g.num_main(); v < g.size(); ++v) {
    bool has_finally_up = false;
    for (int u : g.Upstream(v))
      if (g.IsFinally(u)) has_finally_up = true;
    if (!has_finally_up) roots.push_back(v);
  }
  std::vector<std::pair<int, int>> out;
  for (int s : sinks)
    for (int r : roots)
      if (g.EdgeReasons(s, r) == 0) out.push_back({s, r});
  return out;
}

}  // namespace

std::string PipelineGraph::ToDot() const {
  std::string out = "digraph " + DotQuote(spec_->name) + " {\n";
  out += "  rankdir=LR;\n  node [shape=box];\n";
  for (int v = 0; v < num_main_; ++v) {
    out += "  " + DotQuote(steps_[v]->name) + " [label=" + DotQuote(NodeLabel(*steps_[v], "\n")) +
           (steps_[v]->foreach ? ", style=\"rounded,bold\"" : "") + "];\n";
  }
  if (num_main_ < size()) {
    out += "  subgraph cluster_finally {\n    label=\"finally\";\n    style=dashed;\n";
    for (int v = num_main_; v < size(); ++v) {
      out += "    " + DotQuote(steps_[v]->name) + " [label=" + DotQuote(NodeLabel(*steps_[v], "\n")) +
             (steps_[v]->foreach ? ", style=\"rounded,bold\"" : "") + "];\n";
    }
    out += "  }\n";
  }
  for (int v = 0; v < size(); ++v) {
    for (int w : downstream_[v]) {
      out += "  " + DotQuote(steps_[v]->name) + " -> " + DotQuote(steps_[w]->name);
      if (EdgeReasons(v, w) & kEdgeWhen) out += " [label=\"when\"]";
      out += ";\n";
    }
  }
  for (auto [s, r] : FinallyEdges(*this))
    out += "  " + DotQuote(steps_[s]->name) + " -> " + DotQuote(steps_[r]->name) + " [style=dashed];\n";
  out += "}\n";
  return out;
}

std::string PipelineGraph::ToMermaid() const {
  std::string out = "flowchart LR\n";
  auto node = [&](int v) {
    std::string label = "\"" + MermaidText(NodeLabel(*steps_[v], "<br/>")) + "\"";
    // foreach steps are drawn as stacked/subroutine boxes.
    return "s" + std::to_string(v) + (steps_[v]->foreach ? "[[" + label + "]]" : "[" + label + "]");
  };
  for (int v = 0; v < num_main_; ++v) out += "  " + node(v) + "\n";
  if (num_main_ < size()) {
    out += "  subgraph finally\n";
    for (int v = num_main_; v < size(); ++v) out += "    " + node(v) + "\n";
    out += "  end\n";
  }
  for (int v = 0; v < size(); ++v) {
    for (int w : downstream_[v]) {
      out += "  s" + std::to_string(v) + ((EdgeReasons(v, w) & kEdgeWhen) ? " -->|when| s" : " --> s") +
             std::to_string(w) + "\n";
    }
  }
  for (auto [s, r] : FinallyEdges(*this))
    out += "  s" + std::to_string(s) + " -.-> s" + std::to_string(r) + "\n";
  return out;
}

}  // namespace sluice
