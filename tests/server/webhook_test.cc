#include "engine/server/webhook.h"

#include <gtest/gtest.h>

#include "engine/server/config.h"
#include "server_test_util.h"

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

TEST(DeliveryIdTest, AcceptsGuidsAndRejectsSpacesControlBytesAndLongIds) {
  EXPECT_TRUE(IsDeliveryId("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
  EXPECT_FALSE(IsDeliveryId(""));
  EXPECT_FALSE(IsDeliveryId("a b"));
  EXPECT_FALSE(IsDeliveryId("a\nb"));
  EXPECT_FALSE(IsDeliveryId("caf\xc3\xa9"));
  EXPECT_FALSE(IsDeliveryId(std::string(129, 'a')));
}

// The window and the cap, across reopening the file (a restart).
TEST(DeliveryLogTest, RemembersWithinTheWindowAcrossRestartsAndForgetsOldest) {
  const std::string dir = testing::MakeTempDir("deliveries");
  const std::string path = dir + "/deliveries.log";
  const TimePoint t0 = TimePoint(std::chrono::hours(24 * 20000));
  const auto hour = std::chrono::hours(1);
  {
    DeliveryLog log(path, hour, 3);
    ASSERT_TRUE(log.Open(t0).ok());
    EXPECT_TRUE(log.Claim("github:a", t0));
    TimePoint first;
    EXPECT_FALSE(log.Claim("github:a", t0 + std::chrono::minutes(1), &first));
    EXPECT_EQ(first, t0);
    EXPECT_TRUE(log.Claim("gitlab:a", t0));  // the source is part of the key
  }
  {
    DeliveryLog restarted(path, hour, 3);
    ASSERT_TRUE(restarted.Open(t0 + std::chrono::minutes(10)).ok());
    EXPECT_FALSE(restarted.Claim("github:a", t0 + std::chrono::minutes(10)));
  }
  {
    DeliveryLog later(path, hour, 3);
    ASSERT_TRUE(later.Open(t0 + 2 * hour).ok());
    EXPECT_TRUE(later.Claim("github:a", t0 + 2 * hour));  // past the window
    for (const char* key : {"github:b", "github:c", "github:d"})
      EXPECT_TRUE(later.Claim(key, t0 + 2 * hour));
    EXPECT_TRUE(later.Claim("github:a", t0 + 2 * hour));  // over the cap: the oldest went
    EXPECT_FALSE(later.Claim("github:d", t0 + 2 * hour));
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice::server
