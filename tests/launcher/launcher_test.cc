// sluice-launcher against a real S3-compatible server (SeaweedFS, the CTest
// fixture "s3"): installed into a fresh directory and run from there through
// the dynamic loader it bundles, as the pod's main container runs it.

#include "engine/launcher/launcher.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "engine/launch.h"
#include "engine/sha256.h"
#include "engine/store/artifact_store.h"
#include "engine/store/s3_artifact_store.h"
#include "tests/support/s3_server.h"
#include "tests/support/subprocess.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using testutil::Output;
using testutil::Process;
using testutil::ReadFile;

void WriteFile(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

class LauncherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto env = testutil::S3ServerEnv(SLUICE_TEST_S3_STATE);
    if (env.empty()) {
      GTEST_SKIP() << "no S3 server: the s3 fixture did not start SeaweedFS (SLUICE_SKIP_S3=1?); "
                   << "`ctest --test-dir build -L s3` builds and starts it";
    }
    char tmpl[] = "/tmp/sluice-launcher-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_ = testutil::TestBucketOptions(env, "l");
    url_ = "s3://" + options_.bucket + "/" + options_.prefix;
    Status created = S3Client(options_).CreateBucket();
    ASSERT_TRUE(created.ok()) << created.message();
    // The host's side of the bucket.
    auto host = S3ArtifactStore::Open(options_, dir_ + "/host");
    ASSERT_TRUE(host.has_value()) << host.error().message();
    host_ = std::move(*host);
    // The launcher, installed the way the pod's init container installs it.
    Output installed = Run({SLUICE_LAUNCHER_BIN, "install", dir_ + "/bin"}, {});
    ASSERT_EQ(installed.exit_code, 0) << installed.err;
  }

  void TearDown() override {
    if (dir_.empty()) return;
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(dir_, ec))
      fs::permissions(e.path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  Output Run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
    const std::string out = dir_ + "/.out", err = dir_ + "/.err";
    Process p(argv, out, err, {dir_, env});
    Output o;
    o.exit_code = p.Wait(std::chrono::seconds(120));
    o.out = ReadFile(out);
    o.err = ReadFile(err);
    return o;
  }

  // The installed launcher's `run` of `spec`, through its own loader, with
  // nothing of the build's library path.
  // `extra_env`: what else the pod's environment holds (e.g. the
  // training-operator's RANK).
  Output Launch(const LaunchSpec& spec, const std::map<std::string, std::string>& extra_env = {}) {
    const std::string bin = dir_ + "/bin";
    std::map<std::string, std::string> env = {{"SLUICE_LAUNCH", LaunchSpecToJson(spec).dump()},
                                              {"AWS_ACCESS_KEY_ID", options_.access_key},
                                              {"AWS_SECRET_ACCESS_KEY", options_.secret_key},
                                              {"LD_LIBRARY_PATH", ""}};
    env.insert(extra_env.begin(), extra_env.end());
    return Run({bin + "/ld.so", "--library-path", bin + "/lib", bin + "/sluice-launcher", "run"}, env);
  }

  // A spec for step `step` in the pod directory dir_/pod.
  LaunchSpec Spec(const std::string& step, std::vector<std::string> argv) {
    LaunchSpec s;
    s.step = step;
    s.store_url = url_;
    s.store_endpoint = options_.endpoint;
    s.cache_dir = dir_ + "/pod/store";
    s.workdir = dir_ + "/pod/work";
    s.argv = std::move(argv);
    s.result_key = "results/run-1/" + step + "/attempt-1.json";
    s.termination_log = dir_ + "/pod/termination-log";
    return s;
  }

  std::string dir_, url_;
  S3Options options_;
  std::unique_ptr<S3ArtifactStore> host_;
};

TEST_F(LauncherTest, InstalledCopyBundlesItsLoaderAndLibraries) {
  EXPECT_TRUE(fs::exists(dir_ + "/bin/ld.so"));
  EXPECT_TRUE(fs::exists(dir_ + "/bin/lib/libcurl.so.4"));
  EXPECT_TRUE(fs::exists(dir_ + "/bin/lib/libc.so.6"));
  const std::string bin = dir_ + "/bin";
  Output o = Run({bin + "/ld.so", "--library-path", bin + "/lib", bin + "/sluice-launcher"}, {});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_EQ(o.err,
            "usage: sluice-launcher --version\n"
            "       sluice-launcher install DIR\n"
            "       sluice-launcher run                  (the step in $SLUICE_LAUNCH)\n"
            "       sluice-launcher fetch DIGEST DEST    (store: $SLUICE_ARTIFACTS, $SLUICE_ARTIFACTS_ENDPOINT)\n");
}

TEST_F(LauncherTest, RunFetchesInputsAndCodeRunsTheStepAndStoresItsOutputs) {
  // The host stores an input file and the pipeline's code directory.
  WriteFile(dir_ + "/src/rows.csv", "a,1\nb,2\nc,3\n");
  WriteFile(dir_ + "/pipeline/steps/count.py",
            "import json, os, sys\n"
            "rows = open(sys.argv[1]).read().splitlines()\n"
            "os.makedirs('out/parts', exist_ok=True)\n"
            "open('out/parts/n.txt', 'w').write(str(len(rows)) + '\\n')\n"
            "open('out/first.txt', 'w').write(rows[0] + '\\n')\n"
            "open('count.txt', 'w').write(' %d \\n' % len(rows))\n"
            "json.dump({'rows': len(rows)}, open('metrics.json', 'w'))\n"
            "print('counted', len(rows))\n");
  auto input = host_->Put(dir_ + "/src/rows.csv", ArtifactType::kDataset);
  ASSERT_TRUE(input.has_value()) << input.error().message();
  auto code = host_->Put(dir_ + "/pipeline", ArtifactType::kOther);
  ASSERT_TRUE(code.has_value()) << code.error().message();

  LaunchSpec spec = Spec("count", {"python3", dir_ + "/pod/code/steps/count.py", dir_ + "/pod/in/rows.csv"});
  spec.inputs = {{"rows", input->digest, dir_ + "/pod/in/rows.csv"}};
  spec.code_digest = code->digest;
  spec.code_dir = dir_ + "/pod/code";
  spec.outputs = {{"counts", "", "out", ArtifactType::kDataset}};
  spec.params = {{"n", "count.txt"}};
  spec.metrics_file = "metrics.json";
  Output o = Launch(spec);
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "counted 3\n");

  // The same bytes written on the host hash to the digest the launcher
  // reports: a local run records the same.
  WriteFile(dir_ + "/expected/parts/n.txt", "3\n");
  WriteFile(dir_ + "/expected/first.txt", "a,1\n");
  const std::string want = *FileArtifactStore::DigestOf(dir_ + "/expected");
  auto text = host_->ReadObject("results/run-1/count/attempt-1.json", 1 << 20);
  ASSERT_TRUE(text.has_value()) << text.error().message();
  EXPECT_EQ(*text, "{\"exit_code\":0,\"metrics\":{\"rows\":3},\"outputs\":{\"counts\":{\"digest\":\"" + want +
                       "\",\"directory\":true,\"size\":6,\"type\":\"dataset\"}},\"params\":{\"n\":\"3\"}}");
  EXPECT_EQ(ReadFile(spec.termination_log), *text);
  // The host sees the output in the bucket without fetching it, then
  // fetches it.
  auto stat = host_->Stat(want, ArtifactType::kDataset, 6);
  ASSERT_TRUE(stat.has_value()) << stat.error().message();
  EXPECT_TRUE(stat->is_directory);
  EXPECT_EQ(host_->downloads(), 0);
  auto path = host_->LocalPath(want);
  ASSERT_TRUE(path.has_value()) << path.error().message();
  EXPECT_EQ(ReadFile(*path + "/parts/n.txt"), "3\n");
}

TEST_F(LauncherTest, StepExitCodeIsTheLaunchersAndNothingIsStored) {
  LaunchSpec spec = Spec("fail", {"python3", "-c", "import sys; print('oops', file=sys.stderr); sys.exit(3)"});
  spec.outputs = {{"model", "", "model", ArtifactType::kModel}};
  Output o = Launch(spec);
  EXPECT_EQ(o.exit_code, 3);
  EXPECT_EQ(o.err, "oops\n");
  EXPECT_EQ(*host_->ReadObject("results/run-1/fail/attempt-1.json", 1 << 20),
            "{\"exit_code\":3,\"metrics\":{},\"outputs\":{},\"params\":{}}");
}

// A distributed step's pods all run the step; only the reporting one (rank
// 0 here) stores the outputs and the result.
TEST_F(LauncherTest, OnlyTheReportingReplicaStoresOutputs) {
  LaunchSpec spec = Spec("train", {"python3", "-c",
                                   "import os; print('rank', os.environ['RANK']); "
                                   "os.environ['RANK'] == '0' and open('model', 'w').write('weights')"});
  spec.outputs = {{"model", "", "model", ArtifactType::kModel}};
  spec.reporter = "pytorch-rank0";
  Output worker = Launch(spec, {{"RANK", "1"}});
  EXPECT_EQ(worker.exit_code, 0) << worker.err;
  EXPECT_EQ(worker.out, "rank 1\n");
  EXPECT_FALSE(host_->ReadObject("results/run-1/train/attempt-1.json", 1 << 20).has_value())
      << "a worker wrote the result";
  Output master = Launch(spec, {{"RANK", "0"}});
  ASSERT_EQ(master.exit_code, 0) << master.err;
  EXPECT_EQ(master.out, "rank 0\n");
  auto result = LaunchResultFromJson(*host_->ReadObject("results/run-1/train/attempt-1.json", 1 << 20));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->outputs.at("model").digest, "sha256:" + Sha256Hex("weights"));
}

TEST_F(LauncherTest, MissingDeclaredOutputFailsWithTheRunnersMessage) {
  LaunchSpec spec = Spec("train", {"true"});
  spec.outputs = {{"model", "", "model", ArtifactType::kModel}};
  Output o = Launch(spec);
  EXPECT_EQ(o.exit_code, 1);
  const std::string why =
      "step 'train' declared output artifact 'model' at model, but the file does not exist after the step succeeded";
  EXPECT_EQ(o.err, "sluice-launcher: " + why + "\n");
  auto result = LaunchResultFromJson(*host_->ReadObject("results/run-1/train/attempt-1.json", 1 << 20));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_EQ(result->error, why);
  EXPECT_TRUE(result->outputs.empty());
}

TEST_F(LauncherTest, CorruptedInputIsNamedAndTheStepDoesNotRun) {
  // The object named by the digest of "good" holds other bytes.
  const std::string good_hex = Sha256Hex("good\n"), bad = "tampered\n";
  ASSERT_TRUE(host_->client().PutBytes(host_->KeyFor(good_hex), bad, Sha256Hex(bad), "file").ok());
  LaunchSpec spec = Spec("train", {"python3", "-c", "open('ran', 'w')"});
  spec.inputs = {{"data", "sha256:" + good_hex, dir_ + "/pod/in/data"}};
  Output o = Launch(spec);
  EXPECT_EQ(o.exit_code, launcher::kLaunchFailed);
  EXPECT_EQ(o.err, "sluice-launcher: step 'train': input 'data': artifact sha256:" + good_hex +
                       " downloaded from " + host_->client().Url(host_->KeyFor(good_hex)) +
                       " does not match its digest (the bytes hash to sha256:" + Sha256Hex(bad) +
                       "): the object was corrupted or replaced\n");
  EXPECT_FALSE(fs::exists(spec.workdir + "/ran"));
}

TEST_F(LauncherTest, SigtermReachesTheStep) {
  LaunchSpec spec = Spec("serve", {"python3", "-c",
                                   "import signal, sys, time\n"
                                   "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
                                   "open('ready', 'w').close()\n"
                                   "time.sleep(120)\n"});
  const std::string bin = dir_ + "/bin";
  Process p({bin + "/ld.so", "--library-path", bin + "/lib", bin + "/sluice-launcher", "run"}, dir_ + "/.out",
            dir_ + "/.err",
            {dir_,
             {{"SLUICE_LAUNCH", LaunchSpecToJson(spec).dump()},
              {"AWS_ACCESS_KEY_ID", options_.access_key},
              {"AWS_SECRET_ACCESS_KEY", options_.secret_key}}});
  // The step says it has set its handler (bounded wait).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(spec.workdir + "/ready") && std::chrono::steady_clock::now() < deadline) {
    ASSERT_EQ(p.Wait(std::chrono::milliseconds(50)), Process::kRunning) << ReadFile(dir_ + "/.err");
  }
  ASSERT_TRUE(fs::exists(spec.workdir + "/ready"));
  ::kill(p.pid(), SIGTERM);
  EXPECT_EQ(p.Wait(std::chrono::seconds(60)), 7);
  EXPECT_EQ(*host_->ReadObject("results/run-1/serve/attempt-1.json", 1 << 20),
            "{\"exit_code\":7,\"metrics\":{},\"outputs\":{},\"params\":{}}");
}

TEST_F(LauncherTest, FetchCopiesOneArtifact) {
  WriteFile(dir_ + "/model/weights.txt", "0.5\n");
  auto rec = host_->Put(dir_ + "/model", ArtifactType::kModel);
  ASSERT_TRUE(rec.has_value());
  Output o = Run({SLUICE_LAUNCHER_BIN, "fetch", rec->digest, dir_ + "/served/model"},
                 {{"SLUICE_ARTIFACTS", url_},
                  {"SLUICE_ARTIFACTS_ENDPOINT", options_.endpoint},
                  {"SLUICE_ARTIFACTS_CACHE", dir_ + "/fetch-cache"},
                  {"AWS_ACCESS_KEY_ID", options_.access_key},
                  {"AWS_SECRET_ACCESS_KEY", options_.secret_key}});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(ReadFile(dir_ + "/served/model/weights.txt"), "0.5\n");
}

}  // namespace
}  // namespace sluice
