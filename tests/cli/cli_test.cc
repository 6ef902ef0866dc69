// End-to-end tests of the `sluice` binary: real processes, real pipelines
// written in YAML into a temporary directory, a real SQLite store.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/store/sqlite_store.h"
#include "tests/support/free_port.h"
#include "tests/support/subprocess.h"

#ifndef SLUICE_BIN
#error "SLUICE_BIN must name the sluice binary"
#endif

namespace sluice {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

using testutil::FreePort;
using testutil::Output;
using testutil::ReadFile;

// A sluice process started in the background in `cwd`.
testutil::Subprocess Process(const std::vector<std::string>& args, const std::string& cwd) {
  std::vector<std::string> argv = {SLUICE_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return testutil::Subprocess(std::move(argv), cwd);
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-cli-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  Output Sluice(const std::vector<std::string>& args) { return Process(args, dir_).Wait(); }

  Json StatusJson(const std::string& run) {
    Output o = Sluice({"status", run, "--format", "json"});
    EXPECT_EQ(o.exit_code, 0) << o.err;
    Json j = Json::parse(o.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << o.out;
    return j;
  }

  // Polls `status` (bounded) until `instance` of `run` is in `phase`.
  bool WaitForPhase(const std::string& run, const std::string& instance, const std::string& phase) {
    auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline) {
      Output st = Sluice({"status", run, "--format", "json"});
      if (st.exit_code == 0) {
        Json j = Json::parse(st.out, nullptr, false);
        if (!j.is_discarded() && Phases(j)[instance] == phase) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  static std::map<std::string, std::string> Phases(const Json& status) {
    std::map<std::string, std::string> out;
    for (const auto& s : status["steps"]) out[s["instance"]] = s["phase"];
    return out;
  }

  std::string dir_;
};

constexpr char kTwoSteps[] = R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: demo
params:
  greeting:
    type: string
    default: hello
  count:
    type: int
    default: 2
steps:
  - name: hello
    command: [sh, -c, "echo {{ params.greeting }}; echo to-stderr >&2"]
  - name: count
    depends: [hello]
    command: [python3, -c, "print(sum(range({{ params.count }})))"]
)yaml";

TEST_F(CliTest, RunSucceedsStreamsLogsAndStatusShowsPhases) {
  Write("pipeline.yaml", kTwoSteps);
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", "demo-1", "-p", "count=5"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("sluice: run demo-1 of demo (store " + dir_ + "/.sluice)\n"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("[hello] hello\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("[hello] to-stderr\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("[count] 10\n"), std::string::npos) << run.out;
  // Each step's lines come before its "done" line.
  EXPECT_LT(run.out.find("[count] 10\n"), run.out.find(" count  Succeeded"));
  // The summary table.
  EXPECT_NE(run.out.find("\nSTEP   PHASE      ATTEMPTS  DURATION  EXIT\n"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("run demo-1 Succeeded in "), std::string::npos);

  Json status = StatusJson("demo-1");
  EXPECT_EQ(status["run"]["phase"], "Succeeded");
  EXPECT_EQ(status["run"]["pipeline"], "demo");
  EXPECT_EQ(status["run"]["params"], Json({{"greeting", "hello"}, {"count", 5}}));
  EXPECT_EQ(Phases(status),
            (std::map<std::string, std::string>{{"hello", "Succeeded"}, {"count", "Succeeded"}}));
  for (const auto& s : status["steps"]) {
    EXPECT_EQ(s["attempts"], 1);
    EXPECT_EQ(s["exit_code"], 0);
  }

  // Text status: the header, then one row per step in start order.
  Output text = Sluice({"status", "demo"});  // a unique prefix
  ASSERT_EQ(text.exit_code, 0) << text.err;
  std::istringstream lines(text.out);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "Run:       demo-1");
  std::getline(lines, line);
  EXPECT_EQ(line, "Pipeline:  demo (" + dir_ + "/pipeline.yaml)");
  std::getline(lines, line);
  EXPECT_EQ(line, "Phase:     Succeeded");
  std::vector<std::vector<std::string>> rows;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::vector<std::string> row;
    for (std::string w; words >> w;) row.push_back(w);
    if (!row.empty() && (row[0] == "STEP" || row[0] == "hello" || row[0] == "count")) {
      rows.push_back(row);
    }
  }
  ASSERT_EQ(rows.size(), 3u) << text.out;
  EXPECT_EQ(rows[0], (std::vector<std::string>{"STEP", "PHASE", "ATTEMPTS", "DURATION", "EXIT",
                                               "MESSAGE"}));
  EXPECT_EQ(rows[1][0], "hello");
  EXPECT_EQ(rows[1][1], "Succeeded");
  EXPECT_EQ(rows[1][4], "0");
  EXPECT_EQ(rows[2][0], "count");

  // Logs of a finished step, exactly what it wrote.
  Output logs = Sluice({"logs", "demo-1", "hello"});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "hello\nto-stderr\n");
  Output follow = Sluice({"logs", "demo-1", "count", "-f"});
  ASSERT_EQ(follow.exit_code, 0) << follow.err;
  EXPECT_EQ(follow.out, "10\n");
  Output latest = Sluice({"logs", "latest", "hello"});
  EXPECT_EQ(latest.out, "hello\nto-stderr\n");
  Output first = Sluice({"logs", "demo-1", "count", "--attempt", "1"});
  EXPECT_EQ(first.out, "10\n");

  // runs lists it.
  Output runs = Sluice({"runs", "--format", "json"});
  ASSERT_EQ(runs.exit_code, 0) << runs.err;
  Json list = Json::parse(runs.out);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], "demo-1");
  Output none = Sluice({"runs", "--status", "failed", "--format", "json"});
  EXPECT_EQ(Json::parse(none.out), Json::array());
}

TEST_F(CliTest, FailingStepExitsOneAndOmitsItsDependents) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: broken
steps:
  - name: fails
    command: [sh, -c, "echo about to fail; exit 3"]
  - name: after
    depends: [fails]
    command: ["true"]
)yaml");
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", "broken-1"});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_NE(run.out.find("[fails] about to fail\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("run broken-1 Failed in "), std::string::npos) << run.out;
  Json status = StatusJson("broken-1");
  EXPECT_EQ(status["run"]["phase"], "Failed");
  EXPECT_EQ(Phases(status),
            (std::map<std::string, std::string>{{"fails", "Failed"}, {"after", "Omitted"}}));
  for (const auto& s : status["steps"]) {
    if (s["instance"] == "fails") EXPECT_EQ(s["exit_code"], 3);
  }
}

TEST_F(CliTest, JunitReportListsEveryStepWithItsOutcome) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: ci
steps:
  - name: ok
    command: ["true"]
  - name: bad
    depends: [ok]
    command: [sh, -c, "exit 4"]
)yaml");
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", "ci-1", "--wait", "--junit", "report.xml", "-q"});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  std::string xml = ReadFile(dir_ + "/report.xml");
  EXPECT_NE(xml.find(R"(<testsuite name="ci" id="ci-1" tests="2" failures="1" errors="0" skipped="0")"),
            std::string::npos) << xml;
  EXPECT_NE(xml.find(R"(<testcase classname="ci" name="ok")"), std::string::npos) << xml;
  EXPECT_NE(xml.find(R"(<failure message="exited with code 4; exit code 4" type="Failed">)"), std::string::npos)
      << xml;
}

TEST_F(CliTest, LintIsCleanOrReportsEveryErrorWithItsLocation) {
  Write("good.yaml", kTwoSteps);
  Output good = Sluice({"lint", "good.yaml"});
  EXPECT_EQ(good.exit_code, 0) << good.out << good.err;
  EXPECT_EQ(good.out, "");

  Write("bad.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: bad
steps:
  - name: a
    comand: [echo, hi]
  - name: b
    command: [echo, "{{ steps.nope.outputs.params.x }}"]
)yaml");
  Output bad = Sluice({"lint", "good.yaml", "bad.yaml"});
  EXPECT_EQ(bad.exit_code, 1);
  std::vector<std::string> lines;
  std::istringstream in(bad.out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_GE(lines.size(), 2u) << bad.out;
  EXPECT_EQ(lines[0].rfind("bad.yaml:7:5: error: ", 0), 0u) << bad.out;
  EXPECT_NE(lines[0].find("did you mean 'command'?"), std::string::npos) << bad.out;
  bool found_ref = false;
  for (const auto& l : lines) {
    if (l.rfind("bad.yaml:9:", 0) == 0 && l.find("nope") != std::string::npos) found_ref = true;
  }
  EXPECT_TRUE(found_ref) << bad.out;

  Output json = Sluice({"lint", "bad.yaml", "--format", "json"});
  EXPECT_EQ(json.exit_code, 1);
  Json diags = Json::parse(json.out);
  ASSERT_GE(diags.size(), 2u);
  EXPECT_EQ(diags[0]["file"], "bad.yaml");
  EXPECT_EQ(diags[0]["line"], 7);
  EXPECT_EQ(diags[0]["column"], 5);
  EXPECT_EQ(diags[0]["severity"], "error");
}

// The pipeline's `artifacts:` key: linted with its location; the store it
// names is opened (and its endpoint reached) before any step runs; compile
// needs no credentials for it but a URL endpoint.
TEST_F(CliTest, PipelineArtifactStoreIsLintedAndOpenedBeforeAnyStep) {
  Write("bad.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: bad}
artifacts: s3://Team/a
steps:
  - name: a
    command: [echo, hi]
)yaml");
  Output lint = Sluice({"lint", "bad.yaml"});
  EXPECT_EQ(lint.exit_code, 1);
  EXPECT_EQ(lint.out,
            "bad.yaml:4:12: error: invalid artifact store: 's3://Team/a': bucket name 'Team' is not valid (3 to 63 "
            "lower-case letters, digits, '-' and '.')\n");

  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: keyed}
artifacts: s3://ml-artifacts/team-a
steps:
  - name: a
    command: [python3, -c, "open('ran', 'w').write('')"]
    outputs: {artifacts: [{name: ran, path: ran}]}
)yaml");
  ::setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  const std::string gone = "http://127.0.0.1:" + std::to_string(testutil::FreePort());
  Output run = Sluice({"run", "pipeline.yaml", "--artifacts-endpoint", gone});
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  EXPECT_EQ(run.exit_code, 3);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "sluice: error: cannot reach the S3 endpoint " + gone +
                         ": Couldn't connect to server (after 4 attempts)\n");
  EXPECT_FALSE(fs::exists(dir_ + "/ran"));

  Output compiled = Sluice({"compile", "pipeline.yaml", "--artifacts-endpoint", "minio:9000"});
  EXPECT_EQ(compiled.exit_code, 2);
  EXPECT_EQ(compiled.err, "sluice: error: --artifacts: S3 endpoint 'minio:9000' is not an http:// or https:// URL\n");
  compiled = Sluice({"compile", "pipeline.yaml", "--image", "python:3.11-slim", "--artifacts-endpoint",
                     "https://minio.example:9000/"});
  EXPECT_EQ(compiled.exit_code, 0) << compiled.err;
  EXPECT_NE(compiled.out.find("        endpoint: minio.example:9000\n"), std::string::npos) << compiled.out;
  EXPECT_NE(compiled.out.find("        insecure: false\n"), std::string::npos) << compiled.out;
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Sluice({"lint"}).exit_code, 2);
  EXPECT_EQ(Sluice({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(Sluice({"lint", "x.yaml", "--format", "xml"}).exit_code, 2);
  Output missing = Sluice({"lint", "missing.yaml"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.out.rfind("missing.yaml", 0), 0u) << missing.out;
}

TEST_F(CliTest, KubernetesRunThatPassesFilesNeedsAWayBetweenPods) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: handoff
steps:
  - name: make
    image: python:3.11-slim
    command: [python3, -c, "open('n.txt', 'w').write('3')"]
    outputs:
      params:
        - {name: n, path: n.txt}
  - name: use
    image: python:3.11-slim
    command: [echo, "{{ steps.make.outputs.params.n }}"]
)yaml");
  // Refused before the cluster is asked anything (no kubeconfig here).
  Output run = Sluice({"run", "pipeline.yaml", "--executor", "kubernetes", "--kubeconfig", dir_ + "/none"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err,
            "sluice: error: step 'make' runs on Kubernetes and passes files (its output parameter 'n'), which need a "
            "way between pods and this host: give --artifacts s3://BUCKET/PREFIX (object storage) or --workspace-pvc "
            "CLAIM (a ReadWriteMany volume in every pod); see docs/kubernetes.md\n");
  Output both = Sluice({"run", "pipeline.yaml", "--executor", "kubernetes", "--dry-run", "--artifacts",
                        "s3://ml/team", "--workspace-pvc", "sluice-artifacts"});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_EQ(both.err,
            "sluice: error: --artifacts s3://ml/team and --workspace-pvc are two ways to move files between pods; "
            "give one\n");
}

TEST_F(CliTest, HelpWorksForEveryCommand) {
  for (const char* cmd : {"lint", "run", "status", "logs", "graph", "runs", "show", "resume", "rerun"}) {
    Output help = Sluice({cmd, "--help"});
    EXPECT_EQ(help.exit_code, 0) << cmd;
    EXPECT_NE(help.out.find("Usage:"), std::string::npos) << cmd << ": " << help.out;
  }
  Output top = Sluice({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_NE(top.out.find("Exit codes:"), std::string::npos);
}

TEST_F(CliTest, BadParamValueIsAUsageErrorAndNothingRuns) {
  Write("pipeline.yaml", kTwoSteps);
  Output run = Sluice({"run", "pipeline.yaml", "-p", "count=ten"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err, "sluice: error: parameter 'count' expects int, got 'ten'\n");
  Output unknown = Sluice({"run", "pipeline.yaml", "-p", "cuont=3"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("did you mean 'count'?"), std::string::npos) << unknown.err;
  Output malformed = Sluice({"run", "pipeline.yaml", "-p", "count"});
  EXPECT_EQ(malformed.exit_code, 2);
  EXPECT_EQ(malformed.err, "sluice: error: -p expects name=value, got 'count'\n");
  EXPECT_FALSE(fs::exists(dir_ + "/.sluice"));  // nothing ran, no store was made
}

// A run id names <store>/runs/<id>: one that could climb out of the store
// (or is not one path component) is a usage error, before anything runs.
TEST_F(CliTest, RunIdThatIsNotAValidIdIsAUsageErrorAndNothingIsCreated) {
  fs::create_directories(dir_ + "/work");
  Write("work/pipeline.yaml", kTwoSteps);
  Output run = Process({"run", "pipeline.yaml", "--run-id", "../../victim"}, dir_ + "/work").Wait();
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err,
            "sluice: error: --run-id: invalid run id '../../victim': a run id is 1-128 characters "
            "from A-Z a-z 0-9 . _ -, starts with a letter or digit and has no '..'\n");
  EXPECT_FALSE(fs::exists(dir_ + "/victim"));
  EXPECT_FALSE(fs::exists(fs::path(dir_).parent_path() / "victim"));
  EXPECT_FALSE(fs::exists(dir_ + "/work/.sluice"));  // nothing ran, no store was made
  Output slash = Sluice({"run", "pipeline.yaml", "--run-id", "a/b"});
  EXPECT_EQ(slash.exit_code, 2);
  EXPECT_NE(slash.err.find("invalid run id 'a/b'"), std::string::npos) << slash.err;
  Output long_id = Sluice({"run", "pipeline.yaml", "--run-id", std::string(5000, 'a')});
  EXPECT_EQ(long_id.exit_code, 2);
  EXPECT_NE(long_id.err.find("invalid run id '" + std::string(40, 'a') + "... (5000 characters)'"),
            std::string::npos)
      << long_id.err;
  Output rerun = Sluice({"rerun", "nope", "--from", "a", "--run-id", "../x"});
  EXPECT_EQ(rerun.exit_code, 2);
  EXPECT_NE(rerun.err.find("--run-id: invalid run id '../x'"), std::string::npos) << rerun.err;
}

TEST_F(CliTest, InvalidPipelineIsNotRun) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: cyclic
steps:
  - name: a
    depends: [b]
    command: ["true"]
  - name: b
    depends: [a]
    command: ["true"]
)yaml");
  Output run = Sluice({"run", "pipeline.yaml"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("dependency cycle: a -> b -> a"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("nothing was run"), std::string::npos) << run.err;
}

TEST_F(CliTest, UnknownRunAndMissingStoreAreUsageErrors) {
  Output no_store = Sluice({"status", "x", "--store", dir_ + "/nowhere"});
  EXPECT_EQ(no_store.exit_code, 2);
  EXPECT_EQ(no_store.err, "sluice: error: no sluice store at " + dir_ +
                              "/nowhere (run a pipeline there first, or point --store at an "
                              "existing store)\n");
  Write("pipeline.yaml", kTwoSteps);
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "demo-1", "-q"}).exit_code, 0);
  Output unknown = Sluice({"status", "zzz"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_EQ(unknown.err,
            "sluice: error: no run 'zzz' in this store (`sluice runs` lists them)\n");
  Output no_step = Sluice({"logs", "demo-1", "nope"});
  EXPECT_EQ(no_step.exit_code, 2);
  EXPECT_EQ(no_step.err, "sluice: error: run demo-1 has no step instance 'nope'\n");
}

TEST_F(CliTest, GraphPrintsDotAndMermaid) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: diamond
steps:
  - name: a
    command: ["true"]
  - name: b
    depends: [a]
    command: ["true"]
  - name: c
    depends: [a]
    command: ["true"]
  - name: d
    depends: [b, c]
    command: ["true"]
)yaml");
  Output dot = Sluice({"graph", "pipeline.yaml"});
  ASSERT_EQ(dot.exit_code, 0) << dot.err;
  EXPECT_EQ(dot.out, "digraph \"diamond\" {\n"
                     "  rankdir=LR;\n"
                     "  node [shape=box];\n"
                     "  \"a\" [label=\"a\ncontainer\"];\n"
                     "  \"b\" [label=\"b\ncontainer\"];\n"
                     "  \"c\" [label=\"c\ncontainer\"];\n"
                     "  \"d\" [label=\"d\ncontainer\"];\n"
                     "  \"a\" -> \"b\";\n"
                     "  \"a\" -> \"c\";\n"
                     "  \"b\" -> \"d\";\n"
                     "  \"c\" -> \"d\";\n"
                     "}\n");
  Output mermaid = Sluice({"graph", "pipeline.yaml", "--format", "mermaid"});
  ASSERT_EQ(mermaid.exit_code, 0) << mermaid.err;
  EXPECT_EQ(mermaid.out, "flowchart LR\n"
                         "  s0[\"a<br/>container\"]\n"
                         "  s1[\"b<br/>container\"]\n"
                         "  s2[\"c<br/>container\"]\n"
                         "  s3[\"d<br/>container\"]\n"
                         "  s0 --> s1\n"
                         "  s0 --> s2\n"
                         "  s1 --> s3\n"
                         "  s2 --> s3\n");
}

// Ctrl-C while a step runs: the step is cancelled, the run is recorded
// Cancelled, sluice exits 130 and the store is sound.
TEST_F(CliTest, InterruptCancelsTheRunningStep) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: sleepy
steps:
  - name: nap
    command: [sleep, "300"]
  - name: later
    depends: [nap]
    command: ["true"]
)yaml");
  testutil::Subprocess run = Process({"run", "pipeline.yaml", "--run-id", "sleepy-1"}, dir_);
  // Wait (bounded) until the store says the step is running.
  auto deadline = Clock::now() + std::chrono::seconds(60);
  bool running = false;
  while (!running && Clock::now() < deadline) {
    Output st = Sluice({"status", "sleepy-1", "--format", "json"});
    if (st.exit_code == 0) {
      Json j = Json::parse(st.out, nullptr, false);
      running = !j.is_discarded() && Phases(j)["nap"] == "Running";
    }
    if (!running) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(running) << "step never reached Running";
  ASSERT_EQ(::kill(run.pid(), SIGINT), 0);
  Output out = run.Wait(std::chrono::seconds(60));
  EXPECT_EQ(out.exit_code, 130) << out.out << out.err;
  EXPECT_NE(out.err.find("interrupted: cancelling running steps"), std::string::npos) << out.err;

  Json status = StatusJson("sleepy-1");
  EXPECT_EQ(status["run"]["phase"], "Cancelled");
  EXPECT_EQ(Phases(status),
            (std::map<std::string, std::string>{{"nap", "Cancelled"}, {"later", "Omitted"}}));
  auto store = SqliteStore::Open(dir_ + "/.sluice");
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  EXPECT_EQ((*store)->IntegrityCheck().value(), "ok");
}

// logs -f streams while the step runs and returns when it ends.
TEST_F(CliTest, LogsFollowStreamsUntilTheStepEnds) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: talk
steps:
  - name: talk
    command: [sh, -c, "echo one; while [ ! -f '{{ pipeline.dir }}/go' ]; do sleep 0.05; done; echo two"]
)yaml");
  testutil::Subprocess run = Process({"run", "pipeline.yaml", "--run-id", "talk-1"}, dir_);
  ASSERT_TRUE(WaitForPhase("talk-1", "talk", "Running"));
  testutil::Subprocess follow = Process({"logs", "talk-1", "talk", "-f"}, dir_);
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (follow.OutSoFar() != "one\n" && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(follow.OutSoFar(), "one\n");  // streamed before the step ended
  Write("go", "");
  Output logs = follow.Wait(std::chrono::seconds(60));
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "one\ntwo\n");
  EXPECT_EQ(run.Wait().exit_code, 0);
}

constexpr char kFlaky[] = R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: flaky
steps:
  - name: first
    command: [sh, -c, "echo first"]
  - name: second
    depends: [first]
    command: [sh, -c, "test -f '{{ pipeline.dir }}/ok' && echo fixed"]
)yaml";

TEST_F(CliTest, ResumeRunsOnlyWhatDidNotSucceed) {
  Write("pipeline.yaml", kFlaky);
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "flaky-1"}).exit_code, 1);
  Write("ok", "");
  Output resumed = Sluice({"resume", "flaky-1"});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_NE(resumed.out.find("[second] fixed\n"), std::string::npos) << resumed.out;
  Json status = StatusJson("flaky-1");
  EXPECT_EQ(status["run"]["phase"], "Succeeded");
  for (const auto& s : status["steps"]) {
    if (s["instance"] == "first") EXPECT_EQ(s["attempts"], 1);   // kept, not run again
    if (s["instance"] == "second") EXPECT_EQ(s["attempts"], 2);  // attempts continue
  }
}

TEST_F(CliTest, RerunFromAStepReusesUpstreamOutputs) {
  Write("pipeline.yaml", kFlaky);
  Write("ok", "");
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "flaky-1"}).exit_code, 0);
  // --no-cache: the runner would otherwise let `second` hit the cache of
  // flaky-1 (its key did not change), and nothing would run again.
  Output rerun =
      Sluice({"rerun", "flaky-1", "--from", "second", "--run-id", "flaky-2", "--no-cache"});
  EXPECT_EQ(rerun.exit_code, 0) << rerun.out << rerun.err;
  Json status = StatusJson("flaky-2");
  EXPECT_EQ(status["run"]["resumed_from"], "flaky-1");
  EXPECT_EQ(Phases(status),
            (std::map<std::string, std::string>{{"first", "Cached"}, {"second", "Succeeded"}}));
  for (const auto& s : status["steps"]) {
    if (s["instance"] == "first") EXPECT_EQ(s["cached_from"], "flaky-1/first");
  }
  Output bad = Sluice({"rerun", "flaky-1", "--from", "nope"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.err, "sluice: error: --from: pipeline flaky has no step 'nope'\n");
}

// kill -9 of sluice in the middle of a run: the store stays sound and the
// run can be resumed to success.
TEST_F(CliTest, ResumeAfterKillNine) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: crashy
steps:
  - name: first
    command: [sh, -c, "echo first"]
  - name: wait
    depends: [first]
    command: [sh, -c, "while [ ! -f '{{ pipeline.dir }}/go' ]; do sleep 0.05; done; echo went"]
)yaml");
  testutil::Subprocess run = Process({"run", "pipeline.yaml", "--run-id", "crashy-1"}, dir_);
  ASSERT_TRUE(WaitForPhase("crashy-1", "wait", "Running"));
  ASSERT_EQ(::kill(run.pid(), SIGKILL), 0);
  EXPECT_EQ(run.Wait().exit_code, 128 + SIGKILL);
  Write("go", "");  // lets the orphaned step process end too
  {
    auto store = SqliteStore::Open(dir_ + "/.sluice");
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    EXPECT_EQ((*store)->IntegrityCheck().value(), "ok");
    EXPECT_EQ((*store)->GetStep("crashy-1", "first")->phase, NodePhase::kSucceeded);
  }
  Output resumed = Sluice({"resume", "crashy-1"});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  Json status = StatusJson("crashy-1");
  EXPECT_EQ(status["run"]["phase"], "Succeeded");
  EXPECT_EQ(Phases(status),
            (std::map<std::string, std::string>{{"first", "Succeeded"}, {"wait", "Succeeded"}}));
  for (const auto& s : status["steps"]) {
    if (s["instance"] == "first") EXPECT_EQ(s["attempts"], 1);
  }
}

// Waits (bounded) until `process` has written `text` to stderr.
bool WaitForStderr(testutil::Subprocess& process, const std::string& text) {
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    if (process.ErrSoFar().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// A main step that runs until the file `go` exists, and a finally step that
// prints what it sees as run.status.
constexpr char kWithFinally[] = R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: tidy
steps:
  - name: work
    command: [sh, -c, "while [ ! -f '{{ pipeline.dir }}/go' ]; do sleep 0.05; done"]
  - name: after
    depends: [work]
    command: ["true"]
finally:
  - name: report
    command: [sh, -c, "echo run.status={{ run.status }}"]
)yaml";

// The first SIGTERM (what `sluice cancel` and CI runners send) stops the
// steps; the finally steps still run and see run.status == Cancelled.
TEST_F(CliTest, TermStopsTheStepsAndStillRunsFinallySteps) {
  Write("pipeline.yaml", kWithFinally);
  testutil::Subprocess run = Process({"run", "pipeline.yaml", "--run-id", "tidy-1"}, dir_);
  ASSERT_TRUE(WaitForPhase("tidy-1", "work", "Running"));
  ASSERT_EQ(::kill(run.pid(), SIGTERM), 0);
  Output out = run.Wait(std::chrono::seconds(60));
  EXPECT_EQ(out.exit_code, 130) << out.out << out.err;
  EXPECT_EQ(out.err,
            "\nsluice: terminated: cancelling running steps; finally steps still run (Ctrl-C again "
            "to kill everything now)\n");
  EXPECT_NE(out.out.find("[report] run.status=Cancelled\n"), std::string::npos) << out.out;
  Json status = StatusJson("tidy-1");
  EXPECT_EQ(status["run"]["phase"], "Cancelled");
  EXPECT_EQ(Phases(status), (std::map<std::string, std::string>{
                                {"work", "Cancelled"}, {"after", "Omitted"}, {"report", "Succeeded"}}));
  Output log = Sluice({"logs", "tidy-1", "report"});
  EXPECT_EQ(log.out, "run.status=Cancelled\n");
}

// A second Ctrl-C terminates: running steps are killed at once and the
// finally steps do not run.
TEST_F(CliTest, SecondInterruptTerminatesWithoutFinallySteps) {
  Write("pipeline.yaml", std::string(kWithFinally).replace(
                             std::string(kWithFinally).find("while"), 0, "trap '' TERM; "));
  testutil::Subprocess run = Process({"run", "pipeline.yaml", "--run-id", "tidy-2"}, dir_);
  ASSERT_TRUE(WaitForPhase("tidy-2", "work", "Running"));
  ASSERT_EQ(::kill(run.pid(), SIGINT), 0);
  ASSERT_TRUE(WaitForStderr(run, "finally steps still run"));
  ASSERT_EQ(::kill(run.pid(), SIGINT), 0);  // `work` ignores SIGTERM: it still runs
  Output out = run.Wait(std::chrono::seconds(60));
  EXPECT_EQ(out.exit_code, 130) << out.out << out.err;
  EXPECT_EQ(out.err,
            "\nsluice: interrupted: cancelling running steps; finally steps still run (Ctrl-C again "
            "to kill everything now)\nsluice: killing running steps; finally steps do not run\n");
  Json status = StatusJson("tidy-2");
  EXPECT_EQ(status["run"]["phase"], "Cancelled");
  EXPECT_EQ(Phases(status), (std::map<std::string, std::string>{
                                {"work", "Cancelled"}, {"after", "Omitted"}, {"report", "Omitted"}}));
}

// `sluice cancel` runs the finally steps; `sluice cancel --now` does not.
TEST_F(CliTest, CancelRunsFinallyStepsAndCancelNowDoesNot) {
  Write("pipeline.yaml", kWithFinally);
  for (const std::string id : {"tidy-3", "tidy-4"}) {
    const bool now = id == "tidy-4";
    testutil::Subprocess run = Process({"run", "pipeline.yaml", "--run-id", id}, dir_);
    ASSERT_TRUE(WaitForPhase(id, "work", "Running"));
    std::vector<std::string> args = {"cancel", id};
    if (now) args.push_back("--now");
    Output cancel = Sluice(args);
    EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
    EXPECT_EQ(cancel.out, "sluice: cancelling run " + id + ": asked sluice process " +
                              std::to_string(run.pid()) +
                              (now ? " to stop now, without finally steps (SIGUSR2)\n"
                                   : " to stop (SIGTERM); its finally steps still run\n") +
                              "run " + id + " Cancelled\n");
    Output out = run.Wait(std::chrono::seconds(60));
    EXPECT_EQ(out.exit_code, 130) << out.out << out.err;
    Json status = StatusJson(id);
    EXPECT_EQ(Phases(status)["report"], now ? "Omitted" : "Succeeded") << id;
    EXPECT_EQ(Phases(status)["work"], "Cancelled") << id;
  }
}

// A resume keeps the run's --no-cache: it takes no hits from older runs.
TEST_F(CliTest, ResumeOfANoCacheRunTakesNoCacheHits) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: keep
steps:
  - name: first
    command: [sh, -c, "echo one > one.txt"]
    outputs:
      params: [{name: one, path: one.txt}]
  - name: second
    depends: [first]
    command: [sh, -c, "test -f '{{ pipeline.dir }}/ok' && echo two > two.txt"]
    outputs:
      params: [{name: two, path: two.txt}]
)yaml");
  Write("ok", "");
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "keep-1"}).exit_code, 0);
  fs::remove(dir_ + "/ok");
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "keep-2", "--no-cache"}).exit_code, 1);
  Write("ok", "");
  Output resumed = Sluice({"resume", "keep-2"});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  Json status = StatusJson("keep-2");
  EXPECT_EQ(Phases(status),
            (std::map<std::string, std::string>{{"first", "Succeeded"}, {"second", "Succeeded"}}));
  for (const auto& s : status["steps"]) {
    EXPECT_EQ(s["cached_from"], "") << s.dump();
    if (s["instance"] == "second") EXPECT_EQ(s["attempts"], 2);
  }
}

// `logs` of a cache hit prints the log of the attempt it reused, and says
// so; -f on an ended step returns at once with the same.
TEST_F(CliTest, LogsOfACachedStepPrintTheReusedLog) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: hit
steps:
  - name: make
    command: [sh, -c, "echo made it; echo x > x.txt"]
    outputs:
      params: [{name: x, path: x.txt}]
)yaml");
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "hit-1"}).exit_code, 0);
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "hit-2"}).exit_code, 0);
  ASSERT_EQ(Phases(StatusJson("hit-2"))["make"], "Cached");
  for (const bool follow : {false, true}) {
    std::vector<std::string> args = {"logs", "hit-2", "make"};
    if (follow) args.push_back("-f");
    Output logs = Sluice(args);
    EXPECT_EQ(logs.exit_code, 0) << logs.err;
    EXPECT_EQ(logs.out, "made it\n");
    EXPECT_EQ(logs.err, "sluice: step make was Cached: the log of hit-1/make, whose outputs it reused\n");
  }
  Output follow_ended = Sluice({"logs", "hit-1", "make", "-f"});
  EXPECT_EQ(follow_ended.exit_code, 0);
  EXPECT_EQ(follow_ended.out, "made it\n");
}

// Unknown step names and run ids get the closest one, as lint does for keys.
TEST_F(CliTest, UnknownStepAndRunSuggestTheClosest) {
  Write("pipeline.yaml", kTwoSteps);
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "demo-1"}).exit_code, 0);
  Output step = Sluice({"logs", "demo-1", "hallo"});
  EXPECT_EQ(step.exit_code, 2);
  EXPECT_EQ(step.err, "sluice: error: run demo-1 has no step instance 'hallo'; did you mean 'hello'?\n");
  Output run = Sluice({"status", "demo-2"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err,
            "sluice: error: no run 'demo-2' in this store (`sluice runs` lists them); did you mean "
            "'demo-1'?\n");
  Output from = Sluice({"rerun", "demo-1", "--from", "cuont"});
  EXPECT_EQ(from.exit_code, 2);
  EXPECT_EQ(from.err, "sluice: error: --from: pipeline demo has no step 'cuont'; did you mean 'count'?\n");
}

// lineage takes `latest` as every command that takes a run does.
TEST_F(CliTest, LineageTakesLatest) {
  Write("pipeline.yaml", kTwoSteps);
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "demo-1"}).exit_code, 0);
  Output by_id = Sluice({"lineage", "demo-1"});
  ASSERT_EQ(by_id.exit_code, 0) << by_id.err;
  Output latest = Sluice({"lineage", "latest"});
  EXPECT_EQ(latest.exit_code, 0) << latest.err;
  EXPECT_EQ(latest.out, by_id.out);
  Output step = Sluice({"lineage", "latest/count"});
  EXPECT_EQ(step.exit_code, 0) << step.err;
  EXPECT_EQ(step.out, Sluice({"lineage", "demo-1/count"}).out);
}

// reproduce of a run in which nothing can be re-executed says so, exit 2.
TEST_F(CliTest, ReproduceWithNothingToReExecuteExitsTwo) {
  Write("pipeline.yaml", kTwoSteps);  // steps without outputs: side effects only
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "demo-1"}).exit_code, 0);
  Output repro = Sluice({"reproduce", "demo-1"});
  EXPECT_EQ(repro.exit_code, 2);
  EXPECT_EQ(repro.out, "");
  EXPECT_EQ(repro.err,
            "sluice: error: cannot reproduce run demo-1: nothing would be re-executed:\n"
            "  hello: declares no outputs (side effects only): not re-executed\n"
            "  count: declares no outputs (side effects only): not re-executed\n");
  EXPECT_EQ(Sluice({"runs", "--format", "json"}).out.find("repro"), std::string::npos);
}

// compile --target argo of the README's example needs no --sluice-image: the
// image of this sluice version, named on stderr.
TEST_F(CliTest, CompileArgoDefaultsTheSluiceImage) {
  Output argo = Sluice({"compile", std::string(SLUICE_SOURCE_DIR) + "/examples/retrain/pipeline.yaml",
                        "--target", "argo"});
  EXPECT_EQ(argo.exit_code, 0) << argo.err;
  const std::string image = std::string("ghcr.io/sluice-dev/sluice:") + SLUICE_VERSION;
  EXPECT_EQ(argo.err, "sluice: traffic-validation checks run in image " + image +
                          " (--sluice-image IMAGE to use another)\n");
  EXPECT_NE(argo.out.find("image: " + image + "\n"), std::string::npos);
  Output given = Sluice({"compile", std::string(SLUICE_SOURCE_DIR) + "/examples/retrain/pipeline.yaml",
                         "--target", "argo", "--sluice-image", "registry.example/sluice:1"});
  EXPECT_EQ(given.exit_code, 0) << given.err;
  EXPECT_EQ(given.err, "");
  EXPECT_EQ(given.out.find(image), std::string::npos);
}

// serve: --listen given wins, else the config's listen:, else the default.
TEST_F(CliTest, ServeListensWhereTheConfigSaysUnlessTheFlagSaysOtherwise) {
  fs::create_directories(dir_ + "/pipelines");
  const int from_config = FreePort(), from_flag = FreePort();
  ASSERT_NE(from_config, 0);
  Write("server.yaml", "listen: 127.0.0.1:" + std::to_string(from_config) + "\n");
  for (const bool flag : {false, true}) {
    std::vector<std::string> args = {"serve", "--pipelines", "pipelines", "--config", "server.yaml"};
    if (flag) {
      args.push_back("--listen");
      args.push_back("127.0.0.1:" + std::to_string(from_flag));
    }
    testutil::Subprocess serve = Process(args, dir_);
    const std::string line = "sluice serve: listening on http://127.0.0.1:" +
                             std::to_string(flag ? from_flag : from_config) + " ";
    EXPECT_TRUE(WaitForStderr(serve, line)) << serve.ErrSoFar();
    ASSERT_EQ(::kill(serve.pid(), SIGTERM), 0);
    EXPECT_EQ(serve.Wait(std::chrono::seconds(60)).exit_code, 0);
  }
}

// submit --timeout and --cancel-on-timeout: checked before anything is sent.
TEST_F(CliTest, SubmitTimeoutFlagsAreChecked) {
  Output bad = Sluice({"submit", "p", "--server", "http://127.0.0.1:1", "--wait", "--timeout", "soon"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.err, "sluice: error: --timeout 'soon' is not a duration like 30m, 2h or 90s\n");
  Output alone = Sluice({"submit", "p", "--server", "http://127.0.0.1:1", "--wait", "--cancel-on-timeout"});
  EXPECT_EQ(alone.exit_code, 2);
  EXPECT_EQ(alone.err, "sluice: error: --cancel-on-timeout needs --timeout\n");
  Output nowait = Sluice({"submit", "p", "--server", "http://127.0.0.1:1", "--timeout", "2h"});
  EXPECT_EQ(nowait.exit_code, 2);
  EXPECT_EQ(nowait.err, "sluice: error: --timeout needs --wait\n");
}

}  // namespace
}  // namespace sluice
