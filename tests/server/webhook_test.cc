#include "engine/server/webhook.h"

#include <gtest/gtest.h>

#include "engine/server/config.h"

namespace sluice::server {
namespace {

// The example from GitHub's "Validating webhook deliveries" documentation.
TEST(GithubSignatureTest, MatchesGithubsDocumentedExample) {
  EXPECT_EQ(GithubSignature("It's a Secret to Everybody", "Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
  EXPECT_TRUE(VerifyGithubSignature(
      "It's a Secret to Everybody", "Hello, World!",
      "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
}

TEST(GithubSignatureTest, RejectsWrongSecretTamperedBodyAndMalformedHeaders) {
  const std::string body = R"({"ref":"refs/heads/main","commits":[]})";
  const std::string good = GithubSignature("s3cret", body);
  EXPECT_TRUE(VerifyGithubSignature("s3cret", body, good));
  EXPECT_FALSE(VerifyGithubSignature("other", body, good));
  EXPECT_FALSE(VerifyGithubSignature("s3cret", body + " ", good));
  EXPECT_FALSE(VerifyGithubSignature("s3cret", body, ""));
  EXPECT_FALSE(VerifyGithubSignature("s3cret", body, good.substr(7)));  // no "sha256="
  EXPECT_FALSE(VerifyGithubSignature("s3cret", body, "sha1=" + good.substr(7)));
  EXPECT_FALSE(VerifyGithubSignature("", body, GithubSignature("", body)));  // disabled
}

TEST(GitlabTokenTest, ComparesHashes) {
  const std::string hash = HashToken("gl-token");
  EXPECT_TRUE(VerifyGitlabToken(hash, "gl-token"));
  EXPECT_FALSE(VerifyGitlabToken(hash, "gl-token2"));
  EXPECT_FALSE(VerifyGitlabToken(hash, ""));
  EXPECT_FALSE(VerifyGitlabToken("", "gl-token"));
}

TEST(PushEventTest, CollectsAddedAndModifiedFilesOfAllCommits) {
  auto event = ParsePushEvent(R"({
    "ref": "refs/heads/main", "after": "abc123",
    "commits": [
      {"id": "1", "added": ["pipelines/new.yaml"], "modified": ["README.md"], "removed": ["old.yaml"]},
      {"id": "2", "added": [], "modified": ["pipelines/retrain.yaml", "README.md"]}
    ]})");
  ASSERT_TRUE(event.has_value()) << event.error().ToString();
  EXPECT_EQ(event->ref, "refs/heads/main");
  EXPECT_EQ(event->after, "abc123");
  EXPECT_EQ(event->changed,
            (std::vector<std::string>{"README.md", "pipelines/new.yaml", "pipelines/retrain.yaml"}));
}

TEST(PushEventTest, RejectsNonPushBodies) {
  EXPECT_EQ(ParsePushEvent("not json").error().message(), "webhook body is not a JSON object");
  EXPECT_EQ(ParsePushEvent(R"({"zen": "ping"})").error().message(),
            "webhook body has no 'commits' list; only push events trigger pipelines");
}

}  // namespace
}  // namespace sluice::server
