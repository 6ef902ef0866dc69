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
artifacts: s3://ml-artifacts/team-a
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
  EXPECT_EQ(config->artifacts, "s3://ml-artifacts/team-a");
}

TEST(ServerConfigTest, ArtifactStoreMustBeAnS3Url) {
  auto config = ParseServerConfig("listen: 127.0.0.1:0\nartifacts: s3://ML/x\n", "server.yaml");
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().message(),
            "server.yaml:2:12: invalid artifact store: 's3://ML/x': bucket name 'ML' is not valid (3 to 63 "
            "lower-case letters, digits, '-' and '.')");
  config = ParseServerConfig("artifacts: /data/bucket\n", "server.yaml");
  EXPECT_EQ(config.error().message(),
            "server.yaml:1:12: invalid artifact store: '/data/bucket' is not an S3 URL (expected s3://bucket/prefix)");
}

TEST(ServerConfigTest, StoreIsAPostgresUrl) {
  auto config = ParseServerConfig("store: postgres://sluice:pw@db.internal:5432/sluice\n", "server.yaml");
  ASSERT_TRUE(config.has_value()) << config.error().ToString();
  EXPECT_EQ(config->store, "postgres://sluice:pw@db.internal:5432/sluice");
  EXPECT_EQ(ParseServerConfig("listen: 127.0.0.1:0\n", "server.yaml")->store, "");
  // A directory is serve --store's; the message does not echo the value.
  config = ParseServerConfig("store: /var/lib/sluice\n", "server.yaml");
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().message(),
            "server.yaml:1:8: store must be a postgres:// or postgresql:// URL (a store directory is given with "
            "serve --store)");
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
            "maxConcurrentRuns, reloadInterval, tokens, webhooks, metrics, historyLimit, http, artifacts, store)");
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

TEST(ServerConfigTest, HttpLimitsHaveDefaultsAndCanBeSet) {
  auto defaults = ParseServerConfig("listen: 127.0.0.1:8080\n", "s.yaml");
  ASSERT_TRUE(defaults.has_value());
  EXPECT_EQ(defaults->http.request_timeout, Duration(10000));
  EXPECT_EQ(defaults->http.idle_timeout, Duration(5000));
  EXPECT_EQ(defaults->http.max_requests_per_connection, 100);
  EXPECT_EQ(defaults->http.max_connections, 256);
  EXPECT_EQ(defaults->http.max_connections_per_client, 32);
  EXPECT_EQ(defaults->http.max_body_bytes, 16 << 20);
  auto set = ParseServerConfig(R"(http:
  requestTimeout: 30s
  idleTimeout: 500ms
  maxRequestsPerConnection: 10
  maxConnections: 1000
  maxConnectionsPerClient: 200
  maxBodyBytes: 1048576
)",
                               "s.yaml");
  ASSERT_TRUE(set.has_value()) << set.error().ToString();
  EXPECT_EQ(set->http.request_timeout, Duration(30000));
  EXPECT_EQ(set->http.idle_timeout, Duration(500));
  EXPECT_EQ(set->http.max_requests_per_connection, 10);
  EXPECT_EQ(set->http.max_connections, 1000);
  EXPECT_EQ(set->http.max_connections_per_client, 200);
  EXPECT_EQ(set->http.max_body_bytes, 1048576);
}

TEST(ServerConfigTest, HttpLimitsOutOfRangeSayWhichAndWhere) {
  auto error = [](const std::string& text) {
    auto c = ParseServerConfig(text, "s.yaml");
    return c ? std::string("accepted") : c.error().message();
  };
  EXPECT_EQ(error("http:\n  requestTimeout: 0s\n"),
            "s.yaml:2:19: http.requestTimeout '0s' is not a duration from 100ms to 1h, like 500ms, "
            "10s or 1m");
  EXPECT_EQ(error("http:\n  idleTimeout: 99999999999999999999s\n"),
            "s.yaml:2:16: http.idleTimeout '99999999999999999999s' is not a duration from 100ms to "
            "1h, like 500ms, 10s or 1m");
  EXPECT_EQ(error("http:\n  maxConnections: 0\n"), "s.yaml:2:19: http.maxConnections must be from 1 to 100000");
  EXPECT_EQ(error("http:\n  maxConnectionsPerClient: 300\n"),
            "s.yaml:2:28: http.maxConnectionsPerClient (300) is more than http.maxConnections (256)");
  EXPECT_EQ(error("http:\n  maxBodyBytes: 10\n"),
            "s.yaml:2:17: http.maxBodyBytes must be from 1024 to 4294967296");
  EXPECT_EQ(error("http:\n  deadline: 5s\n"),
            "s.yaml:2:3: unknown key 'deadline' in http (expected one of: requestTimeout, idleTimeout, "
            "maxRequestsPerConnection, maxConnections, maxConnectionsPerClient, maxBodyBytes)");
  EXPECT_EQ(error("reloadInterval: 99999999999999999999s\n"),
            "s.yaml:1:17: reloadInterval '99999999999999999999s' is not a duration like 500ms, 2s or 1m");
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
