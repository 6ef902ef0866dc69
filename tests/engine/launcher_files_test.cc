// The runner's side of launcher tasks: the pipeline directory packed as one
// code artifact, and the artifacts a command names by their store path.

#include "engine/run/launcher_files.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "engine/store/artifact_store.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

class LauncherFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-launcher-files-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(dir_, ec))
      fs::permissions(e.path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_F(LauncherFilesTest, CodeIsThePipelineDirectoryWithoutGitAndTheStore) {
  const fs::path p = fs::path(dir_) / "pipeline";
  WriteFile(p / "pipeline.yaml", "steps: []\n");
  WriteFile(p / "steps" / "train.py", "print('hi')\n");
  WriteFile(p / ".git" / "HEAD", "ref: refs/heads/main\n");
  WriteFile(p / ".sluice" / "sluice.db", "x");
  WriteFile(p / "store" / "cas" / "x", "y");
  FileArtifactStore store((p / "store").string());
  auto rec = PackCode(&store, p.string(), (p / "store").string(), dir_ + "/staging");
  ASSERT_TRUE(rec.has_value()) << rec.error().message();
  EXPECT_TRUE(rec->is_directory);
  // The same two files, packed by hand, have the same digest.
  WriteFile(fs::path(dir_) / "want" / "pipeline.yaml", "steps: []\n");
  WriteFile(fs::path(dir_) / "want" / "steps" / "train.py", "print('hi')\n");
  EXPECT_EQ(rec->digest, *FileArtifactStore::DigestOf(dir_ + "/want"));
  EXPECT_FALSE(fs::exists(dir_ + "/staging"));
}

TEST_F(LauncherFilesTest, TooManyFilesIsAClearError) {
  const fs::path p = fs::path(dir_) / "pipeline";
  for (int i = 0; i < 4; ++i) WriteFile(p / ("f" + std::to_string(i)), "x");
  FileArtifactStore store(dir_ + "/store");
  CodeLimits limits;
  limits.max_files = 3;
  auto rec = PackCode(&store, p.string(), dir_ + "/store", dir_ + "/staging", limits);
  ASSERT_FALSE(rec.has_value());
  EXPECT_EQ(rec.error().message(), "the pipeline directory " + p.string() +
                                       " holds more than 3 files, the most sluice ships to pods as the steps' code; "
                                       "move data out of it (pass it as an artifact or a param)");
}

TEST_F(LauncherFilesTest, StorePathsInACommandNameTheirDigests) {
  const std::string a(64, 'a'), b(64, 'b');
  const std::string text = "[\"/s/.sluice/cas/sha256/aa/" + a + "\", \"/s/.sluice/cas/sha256/bb/" + b +
                           "/model.pkl\", \"/other/cas/sha256/cc/" + std::string(64, 'c') + "\"]";
  EXPECT_EQ(StorePathDigests(text, "/s/.sluice"),
            (std::vector<std::string>{"sha256:" + a, "sha256:" + b}));
  EXPECT_TRUE(StorePathDigests("/s/.sluice/cas/sha256/aa/short", "/s/.sluice").empty());
}

}  // namespace
}  // namespace sluice
