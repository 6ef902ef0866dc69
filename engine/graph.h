#pragma once
// PipelineGraph: the steps of a pipeline as a DAG (Boost.Graph).
//
// Nodes are the steps in file order, then the finally steps in file order;
// a node's index is its position in that order. An edge u -> v means "v
// needs u": v lists u in `depends`, or one of v's templates (command, env
// values, inputs, when, foreach expression, workdir) references
// `steps.u...`. The graph knows nothing about foreach instances: a foreach
// step is one node; the plan expands it at run time.
//
// Building fails (kInvalidArgument) on a dependency on an unknown step, on an
// expression syntax error, or on a cycle, reported as the path
// "dependency cycle: a -> b -> c -> a" (arrows point from a step to the step
// that needs it; the path starts at the cycle's first step in file order).
//
// A PipelineGraph borrows the PipelineSpec it was built from, which must
// outlive it. It is immutable after Build() and safe to read from threads.

#include <string>
#include <unordered_map>
#include <vector>

#include <boost/graph/adjacency_list.hpp>

#include "engine/spec.h"
#include "engine/status.h"

namespace sluice {

// Why an edge exists. An edge has every reason that applies.
enum EdgeReason : unsigned {
  kEdgeDepends = 1u << 0,    // listed in `depends`
  kEdgeReference = 1u << 1,  // referenced by command/env/inputs/foreach/workdir
  kEdgeWhen = 1u << 2,       // referenced by `when`
};

class PipelineGraph {
 public:
  struct EdgeProperty {
    unsigned reasons = 0;  // EdgeReason bits
  };
  using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS,
                                      boost::no_property, EdgeProperty>;

  // Builds the graph of `spec` (borrowed). Errors: see the file comment; the
  // message starts with the offending location ("pipeline.yaml:12:7: ...")
  // when one is known.
  static Result<PipelineGraph> Build(const PipelineSpec& spec);

  // Number of nodes (steps + finally steps).
  int size() const { return static_cast<int>(steps_.size()); }
  // The step of node `node` (0 <= node < size()).
  const StepSpec& step(int node) const { return *steps_[node]; }
  const PipelineSpec& spec() const { return *spec_; }
  // True for an exit-handler (finally) step.
  bool IsFinally(int node) const { return node >= num_main_; }
  // Number of main (non-finally) steps; they are nodes [0, num_main()).
  int num_main() const { return num_main_; }
  // Node index of the step called `name`, or -1.
  int Find(const std::string& name) const;

  // Direct upstream / downstream nodes, ascending.
  const std::vector<int>& Upstream(int node) const { return upstream_[node]; }
  const std::vector<int>& Downstream(int node) const { return downstream_[node]; }
  // EdgeReason bits of the edge from -> to; 0 when there is none.
  unsigned EdgeReasons(int from, int to) const;

  // All nodes in an order where every node comes after its upstreams
  // (boost::topological_sort; ties keep file order where the sort allows).
  const std::vector<int>& TopologicalOrder() const { return topo_; }

  // `nodes` and everything they (transitively) need / that needs them,
  // ascending node order.
  std::vector<int> UpstreamClosure(const std::vector<int>& nodes) const;
  std::vector<int> DownstreamClosure(const std::vector<int>& nodes) const;

  // Graphviz DOT and Mermaid flowchart text for `sluice graph`. Nodes show
  // "name\ntype"; foreach steps are marked "(foreach)"; finally steps are in
  // their own cluster/subgraph drawn after the others, with a dashed edge
  // from the main steps; edges that exist only because of `when` are
  // labelled "when".
  std::string ToDot() const;
  std::string ToMermaid() const;

  // The Boost graph itself, for algorithms not wrapped here.
  const Graph& graph() const { return graph_; }

 private:
  PipelineGraph() = default;

  const PipelineSpec* spec_ = nullptr;
  std::vector<const StepSpec*> steps_;
  int num_main_ = 0;
  Graph graph_;
  std::vector<std::vector<int>> upstream_;
  std::vector<std::vector<int>> downstream_;
  std::vector<int> topo_;
  std::unordered_map<std::string, int> index_;
};

// Every step name a step's templates reference as `steps.<name>...`, in the
// order found, with the location of the template and whether the reference
// came from `when`. Used by the graph and by the runner to build scopes.
struct StepReference {
  std::string step;
  SourceLocation loc;
  bool from_when = false;
};
Result<std::vector<StepReference>> StepReferences(const StepSpec& step);

}  // namespace sluice
