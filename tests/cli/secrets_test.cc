// End-to-end tests of secret params through the `sluice` binary: after each
// run, neither the store directory (SQLite database and WAL, logs,
// snapshots, file names) nor what sluice printed holds a secret value or a
// form derived from it (upper-case, base64, base64 inside a larger encoded
// string).

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/subprocess.h"

#ifndef SLUICE_BIN
#error "SLUICE_BIN must name the sluice binary"
#endif

namespace sluice {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using testutil::Output;
using testutil::ReadFile;

constexpr char kToken[] = "s3cr3t-Tok3n-XYZ";

// Every form of kToken a leak could take.
const std::vector<std::string>& Forms() {
  static const std::vector<std::string> forms = {
      kToken,
      "S3CR3T-TOK3N-XYZ",          // upper()
      "s3cr3t-tok3n-xyz",          // lower()
      "czNjcjN0LVRvazNuLVhZWg",    // base64(token), unpadded prefix
      "zM2NyM3QtVG9rM24tWFla",     // inside base64("user:" + token)
  };
  return forms;
}

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-secrets-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void Write(const std::string& name, const std::string& text) { std::ofstream(dir_ + "/" + name) << text; }

  Output Sluice(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SLUICE_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    Output o = testutil::RunProcess(std::move(argv), dir_);
    printed_ += o.out + o.err;
    return o;
  }

  // Every file under `root` whose name or content holds a form of the
  // secret, with the form found ("" when none does).
  static std::vector<std::string> Leaks(const std::string& root) {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      const std::string path = it->path().string();
      const std::string content = it->is_regular_file() ? ReadFile(path) : "";
      for (const auto& form : Forms()) {
        if (path.find(form) != std::string::npos) out.push_back(path + " (name): " + form);
        if (content.find(form) != std::string::npos) out.push_back(path + ": " + form);
      }
    }
    return out;
  }

  // Asserts that the store and everything sluice printed so far are clean.
  void ExpectNoLeak() {
    EXPECT_EQ(Leaks(dir_ + "/.sluice"), std::vector<std::string>{});
    for (const auto& form : Forms()) EXPECT_EQ(printed_.find(form), std::string::npos) << form << " in\n" << printed_;
  }

  Json Status(const std::string& run) {
    Output o = Sluice({"status", run, "--format", "json"});
    EXPECT_EQ(o.exit_code, 0) << o.err;
    return Json::parse(o.out, nullptr, false);
  }

  std::string dir_;
  std::string printed_;  // stdout and stderr of every sluice command
};

// The step prints the secret plainly, upper-cased, base64-encoded (alone and
// inside a basic-auth header) and split across two writes; its argv, env and
// workdir hold the secret and values derived from it; it declares an output,
// so it has a cache key.
constexpr char kUse[] = R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: secrets}
params:
  tok: {type: string, secret: true}
steps:
  - name: use
    command:
      - python3
      - -c
      - |
        import base64, os, sys
        a, up = sys.argv[1], sys.argv[2]
        print("plain", a)
        print("upper", up, os.environ["TOKEN_UPPER"])
        print("b64", base64.b64encode(a.encode()).decode())
        print("auth", base64.b64encode(b"user:" + a.encode()).decode())
        sys.stdout.write("split " + a[:6]); sys.stdout.flush()
        sys.stdout.write(a[6:] + "\n"); sys.stdout.flush()
        print("cwd-ends-with-token", os.getcwd().endswith(a))
        open("out.txt", "w").write("done")
      - "{{ params.tok }}"
      - "--token={{ upper(params.tok) }}"
    env:
      TOKEN_UPPER: "{{ upper(params.tok) }}"
    workdir: "WORKDIR/wd-{{ params.tok }}"
    outputs:
      params: [{name: done, path: out.txt}]
)yaml";

TEST_F(SecretsTest, ArgvEnvWorkdirLogsAndCacheKeyHoldNoSecret) {
  std::string yaml = kUse;
  yaml.replace(yaml.find("WORKDIR"), 7, dir_ + "/work");
  Write("pipeline.yaml", yaml);
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", "s-1", "-p", std::string("tok=") + kToken});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  // The log as stored and as streamed: every form masked.
  const std::string log = ReadFile(dir_ + "/.sluice/runs/s-1/logs/use.attempt1.log");
  EXPECT_NE(log.find("plain ***\n"), std::string::npos) << log;
  // "--token=S3CR3T-..." is a rendered command item that reads the secret:
  // masked whole.
  EXPECT_NE(log.find("upper *** ***\n"), std::string::npos) << log;
  EXPECT_NE(log.find("b64 ***\n"), std::string::npos) << log;
  EXPECT_NE(log.find("auth dXNlcjp***\n"), std::string::npos) << log;
  EXPECT_NE(log.find("split ***\n"), std::string::npos) << log;
  EXPECT_NE(log.find("cwd-ends-with-token True\n"), std::string::npos) << log;  // the step saw the value
  EXPECT_NE(run.out.find("[use] plain ***\n"), std::string::npos) << run.out;

  // The snapshot says where a secret was, never what it was.
  Output show = Sluice({"checkout", "s-1", "use", dir_ + "/checkout"});
  ASSERT_EQ(show.exit_code, 0) << show.out << show.err;
  Json snap = Json::parse(ReadFile(dir_ + "/checkout/snapshot.json"), nullptr, false);
  ASSERT_TRUE(snap.is_object()) << ReadFile(dir_ + "/checkout/snapshot.json");
  EXPECT_EQ(snap["argv"][3], "<redacted>");
  EXPECT_EQ(snap["argv"][4], "<redacted>");
  EXPECT_EQ(snap["env"]["TOKEN_UPPER"], "<redacted>");
  EXPECT_EQ(snap["workdir"], "<redacted>");
  EXPECT_EQ(snap["params"]["tok"], "<redacted>");
  // The cache key holds a keyed digest of each secret value.
  const std::string argv3 = snap["cache_key_material"]["argv"][3];
  EXPECT_EQ(argv3.rfind("<secret:", 0), 0u) << argv3;
  EXPECT_EQ(Leaks(dir_ + "/checkout"), std::vector<std::string>{});

  // Same secret: a cache hit. Another secret: a different key, so it runs.
  Output again = Sluice({"run", "pipeline.yaml", "--run-id", "s-2", "-p", std::string("tok=") + kToken});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_EQ(Status("s-2")["steps"][0]["phase"], "Cached");
  Output other = Sluice({"run", "pipeline.yaml", "--run-id", "s-3", "-p", "tok=another-value-42"});
  ASSERT_EQ(other.exit_code, 0) << other.out << other.err;
  EXPECT_EQ(Status("s-3")["steps"][0]["phase"], "Succeeded");
  ExpectNoLeak();
}

TEST_F(SecretsTest, SpawnErrorDoesNotPrintOrStoreTheSecret) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: spawn}
params:
  tok: {type: string, secret: true}
steps:
  - name: missing
    command: ["/nonexistent/{{ params.tok }}"]
)yaml");
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", "sp-1", "-p", std::string("tok=") + kToken});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_NE(printed_.find("cannot start '<redacted>'"), std::string::npos) << printed_;
  ExpectNoLeak();
}

TEST_F(SecretsTest, ForeachOverASecretListStoresNoItem) {
  Write("pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: fanout}
params:
  toks: {type: list, secret: true}
steps:
  - name: each
    foreach: "{{ params.toks }}"
    command: [python3, -c, "import sys; print('item', sys.argv[1])", "{{ item }}"]
)yaml");
  Output run = Sluice({"run", "pipeline.yaml", "--run-id", "fe-1", "-p",
                       std::string("toks=") + kToken + ",S3CR3T-TOK3N-XYZ"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_EQ(ReadFile(dir_ + "/.sluice/runs/fe-1/logs/each[0].attempt1.log"), "item ***\n");
  Json status = Status("fe-1");
  int instances = 0;
  for (const auto& s : status["steps"]) {
    if (s["instance"].get<std::string>().rfind("each[", 0) != 0) continue;
    ++instances;
    EXPECT_EQ(s["item"], "<redacted>") << s.dump();
  }
  EXPECT_EQ(instances, 2) << status.dump();
  ExpectNoLeak();
}

// A step that fails until the file `ok` exists, and succeeds only when it
// is given the real secret (checked by its SHA-256: the pipeline file is
// recorded, so it must not hold the value).
constexpr char kFlakySecret[] = R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: flaky-secret}
params:
  tok: {type: string, secret: true}
steps:
  - name: check
    command: [python3, -c, "import hashlib, os, sys; sys.exit(0 if os.path.exists(sys.argv[2]) and hashlib.sha256(sys.argv[1].encode()).hexdigest() == '1c237625f89fcbd69757069fefcbd36444618de06c5c42fc1ebebc1bc0d6984a' else 1)",
              "{{ params.tok }}", "{{ pipeline.dir }}/ok"]
)yaml";

TEST_F(SecretsTest, ResumeAsksForTheSecretAgainAndNeverRunsWithThePlaceholder) {
  Write("pipeline.yaml", kFlakySecret);
  ASSERT_EQ(Sluice({"run", "pipeline.yaml", "--run-id", "r-1", "-p", std::string("tok=") + kToken}).exit_code, 1);
  Write("ok", "");
  Output bare = Sluice({"resume", "r-1"});
  EXPECT_EQ(bare.exit_code, 2) << bare.out << bare.err;
  EXPECT_EQ(bare.err,
            "sluice: error: resume: run r-1 has secret parameters, which are not recorded; give them again: -p "
            "tok=VALUE\n");
  EXPECT_EQ(Status("r-1")["run"]["phase"], "Failed");
  Output resumed = Sluice({"resume", "r-1", "-p", std::string("tok=") + kToken});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_EQ(Status("r-1")["run"]["phase"], "Succeeded");
  ExpectNoLeak();
}

}  // namespace
}  // namespace sluice
