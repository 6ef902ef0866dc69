#include "dsl/yaml_cache.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

#include "dsl/dsl.h"
#include "dsl/limits.h"

namespace sluice::dsl {
namespace {

namespace fs = std::filesystem;

// Every field of every node, so two documents compare whole.
std::string Dump(const YamlDocument& d) {
  std::string out = "root " + std::to_string(d.root) + "\n";
  for (const auto& n : d.nodes) {
    out += std::to_string(static_cast<int>(n.kind)) + " " + (n.quoted ? "q" : "-") + " " + std::to_string(n.pos) +
           " " + std::to_string(n.line) + ":" + std::to_string(n.column) + " [" + n.value + "]";
    for (uint32_t c : n.children) out += " " + std::to_string(c);
    out += "\n";
  }
  return out;
}

// A pipeline of `n` steps, big enough to be cached when n is large.
std::string Pipeline(int n) {
  std::string y = "apiVersion: sluice.dev/v1\nkind: Pipeline\nmetadata: {name: big}\nsteps:\n";
  for (int i = 0; i < n; ++i) {
    const std::string name = "s" + std::to_string(i);
    y += "  - name: " + name + "\n    command: [/usr/bin/touch, \"out-" + name + "\"]\n";
    if (i > 0) y += "    depends: [s" + std::to_string(i - 1) + "]\n";
    y += "    outputs: {artifacts: [{name: out, path: out-" + name + "}]}\n";
  }
  return y;
}

class ParseCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-parse-cache-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    old_ = getenv("SLUICE_PARSE_CACHE") ? getenv("SLUICE_PARSE_CACHE") : "";
    setenv("SLUICE_PARSE_CACHE", (dir_ + "/cache").c_str(), 1);
  }
  void TearDown() override {
    if (old_.empty()) unsetenv("SLUICE_PARSE_CACHE");
    else setenv("SLUICE_PARSE_CACHE", old_.c_str(), 1);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::vector<fs::path> Entries() {
    std::vector<fs::path> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_ + "/cache", ec)) out.push_back(e.path());
    return out;
  }
  std::string dir_;
  std::string old_;
};

TEST(YamlCacheEncoding, RoundTripsEveryNode) {
  YamlDocument d = ParseYaml("a: 1\nb:\n  - 'x'\n  - \"2\"\n  - {c: d}\ne:\nf: |\n  two\n  lines\n");
  ASSERT_TRUE(d.problems.empty());
  auto back = DecodeYamlDocument(EncodeYamlDocument(d));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(Dump(*back), Dump(d));
}

TEST(YamlCacheEncoding, TruncatedDamagedOrForeignBytesAreNotADocument) {
  YamlDocument d = ParseYaml("a: [1, 2]\n");
  const std::string bytes = EncodeYamlDocument(d);
  for (size_t n = 0; n < bytes.size(); ++n) EXPECT_FALSE(DecodeYamlDocument(bytes.substr(0, n)).has_value()) << n;
  YamlDocument dangling;  // a child index past the nodes
  dangling.nodes.resize(1);
  dangling.nodes[0].kind = YamlNode::Kind::kSequence;
  dangling.nodes[0].children = {5};
  dangling.root = 0;
  EXPECT_FALSE(DecodeYamlDocument(EncodeYamlDocument(dangling)).has_value());
  EXPECT_FALSE(DecodeYamlDocument("apiVersion: sluice.dev/v1\n").has_value());
}

TEST_F(ParseCacheTest, ALargeFileIsParsedOnceThenLoadedFromItsEntry) {
  const std::string text = Pipeline(2000);
  ASSERT_GE(text.size(), kMinCachedBytes);
  const std::string path = dir_ + "/pipeline.yaml";
  std::ofstream(path) << text;

  LoadResult first = LoadPipelineFile(path);
  ASSERT_TRUE(first.ok()) << FormatDiagnosticsText(first.diagnostics);
  auto entries = Entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].filename().string(), first.spec->file_digest + ".tree");

  // The entry is what the second load reads: replace it by another
  // document's entry and the load sees that one.
  YamlDocument other = ParseYaml(Pipeline(3));
  { std::ofstream(entries[0], std::ios::binary | std::ios::trunc) << EncodeYamlDocument(other); }
  LoadResult second = LoadPipelineFile(path);
  ASSERT_TRUE(second.ok()) << FormatDiagnosticsText(second.diagnostics);
  EXPECT_EQ(second.spec->steps.size(), 3u);

  // A damaged entry is a miss: the file is parsed again and the entry mended.
  { std::ofstream(entries[0], std::ios::binary | std::ios::trunc) << "garbage"; }
  LoadResult third = LoadPipelineFile(path);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third.spec->steps.size(), 2000u);
  EXPECT_EQ(third.spec->steps[1999].command[1].text, "out-s1999");
  std::ifstream in(entries[0], std::ios::binary);
  std::string mended((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(mended, EncodeYamlDocument(ParseYaml(text)));
}

TEST_F(ParseCacheTest, SmallFilesAndFilesWithProblemsAreNotCached) {
  const std::string small = dir_ + "/small.yaml";
  std::ofstream(small) << Pipeline(3);
  EXPECT_TRUE(LoadPipelineFile(small).ok());
  std::string dup = Pipeline(2000) + "kind: Pipeline\n";  // a duplicate key
  const std::string bad = dir_ + "/bad.yaml";
  std::ofstream(bad) << dup;
  LoadResult r = LoadPipelineFile(bad);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Entries().empty());
}

TEST_F(ParseCacheTest, AnEntryOutsideTheLimitsIsAMiss) {
  const std::string text = Pipeline(2000);
  const std::string path = dir_ + "/pipeline.yaml";
  std::ofstream(path) << text;
  ASSERT_TRUE(LoadPipelineFile(path).ok());
  auto entries = Entries();
  ASSERT_EQ(entries.size(), 1u);
  // A foreign entry whose root map holds itself: walking it would never end.
  YamlDocument cyclic = ParseYaml("a: [1]\n");
  ASSERT_TRUE(WithinLimits(cyclic));
  cyclic.nodes[2].children.push_back(cyclic.root);
  EXPECT_FALSE(WithinLimits(cyclic));
  { std::ofstream(entries[0], std::ios::binary | std::ios::trunc) << EncodeYamlDocument(cyclic); }
  LoadResult r = LoadPipelineFile(path);
  ASSERT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  EXPECT_EQ(r.spec->steps.size(), 2000u);
  // So are one that nests too deep and one with a string over the limit.
  YamlDocument deep = ParseYaml(std::string(64, '[') + std::string(64, ']'));
  ASSERT_TRUE(WithinLimits(deep));
  deep.nodes.back().kind = YamlNode::Kind::kSequence;
  deep.nodes.back().children.clear();
  YamlNode extra;
  extra.kind = YamlNode::Kind::kSequence;
  deep.nodes.push_back(extra);
  deep.nodes[deep.nodes.size() - 2].children.push_back(static_cast<uint32_t>(deep.nodes.size() - 1));
  EXPECT_FALSE(WithinLimits(deep));
  YamlDocument long_string = ParseYaml("a: b\n");
  long_string.nodes[2].value.assign(kMaxScalarBytes + 1, 'x');
  EXPECT_FALSE(WithinLimits(long_string));
}

TEST_F(ParseCacheTest, OffTurnsTheCacheOff) {
  setenv("SLUICE_PARSE_CACHE", "off", 1);
  EXPECT_EQ(ParseCacheDir(), "");
  const std::string path = dir_ + "/pipeline.yaml";
  std::ofstream(path) << Pipeline(2000);
  EXPECT_TRUE(LoadPipelineFile(path).ok());
  EXPECT_TRUE(Entries().empty());
}

}  // namespace
}  // namespace sluice::dsl
