// Sub-pipelines, fan-out over a group of steps and minSuccessRatio, end to
// end: the `sluice` binary runs real Python steps with a real SQLite store,
// and the tests read what the store recorded (`sluice status -o json`).

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

#ifndef SLUICE_BIN
#error "SLUICE_BIN must name the sluice binary"
#endif

namespace sluice {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using testutil::Output;

class SubPipelineRunTest : public ::testing::Test {
 protected:
  void Write(const std::string& name, const std::string& text) {
    fs::create_directories(fs::path(dir_ + "/" + name).parent_path());
    std::ofstream(dir_ + "/" + name) << text;
  }

  Output Sluice(const std::vector<std::string>& args, std::chrono::seconds bound = std::chrono::seconds(240)) {
    std::vector<std::string> argv = {SLUICE_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return testutil::Subprocess(std::move(argv), dir_).Wait(bound);
  }

  Json Status(const std::string& run) {
    Output o = Sluice({"status", run, "--format", "json"});
    EXPECT_EQ(o.exit_code, 0) << o.err;
    Json j = Json::parse(o.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << o.out << o.err;
    return j.is_discarded() ? Json::object() : j;
  }

  static std::map<std::string, std::string> Phases(const Json& status) {
    std::map<std::string, std::string> out;
    for (const auto& s : status["steps"]) out[s["instance"]] = s["phase"];
    return out;
  }

  // The step record of `instance` as the store holds it.
  static Json Record(const Json& status, const std::string& instance) {
    for (const auto& s : status["steps"])
      if (s["instance"] == instance) return s;
    ADD_FAILURE() << "no record of " << instance;
    return Json::object();
  }

  // Runs step `eval` (`runs`: its `pipeline:` or `uses:` line, of a chain
  // of kGateChainSteps) over [fast, slow] and checks that item 0's evaluate
  // started before item 1's train ended, on the times the store recorded.
  void ExpectEachItemsChainRunsIndependently(const std::string& runs, const std::string& run_id);
  // Runs step `g` (`runs`, a chain of kRatioChainSteps) over [0, 1, 2] with
  // minSuccessRatio 0.6, item 1 failing, and checks that only item 1's
  // chain stopped and the fan-in read the others.
  void ExpectOnlyTheFailedItemsChainStops(const std::string& runs, const std::string& run_id);

  testutil::TempDir tmp_{"sluice-subpipe"};
  const std::string dir_ = tmp_.path();
};

constexpr char kHead[] = "apiVersion: sluice.dev/v1\nkind: Pipeline\n";

TEST_F(SubPipelineRunTest, NestedSubPipelinesTwoLevelsDeepRunUnderThePrefixedNames) {
  Write("main.yaml", std::string(kHead) + R"yaml(metadata: {name: main}
steps:
  - name: prepare
    command: [python3, -c, "open('d.txt', 'w').write('data')"]
    outputs:
      artifacts: [{name: dataset, path: d.txt}]
  - name: eval
    pipeline: eval/eval.yaml
    with:
      dataset: "{{ steps.prepare.outputs.artifacts.dataset }}"
      label: first
  - name: report
    command: [python3, -c, "import sys; print('report:', open(sys.argv[1]).read(), '/', open(sys.argv[2]).read())",
              "{{ steps.eval.outputs.artifacts.report }}", "{{ steps.eval.outputs.artifacts.model }}"]
)yaml");
  Write("eval/eval.yaml", std::string(kHead) + R"yaml(metadata: {name: eval}
params:
  dataset: {type: string}
  label: {type: string, default: x}
outputs:
  artifacts:
    report: "{{ steps.score.outputs.artifacts.out }}"
    model: "{{ steps.train.outputs.artifacts.model }}"
steps:
  - name: train
    pipeline: inner.yaml
    with: {data: "{{ params.dataset }}"}
  - name: score
    command: [python3, -c, "import sys; open('r.txt', 'w').write(open(sys.argv[1]).read() + ' ' + sys.argv[2])",
              "{{ steps.train.outputs.artifacts.model }}", "{{ params.label }}"]
    outputs:
      artifacts: [{name: out, path: r.txt}]
)yaml");
  Write("eval/inner.yaml", std::string(kHead) + R"yaml(metadata: {name: inner}
params:
  data: {type: string}
outputs:
  artifacts:
    model: "{{ steps.fit.outputs.artifacts.m }}"
steps:
  - name: fit
    command: [python3, -c, "import sys; open('m.txt', 'w').write('model-of-' + open(sys.argv[1]).read())",
              "{{ params.data }}"]
    outputs:
      artifacts: [{name: m, path: m.txt}]
)yaml");
  Output run = Sluice({"run", "main.yaml", "--run-id", "nested-1"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("[report] report: model-of-data first / model-of-data\n"), std::string::npos) << run.out;
  Json st = Status("nested-1");
  EXPECT_EQ(st["run"]["phase"], "Succeeded");
  EXPECT_EQ(Phases(st), (std::map<std::string, std::string>{{"prepare", "Succeeded"},
                                                            {"eval/train/fit", "Succeeded"},
                                                            {"eval/score", "Succeeded"},
                                                            {"report", "Succeeded"}}));
  // The snapshot of an inner step names every sub-pipeline file on the way
  // to it, with its digest.
  Output checkout = Sluice({"checkout", "nested-1", "eval/train/fit", dir_ + "/fit"});
  ASSERT_EQ(checkout.exit_code, 0) << checkout.err;
  Json snapshot = Json::parse(testutil::ReadFile(dir_ + "/fit/snapshot.json"), nullptr, false);
  ASSERT_TRUE(snapshot.is_object());
  std::vector<std::string> files;
  for (const auto& [file, digest] : snapshot["code_files"].items()) {
    files.push_back(file);
    EXPECT_EQ(digest.get<std::string>().substr(0, 7), "sha256:");
  }
  EXPECT_EQ(files, (std::vector<std::string>{"eval/eval.yaml", "eval/inner.yaml"}));
  // A changed sub-pipeline file changes the cache keys of its steps: the
  // second run reuses prepare and eval/score's inputs but runs fit again.
  Output again = Sluice({"run", "main.yaml", "--run-id", "nested-2"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_EQ(Phases(Status("nested-2"))["eval/train/fit"], "Cached");
  std::ofstream(dir_ + "/eval/inner.yaml", std::ios::app) << "# changed\n";
  Output changed = Sluice({"run", "main.yaml", "--run-id", "nested-3"});
  ASSERT_EQ(changed.exit_code, 0) << changed.out << changed.err;
  auto phases = Phases(Status("nested-3"));
  EXPECT_EQ(phases["prepare"], "Cached");
  EXPECT_EQ(phases["eval/train/fit"], "Succeeded");
}

// The steps of a chain (train, then evaluate) that proves the items of a
// group fan-out run independently: item 0's train ends at once; item 1's
// train waits (bounded) for the file item 0's evaluate writes. A scheduler
// that started the evaluates only after every train would make item 1's
// train time out and fail the run. ROOT is where the chain reads its
// values: "params" in a sub-pipeline, "inputs" in a component graph.
constexpr char kGateChainSteps[] = R"yaml(outputs:
  params:
    score: "{{ steps.evaluate.outputs.params.score }}"
steps:
  - name: train
    command:
      - python3
      - -c
      - |
        import os, sys, time
        speed, gate = sys.argv[1], sys.argv[2]
        deadline = time.time() + 120
        while speed == "slow" and not os.path.exists(gate):
            if time.time() > deadline:
                sys.exit("the fast item's evaluate never ran while this train was running")
            time.sleep(0.05)
        open("model", "w").write(speed)
      - "{{ ROOT.speed }}"
      - "{{ ROOT.gate }}"
    outputs:
      artifacts: [{name: model, path: model}]
  - name: evaluate
    command:
      - python3
      - -c
      - |
        import sys
        model = open(sys.argv[1]).read()
        if model == "fast":
            open(sys.argv[2], "w").write("done")
        open("score", "w").write(model + "-scored")
      - "{{ steps.train.outputs.artifacts.model }}"
      - "{{ ROOT.gate }}"
    outputs:
      params: [{name: score, path: score}]
)yaml";

// `text` with every "ROOT." read as `root` + ".".
std::string WithRoot(std::string text, const std::string& root) {
  for (size_t at = text.find("ROOT."); at != std::string::npos; at = text.find("ROOT.", at)) text.replace(at, 4, root);
  return text;
}

void SubPipelineRunTest::ExpectEachItemsChainRunsIndependently(const std::string& runs, const std::string& run_id) {
  const std::string gate = dir_ + "/evaluated-0";
  Write("pipeline.yaml", std::string(kHead) + "metadata: {name: group}\nsteps:\n  - name: eval\n    " + runs +
                             "\n    foreach: [fast, slow]\n    with: {speed: \"{{ item }}\", gate: " + gate + "}\n" +
                             R"yaml(  - name: summary
    command: [python3, -c, "import sys; print('scores:', sys.argv[1])", "{{ steps.eval.outputs.params.score }}"]
)yaml");
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", run_id, "-j", "4"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("[summary] scores: [\"fast-scored\",\"slow-scored\"]\n"), std::string::npos) << run.out;
  Json st = Status(run_id);
  EXPECT_EQ(Phases(st), (std::map<std::string, std::string>{{"eval[0]/train", "Succeeded"},
                                                            {"eval[0]/evaluate", "Succeeded"},
                                                            {"eval[1]/train", "Succeeded"},
                                                            {"eval[1]/evaluate", "Succeeded"},
                                                            {"summary", "Succeeded"}}));
  // ISO times of one format compare as strings.
  const std::string fast_evaluate_started = Record(st, "eval[0]/evaluate").value("started_at", "");
  const std::string slow_train_finished = Record(st, "eval[1]/train").value("finished_at", "");
  ASSERT_FALSE(fast_evaluate_started.empty());
  EXPECT_LT(fast_evaluate_started, slow_train_finished);
}

TEST_F(SubPipelineRunTest, GroupFanOutRunsEachItemsChainIndependently) {
  Write("chain.yaml", std::string(kHead) + "metadata: {name: chain}\nparams:\n  speed: {type: string}\n"
                      "  gate: {type: string}\n" + WithRoot(kGateChainSteps, "params"));
  ExpectEachItemsChainRunsIndependently("pipeline: chain.yaml", "group-1");
}

// A component graph (a component file with `steps:`) fans out as a
// sub-pipeline does.
TEST_F(SubPipelineRunTest, ComponentGraphFanOutRunsEachItemsChainIndependently) {
  Write("components/chain.yaml", "apiVersion: sluice.dev/v1\nkind: Component\nmetadata: {name: chain}\n"
                                 "inputs:\n  speed: {type: string}\n  gate: {type: string}\n" +
                                     WithRoot(kGateChainSteps, "inputs"));
  ExpectEachItemsChainRunsIndependently("uses: components/chain.yaml", "graph-1");
}

constexpr char kRatio[] = R"yaml(metadata: {name: ratio}
params:
  fail: {type: list}
steps:
  - name: train
    foreach: [0, 1, 2, 3]
    minSuccessRatio: 0.5
    command: [python3, -c, "import json, sys; open('acc', 'w').write(sys.argv[1]); sys.exit(int(sys.argv[1]) in json.loads(sys.argv[2]))",
              "{{ item }}", "{{ params.fail }}"]
    outputs:
      params: [{name: acc, path: acc}]
  - name: pick
    command: [python3, -c, "import os, sys; print('accs', sys.argv[1], 'failed', os.environ['SLUICE_FAILED_ITEMS'])",
              "{{ steps.train.outputs.params.acc }}"]
)yaml";

TEST_F(SubPipelineRunTest, MinSuccessRatioMetGoesOnWithTheSuccessfulItems) {
  Write("pipeline.yaml", std::string(kHead) + kRatio);
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", "ratio-met", "-p", "fail=[2]"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("[pick] accs [\"0\",\"1\",\"3\"] failed {\"train\":[\"train[2]\"]}\n"), std::string::npos)
      << run.out;
  Json st = Status("ratio-met");
  EXPECT_EQ(st["run"]["phase"], "Succeeded");
  EXPECT_EQ(st["run"]["message"], "1 of 4 items of step 'train' failed (train[2]); minSuccessRatio 0.5 met");
  auto phases = Phases(st);
  EXPECT_EQ(phases["train[2]"], "Failed");
  EXPECT_EQ(phases["pick"], "Succeeded");
}

TEST_F(SubPipelineRunTest, MinSuccessRatioNotMetFailsTheRun) {
  Write("pipeline.yaml", std::string(kHead) + kRatio);
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", "ratio-low", "-p", "fail=[1, 2, 3]"});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  Json st = Status("ratio-low");
  EXPECT_EQ(st["run"]["phase"], "Failed");
  EXPECT_EQ(st["run"]["message"],
            "step 'train': 1 of 4 items succeeded, fewer than minSuccessRatio 0.5 needs (2); failed: train[1], "
            "train[2], train[3]");
  auto phases = Phases(st);
  EXPECT_EQ(phases["train[0]"], "Succeeded");
  EXPECT_EQ(phases["pick"], "Omitted");
}

// A chain whose first step fails for item 1, read as ROOT.n
// (WithRoot).
constexpr char kRatioChainSteps[] = R"yaml(outputs:
  params:
    out: "{{ steps.second.outputs.params.out }}"
steps:
  - name: first
    command: [python3, -c, "import sys; sys.exit(sys.argv[1] == '1')", "{{ ROOT.n }}"]
  - name: second
    depends: [first]
    command: [python3, -c, "import sys; open('out', 'w').write(sys.argv[1])", "{{ ROOT.n }}"]
    outputs:
      params: [{name: out, path: out}]
)yaml";

void SubPipelineRunTest::ExpectOnlyTheFailedItemsChainStops(const std::string& runs, const std::string& run_id) {
  Write("pipeline.yaml", std::string(kHead) + "metadata: {name: group-ratio}\nsteps:\n  - name: g\n    " + runs +
                             R"yaml(
    foreach: [0, 1, 2]
    minSuccessRatio: 0.6
    with: {n: "{{ item }}"}
  - name: after
    command: [python3, -c, "import os, sys; print(sys.argv[1], os.environ['SLUICE_FAILED_ITEMS'])",
              "{{ steps.g.outputs.params.out }}"]
)yaml");
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", run_id, "-j", "3"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("[after] [\"0\",\"2\"] {\"g/second\":[\"g[1]/second\"]}\n"), std::string::npos) << run.out;
  auto phases = Phases(Status(run_id));
  EXPECT_EQ(phases["g[1]/first"], "Failed");
  EXPECT_EQ(phases["g[1]/second"], "Omitted");
  EXPECT_EQ(phases["g[2]/second"], "Succeeded");
}

// A failed item of a group omits the rest of its own chain only; with the
// ratio met the fan-in reads the other items.
TEST_F(SubPipelineRunTest, MinSuccessRatioOverAGroupOmitsOnlyTheFailedItemsChain) {
  Write("chain.yaml", std::string(kHead) + "metadata: {name: chain}\nparams:\n  n: {type: int}\n" +
                          WithRoot(kRatioChainSteps, "params"));
  ExpectOnlyTheFailedItemsChainStops("pipeline: chain.yaml", "group-ratio");
}

TEST_F(SubPipelineRunTest, MinSuccessRatioOverAComponentGraphOmitsOnlyTheFailedItemsChain) {
  Write("components/chain.yaml", "apiVersion: sluice.dev/v1\nkind: Component\nmetadata: {name: chain}\n"
                                 "inputs:\n  n: {type: int}\n" + WithRoot(kRatioChainSteps, "inputs"));
  ExpectOnlyTheFailedItemsChainStops("uses: components/chain.yaml", "graph-ratio");
}

// `when:` on a step that runs a group decides for the whole group: false
// skips every inner step, and what waits on them; true runs them.
TEST_F(SubPipelineRunTest, WhenOnAGroupStepSkipsOrRunsTheWholeGroup) {
  Write("chain.yaml", std::string(kHead) + "metadata: {name: chain}\nparams:\n  n: {type: int}\n" +
                          WithRoot(kRatioChainSteps, "params"));
  Write("components/chain.yaml", "apiVersion: sluice.dev/v1\nkind: Component\nmetadata: {name: chain}\n"
                                 "inputs:\n  n: {type: int}\n" + WithRoot(kRatioChainSteps, "inputs"));
  Write("pipeline.yaml", std::string(kHead) + R"yaml(metadata: {name: group-when}
params:
  go: {type: bool, default: false}
steps:
  - name: sub
    pipeline: chain.yaml
    when: "{{ params.go }}"
    with: {n: 0}
  - name: graph
    uses: components/chain.yaml
    when: "{{ params.go }}"
    with: {n: 2}
  - name: after
    command: [python3, -c, "import sys; print(sys.argv[1:])", "{{ steps.sub.outputs.params.out }}",
              "{{ steps.graph.outputs.params.out }}"]
)yaml");
  Output skipped = Sluice({"run", "pipeline.yaml", "--run-id", "when-false"});
  ASSERT_EQ(skipped.exit_code, 0) << skipped.out << skipped.err;
  EXPECT_EQ(Phases(Status("when-false")), (std::map<std::string, std::string>{{"sub/first", "Skipped"},
                                                                               {"sub/second", "Skipped"},
                                                                               {"graph/first", "Skipped"},
                                                                               {"graph/second", "Skipped"},
                                                                               {"after", "Skipped"}}));
  Output ran = Sluice({"run", "pipeline.yaml", "--run-id", "when-true", "-p", "go=true"});
  ASSERT_EQ(ran.exit_code, 0) << ran.out << ran.err;
  EXPECT_NE(ran.out.find("[after] ['0', '2']\n"), std::string::npos) << ran.out;
  EXPECT_EQ(Phases(Status("when-true")), (std::map<std::string, std::string>{{"sub/first", "Succeeded"},
                                                                              {"sub/second", "Succeeded"},
                                                                              {"graph/first", "Succeeded"},
                                                                              {"graph/second", "Succeeded"},
                                                                              {"after", "Succeeded"}}));
}

// A secret param bound through `with:` stays secret inside a component
// graph, a sub-pipeline and a one-step component: their steps' logs show
// "***", and nothing the store records holds the value.
TEST_F(SubPipelineRunTest, ASecretBoundThroughWithStaysSecret) {
  const char* kPrint = R"yaml(    command: [python3, -c, "import sys; print('token is', sys.argv[1])", "{{ X.token }}"]
)yaml";
  std::string component = R"yaml(apiVersion: sluice.dev/v1
kind: Component
metadata: {name: use-token}
inputs:
  token: {type: string}
steps:
  - name: show
)yaml" + std::string(kPrint);
  component.replace(component.find("X.token"), 7, "inputs.token");
  std::string sub = std::string(kHead) + R"yaml(metadata: {name: use-token}
params:
  token: {type: string}
steps:
  - name: show
)yaml" + kPrint;
  sub.replace(sub.find("X.token"), 7, "params.token");
  std::string one_step = component.substr(0, component.find("steps:\n")) + "step:\n" +
                         component.substr(component.find("    command:")).substr(2);
  Write("components/use_token.yaml", component);
  Write("components/print_token.yaml", one_step);
  Write("use_token.yaml", sub);
  Write("pipeline.yaml", std::string(kHead) + R"yaml(metadata: {name: secret-with}
params:
  token: {type: string, secret: true}
steps:
  - name: graph
    uses: components/use_token.yaml
    with: {token: "{{ params.token }}"}
  - name: sub
    pipeline: use_token.yaml
    with: {token: "{{ params.token }}"}
  - name: one-step
    uses: components/print_token.yaml
    with: {token: "{{ params.token }}"}
)yaml");
  const std::string secret = "s3cr3t-t0ken-value";
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", "secret-with", "-p", "token=" + secret});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_EQ(run.out.find(secret), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("[graph/show] token is ***\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("[sub/show] token is ***\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("[one-step] token is ***\n"), std::string::npos) << run.out;
  for (const char* step : {"graph/show", "sub/show", "one-step"}) {
    Output logs = Sluice({"logs", "secret-with", step});
    EXPECT_EQ(logs.exit_code, 0) << logs.err;
    EXPECT_EQ(logs.out, "token is ***\n") << step;
  }
  Output shown = Sluice({"show", "secret-with", "-o", "json"});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_EQ(shown.out.find(secret), std::string::npos) << shown.out;
  // Nor any file of the store (the SQLite database, snapshots, logs).
  for (const auto& e : fs::recursive_directory_iterator(dir_ + "/.sluice")) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text.find(secret), std::string::npos) << e.path();
  }
}

}  // namespace
}  // namespace sluice
