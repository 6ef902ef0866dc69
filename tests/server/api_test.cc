// Integration tests of `sluice serve`'s HTTP API: a real Server on a
// loopback port over a real SQLite store, with the Runner replaced by a fake
// that writes the same records (the seam is RunFactory).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>

#include <date/date.h>

#include <regex>

#include "engine/server/api_json.h"
#include "engine/server/authz.h"
#include "engine/server/client.h"
#include "engine/server/config.h"
#include "engine/server/openapi.h"
#include "engine/server/server.h"
#include "engine/server/webhook.h"
#include "server_test_util.h"

namespace sluice::server {
namespace {

using testing::FakeFactory;
using testing::FakeRunControl;
using testing::MakeTempDir;
using testing::WriteFile;

constexpr char kToken[] = "test-token-123";  // "ci": no role given, so admin
// One token per role, and a runner limited to pipelines "retrain-*".
constexpr char kViewerToken[] = "viewer-token-1";
constexpr char kRunnerToken[] = "runner-token-1";
constexpr char kAdminToken[] = "admin-token-1";
constexpr char kScopedToken[] = "scoped-token-1";
constexpr char kScopedAdminToken[] = "scoped-admin-token-1";  // an admin of "retrain-*"
constexpr char kGithubSecret[] = "gh-secret";
constexpr char kGitlabToken[] = "gl-token";

const char kHello[] = R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: hello
params:
  who:
    type: string
    default: world
steps:
  - name: a
    command: [echo, "{{ params.who }}"]
  - name: b
    depends: [a]
    command: [echo, b]
)";

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("api");
    WriteFile(root_ + "/repo/pipelines/hello.yaml", kHello);
    WriteFile(root_ + "/repo/pipelines/notes.yaml", "just: yaml\n");  // not a pipeline
    WriteFile(root_ + "/server.yaml", "tokens:\n  - name: ci\n    sha256: " + HashToken(kToken) +
                                          "\n  - name: dashboards\n    role: viewer\n    sha256: " +
                                          HashToken(kViewerToken) +
                                          "\n  - name: trainer\n    role: runner\n    sha256: " +
                                          HashToken(kRunnerToken) +
                                          "\n  - name: platform\n    role: admin\n    sha256: " +
                                          HashToken(kAdminToken) +
                                          "\n  - name: retrain-ci\n    role: runner\n    pipelines: "
                                          "[\"retrain-*\"]\n    sha256: " +
                                          HashToken(kScopedToken) +
                                          "\n  - name: retrain-admin\n    role: admin\n    pipelines: "
                                          "[\"retrain-*\"]\n    sha256: " +
                                          HashToken(kScopedAdminToken) +
                                          "\nwebhooks:\n  github:\n    secret: " + kGithubSecret +
                                          "\n  gitlab:\n    tokenSha256: " + HashToken(kGitlabToken) +
                                          "\n");
    StartServer(/*resume=*/false);
  }
  void TearDown() override {
    control_.Release();
    server_.reset();
    std::filesystem::remove_all(root_);
  }

  void StartServer(bool resume) {
    ServerOptions o;
    o.pipelines_dir = root_ + "/repo";
    o.state_dir = root_ + "/state";
    o.listen = "127.0.0.1:0";
    o.config_path = root_ + "/server.yaml";
    o.run_scheduler = false;
    o.watch = false;
    o.resume_interrupted = resume;
    o.max_concurrent_runs = 2;
    server_ = std::make_unique<Server>(o, nullptr, nullptr,
                                       FakeFactory([this] { return server_->store(); }, &control_));
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
    store_ = server_->store();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }

  httplib::Headers Auth() { return {{"Authorization", std::string("Bearer ") + kToken}}; }

  Json GetJson(const std::string& path, int expect = 200) {
    auto res = client_->Get(path.c_str(), Auth());
    EXPECT_TRUE(res) << path;
    if (!res) return nullptr;
    EXPECT_EQ(res->status, expect) << path << ": " << res->body;
    return Json::parse(res->body, nullptr, false);
  }

  Json PostJson(const std::string& path, const Json& body, int expect) {
    auto res = client_->Post(path.c_str(), Auth(), body.dump(), "application/json");
    EXPECT_TRUE(res) << path;
    if (!res) return nullptr;
    EXPECT_EQ(res->status, expect) << path << ": " << res->body;
    return Json::parse(res->body, nullptr, false);
  }

  // `method` ("get", "post", "delete", as OpenAPI spells them) on `path`,
  // with `token` as the bearer ("" = no Authorization header).
  httplib::Result Send(const std::string& method, const std::string& path, const std::string& token,
                       const std::string& body = "{}") {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    if (method == "get") return client_->Get(path.c_str(), headers);
    if (method == "delete") return client_->Delete(path.c_str(), headers);
    return client_->Post(path.c_str(), headers, body, "application/json");
  }

  // Triggers a run of `pipeline` and waits until no run is active.
  std::string TriggerAndWait(const std::string& pipeline = "hello") {
    Json r = PostJson("/api/v1/pipelines/" + pipeline + "/runs", Json::object(), 201);
    EXPECT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
    return r.value("run_id", "");
  }

  std::string Trigger(const Json& params = Json::object()) {
    Json r = PostJson("/api/v1/pipelines/hello/runs", {{"params", params}}, 201);
    return r.value("run_id", "");
  }

  std::string root_;
  Store* store_ = nullptr;
  FakeRunControl control_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<httplib::Client> client_;
};

// Every operation of the OpenAPI document, without a token and with a wrong
// one, gets 401 — except the two the document marks open (security: []).
TEST_F(ApiTest, EveryRouteInTheOpenApiDocumentRejectsMissingAndWrongTokens) {
  Json doc = OpenApiDocument();
  std::vector<std::string> open_ops;
  int checked = 0;
  for (const auto& [path, ops] : doc["paths"].items()) {
    std::string concrete = std::regex_replace(path, std::regex(R"(\{[^}]+\})"), "x");
    for (const auto& [method, op] : ops.items()) {
      if (op.contains("security") && op["security"].empty()) {
        open_ops.push_back(method + " " + path);
        continue;
      }
      for (const httplib::Headers& headers :
           {httplib::Headers{}, httplib::Headers{{"Authorization", "Bearer wrong"}},
            httplib::Headers{{"Authorization", std::string("Basic ") + kToken}},
            httplib::Headers{{"Authorization", "Bearer " + HashToken(kToken)}}}) {
        httplib::Result res = method == "get"      ? client_->Get(concrete.c_str(), headers)
                              : method == "delete" ? client_->Delete(concrete.c_str(), headers)
                                                   : client_->Post(concrete.c_str(), headers, "{}", "application/json");
        ASSERT_TRUE(res) << method << " " << concrete;
        EXPECT_EQ(res->status, 401) << method << " " << concrete << ": " << res->body;
        ++checked;
      }
      // With the right token the route exists (anything but 401/405).
      if (op.contains("security")) continue;  // webhooks: signature, not token
      auto ok = Send(method, concrete, kToken);
      ASSERT_TRUE(ok);
      EXPECT_NE(ok->status, 401) << method << " " << concrete;
      EXPECT_NE(ok->status, 405) << method << " " << concrete;
    }
  }
  EXPECT_EQ(open_ops, (std::vector<std::string>{"get /auth/callback", "get /auth/login", "post /auth/logout",
                                                "get /healthz", "get /metrics", "get /readyz"}));
  EXPECT_GE(checked, 4 * 20);
  // Unknown API paths are 401 too: nothing under /api leaks without a token.
  auto res = client_->Get("/api/v1/no-such-route");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Bearer realm=\"sluice\"");
}

TEST_F(ApiTest, HealthzMetricsAndUiAreOpen) {
  auto h = client_->Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  // Ready: the store answers and (without leader election) this server leads.
  auto ready = client_->Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(ready->body, "ok\n");
  auto m = client_->Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("# TYPE sluice_runs_started_total counter"), std::string::npos);
  auto ui = client_->Get("/");
  ASSERT_TRUE(ui);
  EXPECT_EQ(ui->status, 200);
  EXPECT_NE(ui->body.find("<script src=\"/ui/app.js\"></script>"), std::string::npos);
  auto js = client_->Get("/ui/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
}

TEST_F(ApiTest, OpenApiDocumentIsServed) {
  Json doc = GetJson("/api/v1/openapi.json");
  EXPECT_EQ(doc["openapi"], "3.0.3");
  EXPECT_TRUE(doc["paths"].contains("/api/v1/runs/{run}/steps/{instance}/logs"));
}

TEST_F(ApiTest, TriggerRunThenReadRunStepsGraphAndLogs) {
  std::string id = Trigger({{"who", "sluice"}});
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  Json run = GetJson("/api/v1/runs/" + id);
  EXPECT_EQ(run["run"]["phase"], "Succeeded");
  EXPECT_EQ(run["run"]["params"], (Json{{"who", "sluice"}}));
  ASSERT_EQ(run["steps"].size(), 2u);
  EXPECT_EQ(run["steps"][0]["instance"], "a");
  EXPECT_EQ(run["steps"][0]["phase"], "Succeeded");

  Json graph = GetJson("/api/v1/runs/" + id + "/graph");
  ASSERT_EQ(graph["nodes"].size(), 2u);
  EXPECT_EQ(graph["nodes"][0]["id"], "a");
  EXPECT_EQ(graph["nodes"][0]["layer"], 0);
  EXPECT_EQ(graph["nodes"][1]["id"], "b");
  EXPECT_EQ(graph["nodes"][1]["layer"], 1);
  EXPECT_EQ(graph["edges"], Json::array({Json::array({"a", "b"})}));

  auto log = client_->Get(("/api/v1/runs/" + id + "/steps/a/logs").c_str(), Auth());
  ASSERT_TRUE(log);
  EXPECT_EQ(log->status, 200);
  EXPECT_EQ(log->body, "hello from a\nparams {\"who\":\"sluice\"}\n");
  auto tail = client_->Get(("/api/v1/runs/" + id + "/steps/a/logs?offset=13").c_str(), Auth());
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail->body, "params {\"who\":\"sluice\"}\n");
  // follow=true on a finished step streams what there is and ends.
  auto follow = client_->Get(("/api/v1/runs/" + id + "/steps/b/logs?follow=true").c_str(), Auth());
  ASSERT_TRUE(follow);
  EXPECT_EQ(follow->body, "hello from b\nparams {\"who\":\"sluice\"}\n");

  Json list = GetJson("/api/v1/runs?pipeline=hello&phase=Succeeded");
  ASSERT_EQ(list["runs"].size(), 1u);
  EXPECT_EQ(list["runs"][0]["id"], id);
  EXPECT_EQ(GetJson("/api/v1/runs?phase=Failed")["runs"].size(), 0u);
  EXPECT_EQ(GetJson("/api/v1/runs/" + id + "/steps/b")["phase"], "Succeeded");
  Json cmp = GetJson("/api/v1/pipelines/hello/metrics");
  EXPECT_EQ(cmp["metrics"], (Json{"a.accuracy", "b.accuracy"}));

  std::string metrics = server_->MetricsText();
  EXPECT_NE(metrics.find("sluice_runs_started_total{pipeline=\"hello\"} 1\n"), std::string::npos);
  EXPECT_NE(metrics.find("sluice_runs_succeeded_total{pipeline=\"hello\"} 1\n"), std::string::npos);
  EXPECT_NE(metrics.find("sluice_step_duration_seconds_count{pipeline=\"hello\",step=\"a\","
                         "operator=\"container\"} 1\n"),
            std::string::npos);
}

TEST_F(ApiTest, BadRequestsSayWhatIsWrong) {
  Json bad = PostJson("/api/v1/pipelines/nope/runs", Json::object(), 404);
  EXPECT_EQ(bad["error"]["code"], "NOT_FOUND");
  Json param = PostJson("/api/v1/pipelines/hello/runs", {{"params", {{"whom", "x"}}}}, 400);
  EXPECT_EQ(param["error"]["code"], "INVALID_ARGUMENT");
  EXPECT_NE(param["error"]["message"].get<std::string>().find("whom"), std::string::npos);
  EXPECT_EQ(GetJson("/api/v1/runs/no-such-run", 404)["error"]["code"], "NOT_FOUND");
  EXPECT_EQ(GetJson("/api/v1/runs?phase=Sideways", 400)["error"]["message"],
            "unknown phase 'Sideways'; use Pending, Running, Succeeded, Failed, Error or Cancelled");
}

TEST_F(ApiTest, BrokenFileKeepsItsLastGoodVersionAndReportsDiagnostics) {
  Json before = GetJson("/api/v1/pipelines");
  ASSERT_EQ(before["pipelines"].size(), 1u);  // notes.yaml is not a pipeline
  EXPECT_TRUE(before["pipelines"][0]["ok"]);

  WriteFile(root_ + "/repo/pipelines/hello.yaml",
            std::string(kHello) + "  - name: c\n    depends: [zzz]\n    command: [echo]\n");
  Json report = PostJson("/api/v1/reload", Json::object(), 200);
  EXPECT_EQ(report["failed"].size(), 1u);
  Json after = GetJson("/api/v1/pipelines");
  ASSERT_EQ(after["pipelines"].size(), 1u);
  const Json& p = after["pipelines"][0];
  EXPECT_FALSE(p["ok"]);
  EXPECT_TRUE(p["has_good_version"]);
  EXPECT_EQ(p["name"], "hello");
  ASSERT_FALSE(p["diagnostics"].empty());
  EXPECT_NE(p["diagnostics"][0]["text"].get<std::string>().find("hello.yaml:"), std::string::npos);
  // The last good version still runs.
  std::string id = Trigger();
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(GetJson("/api/v1/runs/" + id)["steps"].size(), 2u);
  // Fixing the file brings it back.
  WriteFile(root_ + "/repo/pipelines/hello.yaml", kHello);
  PostJson("/api/v1/reload", Json::object(), 200);
  EXPECT_TRUE(GetJson("/api/v1/pipelines")["pipelines"][0]["ok"]);
}

TEST_F(ApiTest, GithubPushTouchingAPipelineFileTriggersIt) {
  const std::string body = R"({"ref":"refs/heads/main","after":"0123abc","commits":[
    {"id":"0123abc","added":[],"modified":["pipelines/hello.yaml","README.md"],"removed":[]}]})";
  httplib::Headers headers = {{"X-GitHub-Event", "push"},
                              {"X-Hub-Signature-256", GithubSignature(kGithubSecret, body)}};
  auto res = client_->Post("/api/v1/webhooks/github", headers, body, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 202) << res->body;
  Json j = Json::parse(res->body);
  ASSERT_EQ(j["triggered"].size(), 1u);
  EXPECT_EQ(j["triggered"][0]["pipeline"], "hello");
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(GetJson("/api/v1/runs/" + j["triggered"][0]["run_id"].get<std::string>())["run"]["phase"],
            "Succeeded");

  // Wrong signature, or the right one over another body: 401, nothing runs.
  httplib::Headers forged = {{"X-GitHub-Event", "push"},
                             {"X-Hub-Signature-256", GithubSignature("guess", body)}};
  auto bad = client_->Post("/api/v1/webhooks/github", forged, body, "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 401);
  auto tampered = client_->Post("/api/v1/webhooks/github", headers, body + " ", "application/json");
  ASSERT_TRUE(tampered);
  EXPECT_EQ(tampered->status, 401);

  // A push that touches no pipeline triggers nothing.
  const std::string other = R"({"ref":"refs/heads/main","commits":[{"added":["docs/x.md"],"modified":[]}]})";
  auto none = client_->Post("/api/v1/webhooks/github",
                            {{"X-GitHub-Event", "push"},
                             {"X-Hub-Signature-256", GithubSignature(kGithubSecret, other)}},
                            other, "application/json");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 202);
  EXPECT_TRUE(Json::parse(none->body)["triggered"].empty());
}

TEST_F(ApiTest, GitlabPushWithTheRightTokenTriggers) {
  const std::string body = R"({"object_kind":"push","ref":"refs/heads/main","commits":[
    {"id":"1","added":["pipelines/hello.yaml"],"modified":[]}]})";
  auto bad = client_->Post("/api/v1/webhooks/gitlab",
                           {{"X-Gitlab-Event", "Push Hook"}, {"X-Gitlab-Token", "nope"}}, body,
                           "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 401);
  auto res = client_->Post("/api/v1/webhooks/gitlab",
                           {{"X-Gitlab-Event", "Push Hook"}, {"X-Gitlab-Token", kGitlabToken}}, body,
                           "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 202) << res->body;
  EXPECT_EQ(Json::parse(res->body)["triggered"][0]["pipeline"], "hello");
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
}

TEST_F(ApiTest, CancelARunningRun) {
  {
    std::lock_guard lock(control_.mu);
    control_.hold = true;
  }
  std::string id = Trigger();
  ASSERT_TRUE(control_.WaitStarted(1));
  Json r = PostJson("/api/v1/runs/" + id + "/cancel", Json::object(), 202);
  EXPECT_EQ(r["message"], "cancellation requested");
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(GetJson("/api/v1/runs/" + id)["run"]["phase"], "Cancelled");
  EXPECT_EQ(PostJson("/api/v1/runs/" + id + "/cancel", Json::object(), 409)["error"]["message"],
            "run " + id + " has already ended (Cancelled)");
}

TEST_F(ApiTest, ResumeContinuesTheRunAndRerunStartsANewOne) {
  std::string id = Trigger();
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  Json rerun = PostJson("/api/v1/runs/" + id + "/rerun", {{"from", {"b"}}}, 201);
  EXPECT_EQ(rerun["resumes"], id);
  EXPECT_NE(rerun["run_id"], id);
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(GetJson("/api/v1/runs/" + rerun["run_id"].get<std::string>())["run"]["resumed_from"], id);
  Json resume = PostJson("/api/v1/runs/" + id + "/resume", Json::object(), 201);
  EXPECT_EQ(resume["run_id"], id);
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(GetJson("/api/v1/runs/" + id)["run"]["phase"], "Succeeded");
  EXPECT_EQ(PostJson("/api/v1/runs/" + id + "/rerun", {{"from", {"nope"}}}, 400)["error"]["message"],
            "pipeline 'hello' has no step 'nope'");
}

TEST_F(ApiTest, RestartResumesRunsWhoseProcessDied) {
  // A run left Running by a process that is gone (a crashed server).
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  RunRecord run;
  run.id = "hello-interrupted";
  run.pipeline = "hello";
  run.pipeline_file = root_ + "/repo/pipelines/hello.yaml";
  run.pipeline_yaml = kHello;
  run.params = {{"who", "again"}};
  run.phase = RunPhase::kRunning;
  run.created_at = std::chrono::system_clock::now();
  run.pid = child;
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  run.host = host;
  ASSERT_TRUE(store_->CreateRun(run).ok());
  // Its step `a` was running locally: that process died with it.
  StepRecord a;
  a.run_id = run.id;
  a.instance = a.step = "a";
  a.phase = NodePhase::kRunning;
  a.attempts = 1;
  ASSERT_TRUE(store_->PutStep(a).ok());
  ExecutionRecord attempt;
  attempt.run_id = run.id;
  attempt.instance = "a";
  attempt.attempt = 1;
  attempt.started_at = run.created_at;
  ASSERT_TRUE(store_->StartExecution(attempt).has_value());
  server_.reset();
  StartServer(/*resume=*/true);
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  // It continued under its own id, with the params it had, to the end.
  Json resumed = GetJson("/api/v1/runs/hello-interrupted");
  EXPECT_EQ(resumed["run"]["phase"], "Succeeded");
  EXPECT_EQ(resumed["run"]["params"], (Json{{"who", "again"}}));
  EXPECT_EQ(resumed["steps"].size(), 2u);
  EXPECT_EQ(GetJson("/api/v1/runs?pipeline=hello")["runs"].size(), 1u);
}

// Hostile input: ids that name paths, replayed webhooks, bad offsets,
// unloadable pipeline files.

TEST_F(ApiTest, RunIdThatIsNotAValidIdIsRejectedAndNothingIsCreated) {
  Json r = PostJson("/api/v1/pipelines/hello/runs", {{"run_id", "../../etc"}}, 400);
  EXPECT_EQ(r["error"]["code"], "INVALID_ARGUMENT");
  EXPECT_EQ(r["error"]["message"],
            "invalid run id '../../etc': a run id is 1-128 characters from A-Z a-z 0-9 . _ -, "
            "starts with a letter or digit and has no '..'");
  for (const std::string& id : {std::string("a/b"), std::string("a\0b", 3), std::string(5000, 'a')})
    EXPECT_EQ(PostJson("/api/v1/pipelines/hello/runs", {{"run_id", id}}, 400)["error"]["code"],
              "INVALID_ARGUMENT")
        << id.substr(0, 10);
  EXPECT_EQ(PostJson("/api/v1/pipelines/hello/runs", {{"run_id", 7}}, 400)["error"]["message"],
            "'run_id' must be a string");
  EXPECT_FALSE(std::filesystem::exists(root_ + "/etc"));
  EXPECT_TRUE(GetJson("/api/v1/runs")["runs"].empty());
  // A valid one is taken as given.
  Json ok = PostJson("/api/v1/pipelines/hello/runs", {{"run_id", "release-1.2_rc3"}}, 201);
  EXPECT_EQ(ok["run_id"], "release-1.2_rc3");
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
}

TEST_F(ApiTest, UnknownPathsUnderApiNeedTheTokenWebhooksIncluded) {
  for (const char* path : {"/api/v1/webhooks/bitbucket", "/api/v1/webhooks/", "/api/v1/webhooks/github/x"}) {
    auto res = client_->Post(path, "{}", "application/json");
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 401) << path << ": " << res->body;
  }
  auto get = client_->Get("/api/v1/webhooks/github");  // the route is POST only
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 401);
  auto known = client_->Post("/api/v1/webhooks/bitbucket", Auth(), "{}", "application/json");
  ASSERT_TRUE(known);
  EXPECT_EQ(known->status, 404);
  EXPECT_EQ(Json::parse(known->body)["error"]["message"],
            "no route POST /api/v1/webhooks/bitbucket; see /api/v1/openapi.json");
}

TEST_F(ApiTest, GithubDeliverySentTwiceTriggersOnceEvenAcrossARestart) {
  const std::string body = R"({"ref":"refs/heads/main","after":"0123abc","commits":[
    {"id":"0123abc","added":[],"modified":["pipelines/hello.yaml"],"removed":[]}]})";
  httplib::Headers headers = {{"X-GitHub-Event", "push"},
                              {"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
                              {"X-Hub-Signature-256", GithubSignature(kGithubSecret, body)}};
  auto first = client_->Post("/api/v1/webhooks/github", headers, body, "application/json");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 202) << first->body;
  EXPECT_EQ(Json::parse(first->body)["triggered"].size(), 1u);
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));

  auto again = client_->Post("/api/v1/webhooks/github", headers, body, "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200) << again->body;
  Json dup = Json::parse(again->body);
  EXPECT_EQ(dup["duplicate"], true);
  EXPECT_EQ(dup["delivery"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
  EXPECT_EQ(dup["triggered"], Json::array());
  EXPECT_EQ(dup["message"].get<std::string>().rfind(
                "duplicate delivery 72d3162e-cc78-11e3-81ab-4c9367dc0958 (first received ", 0),
            0u)
      << dup;

  server_.reset();
  StartServer(/*resume=*/false);
  auto after_restart = client_->Post("/api/v1/webhooks/github", headers, body, "application/json");
  ASSERT_TRUE(after_restart);
  EXPECT_EQ(after_restart->status, 200) << after_restart->body;
  EXPECT_EQ(Json::parse(after_restart->body)["duplicate"], true);
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(GetJson("/api/v1/runs?pipeline=hello")["runs"].size(), 1u);

  // Another delivery of the same push is a new delivery.
  headers.erase("X-GitHub-Delivery");
  headers.emplace("X-GitHub-Delivery", "8e4a7b10-cc78-11e3-81ab-4c9367dc0958");
  auto other = client_->Post("/api/v1/webhooks/github", headers, body, "application/json");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 202) << other->body;
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(GetJson("/api/v1/runs?pipeline=hello")["runs"].size(), 2u);
}

TEST_F(ApiTest, GitlabDeliverySentTwiceTriggersOnce) {
  const std::string body = R"({"object_kind":"push","ref":"refs/heads/main","commits":[
    {"id":"1","added":["pipelines/hello.yaml"],"modified":[]}]})";
  httplib::Headers headers = {{"X-Gitlab-Event", "Push Hook"},
                              {"X-Gitlab-Token", kGitlabToken},
                              {"X-Gitlab-Event-UUID", "13792a34-cac6-4fda-95a8-c58e00a3954e"},
                              {"Idempotency-Key", "f5e5f430-f57b-4e6e-9fac-d9128cd7232f"}};
  auto first = client_->Post("/api/v1/webhooks/gitlab", headers, body, "application/json");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 202) << first->body;
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  // A retry keeps the Idempotency-Key (its event UUID may differ).
  headers.erase("X-Gitlab-Event-UUID");
  auto retry = client_->Post("/api/v1/webhooks/gitlab", headers, body, "application/json");
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->status, 200) << retry->body;
  EXPECT_EQ(Json::parse(retry->body)["delivery"], "f5e5f430-f57b-4e6e-9fac-d9128cd7232f");
  EXPECT_EQ(GetJson("/api/v1/runs?pipeline=hello")["runs"].size(), 1u);
}

TEST_F(ApiTest, LogOffsetMustBeAByteOffset) {
  std::string id = Trigger();
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  const std::string logs = "/api/v1/runs/" + id + "/steps/a/logs";
  for (const std::string bad : {"99999999999999999999999", "9223372036854775807", "1125899906842625",
                                "-1", "+5", "abc", "12abc", "1e3", ""}) {
    Json r = GetJson(logs + "?offset=" + bad, 400);
    EXPECT_EQ(r["error"]["message"],
              "offset must be a byte offset from 0 to 1125899906842624, not '" + bad + "'");
  }
  const std::string text = "hello from a\nparams {\"who\":\"world\"}\n";
  for (const std::string past : {"1000", "1125899906842624"}) {
    auto res = client_->Get((logs + "?offset=" + past).c_str(), Auth());
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->body, "");
    EXPECT_EQ(res->get_header_value("X-Log-Size"), std::to_string(text.size()));
  }
  auto all = client_->Get((logs + "?offset=0").c_str(), Auth());
  ASSERT_TRUE(all);
  EXPECT_EQ(all->body, text);
  EXPECT_EQ(all->get_header_value("X-Log-Size"), std::to_string(text.size()));
}

// A pipeline file with invalid UTF-8 is listed with its diagnostics (the
// JSON stays valid: bad bytes become U+FFFD) and its last good version keeps
// running and keeps its schedule.
TEST_F(ApiTest, PipelineFileThatFailsToLoadIsListedAndKeepsItsSchedule) {
  std::string text = kHello;
  text.replace(text.find("name: hello"), 11, "name: nightly");
  text.replace(text.find("steps:\n"), 7, "schedule:\n  cron: \"0 2 * * *\"\nsteps:\n");
  WriteFile(root_ + "/repo/pipelines/nightly.yaml", text);
  PostJson("/api/v1/reload", Json::object(), 200);
  ASSERT_EQ(GetJson("/api/v1/schedules")["schedules"].size(), 1u);

  WriteFile(root_ + "/repo/pipelines/nightly.yaml",
            text + "  - name: \"c\xff\xfe\"\n    command: [echo, \"\xc3\x28\"]\n");
  Json report = PostJson("/api/v1/reload", Json::object(), 200);
  EXPECT_EQ(report["failed"].size(), 1u) << report;
  auto res = client_->Get("/api/v1/pipelines", Auth());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  Json list = Json::parse(res->body, nullptr, false);
  ASSERT_FALSE(list.is_discarded()) << res->body;
  ASSERT_EQ(list["pipelines"].size(), 2u);
  const Json& p = list["pipelines"][1];
  EXPECT_EQ(p["file"], root_ + "/repo/pipelines/nightly.yaml");
  EXPECT_FALSE(p["ok"]);
  EXPECT_TRUE(p["has_good_version"]);
  ASSERT_FALSE(p["diagnostics"].empty());
  EXPECT_EQ(p["diagnostics"][0]["text"].get<std::string>().rfind(root_ + "/repo/pipelines/nightly.yaml:", 0), 0u)
      << p["diagnostics"];
  EXPECT_GT(p["diagnostics"][0]["line"].get<int>(), 0);
  Json schedules = GetJson("/api/v1/schedules")["schedules"];
  ASSERT_EQ(schedules.size(), 1u);
  EXPECT_EQ(schedules[0]["pipeline"], "nightly");
  EXPECT_EQ(schedules[0]["cron"], Json::array({"0 2 * * *"}));
}

}  // namespace
}  // namespace sluice::server

namespace sluice::server {
namespace {

TEST_F(ApiTest, SubmitWaitsPrintsJsonWritesJunitAndUsesDocumentedExitCodes) {
  SubmitOptions o;
  o.server = server_->url();
  o.token = kToken;
  o.pipeline = "hello";
  o.params = {{"who", "ci"}};
  o.wait = true;
  o.output = "json";
  o.junit_path = root_ + "/junit.xml";
  o.poll_interval = Duration(20);
  std::ostringstream out, err;
  ASSERT_EQ(SubmitCommand(o, out, err), kSubmitOk) << err.str();
  Json j = Json::parse(out.str());
  EXPECT_EQ(j["pipeline"], "hello");
  EXPECT_EQ(j["phase"], "Succeeded");
  ASSERT_EQ(j["steps"].size(), 2u);
  EXPECT_EQ(j["steps"][1]["instance"], "b");
  std::ifstream in(o.junit_path);
  std::string xml((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(xml.find("<testcase classname=\"hello\" name=\"a\""), std::string::npos) << xml;

  std::ostringstream out2, err2;
  SubmitOptions wrong = o;
  wrong.token = "nope";
  EXPECT_EQ(SubmitCommand(wrong, out2, err2), kSubmitRejected);
  EXPECT_NE(err2.str().find("refused the token (401)"), std::string::npos) << err2.str();
  SubmitOptions unknown = o;
  unknown.pipeline = "nope";
  EXPECT_EQ(SubmitCommand(unknown, out2, err2), kSubmitRejected);
  SubmitOptions down = o;
  down.server = "http://127.0.0.1:1";
  EXPECT_EQ(SubmitCommand(down, out2, err2), kSubmitUnreachable);
}

}  // namespace
}  // namespace sluice::server

namespace sluice::server {
namespace {

// A pipeline's `schedule:` as written in YAML, through the DSL, the
// scheduler (on a fake clock) and the run manager, to a run in the store.
// (The schedule.* scope of schedule params is tested in scheduler_test.cc;
// the DSL's lint does not accept it in YAML yet.)
// The role table, route by route: every operation of the OpenAPI document
// has a rule (RouteRules) and every rule an operation; each operation is
// called without a token (401), with each role's token (403 below the
// route's role, its success code at or above it). A route added without a
// rule, or without a request here, fails this test.
TEST_F(ApiTest, EveryRouteIsAllowedOrRefusedByRole) {
  // How to call each operation so that it succeeds; `prepare` makes what
  // the call acts on, afresh for each call (a deleted or cancelled run
  // cannot be deleted or cancelled twice), and returns the path.
  struct Call {
    std::function<std::string()> prepare;
    std::string body = "{}";
    int ok = 200;
  };
  auto fixed = [](std::string path) { return [path] { return path; }; };
  std::string done = TriggerAndWait();
  std::map<std::string, Call> calls = {
      {"get /healthz", {fixed("/healthz")}},
      {"get /readyz", {fixed("/readyz")}},
      {"get /metrics", {fixed("/metrics")}},
      {"get /api/v1/openapi.json", {fixed("/api/v1/openapi.json")}},
      {"get /api/v1/whoami", {fixed("/api/v1/whoami")}},
      // This server has no oidc: in its config (tests/server/oidc_live_test.cc has one).
      {"get /auth/login", {fixed("/auth/login"), "{}", 404}},
      {"get /auth/callback", {fixed("/auth/callback?code=c&state=s"), "{}", 404}},
      {"post /auth/logout", {fixed("/auth/logout")}},
      {"get /api/v1/pipelines", {fixed("/api/v1/pipelines")}},
      {"get /api/v1/pipelines/{pipeline}", {fixed("/api/v1/pipelines/hello")}},
      {"post /api/v1/pipelines/{pipeline}/runs", {fixed("/api/v1/pipelines/hello/runs"), "{}", 201}},
      {"get /api/v1/pipelines/{pipeline}/metrics", {fixed("/api/v1/pipelines/hello/metrics")}},
      {"post /api/v1/reload", {fixed("/api/v1/reload")}},
      {"get /api/v1/schedules", {fixed("/api/v1/schedules")}},
      {"get /api/v1/runs", {fixed("/api/v1/runs")}},
      {"get /api/v1/runs/{run}", {fixed("/api/v1/runs/" + done)}},
      {"delete /api/v1/runs/{run}", {[this] { return "/api/v1/runs/" + TriggerAndWait(); }}},
      {"get /api/v1/runs/{run}/graph", {fixed("/api/v1/runs/" + done + "/graph")}},
      {"get /api/v1/runs/{run}/steps", {fixed("/api/v1/runs/" + done + "/steps")}},
      {"get /api/v1/runs/{run}/steps/{instance}", {fixed("/api/v1/runs/" + done + "/steps/a")}},
      {"get /api/v1/runs/{run}/steps/{instance}/logs", {fixed("/api/v1/runs/" + done + "/steps/a/logs")}},
      {"post /api/v1/runs/{run}/cancel",
       {[this] {
          {
            std::lock_guard lock(control_.mu);
            control_.hold = true;
          }
          return "/api/v1/runs/" + Trigger() + "/cancel";
        },
        "{}", 202}},
      {"post /api/v1/runs/{run}/resume", {fixed("/api/v1/runs/" + done + "/resume"), "{}", 201}},
      {"post /api/v1/runs/{run}/rerun", {fixed("/api/v1/runs/" + done + "/rerun"), R"({"from": ["b"]})", 201}},
      {"get /api/v1/runs/{run}/artifacts", {fixed("/api/v1/runs/" + done + "/artifacts")}},
      {"get /api/v1/lineage", {fixed("/api/v1/lineage?target=" + done)}},
      {"get /api/v1/audit", {fixed("/api/v1/audit")}},
      {"post /api/v1/webhooks/github", {fixed("/api/v1/webhooks/github")}},
      {"post /api/v1/webhooks/gitlab", {fixed("/api/v1/webhooks/gitlab")}},
  };
  const std::vector<std::pair<Role, std::string>> tokens = {
      {Role::kViewer, kViewerToken}, {Role::kRunner, kRunnerToken}, {Role::kAdmin, kAdminToken}};
  std::set<std::string> documented;
  int allowed = 0, refused = 0;
  const Json doc = OpenApiDocument();
  for (const auto& [path, ops] : doc["paths"].items()) {
    for (const auto& [method, op] : ops.items()) {
      const std::string key = method + " " + path;
      documented.insert(key);
      std::string upper = method;
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      const RouteRule* rule = nullptr;
      for (const RouteRule& r : RouteRules())
        if (upper == r.method && path == r.path) rule = &r;
      if (rule == nullptr) {
        ADD_FAILURE() << key << " has no rule in RouteRules (engine/server/authz.cc)";
        continue;
      }
      auto call = calls.find(key);
      if (call == calls.end()) {
        ADD_FAILURE() << key << " has no request in this test";
        continue;
      }
      if (rule->access == RouteAccess::kSignature) {
        // No identity opens a webhook: only its signature does (the webhook tests).
        for (const std::string& token : {std::string(), std::string(kAdminToken)}) {
          auto res = Send(method, call->second.prepare(), token, call->second.body);
          ASSERT_TRUE(res) << key;
          EXPECT_EQ(res->status, 401) << key << " with token '" << token << "': " << res->body;
        }
        continue;
      }
      if (rule->access == RouteAccess::kRole) {
        auto res = Send(method, call->second.prepare(), "", call->second.body);
        ASSERT_TRUE(res) << key;
        EXPECT_EQ(res->status, 401) << key << " without a token: " << res->body;
        control_.Release();
        ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
      }
      EXPECT_EQ(op.value("x-sluice-role", ""), rule->access == RouteAccess::kRole ? RoleName(rule->min_role) : "")
          << key;
      for (const auto& [role, token] : tokens) {
        auto res = Send(method, call->second.prepare(), token, call->second.body);
        ASSERT_TRUE(res) << key;
        bool may = rule->access != RouteAccess::kRole || role >= rule->min_role;
        if (may) {
          EXPECT_EQ(res->status, call->second.ok) << key << " as " << RoleName(role) << ": " << res->body;
          ++allowed;
        } else {
          EXPECT_EQ(res->status, 403) << key << " as " << RoleName(role) << ": " << res->body;
          EXPECT_EQ(Json::parse(res->body, nullptr, false)["error"]["code"], "PERMISSION_DENIED") << key;
          ++refused;
        }
        control_.Release();
        ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
      }
    }
  }
  for (const RouteRule& r : RouteRules()) {
    std::string lower = r.method;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_TRUE(documented.count(lower + " " + r.path)) << r.method << " " << r.path << " is not in the OpenAPI document";
  }
  EXPECT_EQ(documented.size(), calls.size());
  EXPECT_EQ(allowed, 3 * 6 + 2 * 4 + 1 * 3 + 3 * 14);  // open, runner routes, admin routes, viewer routes
  EXPECT_EQ(refused, 2 * 3 + 1 * 4);
}

TEST_F(ApiTest, RefusalSaysWhichRoleTheRouteNeeds) {
  std::string id = TriggerAndWait();
  auto res = Send("post", "/api/v1/runs/" + id + "/cancel", kViewerToken);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403);
  EXPECT_EQ(Json::parse(res->body)["error"]["message"],
            "'dashboards' has the role viewer; POST /api/v1/runs/{run}/cancel needs runner or above");
  res = Send("delete", "/api/v1/runs/" + id, kRunnerToken);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403);
  EXPECT_EQ(Json::parse(res->body)["error"]["message"],
            "'trainer' has the role runner; DELETE /api/v1/runs/{run} needs admin or above");
  // An unknown path is 401 without a token and 404 with any, never 403.
  res = Send("get", "/api/v1/nothing-here", kViewerToken);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
}

TEST_F(ApiTest, ScopedTokenSeesAndActsOnlyOnItsPipelines) {
  WriteFile(root_ + "/repo/pipelines/retrain.yaml",
            std::string(kHello).replace(std::string(kHello).find("name: hello"), 11, "name: retrain-fraud"));
  server_->Reload(true);
  std::string hello = TriggerAndWait("hello");
  std::string retrain = TriggerAndWait("retrain-fraud");
  auto get = [&](const std::string& path, int code) {
    auto res = Send("get", path, kScopedToken);
    EXPECT_TRUE(res) << path;
    if (!res) return Json();
    EXPECT_EQ(res->status, code) << path << ": " << res->body;
    return Json::parse(res->body, nullptr, false);
  };
  Json pipelines = get("/api/v1/pipelines", 200)["pipelines"];
  ASSERT_EQ(pipelines.size(), 1u);
  EXPECT_EQ(pipelines[0]["name"], "retrain-fraud");
  Json runs = get("/api/v1/runs", 200)["runs"];
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0]["id"], retrain);
  EXPECT_TRUE(get("/api/v1/runs?pipeline=hello", 200)["runs"].empty());
  get("/api/v1/runs/" + retrain, 200);
  get("/api/v1/runs/" + retrain + "/steps/a/logs", 200);
  // Another pipeline's run answers as a run that does not exist would.
  EXPECT_EQ(get("/api/v1/runs/" + hello, 404)["error"]["message"],
            "no run '" + hello + "' in this store (`sluice runs` lists them)");
  EXPECT_EQ(get("/api/v1/runs/" + hello + "/steps/a/logs", 404)["error"]["message"],
            "no run '" + hello + "' in this store (`sluice runs` lists them)");
  EXPECT_EQ(get("/api/v1/pipelines/hello", 404)["error"]["message"], "no pipeline named 'hello'");
  get("/api/v1/pipelines/hello/metrics", 404);
  get("/api/v1/lineage?target=" + hello, 404);
  get("/api/v1/lineage?target=" + retrain, 200);
  auto submit = Send("post", "/api/v1/pipelines/hello/runs", kScopedToken);
  ASSERT_TRUE(submit);
  EXPECT_EQ(submit->status, 404);
  auto cancel = Send("post", "/api/v1/runs/" + hello + "/cancel", kScopedToken);
  ASSERT_TRUE(cancel);
  EXPECT_EQ(cancel->status, 404);
  auto own = Send("post", "/api/v1/pipelines/retrain-fraud/runs", kScopedToken);
  ASSERT_TRUE(own);
  EXPECT_EQ(own->status, 201) << own->body;
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  // A scoped admin's audit log holds its pipelines' writes only.
  auto audit = Send("get", "/api/v1/audit", kScopedAdminToken);
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->status, 200) << audit->body;
  std::vector<std::string> log;
  const Json seen = Json::parse(audit->body);
  for (const Json& e : seen["entries"])
    log.push_back(e["who"].get<std::string>() + " " + e["pipeline"].get<std::string>() + " " +
                  std::to_string(e["code"].get<int>()));
  EXPECT_EQ(log, (std::vector<std::string>{"retrain-ci retrain-fraud 201", "ci retrain-fraud 201"}));
  // Left out: the submit of hello, and the scoped runner's two refusals there.
  EXPECT_EQ(store_->ListAudit({}).value().size(), 5u);
  // An unscoped viewer sees both pipelines.
  auto all = Send("get", "/api/v1/pipelines", kViewerToken);
  ASSERT_TRUE(all);
  EXPECT_EQ(Json::parse(all->body)["pipelines"].size(), 2u);
}

// Every write is in the audit log, refusals included, with the token's name
// and never its value or a parameter's; reads and requests without valid
// credentials are not.
TEST_F(ApiTest, AuditLogRecordsEveryWriteWithoutSecrets) {
  std::string with_secret = kHello;
  with_secret.insert(with_secret.find("steps:"), "  api_key: {type: string, default: \"\", secret: true}\n");
  WriteFile(root_ + "/repo/pipelines/hello.yaml", with_secret);
  server_->Reload(true);
  auto submit = Send("post", "/api/v1/pipelines/hello/runs", kRunnerToken,
                     R"({"params": {"api_key": "s3cr3t-value"}})");
  ASSERT_TRUE(submit);
  ASSERT_EQ(submit->status, 201) << submit->body;
  std::string id = Json::parse(submit->body)["run_id"];
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  ASSERT_EQ(Send("post", "/api/v1/runs/" + id + "/cancel", kViewerToken)->status, 403);
  ASSERT_EQ(Send("get", "/api/v1/runs/" + id, kViewerToken)->status, 200);   // a read: not recorded
  ASSERT_EQ(Send("post", "/api/v1/reload", "wrong-token")->status, 401);     // no identity: not recorded
  ASSERT_EQ(Send("delete", "/api/v1/runs/" + id.substr(0, id.size() - 2), kAdminToken)->status, 200);
  ASSERT_EQ(Send("get", "/api/v1/audit", kRunnerToken)->status, 403);
  auto res = Send("get", "/api/v1/audit", kAdminToken);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  for (const char* secret : {"s3cr3t-value", kRunnerToken, kViewerToken, kAdminToken})
    EXPECT_EQ(res->body.find(secret), std::string::npos) << secret;
  Json entries = Json::parse(res->body)["entries"];
  std::vector<std::string> got;
  for (const Json& e : entries)
    got.push_back(e["who"].get<std::string>() + " " + e["role"].get<std::string>() + " " +
                  e["method"].get<std::string>() + " " + e["route"].get<std::string>() + " " +
                  e["run_id"].get<std::string>() + " " + e["pipeline"].get<std::string>() + " " +
                  std::to_string(e["code"].get<int>()));
  EXPECT_EQ(got, (std::vector<std::string>{
                     "platform admin DELETE /api/v1/runs/{run} " + id + " hello 200",
                     "dashboards viewer POST /api/v1/runs/{run}/cancel " + id + " hello 403",
                     "trainer runner POST /api/v1/pipelines/{pipeline}/runs " + id + " hello 201",
                 }));
  EXPECT_EQ(store_->ListAudit({}).value().size(), 3u);
  EXPECT_EQ(Json::parse(Send("get", "/api/v1/audit?since=2020-01-01T00:00:00Z&limit=2", kAdminToken)->body)["entries"].size(), 2u);
  EXPECT_TRUE(Json::parse(Send("get", "/api/v1/audit?since=2999-01-01", kAdminToken)->body)["entries"].empty());
  auto bad = Send("get", "/api/v1/audit?since=yesterday", kAdminToken);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(Json::parse(bad->body)["error"]["message"], "since must be an RFC 3339 time or a date");
  // A webhook's writes are recorded under its name, one per run started.
  const std::string push = R"({"ref":"refs/heads/main","after":"0123abc","commits":[
    {"id":"0123abc","added":[],"modified":["pipelines/hello.yaml"],"removed":[]}]})";
  httplib::Headers gh = {{"X-GitHub-Event", "push"},
                         {"X-Hub-Signature-256", GithubSignature(kGithubSecret, push)}};
  auto hook = client_->Post("/api/v1/webhooks/github", gh, push, "application/json");
  ASSERT_TRUE(hook);
  ASSERT_EQ(hook->status, 202) << hook->body;
  ASSERT_TRUE(server_->runs()->WaitIdle(std::chrono::seconds(30)));
  Json newest = Json::parse(Send("get", "/api/v1/audit?limit=1", kAdminToken)->body)["entries"];
  ASSERT_EQ(newest.size(), 1u);
  EXPECT_EQ(newest[0]["who"], "webhook:github");
  EXPECT_EQ(newest[0]["route"], "/api/v1/webhooks/github");
  EXPECT_EQ(newest[0]["pipeline"], "hello");
  EXPECT_EQ(newest[0]["run_id"], Json::parse(hook->body)["triggered"][0]["run_id"]);
  EXPECT_EQ(newest[0]["code"], 202);
}

// With metrics.requireAuth, /metrics (GET or HEAD) needs a token, of any role.
TEST_F(ApiTest, MetricsCanRequireAToken) {
  std::ifstream in(root_ + "/server.yaml");
  std::string config((std::istreambuf_iterator<char>(in)), {});
  WriteFile(root_ + "/server.yaml", config + "metrics:\n  requireAuth: true\n");
  server_.reset();
  StartServer(/*resume=*/false);
  EXPECT_EQ(client_->Get("/metrics")->status, 401);
  EXPECT_EQ(client_->Head("/metrics")->status, 401);
  EXPECT_EQ(Send("get", "/metrics", kViewerToken)->status, 200);
  EXPECT_EQ(client_->Get("/healthz")->status, 200);
}

// A refused POST's body is never read; on a kept-alive connection httplib
// then answers it as a malformed request of its own. That answer is no
// write of the refused identity's.
TEST_F(ApiTest, RefusedWriteOnAKeptAliveConnectionIsRecordedOnce) {
  httplib::Client keep("127.0.0.1", server_->port());
  keep.set_keep_alive(true);
  httplib::Headers viewer = {{"Authorization", std::string("Bearer ") + kViewerToken}};
  auto refused = keep.Post("/api/v1/pipelines/hello/runs", viewer, R"({"params": {}})", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403);
  auto next = keep.Get("/api/v1/runs", viewer);
  ASSERT_TRUE(next);
  auto entries = store_->ListAudit({});
  ASSERT_TRUE(entries.has_value());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ(entries->front().who, "dashboards");
  EXPECT_EQ(entries->front().code, 403);
}

TEST(ServerScheduleTest, ScheduledRunsGetDeterministicIdsAndScheduleParams) {
  std::string root = MakeTempDir("sched");
  WriteFile(root + "/pipelines/nightly.yaml", R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: nightly
params:
  day:
    type: string
    required: true
schedule:
  cron: "0 2 * * *"
  timezone: Europe/Amsterdam
  concurrencyPolicy: Forbid
  params:
    day: nightly-batch
steps:
  - name: a
    command: [echo, "{{ params.day }}"]
)");
  FakeClock clock(TimePoint(date::sys_days(date::year(2026) / 11 / 25)));
  FakeRunControl control;
  ServerOptions o;
  o.pipelines_dir = root + "/pipelines";
  o.state_dir = root + "/state";
  o.listen = "127.0.0.1:0";
  o.run_scheduler = false;
  o.watch = false;
  std::unique_ptr<Server> server;
  server = std::make_unique<Server>(o, nullptr, &clock,
                                    FakeFactory([&server] { return server->store(); }, &control));
  ASSERT_TRUE(server->Start().ok());
  EXPECT_TRUE(server->scheduler()->Tick().empty());  // first sight: from now
  clock.Advance(std::chrono::hours(1));               // 01:00 UTC = 02:00 in Amsterdam
  auto decisions = server->scheduler()->Tick();
  ASSERT_EQ(decisions.size(), 1u);
  EXPECT_EQ(decisions[0].action, "launched");
  EXPECT_EQ(decisions[0].run_id, "nightly-cron-20261125-010000");
  ASSERT_TRUE(server->runs()->WaitIdle(std::chrono::seconds(30)));
  auto run = server->store()->GetRun("nightly-cron-20261125-010000");
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->phase, RunPhase::kSucceeded);
  EXPECT_EQ(run->params, (Json{{"day", "nightly-batch"}}));
  server.reset();
  std::filesystem::remove_all(root);
}

// Milliseconds since the epoch of ParseIsoTime(text), or -1 for nullopt.
int64_t IsoMillis(const std::string& text) {
  auto t = ParseIsoTime(text);
  if (!t) return -1;
  return std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count();
}

TEST(ApiJsonTest, ParseIsoTimeReadsWhatIsoTimeWritesAndRefusesTheRest) {
  EXPECT_EQ(IsoMillis("2026-11-25T15:30:12.345Z"), 1795620612345);
  EXPECT_EQ(IsoTime(*ParseIsoTime("2026-11-25T15:30:12.345Z")), "2026-11-25T15:30:12.345Z");
  EXPECT_EQ(IsoMillis("2026-11-25T17:30:12.3456+02:00"), 1795620612345);
  EXPECT_EQ(IsoMillis("2026-11-25T10:00:12.3-0530"), 1795620612300);
  EXPECT_EQ(IsoMillis("2026-11-25"), 1795564800000);
  // Malformed: no seconds, an offset cut short, trailing text, no such day.
  for (const char* bad : {"2026-11-25T15:30:Z", "2026-11-25T15:30", "2026-11-25T15:30:12+1:00",
                          "2026-11-25T15:30:12Z ", "2026-11-25T15:30:12", "2026-02-30",
                          "2026-11-25T24:00:00Z", "2026-11-25T15:30:12.Z", "6-15-52T15:30:12",
                          ""}) {
    EXPECT_EQ(IsoMillis(bad), -1) << bad;
  }
  // A TimePoint counts nanoseconds in 64 bits: years 1678 to 2261.
  EXPECT_EQ(IsoMillis("0002-11-25T15:30:12Z"), -1);
  EXPECT_EQ(IsoMillis("9999-12-31"), -1);
  EXPECT_EQ(IsoMillis("1678-01-01"), -9214560000000);
}

TEST(ApiJsonTest, RunAndStepFieldsOfTheWrongTypeAreErrors) {
  EXPECT_EQ(RunFromJson(Json::parse(R"({"id": "r-1", "pipeline": {"lr": 4.1}})")).error().ToString(),
            "INVALID_ARGUMENT: run field 'pipeline' is not a string");
  EXPECT_EQ(RunFromJson(Json::parse(R"({"phase": 3})")).error().message(),
            "run field 'phase' is not a string");
  EXPECT_EQ(StepFromJson(Json::parse(R"({"index": 1e300})")).error().message(),
            "step field 'index' is not an integer in the range of an int");
  EXPECT_EQ(StepFromJson(Json::parse(R"({"exit_code": 4294967296})")).error().message(),
            "step field 'exit_code' is not an integer in the range of an int");
  auto step = StepFromJson(Json::parse(R"({"step": "train", "index": null, "attempts": 2,
                                           "exit_code": -9, "phase": "Failed"})"));
  ASSERT_TRUE(step) << step.error().ToString();
  EXPECT_EQ(step->index, -1);
  EXPECT_EQ(step->attempts, 2);
  EXPECT_EQ(step->exit_code, -9);
  EXPECT_EQ(step->phase, NodePhase::kFailed);
}

TEST(ApiJsonTest, StepTimesCenturiesApartGiveTheirDuration) {
  // Each end fits TimePoint; their difference overflows 64-bit nanoseconds.
  auto step = StepFromJson(Json::parse(R"({"step": "train", "phase": "Succeeded",
                                           "started_at": "1690-01-01T00:00:00Z",
                                           "finished_at": "2250-01-01T00:00:00Z"})"));
  ASSERT_TRUE(step) << step.error().ToString();
  double seconds = StepToJson(*step)["duration_seconds"].get<double>();
  EXPECT_NEAR(seconds / (365.2425 * 86400), 560.0, 0.01);
  auto backwards = StepFromJson(Json::parse(R"({"started_at": "2250-01-01T00:00:00Z",
                                                "finished_at": "1690-01-01T00:00:00Z"})"));
  ASSERT_TRUE(backwards);
  EXPECT_LT(StepToJson(*backwards)["duration_seconds"].get<double>(), 0);
}

TEST(ApiJsonTest, RequestBodies) {
  auto submit = ParseSubmitBody(R"({"params": {"lr": 0.5}, "run_id": "nightly-1"})");
  ASSERT_TRUE(submit) << submit.error().ToString();
  EXPECT_EQ(submit->params, Json::parse(R"({"lr": 0.5})"));
  EXPECT_EQ(submit->run_id, "nightly-1");
  EXPECT_TRUE(ParseSubmitBody("")->params.is_null());
  EXPECT_EQ(ParseSubmitBody(R"({"params": [1]})").error().ToString(),
            "INVALID_ARGUMENT: 'params' must be an object name -> value");
  EXPECT_EQ(ParseSubmitBody("[]").error().message(), "request body is not a JSON object");
  EXPECT_EQ(ParseRerunBody(R"({"from": ["train", 3, "eval"]})").value(),
            (std::vector<std::string>{"train", "eval"}));
  EXPECT_EQ(ParseRerunBody(R"({"from": "train"})").value(), std::vector<std::string>{"train"});
  EXPECT_EQ(ParseRerunBody("{}").error().message(),
            "rerun needs 'from': a step name or a list of them");
  // Serialising JSON recurses once per level: a deeply nested body is
  // refused at parse time instead of overflowing the stack when stored.
  auto nested = [](int depth) {
    return "{\"params\": {\"x\": " + std::string(depth - 2, '[') + std::string(depth - 2, ']') + "}}";
  };
  EXPECT_TRUE(ParseSubmitBody(nested(kMaxBodyDepth))) << "64 levels are allowed";
  EXPECT_EQ(ParseSubmitBody(nested(kMaxBodyDepth + 1)).error().message(),
            "request body nests deeper than 64 levels");
  EXPECT_EQ(ParseSubmitBody(nested(1000000)).error().message(),
            "request body nests deeper than 64 levels");
}

}  // namespace
}  // namespace sluice::server
