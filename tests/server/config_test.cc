#include "engine/server/config.h"

#include <gtest/gtest.h>

namespace sluice::server {
namespace {

TEST(ServerConfigTest, ParsesEveryField) {
  const std::string hash = HashToken("tok-1");
  auto config = ParseServerConfig(R"(
listen: 0.0.0.0:9000
maxConcurrentRuns: 8
reloadInterval: 500ms
tokens:
  - name: ci
    sha256: )" + hash + R"(
webhooks:
  github:
    secret: hook-secret
  gitlab:
    tokenSha256: )" + HashToken("gl") + R"(
metrics:
  requireAuth: true
historyLimit: 25
)",
                                  "server.yaml");
  ASSERT_TRUE(config.has_value()) << config.error().ToString();
  EXPECT_EQ(config->listen, "0.0.0.0:9000");
  EXPECT_EQ(config->max_concurrent_runs, 8);
  EXPECT_EQ(config->reload_interval, Duration(500));
  ASSERT_EQ(config->tokens.size(), 1u);
  EXPECT_EQ(config->tokens[0].name, "ci");
  EXPECT_EQ(config->tokens[0].sha256_hex, hash);
  EXPECT_EQ(config->github_secret, "hook-secret");
  EXPECT_EQ(config->gitlab_token_sha256, HashToken("gl"));
  EXPECT_TRUE(config->metrics_require_auth);
  EXPECT_EQ(config->history_limit, 25);
}

TEST(ServerConfigTest, JsonIsAccepted) {
  auto config = ParseServerConfig(R"({"tokens": [{"name": "a", "sha256": ")" + HashToken("x") +
                                      R"("}]})",
                                  "server.json");
  ASSERT_TRUE(config.has_value()) << config.error().ToString();
  EXPECT_EQ(config->tokens.size(), 1u);
}

TEST(ServerConfigTest, ErrorsSayWhereAndWhat) {
  EXPECT_EQ(ParseServerConfig("tokenz: []\n", "s.yaml").error().message(),
            "s.yaml:1:1: unknown key 'tokenz' in the server config (expected one of: listen, "
            "maxConcurrentRuns, reloadInterval, tokens, webhooks, metrics, historyLimit)");
  EXPECT_EQ(ParseServerConfig("historyLimit: -1\n", "s.yaml").error().message(),
            "s.yaml:1:15: historyLimit must be 0 (keep every run) or more");
  EXPECT_EQ(ParseServerConfig("tokens:\n  - name: ci\n    sha256: plaintext-token\n", "s.yaml")
                .error()
                .message(),
            "s.yaml:3:13: token sha256 must be 64 lower-case hex characters: the SHA-256 of the "
            "token (`printf %s TOKEN | sha256sum`), never the token itself");
  EXPECT_EQ(ParseServerConfig("reloadInterval: soon\n", "s.yaml").error().message(),
            "s.yaml:1:17: reloadInterval 'soon' is not a duration like 500ms, 2s or 1m");
  EXPECT_EQ(ParseServerConfig("maxConcurrentRuns: many\n", "s.yaml").error().message(),
            "s.yaml:1:20: value has the wrong type");
  EXPECT_EQ(ParseServerConfig("tokens: [\n", "s.yaml").error().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadServerConfig("/nonexistent/server.yaml").error().code(), StatusCode::kNotFound);
}

TEST(TokenAuthenticatorTest, AcceptsOnlyBearerTokensWhoseHashIsConfigured) {
  TokenAuthenticator auth({{"ci", HashToken("tok-1")}, {"ops", HashToken("tok-2")}});
  EXPECT_EQ(auth.Authenticate("Bearer tok-1"), "ci");
  EXPECT_EQ(auth.Authenticate("Bearer tok-2"), "ops");
  EXPECT_EQ(auth.Authenticate("Bearer tok-3"), std::nullopt);
  EXPECT_EQ(auth.Authenticate("tok-1"), std::nullopt);
  EXPECT_EQ(auth.Authenticate("Basic dG9rLTE="), std::nullopt);
  EXPECT_EQ(auth.Authenticate("Bearer "), std::nullopt);
  EXPECT_EQ(auth.Authenticate(""), std::nullopt);
  // The stored hash itself is not a token.
  EXPECT_EQ(auth.Authenticate("Bearer " + HashToken("tok-1")), std::nullopt);
}

TEST(TokenAuthenticatorTest, NoTokensConfiguredMeansNobodyGetsIn) {
  TokenAuthenticator auth({});
  EXPECT_EQ(auth.Authenticate("Bearer anything"), std::nullopt);
}

}  // namespace
}  // namespace sluice::server
