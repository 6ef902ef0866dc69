// The route table and the role and scope rules of engine/server/authz.h.
#include "engine/server/authz.h"

#include <gtest/gtest.h>

namespace sluice::server {
namespace {

TEST(PipelinePatternTest, StarAndQuestionMarkMatchWholeNames) {
  EXPECT_TRUE(PipelinePatternMatches("retrain-*", "retrain-fraud"));
  EXPECT_TRUE(PipelinePatternMatches("retrain-*", "retrain-"));
  EXPECT_FALSE(PipelinePatternMatches("retrain-*", "nightly-retrain-fraud"));
  EXPECT_TRUE(PipelinePatternMatches("*-eval", "nightly-eval"));
  EXPECT_FALSE(PipelinePatternMatches("*-eval", "nightly-eval-2"));
  EXPECT_TRUE(PipelinePatternMatches("a*b*c", "axxbyybzc"));
  EXPECT_TRUE(PipelinePatternMatches("job-?", "job-7"));
  EXPECT_FALSE(PipelinePatternMatches("job-?", "job-17"));
  EXPECT_TRUE(PipelinePatternMatches("hello", "hello"));
  EXPECT_FALSE(PipelinePatternMatches("hello", "hello2"));
  Identity everyone{"ops", Role::kAdmin, {}};
  EXPECT_TRUE(everyone.MayAccessPipeline("anything"));
  Identity scoped{"ci", Role::kRunner, {"retrain-*", "nightly-eval"}};
  EXPECT_TRUE(scoped.MayAccessPipeline("nightly-eval"));
  EXPECT_TRUE(scoped.MayAccessPipeline("retrain-x"));
  EXPECT_FALSE(scoped.MayAccessPipeline("hello"));
}

TEST(RouteTableTest, FindsTheRuleAndTheValuesOfItsSegments) {
  auto m = FindRoute("GET", "/api/v1/runs/r-1/steps/train[1]/logs");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(std::string(m->rule->path), "/api/v1/runs/{run}/steps/{instance}/logs");
  EXPECT_EQ(m->Param("run"), "r-1");
  EXPECT_EQ(m->Param("instance"), "train[1]");
  EXPECT_EQ(m->Param("pipeline"), "");
  EXPECT_EQ(FindRoute("DELETE", "/api/v1/runs/r-1")->rule->min_role, Role::kAdmin);
  EXPECT_EQ(FindRoute("GET", "/api/v1/runs/r-1")->rule->min_role, Role::kViewer);
  EXPECT_TRUE(FindRoute("DELETE", "/api/v1/runs/r-1")->rule->write());
  EXPECT_FALSE(FindRoute("GET", "/api/v1/runs/r-1")->rule->write());
  EXPECT_EQ(FindRoute("POST", "/api/v1/webhooks/github")->rule->access, RouteAccess::kSignature);
  EXPECT_EQ(FindRoute("GET", "/metrics")->rule->access, RouteAccess::kMetrics);
  // No rule: an empty segment, a trailing slash, another method, more segments.
  EXPECT_FALSE(FindRoute("GET", "/api/v1/runs//steps"));
  EXPECT_FALSE(FindRoute("GET", "/api/v1/runs/"));
  EXPECT_FALSE(FindRoute("PUT", "/api/v1/runs/r-1"));
  EXPECT_EQ(std::string(FindRoute("HEAD", "/metrics")->rule->path), "/metrics");
  EXPECT_FALSE(FindRoute("GET", "/api/v1/runs/r-1/steps/a/logs/more"));
  EXPECT_FALSE(FindRoute("GET", "/ui/app.js"));
}

TEST(RouteTableTest, EachRoleMayDoWhatTheOneBeforeItMay) {
  const RouteRule& cancel = *FindRoute("POST", "/api/v1/runs/r/cancel")->rule;
  EXPECT_EQ(CheckRole({"grafana", Role::kViewer, {}}, cancel).ToString(),
            "PERMISSION_DENIED: 'grafana' has the role viewer; POST /api/v1/runs/{run}/cancel needs "
            "runner or above");
  EXPECT_TRUE(CheckRole({"ci", Role::kRunner, {}}, cancel).ok());
  EXPECT_TRUE(CheckRole({"ops", Role::kAdmin, {}}, cancel).ok());
  EXPECT_TRUE(CheckRole({"grafana", Role::kViewer, {}}, *FindRoute("GET", "/healthz")->rule).ok());
  EXPECT_EQ(ParseRole("runner"), Role::kRunner);
  EXPECT_EQ(ParseRole("root"), std::nullopt);
  EXPECT_STREQ(RoleName(Role::kAdmin), "admin");
}

}  // namespace
}  // namespace sluice::server
