// Components from Git (`uses: git+<url>@<ref>#<path>`), against real local
// repositories served through file:// by the real git: a ref is resolved to
// a commit and recorded, a moved branch gives the new commit, a pinned
// commit keeps its content and needs no fetch once cached, and every
// mistake is an error at `uses:`.

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "dsl/dsl.h"
#include "engine/git_source.h"
#include "engine/process.h"

namespace sluice::dsl {
namespace {

namespace fs = std::filesystem;

std::string Component(const std::string& image) {
  return R"(apiVersion: sluice.dev/v1
kind: Component
metadata: {name: train}
inputs:
  lr: {type: number, default: 0.1}
step:
  image: )" + image + R"(
  command: [python3, "{{ component.dir }}/train.py", --lr, "{{ inputs.lr }}"]
  code: [train.py]
)";
}

class GitComponentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sluice-git-components-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_ / "src/parts");
    fs::create_directories(dir_ / "pipeline");
    // The cache is this test's own.
    const char* old = std::getenv("SLUICE_CACHE_DIR");
    old_cache_ = old ? std::optional<std::string>(old) : std::nullopt;
    ::setenv("SLUICE_CACHE_DIR", (dir_ / "cache").c_str(), 1);
    Git({"init", "--quiet", "--initial-branch=main", (dir_ / "src").string()});
    first_ = Commit(Component("python:3.11-slim"), "one");
    url_ = "file://" + (dir_ / "src").string();
  }
  void TearDown() override {
    if (old_cache_) ::setenv("SLUICE_CACHE_DIR", old_cache_->c_str(), 1);
    else ::unsetenv("SLUICE_CACHE_DIR");
    fs::remove_all(dir_);
  }

  std::string Git(std::vector<std::string> args) {
    args.insert(args.begin(), {"git", "-c", "user.name=t", "-c", "user.email=t@example.com"});
    auto r = RunProgram(args, (dir_ / "src").string());
    EXPECT_TRUE(r && r->exit_code == 0) << args[5];
    return r ? std::string(r->out.substr(0, r->out.find('\n'))) : "";
  }

  // Writes the component and its script, commits, returns the commit.
  std::string Commit(const std::string& component, const std::string& message) {
    std::ofstream(dir_ / "src/parts/train.yaml") << component;
    std::ofstream(dir_ / "src/parts/train.py") << "print('" << message << "')\n";
    Git({"add", "-A"});
    Git({"commit", "--quiet", "-m", message});
    return Git({"rev-parse", "HEAD"});
  }

  LoadResult Load(const std::string& uses) {
    std::ofstream(dir_ / "pipeline/pipeline.yaml") << "apiVersion: sluice.dev/v1\n"
                                                      "kind: Pipeline\n"
                                                      "metadata: {name: p}\n"
                                                      "steps:\n"
                                                      "  - name: train\n"
                                                      "    uses: " + uses + "\n"
                                                      "    with: {lr: 0.5}\n";
    return LoadPipelineFile((dir_ / "pipeline/pipeline.yaml").string());
  }

  // Lint's text, with the temporary directory cut out.
  std::string Lint(const std::string& uses) {
    std::string text = FormatDiagnosticsText(Load(uses).diagnostics);
    const std::string prefix = dir_.string() + "/";
    for (size_t at = text.find(prefix); at != std::string::npos; at = text.find(prefix, at)) text.erase(at, prefix.size());
    return text;
  }

  fs::path dir_;
  std::optional<std::string> old_cache_;
  std::string first_, url_;
};

TEST_F(GitComponentsTest, ABranchIsResolvedToItsCommitAndRecorded) {
  LoadResult r = Load("git+" + url_ + "@main#parts/train.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  const StepSpec& s = r.spec->steps[0];
  EXPECT_EQ(s.component_file, "git+" + url_ + "@" + first_ + "#parts/train.yaml");
  EXPECT_EQ(s.image, "python:3.11-slim");
  EXPECT_EQ(s.inputs.at("lr").text, "0.5");
  // The code comes from the commit's tree in the cache, and the component
  // file is part of the code digest.
  const std::string tree = (dir_ / "cache/git/trees" / first_ / "parts").string();
  ASSERT_EQ(s.code.size(), 2u);
  EXPECT_TRUE(fs::equivalent(dir_ / "pipeline" / s.code[0], tree + "/train.py")) << s.code[0];
  EXPECT_TRUE(fs::equivalent(dir_ / "pipeline" / s.code[1], tree + "/train.yaml")) << s.code[1];
  EXPECT_EQ(s.command[1].text, "{{ pipeline.dir }}/" + s.code[0]);
}

// `pipeline:` takes the same Git sources: the sub-pipeline comes from the
// commit's tree, and its file is in each inner step's code files.
TEST_F(GitComponentsTest, ASubPipelineFromGit) {
  std::ofstream(dir_ / "src/parts/eval.yaml") << R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: eval}
params:
  lr: {type: number}
steps:
  - name: score
    command: [python3, "{{ pipeline.dir }}/train.py", --lr, "{{ params.lr }}"]
    code: [train.py]
)";
  Git({"add", "-A"});
  Git({"commit", "--quiet", "-m", "eval"});
  const std::string commit = Git({"rev-parse", "HEAD"});
  std::ofstream(dir_ / "pipeline/pipeline.yaml") << "apiVersion: sluice.dev/v1\n"
                                                    "kind: Pipeline\n"
                                                    "metadata: {name: p}\n"
                                                    "steps:\n"
                                                    "  - name: eval\n"
                                                    "    pipeline: git+" + url_ + "@main#parts/eval.yaml\n"
                                                    "    with: {lr: 0.5}\n";
  LoadResult r = LoadPipelineFile((dir_ / "pipeline/pipeline.yaml").string());
  ASSERT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  ASSERT_EQ(r.spec->steps.size(), 1u);
  const StepSpec& s = r.spec->steps[0];
  EXPECT_EQ(s.name, "eval/score");
  const std::string tree = (dir_ / "cache/git/trees" / commit / "parts").string();
  ASSERT_EQ(s.code.size(), 2u);
  EXPECT_TRUE(fs::equivalent(dir_ / "pipeline" / s.code[0], tree + "/train.py")) << s.code[0];
  EXPECT_TRUE(fs::equivalent(dir_ / "pipeline" / s.code[1], tree + "/eval.yaml")) << s.code[1];
  EXPECT_EQ(s.command[1].text, "{{ pipeline.dir }}/" + fs::path(s.code[0]).parent_path().string() + "/train.py");
  EXPECT_EQ(s.command[3].text, "{{ 0.5 }}");
}

// A component graph from Git: its own step records the graph at the
// resolved commit, and a step of it that uses a component beside it records
// that component at the same commit.
TEST_F(GitComponentsTest, AComponentGraphFromGit) {
  std::ofstream(dir_ / "src/parts/graph.yaml") << R"(apiVersion: sluice.dev/v1
kind: Component
metadata: {name: graph}
inputs:
  lr: {type: number}
steps:
  - name: train
    uses: train.yaml
    with: {lr: "{{ inputs.lr }}"}
  - name: score
    depends: [train]
    image: python:3.11-slim
    command: [python3, "{{ component.dir }}/train.py", --lr, "{{ inputs.lr }}"]
    code: [train.py]
)";
  Git({"add", "-A"});
  Git({"commit", "--quiet", "-m", "graph"});
  const std::string commit = Git({"rev-parse", "HEAD"});
  LoadResult r = Load("git+" + url_ + "@main#parts/graph.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  ASSERT_EQ(r.spec->steps.size(), 2u);
  EXPECT_EQ(r.spec->steps[0].name, "train/train");
  EXPECT_EQ(r.spec->steps[0].component_file, "git+" + url_ + "@" + commit + "#parts/train.yaml");
  const StepSpec& score = r.spec->steps[1];
  EXPECT_EQ(score.name, "train/score");
  EXPECT_EQ(score.component_file, "git+" + url_ + "@" + commit + "#parts/graph.yaml");
  EXPECT_EQ(score.component_digest.size(), 64u);
  const std::string tree = (dir_ / "cache/git/trees" / commit / "parts").string();
  ASSERT_EQ(score.code.size(), 2u);
  EXPECT_TRUE(fs::equivalent(dir_ / "pipeline" / score.code[0], tree + "/train.py")) << score.code[0];
  EXPECT_TRUE(fs::equivalent(dir_ / "pipeline" / score.code[1], tree + "/graph.yaml")) << score.code[1];
  EXPECT_EQ(score.command[3].text, "{{ 0.5 }}");
}

TEST_F(GitComponentsTest, AMovedBranchGivesTheNewCommitAndAPinnedCommitKeepsItsContent) {
  ASSERT_TRUE(Load("git+" + url_ + "@main#parts/train.yaml").ok());
  const std::string second = Commit(Component("python:3.12-slim"), "two");
  ASSERT_NE(second, first_);

  LoadResult moved = Load("git+" + url_ + "@main#parts/train.yaml");
  ASSERT_TRUE(moved.ok()) << FormatDiagnosticsText(moved.diagnostics);
  EXPECT_EQ(moved.spec->steps[0].component_file, "git+" + url_ + "@" + second + "#parts/train.yaml");
  EXPECT_EQ(moved.spec->steps[0].image, "python:3.12-slim");

  LoadResult pinned = Load("git+" + url_ + "@" + first_ + "#parts/train.yaml");
  ASSERT_TRUE(pinned.ok()) << FormatDiagnosticsText(pinned.diagnostics);
  EXPECT_EQ(pinned.spec->steps[0].component_file, "git+" + url_ + "@" + first_ + "#parts/train.yaml");
  EXPECT_EQ(pinned.spec->steps[0].image, "python:3.11-slim");
  EXPECT_NE(pinned.spec->steps[0].component_digest, moved.spec->steps[0].component_digest);
}

TEST_F(GitComponentsTest, ACachedCommitNeedsNoFetch) {
  ASSERT_TRUE(Load("git+" + url_ + "@main#parts/train.yaml").ok());
  fs::remove_all(dir_ / "src");
  LoadResult r = Load("git+" + url_ + "@" + first_ + "#parts/train.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  EXPECT_EQ(r.spec->steps[0].component_file, "git+" + url_ + "@" + first_ + "#parts/train.yaml");
  // A branch must be fetched: with the repository gone that is an error at
  // `uses:` carrying git's own words.
  std::string text = Lint("git+" + url_ + "@main#parts/train.yaml");
  EXPECT_EQ(text.rfind("pipeline/pipeline.yaml:6:11: error: cannot use component 'git+file://src@main"
                       "#parts/train.yaml': cannot fetch file://src at main: ",
                       0),
            0u)
      << text;
}

TEST_F(GitComponentsTest, MistakesAreErrorsAtUses) {
  EXPECT_EQ(Lint("git+" + url_ + "#parts/train.yaml"),
            "pipeline/pipeline.yaml:6:11: error: invalid component source 'git+file://src#parts/train.yaml': no "
            "'@<ref>': pin the component to a tag, a branch or a commit (the form is "
            "git+<repo-url>@<ref>#<path>)\n");
  EXPECT_EQ(Lint("git+" + url_ + "@main"),
            "pipeline/pipeline.yaml:6:11: error: invalid component source 'git+file://src@main': no '#<path>' "
            "naming the file in the repository (the form is git+<repo-url>@<ref>#<path>)\n");
  EXPECT_EQ(Lint("git+" + url_ + "@main#../etc/passwd"),
            "pipeline/pipeline.yaml:6:11: error: invalid component source 'git+file://src@main#../etc/passwd': "
            "the path must be relative and stay inside the repository (the form is "
            "git+<repo-url>@<ref>#<path>)\n");
  EXPECT_EQ(Lint("git+ext::sh -c touch% /tmp/pwned@main#x.yaml"),
            "pipeline/pipeline.yaml:6:11: error: invalid component source 'git+ext::sh -c touch% "
            "/tmp/pwned@main#x.yaml': the repository URL must start with https://, http://, ssh://, git:// "
            "or file:// (the form is git+<repo-url>@<ref>#<path>)\n");
  EXPECT_EQ(Lint("git+" + url_ + "@--upload-pack=x#parts/train.yaml"),
            "pipeline/pipeline.yaml:6:11: error: invalid component source 'git+file://src@--upload-pack=x"
            "#parts/train.yaml': '--upload-pack=x' is not a Git ref (the form is git+<repo-url>@<ref>#<path>)\n");
  std::string text = Lint("git+" + url_ + "@main#parts/nope.yaml");
  EXPECT_NE(text.find("error: cannot read component file 'git+file://src@main#parts/nope.yaml'"), std::string::npos)
      << text;
  EXPECT_NE(text.find("; the path after '#' is relative to the repository's root\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace sluice::dsl
