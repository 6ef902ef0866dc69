// The lint corpus: every tests/dsl/lint/<name>.yaml is a malformed (or
// warning-only) pipeline; <name>.expected holds the exact diagnostics
// `sluice lint` prints for it, paths relative to the corpus directory.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dsl/dsl.h"

namespace sluice::dsl {
namespace {

const std::string kCorpus = SLUICE_LINT_CORPUS_DIR;

std::vector<std::string> CorpusNames() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(kCorpus))
    if (e.path().extension() == ".yaml") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
  for (size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size())) s.replace(i, from.size(), to);
  return s;
}

class LintCorpusTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LintCorpusTest, MatchesExpectedDiagnostics) {
  const std::string name = GetParam();
  const std::string expected_path = kCorpus + "/" + name + ".expected";
  ASSERT_TRUE(std::filesystem::exists(expected_path)) << "missing " << expected_path;
  LoadResult r = LoadPipelineFile(kCorpus + "/" + name + ".yaml");
  std::string got = ReplaceAll(FormatDiagnosticsText(r.diagnostics), kCorpus + "/", "");
  EXPECT_EQ(got, ReadFile(expected_path));
  // An error means no spec; warnings alone still load.
  EXPECT_EQ(r.ok(), r.ErrorCount() == 0);
  EXPECT_FALSE(r.diagnostics.empty()) << "a corpus file must produce at least one diagnostic";
}

INSTANTIATE_TEST_SUITE_P(Corpus, LintCorpusTest, ::testing::ValuesIn(CorpusNames()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(LintCorpus, HasAtLeastFortyFiveMalformedPipelines) {
  size_t errors = 0;
  for (const auto& name : CorpusNames())
    if (ReadFile(kCorpus + "/" + name + ".expected").find(": error: ") != std::string::npos) ++errors;
  EXPECT_GE(errors, 45u);
}

}  // namespace
}  // namespace sluice::dsl
