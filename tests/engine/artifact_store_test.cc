// FileArtifactStore on a real temporary directory.

#include "engine/store/artifact_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "engine/sha256.h"
#include "tests/support/temp_dir.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

// A temporary directory named sluice-cas-XXXXXX.
class TempDir : public testutil::TempDir {
 public:
  TempDir() : testutil::TempDir("sluice-cas") {}
};

void WriteFile(const std::string& path, const std::string& content, mode_t mode = 0644) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
  ::chmod(path.c_str(), mode);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// sha256("hello\n")
constexpr char kHelloHex[] = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("hello\n"), kHelloHex);
}

TEST(FileArtifactStoreTest, PutsAFileUnderItsDigestReadOnly) {
  TempDir dir;
  WriteFile(dir.path() + "/work/model.pkl", "hello\n");
  FileArtifactStore store(dir.path() + "/.sluice");
  auto rec = store.Put(dir.path() + "/work/model.pkl", ArtifactType::kModel);
  ASSERT_TRUE(rec.has_value()) << rec.error().ToString();
  const std::string stored = dir.path() + "/.sluice/cas/sha256/58/" + kHelloHex;
  EXPECT_EQ(rec->digest, std::string("sha256:") + kHelloHex);
  EXPECT_EQ(rec->uri, "file://" + stored);
  EXPECT_EQ(rec->type, ArtifactType::kModel);
  EXPECT_EQ(rec->size, 6);
  EXPECT_FALSE(rec->is_directory);
  EXPECT_EQ(ReadFile(stored), "hello\n");
  struct stat st;
  ASSERT_EQ(::stat(stored.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  EXPECT_EQ(store.LocalPath(rec->digest).value(), stored);
  EXPECT_EQ(store.LocalPath(kHelloHex).value(), stored);
  // Nothing is left behind in the temporary area.
  EXPECT_TRUE(fs::is_empty(dir.path() + "/.sluice/cas/tmp"));
}

TEST(FileArtifactStoreTest, PuttingPresentContentIsANoOp) {
  TempDir dir;
  WriteFile(dir.path() + "/a.txt", "hello\n");
  WriteFile(dir.path() + "/b.txt", "hello\n", 0755);
  FileArtifactStore store(dir.path() + "/.sluice");
  auto a = store.Put(dir.path() + "/a.txt", ArtifactType::kDataset);
  ASSERT_TRUE(a.has_value());
  auto mtime = fs::last_write_time(store.LocalPath(a->digest).value());
  auto b = store.Put(dir.path() + "/b.txt", ArtifactType::kDataset);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(a->digest, b->digest);
  EXPECT_EQ(fs::last_write_time(store.LocalPath(b->digest).value()), mtime);
  EXPECT_TRUE(fs::is_empty(dir.path() + "/.sluice/cas/tmp"));
}

TEST(FileArtifactStoreTest, ExecutableFilesStayExecutable) {
  TempDir dir;
  WriteFile(dir.path() + "/run.sh", "#!/bin/sh\n", 0755);
  FileArtifactStore store(dir.path());
  auto rec = store.Put(dir.path() + "/run.sh", ArtifactType::kOther);
  ASSERT_TRUE(rec.has_value());
  struct stat st;
  ASSERT_EQ(::stat(store.LocalPath(rec->digest)->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0555u);
}

TEST(FileArtifactStoreTest, DirectoryDigestIsItsSortedManifest) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  WriteFile(data + "/train.csv", "hello\n");
  WriteFile(data + "/b/run.sh", "", 0700);
  fs::create_directories(data + "/empty");
  auto manifest = FileArtifactStore::ManifestOf(data);
  ASSERT_TRUE(manifest.has_value()) << manifest.error().ToString();
  const std::string empty_hex = Sha256Hex("");
  EXPECT_EQ(*manifest, "d 755 - b\n"
                       "f 755 " + empty_hex + " b/run.sh\n"
                       "d 755 - empty\n"
                       "f 644 " + std::string(kHelloHex) + " train.csv\n");

  FileArtifactStore store(dir.path() + "/.sluice");
  auto rec = store.Put(data, ArtifactType::kDataset);
  ASSERT_TRUE(rec.has_value()) << rec.error().ToString();
  EXPECT_EQ(rec->digest, "sha256:" + Sha256Hex(*manifest));
  EXPECT_TRUE(rec->is_directory);
  EXPECT_EQ(rec->size, 6);
  auto stored = store.LocalPath(rec->digest);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(ReadFile(*stored + "/train.csv"), "hello\n");
  EXPECT_TRUE(fs::is_directory(*stored + "/empty"));
  // The copy has the same manifest, so its digest matches its name.
  EXPECT_EQ(FileArtifactStore::ManifestOf(*stored).value(), *manifest);
  EXPECT_EQ(FileArtifactStore::DigestOf(*stored).value(), rec->digest);
  // Storing the same tree again is a no-op.
  auto again = store.Put(data, ArtifactType::kDataset);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->digest, rec->digest);
}

TEST(FileArtifactStoreTest, OneChangedByteChangesADirectoryDigest) {
  TempDir dir;
  WriteFile(dir.path() + "/d/x.csv", "1,2,3\n");
  auto before = FileArtifactStore::DigestOf(dir.path() + "/d");
  WriteFile(dir.path() + "/d/x.csv", "1,2,4\n");
  auto after = FileArtifactStore::DigestOf(dir.path() + "/d");
  ASSERT_TRUE(before.has_value() && after.has_value());
  EXPECT_NE(*before, *after);
}

TEST(FileArtifactStoreTest, SymlinksInDirectoriesAreKeptAsLinks) {
  TempDir dir;
  WriteFile(dir.path() + "/d/real.txt", "hello\n");
  fs::create_symlink("real.txt", dir.path() + "/d/link.txt");
  FileArtifactStore store(dir.path() + "/.sluice");
  auto rec = store.Put(dir.path() + "/d", ArtifactType::kOther);
  ASSERT_TRUE(rec.has_value()) << rec.error().ToString();
  auto stored = store.LocalPath(rec->digest).value();
  EXPECT_TRUE(fs::is_symlink(stored + "/link.txt"));
  EXPECT_EQ(fs::read_symlink(stored + "/link.txt"), "real.txt");
}

TEST(FileArtifactStoreTest, MissingPathIsNotFound) {
  TempDir dir;
  FileArtifactStore store(dir.path());
  auto rec = store.Put(dir.path() + "/nope.pkl", ArtifactType::kModel);
  ASSERT_FALSE(rec.has_value());
  EXPECT_EQ(rec.error().code(), StatusCode::kNotFound);
  EXPECT_EQ(rec.error().message(),
            "cannot read artifact " + dir.path() + "/nope.pkl: No such file or directory");
}

TEST(FileArtifactStoreTest, LocalPathOfAbsentOrMalformedDigest) {
  TempDir dir;
  FileArtifactStore store(dir.path());
  auto absent = store.LocalPath("sha256:" + std::string(64, '0'));
  ASSERT_FALSE(absent.has_value());
  EXPECT_EQ(absent.error().code(), StatusCode::kNotFound);
  auto bad = store.LocalPath("md5:abc");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message(), "'md5:abc' is not a sha256 digest (expected sha256:<64 hex>)");
}

TEST(FileArtifactStoreTest, RemovingTheStoreWorksDespiteReadOnlyFiles) {
  TempDir dir;
  WriteFile(dir.path() + "/d/f.txt", "x");
  {
    FileArtifactStore store(dir.path() + "/.sluice");
    ASSERT_TRUE(store.Put(dir.path() + "/d", ArtifactType::kOther).has_value());
  }
  std::error_code ec;
  fs::remove_all(dir.path() + "/.sluice", ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(fs::exists(dir.path() + "/.sluice"));
}

// The digest cache: an unchanged file is hashed once, even across
// processes (the entries persist); any change of its stat makes it hashed
// again. Margin 0 so that a file written just now counts as settled.
TEST(FileDigestCacheTest, UnchangedFileIsReadOnceAcrossInstances) {
  TempDir dir;
  WriteFile(dir.path() + "/train.py", "hello\n");
  const std::string cache_file = dir.path() + "/cas/digests";
  {
    FileDigestCache cache(cache_file, false, std::chrono::nanoseconds(0));
    EXPECT_EQ(cache.Digest(dir.path() + "/train.py").value(), kHelloHex);
    EXPECT_EQ(cache.Digest(dir.path() + "/train.py").value(), kHelloHex);
    EXPECT_EQ(cache.hashed(), 1);
    EXPECT_EQ(cache.remembered(), 1);
  }
  FileDigestCache again(cache_file, false, std::chrono::nanoseconds(0));
  EXPECT_EQ(again.Digest(dir.path() + "/train.py").value(), kHelloHex);
  EXPECT_EQ(again.hashed(), 0);
  EXPECT_EQ(again.remembered(), 1);
}

TEST(FileDigestCacheTest, ReplacedFileWithSameSizeAndMtimeIsHashedAgain) {
  TempDir dir;
  const std::string path = dir.path() + "/data.csv";
  WriteFile(path, "aaaa\n");
  struct stat old_stat;
  ASSERT_EQ(::stat(path.c_str(), &old_stat), 0);
  FileDigestCache cache(dir.path() + "/digests", false, std::chrono::nanoseconds(0));
  EXPECT_EQ(cache.Digest(path).value(), Sha256Hex("aaaa\n"));
  // Same size, the old mtime put back: only the inode and ctime tell.
  WriteFile(dir.path() + "/new.csv", "bbbb\n");
  const struct timespec times[2] = {old_stat.st_atim, old_stat.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, (dir.path() + "/new.csv").c_str(), times, 0), 0);
  fs::rename(dir.path() + "/new.csv", path);
  EXPECT_EQ(cache.Digest(path).value(), Sha256Hex("bbbb\n"));
  EXPECT_EQ(cache.hashed(), 2);
  EXPECT_EQ(cache.remembered(), 0);
}

TEST(FileDigestCacheTest, RacyFileIsNotRemembered) {
  TempDir dir;
  WriteFile(dir.path() + "/out.txt", "hello\n");  // written just now: within kRacyMargin
  FileDigestCache cache(dir.path() + "/digests");
  EXPECT_EQ(cache.Digest(dir.path() + "/out.txt").value(), kHelloHex);
  EXPECT_EQ(cache.Digest(dir.path() + "/out.txt").value(), kHelloHex);
  EXPECT_EQ(cache.hashed(), 2);
  EXPECT_EQ(cache.remembered(), 0);
  EXPECT_FALSE(fs::exists(dir.path() + "/digests"));
}

TEST(FileDigestCacheTest, TornAndForgedLinesAreIgnored) {
  TempDir dir;
  WriteFile(dir.path() + "/a.txt", "hello\n");
  const std::string cache_file = dir.path() + "/digests";
  {
    FileDigestCache cache(cache_file, false, std::chrono::nanoseconds(0));
    ASSERT_TRUE(cache.Digest(dir.path() + "/a.txt").has_value());
  }
  std::string good = ReadFile(cache_file);
  ASSERT_EQ(std::count(good.begin(), good.end(), '\n'), 1) << good;
  // A line claiming another digest for the same stat, with a wrong check,
  // and a torn last line (a crash mid-append): both ignored.
  std::string forged = good;
  forged.replace(forged.find(kHelloHex), 64, std::string(64, '0'));
  WriteFile(cache_file, good + forged + good.substr(0, good.size() / 2));
  FileDigestCache cache(cache_file, false, std::chrono::nanoseconds(0));
  EXPECT_EQ(cache.Digest(dir.path() + "/a.txt").value(), kHelloHex);
  EXPECT_EQ(cache.remembered(), 1);
  EXPECT_EQ(cache.hashed(), 0);
}

TEST(FileDigestCacheTest, ReadOnlyCacheNeverWritesItsFile) {
  TempDir dir;
  WriteFile(dir.path() + "/a.txt", "hello\n");
  FileDigestCache cache(dir.path() + "/digests", /*read_only=*/true, std::chrono::nanoseconds(0));
  EXPECT_EQ(cache.Digest(dir.path() + "/a.txt").value(), kHelloHex);
  EXPECT_EQ(cache.Digest(dir.path() + "/a.txt").value(), kHelloHex);
  EXPECT_EQ(cache.remembered(), 1);  // in memory
  EXPECT_FALSE(fs::exists(dir.path() + "/digests"));
}

TEST(FileDigestCacheTest, PutOfAFileJustWrittenReadsItEachTime) {
  TempDir dir;
  WriteFile(dir.path() + "/work/raw.csv", "hello\n");
  FileArtifactStore store(dir.path() + "/.sluice");
  auto first = store.Put(dir.path() + "/work/raw.csv", ArtifactType::kDataset);
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  auto second = store.Put(dir.path() + "/work/raw.csv", ArtifactType::kDataset);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->digest, std::string("sha256:") + kHelloHex);
  EXPECT_EQ(second->size, 6);
  // Just written, so racy: both Puts read it (kRacyMargin keeps it honest).
  EXPECT_EQ(store.digest_cache().hashed(), 2);
}

}  // namespace
}  // namespace sluice
