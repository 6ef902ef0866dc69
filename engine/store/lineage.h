#pragma once
// Lineage queries over a Store: which data, code, parameters and runs
// produced an artifact (upstream), and what was built from it (downstream).
//
// A walk follows MLMD events: artifact -> executions that wrote it ->
// artifacts those executions read -> ... Each hop is one indexed store
// lookup, so a query costs O(nodes returned), whatever the store's size.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/status.h"
#include "engine/store.h"

namespace sluice {

// What a lineage query starts from, resolved from user text by
// ResolveLineageTarget.
struct LineageTarget {
  enum class Kind { kArtifact, kExecution, kRun };
  Kind kind = Kind::kArtifact;
  std::string digest;        // kArtifact
  int64_t execution_id = 0;  // kExecution
  std::string run_id;        // kRun
  std::string label;         // how to print the root, e.g. "run-1/select/best_model"
};

// Resolves, in this order:
//   "RUN/STEP/NAME"  the output artifact NAME of step instance STEP in RUN
//   "RUN/STEP"       the latest execution of step instance STEP in RUN
//   a digest prefix  ("sha256:ab12…" or "ab12…", at least 4 hex digits)
//   a run id prefix
// Errors: kNotFound with what was tried; kInvalidArgument when ambiguous.
Result<LineageTarget> ResolveLineageTarget(Store* store, const std::string& text);

struct LineageExecution {
  ExecutionRecord execution;
  std::vector<ArtifactBinding> inputs;
  std::vector<ArtifactBinding> outputs;
};

// A lineage graph: artifacts and executions, and the edges between them.
struct LineageGraph {
  LineageTarget root;
  std::map<std::string, ArtifactRecord> artifacts;     // by digest
  std::map<int64_t, LineageExecution> executions;      // by id
  // Edges as (execution id, digest, name): read (INPUT) or wrote (OUTPUT).
  struct Edge {
    int64_t execution_id = 0;
    std::string digest;
    std::string name;
    bool output = false;
  };
  std::vector<Edge> edges;
  bool truncated = false;  // max_nodes reached
};

struct LineageOptions {
  bool downstream = false;  // false: what produced it; true: what was built from it
  int max_depth = 64;       // artifact hops
  int max_nodes = 10000;    // stop (and set truncated) past this many nodes
};

// Walks the lineage from `target`. A run starts from all its executions.
Result<LineageGraph> QueryLineage(Store* store, const LineageTarget& target,
                                  const LineageOptions& options);

// Renderings. The text tree shows, for each execution: run, step instance,
// attempt, outcome, the parameters and code digest from its snapshot and the
// pipeline's git commit; for each artifact: name, type, digest prefix, size.
std::string RenderLineageText(const LineageGraph& graph, bool downstream);
Json RenderLineageJson(const LineageGraph& graph);
std::string RenderLineageDot(const LineageGraph& graph);

}  // namespace sluice
