// `sluice runs delete` and `sluice gc` end to end: the real binary (its path
// is SLUICE_BINARY) on a real store made by `sluice run`.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "server_test_util.h"
#include "tests/support/subprocess.h"

namespace sluice::server {
namespace {

using testutil::Output;

// Runs `sluice ARGS` (words split at spaces) in `dir`, bounded to 120 s.
Output Sluice(const std::string& dir, const std::string& args) {
  std::vector<std::string> argv = {SLUICE_BINARY};
  std::istringstream words(args);
  for (std::string w; words >> w;) argv.push_back(w);
  return testutil::RunProcess(argv, dir);
}

TEST(RetentionCliTest, RunsDeleteRefusesAReusedRunThenDeletesAndGcRemovesTheBytes) {
  std::string dir = testing::MakeTempDir("retention-cli");
  testing::WriteFile(dir + "/p.yaml", R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: p
steps:
  - name: make
    command: [sh, -c, "echo weights > model.bin"]
    outputs:
      artifacts:
        - {name: model, path: model.bin}
)");
  ASSERT_EQ(Sluice(dir, "run p.yaml --run-id r1 --quiet").exit_code, 0);
  ASSERT_EQ(Sluice(dir, "run p.yaml --run-id r2 --quiet").exit_code, 0);  // make: cached from r1

  Output refused = Sluice(dir, "runs delete r1");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_EQ(refused.err,
            "sluice: error: run r1 is kept: cached steps of run r2 reuse its outputs, and their "
            "lineage leads to it; delete that run first\n");
  Output unknown = Sluice(dir, "runs delete nope");
  EXPECT_EQ(unknown.exit_code, 2);

  Output deleted = Sluice(dir, "runs delete r2 r1");
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_EQ(deleted.out, "deleted run r2\ndeleted run r1\n");
  EXPECT_FALSE(std::filesystem::exists(dir + "/.sluice/runs/r1"));
  Output runs = Sluice(dir, "runs --format json");
  EXPECT_EQ(runs.out, "[]\n");

  Output dry = Sluice(dir, "gc --grace 0s --dry-run");
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_EQ(dry.out, "would remove 1 artifact (8 bytes) and 0 partial copies; kept 0\n");
  Output gc = Sluice(dir, "gc --grace 0s");
  EXPECT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_EQ(gc.out, "removed 1 artifact (8 bytes) and 0 partial copies; kept 0\n");
  EXPECT_EQ(Sluice(dir, "gc --grace soon").exit_code, 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice::server
