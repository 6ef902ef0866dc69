// End-to-end tests of sluice's provenance commands (issue 3): cache hits and
// misses with `plan` explaining them, lineage both ways, reproduce flagging
// a non-deterministic step, checkout, diff and OpenLineage export validated
// with the official openlineage-python client. Real processes, real
// pipelines, a real SQLite store.


#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/sha256.h"
#include "engine/store/sqlite_store.h"
#include "tests/support/subprocess.h"

#ifndef SLUICE_BIN
#error "SLUICE_BIN must name the sluice binary"
#endif
#ifndef SLUICE_SOURCE_DIR
#error "SLUICE_SOURCE_DIR must name the source tree"
#endif

namespace sluice {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

using testutil::Output;
using testutil::ReadFile;
using testutil::RunProcess;

// prepare reads a raw file (a declared input) and writes a dataset; train
// turns it into a model with a seed; noise writes random bytes (a
// deliberately non-deterministic step).
constexpr char kPipeline[] = R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: lin
params:
  seed:
    type: int
    default: 1
steps:
  - name: prepare
    command: [sh, "{{ pipeline.dir }}/prepare.sh", "{{ inputs.raw }}"]
    code: [prepare.sh]
    inputs:
      raw: "{{ pipeline.dir }}/raw.csv"
    outputs:
      artifacts:
        - {name: dataset, path: data.csv, type: dataset}
  - name: train
    command: [sh, "{{ pipeline.dir }}/train.sh", "{{ inputs.data }}", "{{ params.seed }}"]
    code: [train.sh]
    inputs:
      data: "{{ steps.prepare.outputs.artifacts.dataset }}"
    outputs:
      artifacts:
        - {name: model, path: model.txt, type: model}
      metrics: metrics.json
  - name: noise
    depends: [prepare]
    command: [sh, -c, "head -c 16 /dev/urandom > noise.bin"]
    outputs:
      artifacts:
        - {name: noise, path: noise.bin}
)yaml";

class ProvenanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-prov-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    Write("pipeline.yaml", kPipeline);
    Write("prepare.sh", "tr a-z A-Z < \"$1\" > data.csv\n");
    Write("train.sh", "{ cat \"$1\"; echo \"seed=$2\"; } > model.txt\necho '{\"accuracy\": 0.5}' > metrics.json\n");
    Write("raw.csv", "a,b\n1,2\n");
  }
  void TearDown() override {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  void Write(const std::string& name, const std::string& text) { std::ofstream(dir_ + "/" + name) << text; }

  Output Sluice(std::vector<std::string> args) {
    args.insert(args.begin(), SLUICE_BIN);
    return RunProcess(std::move(args), dir_);
  }

  void RunOk(const std::string& run_id, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"run", "pipeline.yaml", "-q", "--run-id", run_id};
    args.insert(args.end(), extra.begin(), extra.end());
    Output o = Sluice(args);
    ASSERT_EQ(o.exit_code, 0) << o.out << o.err;
  }

  std::map<std::string, std::string> Phases(const std::string& run) {
    Output o = Sluice({"status", run, "--format", "json"});
    EXPECT_EQ(o.exit_code, 0) << o.err;
    std::map<std::string, std::string> out;
    Json j = Json::parse(o.out, nullptr, false);
    if (j.is_discarded()) return out;
    for (const auto& s : j["steps"]) out[s["instance"]] = s["phase"];
    return out;
  }

  std::string Digest(const std::string& name) { return "sha256:" + Sha256Hex(ReadFile(dir_ + "/" + name)); }

  std::string dir_;
};

std::string Short(const std::string& digest) { return digest.substr(0, 19); }

TEST_F(ProvenanceTest, UnchangedSecondRunIsAllCacheHitsWithLineageEvents) {
  RunOk("lin-1");
  // Before the second run, plan predicts every step a hit, and from where.
  Output plan = Sluice({"plan", "pipeline.yaml"});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_EQ(plan.out,
            "STEP     CACHE  WHY\n"
            "prepare  hit    reuses lin-1/prepare\n"
            "train    hit    reuses lin-1/train\n"
            "noise    hit    reuses lin-1/noise\n"
            "3 cached, 0 to run, 0 waiting on upstream steps\n");

  RunOk("lin-2");
  EXPECT_EQ(Phases("lin-2"), (std::map<std::string, std::string>{
                                 {"prepare", "Cached"}, {"train", "Cached"}, {"noise", "Cached"}}));
  // The cached execution is in lineage: it read the same dataset and wrote
  // the same model as the original.
  auto store = SqliteStore::Open(dir_ + "/.sluice");
  ASSERT_TRUE(store.has_value());
  auto execs = (*store)->ListExecutions("lin-2");
  ASSERT_TRUE(execs.has_value());
  const ExecutionRecord* train = nullptr;
  for (const auto& e : *execs)
    if (e.instance == "train") train = &e;
  ASSERT_NE(train, nullptr);
  EXPECT_EQ(train->outcome, "Cached");
  auto outs = (*store)->OutputsOf(train->id);
  ASSERT_TRUE(outs.has_value());
  ASSERT_EQ(outs->size(), 1u);
  EXPECT_EQ((*outs)[0].name, "model");
  EXPECT_EQ((*outs)[0].artifact.digest, (*store)->GetStep("lin-1", "train")->outputs[0].artifact.digest);
  auto ins = (*store)->InputsOf(train->id);
  ASSERT_TRUE(ins.has_value());
  ASSERT_EQ(ins->size(), 1u);
  EXPECT_EQ((*ins)[0].name, "data");
  EXPECT_EQ((*ins)[0].artifact.type, ArtifactType::kDataset);
}

TEST_F(ProvenanceTest, OneChangedInputByteIsAMissAndPlanSaysWhichInput) {
  RunOk("lin-1");
  const std::string before = Digest("raw.csv");
  Write("raw.csv", "a,b\n1,3\n");
  const std::string after = Digest("raw.csv");
  Output plan = Sluice({"plan", "pipeline.yaml"});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_EQ(plan.out,
            "STEP     CACHE  WHY\n"
            "prepare  run    input raw changed: " + Short(before) + " → " + Short(after) + "\n"
            "train    wait   upstream prepare will run, so its outputs are unknown\n"
            "noise    wait   upstream prepare will run, so its outputs are unknown\n"
            "0 cached, 1 to run, 2 waiting on upstream steps\n");
  RunOk("lin-2");
  // noise reads nothing of prepare's, so its key is unchanged: still a hit
  // (plan could not know that before prepare ran: "wait").
  EXPECT_EQ(Phases("lin-2"), (std::map<std::string, std::string>{
                                 {"prepare", "Succeeded"}, {"train", "Succeeded"}, {"noise", "Cached"}}));
}

TEST_F(ProvenanceTest, PlanNamesChangedParamsCodeAndNeverRanSteps) {
  Output fresh = Sluice({"plan", "pipeline.yaml"});
  ASSERT_EQ(fresh.exit_code, 0) << fresh.err;
  EXPECT_EQ(fresh.out,
            "STEP     CACHE  WHY\n"
            "prepare  run    never ran\n"
            "train    wait   upstream prepare will run, so its outputs are unknown\n"
            "noise    wait   upstream prepare will run, so its outputs are unknown\n"
            "0 cached, 1 to run, 2 waiting on upstream steps\n");
  RunOk("lin-1");
  Output param = Sluice({"plan", "pipeline.yaml", "-p", "seed=2"});
  ASSERT_EQ(param.exit_code, 0) << param.err;
  EXPECT_EQ(param.out,
            "STEP     CACHE  WHY\n"
            "prepare  hit    reuses lin-1/prepare\n"
            "train    run    param seed changed: 1 → 2\n"
            "noise    hit    reuses lin-1/noise\n"
            "2 cached, 1 to run, 0 waiting on upstream steps\n");
  const std::string old_code = Digest("train.sh");
  Write("train.sh", "{ cat \"$1\"; echo \"seed=$2\"; echo v2; } > model.txt\necho '{\"accuracy\": 0.5}' > metrics.json\n");
  Output code = Sluice({"plan", "pipeline.yaml", "--format", "json"});
  ASSERT_EQ(code.exit_code, 0) << code.err;
  Json j = Json::parse(code.out);
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[1], Json({{"step", "train"},
                        {"verdict", "run"},
                        {"reuse_from", ""},
                        {"reasons", {"code train.sh changed: " + Short(old_code) + " → " + Short(Digest("train.sh"))}}}));
}

TEST_F(ProvenanceTest, LineageBothWays) {
  RunOk("lin-1");
  auto store = SqliteStore::Open(dir_ + "/.sluice");
  ASSERT_TRUE(store.has_value());
  const std::string dataset = (*store)->GetStep("lin-1", "prepare")->outputs[0].artifact.digest;
  const std::string model = (*store)->GetStep("lin-1", "train")->outputs[0].artifact.digest;

  // Upstream of the model: train (params, code digest) read the dataset,
  // which prepare wrote from raw.csv.
  Output up = Sluice({"lineage", "lin-1/train/model", "--format", "json"});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  Json j = Json::parse(up.out);
  EXPECT_EQ(j["root"]["artifact"], model);
  std::set<std::string> digests;
  for (const auto& a : j["artifacts"]) digests.insert(a["digest"]);
  EXPECT_EQ(digests, (std::set<std::string>{model, dataset, Digest("raw.csv")}));
  std::map<std::string, Json> by_step;
  for (const auto& e : j["executions"]) by_step[e["step"]] = e;
  ASSERT_EQ(by_step.size(), 2u);
  EXPECT_EQ(by_step["train"]["snapshot"]["params"], Json({{"seed", 1}}));
  EXPECT_EQ(by_step["train"]["snapshot"]["code_files"], Json({{"train.sh", Digest("train.sh")}}));
  EXPECT_EQ(by_step["train"]["snapshot"]["inputs"], Json({{"data", dataset}}));
  EXPECT_EQ(by_step["prepare"]["snapshot"]["inputs"], Json({{"raw", Digest("raw.csv")}}));

  // The text tree names the same things.
  Output text = Sluice({"lineage", model.substr(7, 10)});  // a digest prefix, as git
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("seed=1"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(Short(dataset)), std::string::npos) << text.out;

  // Downstream of the dataset: train and its model (noise reads no input).
  Output down = Sluice({"lineage", "lin-1/prepare/dataset", "--downstream", "--format", "json"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  Json d = Json::parse(down.out);
  std::set<std::string> steps, arts;
  for (const auto& e : d["executions"]) steps.insert(e["step"]);
  for (const auto& a : d["artifacts"]) arts.insert(a["digest"]);
  EXPECT_EQ(steps, (std::set<std::string>{"train"}));
  EXPECT_TRUE(arts.count(model)) << down.out;

  Output dot = Sluice({"lineage", "lin-1", "--format", "dot"});
  ASSERT_EQ(dot.exit_code, 0) << dot.err;
  EXPECT_EQ(dot.out.rfind("digraph", 0), 0u) << dot.out;

  Output bad = Sluice({"lineage", "lin-1/nosuch/model"});
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
  Output none = Sluice({"lineage", "--deployed", "nosuch"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("no deployment of service 'nosuch'"), std::string::npos) << none.err;
}

TEST_F(ProvenanceTest, LineageDeployedFollowsTheServingModel) {
  RunOk("lin-1");
  auto store = SqliteStore::Open(dir_ + "/.sluice");
  ASSERT_TRUE(store.has_value());
  const std::string model = (*store)->GetStep("lin-1", "train")->outputs[0].artifact.digest;
  DeploymentRecord d;
  d.service = "scorer";
  d.namespace_ = "local";
  d.executor = "local";
  d.action = "deploy";
  d.version = "v1";
  d.model_digest = model;
  d.run_id = "lin-1";
  d.instance = "deploy";
  d.at = std::chrono::system_clock::now();
  ASSERT_TRUE((*store)->RecordDeployment(d).has_value());
  Output o = Sluice({"lineage", "--deployed", "scorer", "--format", "json"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  Json j = Json::parse(o.out);
  EXPECT_EQ(j["root"]["artifact"], model);
  EXPECT_EQ(j["deployment"]["service"], "scorer");
  std::set<std::string> steps;
  for (const auto& e : j["executions"]) steps.insert(e["step"]);
  EXPECT_EQ(steps, (std::set<std::string>{"train", "prepare"}));
  Output text = Sluice({"lineage", "--deployed", "scorer"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out.rfind("Service scorer (local, local) serves model " + model.substr(0, 19) + " at 100% traffic", 0),
            0u)
      << text.out;
}

TEST_F(ProvenanceTest, ReproduceFlagsTheNonDeterministicStep) {
  RunOk("lin-1");
  Output o = Sluice({"reproduce", "lin-1", "--run-id", "lin-1-r"});
  EXPECT_EQ(o.exit_code, 1) << o.out << o.err;
  auto store = SqliteStore::Open(dir_ + "/.sluice");
  ASSERT_TRUE(store.has_value());
  const std::string dataset = (*store)->GetStep("lin-1", "prepare")->outputs[0].artifact.digest;
  const std::string model = (*store)->GetStep("lin-1", "train")->outputs[0].artifact.digest;
  const std::string noise1 = (*store)->GetStep("lin-1", "noise")->outputs[0].artifact.digest;
  const std::string noise2 = (*store)->GetStep("lin-1-r", "noise")->outputs[0].artifact.digest;
  EXPECT_NE(noise1, noise2);
  EXPECT_EQ(o.out,
            "Reproducing run lin-1 as lin-1-r\n"
            "STEP     RESULT     DETAIL\n"
            "prepare  identical  dataset " + Short(dataset) + "\n"
            "train    identical  model " + Short(model) + "\n"
            "noise    DIFFERS    noise " + Short(noise1) + " → " + Short(noise2) + "\n"
            "Non-deterministic steps (outputs differ from lin-1): noise\n");
  auto run = (*store)->GetRun("lin-1-r");
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->resumed_from, "lin-1");
  EXPECT_EQ(run->phase, RunPhase::kSucceeded);
  EXPECT_EQ((*store)->GetStep("lin-1-r", "train")->inputs[0].artifact.digest, dataset);

  // Changed code: refused, with what to do.
  Write("train.sh", "echo changed > model.txt\n");
  Output refused = Sluice({"reproduce", "lin-1"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("sluice: error: cannot reproduce run lin-1: code file train.sh of step train "
                             "changed since the run"),
            std::string::npos)
      << refused.err;
}

TEST_F(ProvenanceTest, CheckoutMaterializesAStep) {
  RunOk("lin-1");
  Output o = Sluice({"checkout", "lin-1", "train", "debug"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(ReadFile(dir_ + "/debug/inputs/data"), "A,B\n1,2\n");
  EXPECT_EQ(ReadFile(dir_ + "/debug/outputs/model"), "A,B\n1,2\nseed=1\n");
  Json snap = Json::parse(ReadFile(dir_ + "/debug/snapshot.json"));
  EXPECT_EQ(snap["instance"], "train");
  EXPECT_EQ(snap["params"], Json({{"seed", 1}}));
  EXPECT_TRUE(fs::exists(dir_ + "/debug/step.log"));
  Output again = Sluice({"checkout", "lin-1", "train", "debug"});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.err.find("is not empty"), std::string::npos) << again.err;
}

TEST_F(ProvenanceTest, DiffShowsParamsOutputsAndMetrics) {
  RunOk("lin-1");
  RunOk("lin-2", {"-p", "seed=2"});
  Output o = Sluice({"diff", "lin-1", "lin-2"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  auto store = SqliteStore::Open(dir_ + "/.sluice");
  ASSERT_TRUE(store.has_value());
  const std::string m1 = (*store)->GetStep("lin-1", "train")->outputs[0].artifact.digest;
  const std::string m2 = (*store)->GetStep("lin-2", "train")->outputs[0].artifact.digest;
  EXPECT_NE(o.out.find("params:\n  seed: 1 → 2\n"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("  train: param seed changed: 1 → 2\n"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("  train: output model: " + m1.substr(0, 19) + " → " + m2.substr(0, 19) + "\n"),
            std::string::npos)
      << o.out;
  EXPECT_NE(o.out.find("  prepare: phase Succeeded → Cached\n"), std::string::npos) << o.out;
  Output same = Sluice({"diff", "lin-1", "lin-1"});
  EXPECT_EQ(same.exit_code, 0);
  EXPECT_NE(same.out.find("no differences\n"), std::string::npos) << same.out;
}

TEST_F(ProvenanceTest, OpenLineageEventsValidateWithTheOfficialClient) {
  // Exported when the run ends (--openlineage), and on demand.
  RunOk("lin-1", {"--openlineage", "run-events.jsonl"});
  Output o = Sluice({"export", "openlineage", "lin-1", "--to", "events.jsonl"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(ReadFile(dir_ + "/events.jsonl"), ReadFile(dir_ + "/run-events.jsonl"));
  // run START, START+COMPLETE per step (3), run COMPLETE.
  std::istringstream lines(ReadFile(dir_ + "/events.jsonl"));
  std::string line;
  std::vector<Json> events;
  while (std::getline(lines, line)) events.push_back(Json::parse(line));
  ASSERT_EQ(events.size(), 8u);
  EXPECT_EQ(events.front()["eventType"], "START");
  EXPECT_EQ(events.back()["eventType"], "COMPLETE");
  EXPECT_EQ(events.back()["job"]["name"], "lin");

  Output v = RunProcess({"python3", std::string(SLUICE_SOURCE_DIR) + "/tests/cli/validate_openlineage.py",
                         dir_ + "/events.jsonl"},
                        dir_);
  if (v.exit_code == 77) GTEST_SKIP() << "openlineage-python cannot be imported: " << v.out;
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_EQ(v.out, "8 events, 0 problems\n");
}

}  // namespace
}  // namespace sluice
