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
            "maxConcurrentRuns, reloadInterval, tokens, webhooks, metrics, historyLimit, http, artifacts, store, oidc)");
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

TEST(ServerConfigTest, TokensCarryARoleAndPipelineScope) {
  auto config = ParseServerConfig(R"(tokens:
  - name: old-style
    sha256: )" + HashToken("a") + R"(
  - name: dashboards
    sha256: )" + HashToken("b") + R"(
    role: viewer
  - name: retrain-ci
    sha256: )" + HashToken("c") + R"(
    role: runner
    pipelines: ["retrain-*", "nightly-eval"]
)",
                                  "server.yaml");
  ASSERT_TRUE(config.has_value()) << config.error().ToString();
  ASSERT_EQ(config->tokens.size(), 3u);
  EXPECT_EQ(config->tokens[0].role, Role::kAdmin);  // no role: admin, as before roles existed
  EXPECT_TRUE(config->tokens[0].pipelines.empty());
  EXPECT_EQ(config->tokens[1].role, Role::kViewer);
  EXPECT_EQ(config->tokens[2].role, Role::kRunner);
  EXPECT_EQ(config->tokens[2].pipelines, (std::vector<std::string>{"retrain-*", "nightly-eval"}));
}

TEST(ServerConfigTest, UnknownRolesAndBadPatternsSayWhere) {
  const std::string head = "tokens:\n  - name: ci\n    sha256: " + HashToken("a") + "\n";
  auto error = [&](const std::string& tail) {
    auto c = ParseServerConfig(head + tail, "s.yaml");
    return c ? std::string("(parsed)") : c.error().message();
  };
  EXPECT_EQ(error("    role: owner\n"),
            "s.yaml:4:11: unknown role 'owner' (expected one of: viewer, runner, admin)");
  EXPECT_EQ(error("    role: Admin\n"),
            "s.yaml:4:11: unknown role 'Admin' (expected one of: viewer, runner, admin)");
  EXPECT_EQ(error("    pipelines: [\"retrain-*\", \"Team/*\"]\n"),
            "s.yaml:4:30: pipeline pattern 'Team/*' may hold only a-z, 0-9, '-' (pipeline names are "
            "DNS labels) and the wildcards '*' and '?'");
  EXPECT_EQ(error("    pipelines: retrain-*\n"),
            "s.yaml:4:16: pipelines must be a non-empty list of pipeline name patterns, like "
            "[\"retrain-*\"]; leave it out for every pipeline");
  EXPECT_EQ(error("    pipelines: []\n"),
            "s.yaml:4:16: pipelines must be a non-empty list of pipeline name patterns, like "
            "[\"retrain-*\"]; leave it out for every pipeline");
  EXPECT_EQ(error("    pipelines: [\"\"]\n"), "s.yaml:4:17: a pipeline pattern must be 1 to 63 characters");
  EXPECT_EQ(error("    scopes: [a]\n"),
            "s.yaml:4:5: unknown key 'scopes' in a token (expected one of: name, sha256, role, pipelines)");
}

TEST(TokenAuthenticatorTest, AcceptsOnlyBearerTokensWhoseHashIsConfigured) {
  TokenAuthenticator auth({{"ci", HashToken("tok-1"), Role::kRunner, {"retrain-*"}},
                           {"ops", HashToken("tok-2")}});
  auto ci = auth.Authenticate("Bearer tok-1");
  ASSERT_TRUE(ci.has_value());
  EXPECT_EQ(ci->name, "ci");
  EXPECT_EQ(ci->role, Role::kRunner);
  EXPECT_EQ(ci->pipelines, std::vector<std::string>{"retrain-*"});
  auto ops = auth.Authenticate("Bearer tok-2");
  ASSERT_TRUE(ops.has_value());
  EXPECT_EQ(ops->name, "ops");
  EXPECT_EQ(ops->role, Role::kAdmin);
  EXPECT_FALSE(auth.Authenticate("Bearer tok-3"));
  EXPECT_FALSE(auth.Authenticate("tok-1"));
  EXPECT_FALSE(auth.Authenticate("Basic dG9rLTE="));
  EXPECT_FALSE(auth.Authenticate("Bearer "));
  EXPECT_FALSE(auth.Authenticate(""));
  // The stored hash itself is not a token.
  EXPECT_FALSE(auth.Authenticate("Bearer " + HashToken("tok-1")));
}

TEST(TokenAuthenticatorTest, NoTokensConfiguredMeansNobodyGetsIn) {
  TokenAuthenticator auth({});
  EXPECT_FALSE(auth.Authenticate("Bearer anything"));
}

}  // namespace
}  // namespace sluice::server
