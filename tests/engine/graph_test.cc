#include "engine/graph.h"

#include <string>

#include <gtest/gtest.h>

#include "tests/engine/test_pipeline.h"

namespace sluice {
namespace {

constexpr std::string_view kPipeline = R"(
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: retrain}
params:
  models: {type: list, default: [a, b]}
  threshold: {type: number, default: 0.9}
steps:
  - name: prepare
    command: [python3, prepare.py]
    outputs:
      artifacts:
        - {name: dataset, path: data}
  - name: train
    foreach: "{{ params.models }}"
    inputs:
      dataset: "{{ steps.prepare.outputs.artifacts.dataset }}"
    command: [python3, train.py, "{{ item }}"]
    outputs:
      metrics: metrics.json
  - name: select
    command: [python3, select.py, "{{ steps.train.outputs.metrics.acc }}"]
    outputs:
      params:
        - {name: best, path: best.txt}
  - name: register
    when: steps.select.outputs.params.best != 'none' && params.threshold > 0
    command: [python3, register.py]
  - name: notify
    depends: [prepare]
    env:
      BEST: "{{ steps.select.outputs.params.best }}"
    command: [/bin/true]
finally:
  - name: report
    command: [echo, "{{ run.status }}"]
  - name: cleanup
    depends: [report]
    command: [/bin/true]
)";

std::string Names(const PipelineGraph& g, const std::vector<int>& nodes) {
  std::string out;
  for (int v : nodes) out += (out.empty() ? "" : " ") + g.step(v).name;
  return out;
}

TEST(GraphTest, EdgesFromDependsAndEveryTemplateReference) {
  PipelineSpec spec = testing::LoadSpec(kPipeline);
  auto g = PipelineGraph::Build(spec);
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(g->size(), 7);
  EXPECT_EQ(g->num_main(), 5);
  EXPECT_TRUE(g->IsFinally(g->Find("report")));
  EXPECT_EQ(Names(*g, g->Upstream(g->Find("train"))), "prepare");
  EXPECT_EQ(Names(*g, g->Upstream(g->Find("select"))), "train");
  EXPECT_EQ(Names(*g, g->Upstream(g->Find("register"))), "select");
  EXPECT_EQ(Names(*g, g->Upstream(g->Find("notify"))), "prepare select");
  EXPECT_EQ(Names(*g, g->Downstream(g->Find("prepare"))), "train notify");
  EXPECT_EQ(g->EdgeReasons(g->Find("select"), g->Find("register")), unsigned{kEdgeWhen});
  EXPECT_EQ(g->EdgeReasons(g->Find("prepare"), g->Find("notify")), unsigned{kEdgeDepends});
  EXPECT_EQ(g->EdgeReasons(g->Find("select"), g->Find("notify")), unsigned{kEdgeReference});
  EXPECT_EQ(g->EdgeReasons(g->Find("notify"), g->Find("select")), 0u);
}

TEST(GraphTest, TopologicalOrderPutsUpstreamsFirst) {
  PipelineSpec spec = testing::LoadSpec(kPipeline);
  auto g = PipelineGraph::Build(spec);
  ASSERT_TRUE(g);
  std::vector<int> pos(g->size());
  for (size_t i = 0; i < g->TopologicalOrder().size(); ++i) pos[g->TopologicalOrder()[i]] = static_cast<int>(i);
  ASSERT_EQ(g->TopologicalOrder().size(), 7u);
  for (int v = 0; v < g->size(); ++v)
    for (int w : g->Downstream(v)) EXPECT_LT(pos[v], pos[w]) << g->step(v).name << " -> " << g->step(w).name;
}

TEST(GraphTest, UpstreamAndDownstreamClosures) {
  PipelineSpec spec = testing::LoadSpec(kPipeline);
  auto g = PipelineGraph::Build(spec);
  ASSERT_TRUE(g);
  EXPECT_EQ(Names(*g, g->DownstreamClosure({g->Find("train")})), "train select register notify");
  EXPECT_EQ(Names(*g, g->UpstreamClosure({g->Find("notify")})), "prepare train select notify");
  EXPECT_EQ(Names(*g, g->UpstreamClosure({g->Find("cleanup")})), "report cleanup");
}

TEST(GraphTest, Dot) {
  PipelineSpec spec = testing::LoadSpec(kPipeline);
  auto g = PipelineGraph::Build(spec);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->ToDot(), R"DOT(digraph "retrain" {
  rankdir=LR;
  node [shape=box];
  "prepare" [label="prepare
container"];
  "train" [label="train
container (foreach)", style="rounded,bold"];
  "select" [label="select
container"];
  "register" [label="register
container"];
  "notify" [label="notify
container"];
  subgraph cluster_finally {
    label="finally";
    style=dashed;
    "report" [label="report
container"];
    "cleanup" [label="cleanup
container"];
  }
  "prepare" -> "train";
  "prepare" -> "notify";
  "train" -> "select";
  "select" -> "register" [label="when"];
  "select" -> "notify";
  "report" -> "cleanup";
  "register" -> "report" [style=dashed];
  "notify" -> "report" [style=dashed];
}
)DOT");
}

TEST(GraphTest, Mermaid) {
  PipelineSpec spec = testing::LoadSpec(kPipeline);
  auto g = PipelineGraph::Build(spec);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->ToMermaid(), R"MMD(flowchart LR
  s0["prepare<br/>container"]
  s1[["train<br/>container (foreach)"]]
  s2["select<br/>container"]
  s3["register<br/>container"]
  s4["notify<br/>container"]
  subgraph finally
    s5["report<br/>container"]
    s6["cleanup<br/>container"]
  end
  s0 --> s1
  s0 --> s4
  s1 --> s2
  s2 -->|when| s3
  s2 --> s4
  s5 --> s6
  s3 -.-> s5
  s4 -.-> s5
)MMD");
}

// The dsl rejects cycles before a graph is built, so these specs are
// written in C++.
StepSpec Step(const std::string& name, std::vector<std::string> depends, int line) {
  StepSpec s;
  s.name = name;
  s.loc = {"pipeline.yaml", line, 5};
  s.depends = std::move(depends);
  s.command = {{"/bin/true", {}}};
  return s;
}

TEST(GraphTest, CycleIsReportedAsItsPathFromTheFirstStepInFileOrder) {
  PipelineSpec spec;
  spec.name = "cyclic";
  spec.steps = {Step("start", {}, 3), Step("a", {"c"}, 5), Step("b", {"a", "start"}, 7), Step("c", {"b"}, 9)};
  auto g = PipelineGraph::Build(spec);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(g.error().message(), "pipeline.yaml:5:5: dependency cycle: a -> b -> c -> a");
}

TEST(GraphTest, CycleThroughATemplateReference) {
  PipelineSpec spec;
  spec.name = "cyclic";
  spec.steps = {Step("x", {}, 3), Step("y", {"x"}, 6)};
  spec.steps[0].command.push_back({"{{ steps.y.outputs.params.p }}", {"pipeline.yaml", 4, 20}});
  auto g = PipelineGraph::Build(spec);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().message(), "pipeline.yaml:3:5: dependency cycle: x -> y -> x");
}

TEST(GraphTest, SelfDependencyIsACycle) {
  PipelineSpec spec;
  spec.steps = {Step("me", {"me"}, 3)};
  auto g = PipelineGraph::Build(spec);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().message(), "pipeline.yaml:3:5: dependency cycle: me -> me");
}

TEST(GraphTest, UnknownDependencyNamesTheStep) {
  PipelineSpec spec;
  spec.steps = {Step("a", {"nope"}, 3)};
  spec.steps[0].depends_loc = {{"pipeline.yaml", 4, 15}};
  auto g = PipelineGraph::Build(spec);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().message(), "pipeline.yaml:4:15: step 'a' depends on unknown step 'nope'");
}

}  // namespace
}  // namespace sluice
