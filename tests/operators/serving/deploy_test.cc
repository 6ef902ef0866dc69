#include "operators/serving/deploy.h"

#include <sys/wait.h>

#include <chrono>
#include <cstdlib>

#include <gtest/gtest.h>
#include <httplib.h>

#include "operators/serving/process.h"
#include "serving_test_util.h"

namespace sluice::serving {
namespace {

using testing::ReadFile;
using testing::ServingTest;
using testing::WriteFile;

TEST(DeployConfigTest, ParsesTheYamlShape) {
  auto c = ParseDeployConfig(Json::parse(R"({"deploy": {
      "service": "breast-cancer", "model": "/m/model.pkl", "model_digest": "sha256:ab",
      "serve": {"command": ["python3", "serve.py", "--model", "{{model}}", "--port", "{{port}}"],
                "env": {"A": "1"}},
      "readiness": {"path": "/ready", "timeout": "45s"},
      "mode": "canary", "traffic": 25,
      "run": {"id": "r1", "instance": "deploy", "execution_id": 7}}})"));
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->service, "breast-cancer");
  EXPECT_EQ(c->command.size(), 6u);
  EXPECT_EQ(c->env.at("A"), "1");
  EXPECT_EQ(c->readiness_path, "/ready");
  EXPECT_EQ(c->readiness_timeout, std::chrono::seconds(45));
  EXPECT_EQ(c->mode, DeployMode::kCanary);
  EXPECT_EQ(c->traffic, 25);
  EXPECT_EQ(c->run.execution_id, 7);
}

TEST(DeployConfigTest, ErrorsNameTheField) {
  auto error = [](const char* json) {
    auto c = ParseDeployConfig(Json::parse(json));
    return c ? std::string("ok") : c.error().message();
  };
  EXPECT_EQ(error(R"({"service": "Bad_Name", "model": "m", "serve": {"command": ["x"]}})"),
            "deploy.service: service name 'Bad_Name' is not a DNS label: use lower-case letters, "
            "digits and '-', at most 63 characters, starting and ending with a letter or digit "
            "(e.g. breast-cancer)");
  EXPECT_EQ(error(R"({"service": "s", "model": "m"})"),
            "deploy.serve.command: required for a local deploy: the server's argv");
  EXPECT_EQ(error(R"({"service": "s", "model": "m", "serve": {"command": ["x"]}, "mode": "blue"})"),
            "deploy.mode: 'blue' is not replace or canary");
  EXPECT_EQ(error(R"({"service": "s", "model": "m", "serve": {"command": ["x"]}, "traffic": 100})"),
            "deploy.traffic: the canary share must be between 0 and 100 (exclusive), e.g. 10");
  EXPECT_EQ(error(R"({"service": "s", "model": "m", "serve": {"command": ["x"]},
                      "readiness": {"timeout": "soon"}})")
                .rfind("deploy.readiness.timeout: ", 0),
            0u);
}

TEST(PlaceholderTest, BothSpellings) {
  std::map<std::string, std::string> v = {{"model", "/m.pkl"}, {"port", "8080"}};
  EXPECT_EQ(SubstitutePlaceholders("--model={{model}}", v), "--model=/m.pkl");
  EXPECT_EQ(SubstitutePlaceholders("{{ port }}", v), "8080");
  EXPECT_EQ(SubstitutePlaceholders("${model}:${port}", v), "/m.pkl:8080");
  EXPECT_EQ(SubstitutePlaceholders("{{ unknown }}", v), "{{ unknown }}");
}

class DeployTest : public ServingTest {
 protected:
  std::string Ask(const std::string& endpoint) {
    httplib::Client client(endpoint);
    auto r = client.Post("/predict", R"({"input": [1]})", "application/json");
    return r ? std::filesystem::path(Json::parse(r->body).value("model", "")).filename().string()
             : "error";
  }
};

TEST_F(DeployTest, ReplaceServesTheNewModelAndRecordsIt) {
  auto v1 = DeployLocal(Config("svc", Model("v1.json", R"({"answer": 1})"), "v1"), env_);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  EXPECT_EQ(Ask(v1->endpoint), "v1.json");
  EXPECT_EQ(v1->traffic_percent, 100);
  auto v2 = DeployLocal(Config("svc", Model("v2.json", R"({"answer": 1})"), "v2"), env_);
  ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
  EXPECT_EQ(v2->endpoint, v1->endpoint);  // stable port per service
  EXPECT_EQ(Ask(v2->endpoint), "v2.json");
  auto state = LoadServiceState(env_.state_dir, "svc");
  ASSERT_TRUE(state.has_value() && state->has_value());
  EXPECT_EQ((*state)->stable->version, "v2");
  auto records = store_->ListDeployments("svc", 10);
  ASSERT_TRUE(records.has_value());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].action, "deploy");
  EXPECT_EQ((*records)[0].model_digest, v2->model_digest);
  EXPECT_EQ((*records)[0].endpoint, v2->endpoint);
  EXPECT_EQ((*records)[0].details["replaced"][0]["version"], "v1");

  std::string out = dir_ + "/out";
  ASSERT_TRUE(WriteDeployOutputs(*v2, out).ok());
  EXPECT_EQ(ReadFile(out + "/endpoint"), v2->endpoint + "\n");
  EXPECT_EQ(ReadFile(out + "/version"), "v2\n");
  EXPECT_EQ(ReadFile(out + "/model_digest"), v2->model_digest + "\n");
  EXPECT_EQ(ReadFile(out + "/traffic_percent"), "100\n");
}

TEST_F(DeployTest, NeverReadyServerFailsInTimeAndLeavesThePreviousDeployment) {
  auto v1 = DeployLocal(Config("svc", Model("v1.json", R"({"answer": 1})"), "v1"), env_);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  std::string before = ReadFile(ServiceStatePath(env_.state_dir, "svc"));

  DeployConfig c = Config("svc", Model("v2.json", R"({"never_ready": true})"), "v2");
  c.mode = DeployMode::kCanary;
  c.readiness_timeout = std::chrono::milliseconds(1500);
  auto start = std::chrono::steady_clock::now();
  auto v2 = DeployLocal(c, env_);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(v2.has_value());
  EXPECT_EQ(v2.error().code(), StatusCode::kDeadlineExceeded);
  const std::string& m = v2.error().message();
  EXPECT_EQ(m.rfind("service svc version v2: the model server did not become ready: GET "
                    "http://127.0.0.1:", 0),
            0u)
      << m;
  EXPECT_NE(m.find("/healthz did not answer 2xx within 1500ms"), std::string::npos) << m;
  // "last:" is what the probe saw: HTTP 503 once python is up (on a loaded
  // machine it may still be starting: connection refused).
  EXPECT_NE(m.find("; last: "), std::string::npos) << m;
  EXPECT_NE(m.find("). It was stopped; the previous deployment (version v1 (" + v1->model_digest +
                   ", " + v1->candidate_url + ")) keeps serving."),
            std::string::npos)
      << m;
  EXPECT_LT(took, std::chrono::milliseconds(1500) + std::chrono::seconds(5));
  // Untouched: same state file, same server answering, one deployment recorded.
  EXPECT_EQ(ReadFile(ServiceStatePath(env_.state_dir, "svc")), before);
  EXPECT_EQ(Ask(v1->endpoint), "v1.json");
  auto records = store_->ListDeployments("svc", 10);
  ASSERT_TRUE(records.has_value());
  EXPECT_EQ(records->size(), 1u);
}

TEST_F(DeployTest, ServerThatExitsIsReportedWithItsLog) {
  DeployConfig c = Config("svc", Model("bad.json", R"({"exit": 3})"), "v1");
  auto r = DeployLocal(c, env_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.error().message().find("the model server did not become ready: the server exited "
                                     "with code 3 before it was ready. It was stopped; nothing "
                                     "was serving before."),
            std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("fake server: exiting with 3"), std::string::npos);
  EXPECT_FALSE(LoadServiceState(env_.state_dir, "svc")->has_value());
}

TEST_F(DeployTest, MissingProgramIsAClearError) {
  DeployConfig c = Config("svc", Model("m.json", "{}"), "v1");
  c.command = {"no-such-server-binary", "{{model}}"};
  auto r = DeployLocal(c, env_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(),
            "service svc version v1: cannot start the server (deploy.serve.command): cannot "
            "start 'no-such-server-binary': not found in PATH (is it installed?)");
}

// The runner's contract: argv, config file, output files, exit status.
TEST_F(DeployTest, CommandLineContract) {
  std::string config = dir_ + "/deploy.json";
  Json j = {{"service", "cli"},
            {"model", Model("v1.json", R"({"answer": 1})")},
            {"version", "v1"},
            {"serve", {{"command", {"python3", FAKE_MODEL_SERVER, "--model", "{{model}}",
                                    "--port", "{{port}}"}}}}};
  WriteFile(config, j.dump());
  services_.push_back("cli");
  std::string out = dir_ + "/step";
  std::string cmd = "SLUICE_STATE_DIR=" + env_.state_dir + " " + SLUICE_SERVING_BIN +
                    " deploy --config " + config + " --out " + out + " 2>" + dir_ + "/stderr";
  int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 0) << ReadFile(dir_ + "/stderr");
  std::string endpoint = ReadFile(out + "/endpoint");
  ASSERT_FALSE(endpoint.empty());
  endpoint.pop_back();
  EXPECT_EQ(Ask(endpoint), "v1.json");
  Json all = Json::parse(ReadFile(out + "/deploy.json"));
  EXPECT_EQ(all["mode"], "replace");
  EXPECT_EQ(all["endpoint"], endpoint);

  // A validation that fails exits 1 with the reason on stderr.
  WriteFile(dir_ + "/requests.jsonl", "{\"input\": [1], \"label\": 0}\n");
  Json v = {{"service", "cli"}, {"requests", dir_ + "/requests.jsonl"},
            {"thresholds", {{"min_accuracy", 0.5}}}};
  cmd = "SLUICE_STATE_DIR=" + env_.state_dir + " " + SLUICE_SERVING_BIN + " validate --config '" +
        v.dump() + "' --out " + out + " 2>" + dir_ + "/stderr";
  rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 1);
  EXPECT_EQ(ReadFile(dir_ + "/stderr"),
            "sluice-serving validate: error: traffic validation of service cli version v1 (" +
                all["model_digest"].get<std::string>() +
                ") failed at stage 1/1 (100% traffic): accuracy 0.0000 (1 labelled) < "
                "min_accuracy 0.5. service cli has no canary (first deployment?): validated "
                "the stable version v1 at 100%; nothing to roll out or back\n");
  EXPECT_EQ(Json::parse(ReadFile(out + "/metrics.json"))["passed"], 0);
}

}  // namespace
}  // namespace sluice::serving
