// PipelineRegistry as the load boundary: whatever a pipeline file holds and
// whatever its loader does (short of crashing), the failure is a diagnostic
// on the file and the last good version stays in service.
#include "engine/server/pipeline_registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>

#include "server_test_util.h"

namespace sluice::server {
namespace {

using testing::MakeTempDir;
using testing::WriteFile;

const char kNightly[] = R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: nightly
schedule:
  cron: "0 2 * * *"
steps:
  - name: a
    command: [echo, a]
)";

class PipelineRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("registry");
    path_ = dir_ + "/nightly.yaml";
    WriteFile(path_, kNightly);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The DSL, or an exception once `throw_` is set.
  PipelineLoader Loader() {
    return [this](const std::string& path) {
      if (throw_) throw std::runtime_error("yaml: bad things happened");
      return dsl::LoadPipelineFile(path);
    };
  }

  std::string dir_, path_;
  std::atomic<bool> throw_{false};
};

TEST_F(PipelineRegistryTest, LoaderExceptionIsADiagnosticAndTheLastGoodVersionStays) {
  PipelineRegistry registry(dir_, Loader());
  ASSERT_TRUE(registry.Reload(false).has_value());
  ASSERT_NE(registry.Find("nightly"), nullptr);
  throw_ = true;
  auto report = registry.Reload(true);
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->failed, (std::vector<std::string>{path_}));
  std::vector<PipelineFile> files = registry.List();
  ASSERT_EQ(files.size(), 1u);
  EXPECT_FALSE(files[0].ok);
  ASSERT_EQ(files[0].diagnostics.size(), 1u);
  EXPECT_EQ(files[0].diagnostics[0].ToString(),
            path_ + ":1:1: error: the pipeline could not be loaded: yaml: bad things happened");
  ASSERT_NE(registry.Find("nightly"), nullptr);
  EXPECT_TRUE(registry.Find("nightly")->schedule.has_value());
}

TEST_F(PipelineRegistryTest, FileOverTheSizeLimitIsNotLoaded) {
  PipelineRegistry registry(dir_, Loader());
  ASSERT_TRUE(registry.Reload(false).has_value());
  std::string big = kNightly;
  big += "# " + std::string(kMaxPipelineFileBytes, 'x') + "\n";
  WriteFile(path_, big);
  ASSERT_TRUE(registry.Reload(false).has_value());
  std::vector<PipelineFile> files = registry.List();
  ASSERT_EQ(files.size(), 1u);
  EXPECT_FALSE(files[0].ok);
  ASSERT_EQ(files[0].diagnostics.size(), 1u);
  EXPECT_EQ(files[0].diagnostics[0].ToString(),
            path_ + ":1:1: error: the file is " + std::to_string(big.size()) +
                " bytes; a pipeline file may have at most 4194304 (split it, or move data out of it)");
  EXPECT_NE(registry.Find("nightly"), nullptr);
}

TEST_F(PipelineRegistryTest, PipelineReplacedByGarbageKeepsItsLastGoodVersion) {
  PipelineRegistry registry(dir_, Loader());
  ASSERT_TRUE(registry.Reload(false).has_value());
  WriteFile(path_, std::string("\xff\xfe\x00garbage\x80\n", 12));
  auto report = registry.Reload(false);
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->failed, (std::vector<std::string>{path_}));
  std::vector<PipelineFile> files = registry.List();
  ASSERT_EQ(files.size(), 1u);
  ASSERT_EQ(files[0].diagnostics.size(), 1u);
  EXPECT_EQ(files[0].diagnostics[0].ToString(),
            path_ + ":1:1: error: no top-level 'kind: Pipeline' line any more; the last good version "
                    "stays in service until the file is fixed or deleted");
  EXPECT_NE(registry.Find("nightly"), nullptr);
  // Deleting it is what takes it out of service.
  std::filesystem::remove(path_);
  ASSERT_TRUE(registry.Reload(false).has_value());
  EXPECT_EQ(registry.Find("nightly"), nullptr);
}

}  // namespace
}  // namespace sluice::server
