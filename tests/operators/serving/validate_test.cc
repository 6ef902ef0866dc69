#include "operators/serving/validate.h"

#include <chrono>

#include <gtest/gtest.h>
#include <httplib.h>

#include "operators/serving/process.h"
#include "serving_test_util.h"

namespace sluice::serving {
namespace {

using testing::ReadFile;
using testing::ServingTest;
using testing::WriteFile;

// ---- Judge: each threshold passes at its bound and fails just past it ----

LoadFigures Figures() {
  LoadFigures f;
  f.requests = 200;
  f.errors = 2;
  f.error_rate = 0.01;
  f.p99_ms = 250;
  f.labelled = 198;
  f.accuracy = 0.9;
  f.baseline_accuracy = 0.95;
  f.agreement = 0.97;
  f.regression = 0.05;
  return f;
}

TEST(JudgeTest, EveryThresholdPassesAtItsBound) {
  Thresholds t;
  t.max_error_rate = 0.01;
  t.max_p99_ms = 250;
  t.min_accuracy = 0.9;
  t.max_regression_vs_baseline = 0.05;
  Verdict v = Judge(Figures(), t);
  EXPECT_TRUE(v.passed);
  EXPECT_EQ(v.failures, std::vector<std::string>{});
  EXPECT_EQ(v.passes, (std::vector<std::string>{
                          "error rate 0.0100 (2/200) <= max_error_rate 0.01",
                          "p99 latency 250.0 ms <= max_p99_ms 250",
                          "accuracy 0.9000 (198 labelled) >= min_accuracy 0.9",
                          "regression vs baseline 0.0500 (baseline accuracy 0.9500, candidate "
                          "0.9000) <= max_regression_vs_baseline 0.05"}));
}

TEST(JudgeTest, EveryThresholdFailsJustPastItsBound) {
  Thresholds t;
  t.max_error_rate = 0.0099;
  t.max_p99_ms = 249.9;
  t.min_accuracy = 0.9001;
  t.max_regression_vs_baseline = 0.0499;
  LoadFigures f = Figures();
  f.first_error = "POST http://127.0.0.1:1/predict: HTTP 500";
  Verdict v = Judge(f, t);
  EXPECT_FALSE(v.passed);
  EXPECT_EQ(v.passes, std::vector<std::string>{});
  EXPECT_EQ(v.failures,
            (std::vector<std::string>{
                "error rate 0.0100 (2/200) > max_error_rate 0.0099 (first error: POST "
                "http://127.0.0.1:1/predict: HTTP 500)",
                "p99 latency 250.0 ms > max_p99_ms 249.9",
                "accuracy 0.9000 (198 labelled) < min_accuracy 0.9001",
                "regression vs baseline 0.0500 (baseline accuracy 0.9500, candidate 0.9000) > "
                "max_regression_vs_baseline 0.0499"}));
}

TEST(JudgeTest, NoThresholdsAlwaysPasses) {
  Verdict v = Judge(Figures(), Thresholds{});
  EXPECT_TRUE(v.passed);
  EXPECT_TRUE(v.passes.empty());
}

TEST(JudgeTest, MissingFiguresFail) {
  Thresholds t;
  t.min_accuracy = 0.5;
  t.max_regression_vs_baseline = 0.1;
  LoadFigures f;  // nothing answered
  Verdict v = Judge(f, t);
  EXPECT_FALSE(v.passed);
  EXPECT_EQ(v.failures,
            (std::vector<std::string>{
                "accuracy unknown (no labelled request got a prediction) < min_accuracy 0.5",
                "regression vs baseline unknown (no request answered by both) > "
                "max_regression_vs_baseline 0.1"}));
}

// ---- Config and request set ----

TEST(ValidationConfigTest, ParsesTheYamlShape) {
  auto c = ParseValidationConfig(Json::parse(R"({"validation": {
      "service": "breast-cancer", "requests": "/data/requests.jsonl", "shadow": true,
      "concurrency": 8, "rate": 100, "duration": "20s", "request_timeout": "2s",
      "stages": [10, 50, 100],
      "thresholds": {"max_error_rate": 0.01, "max_p99_ms": 500, "min_accuracy": 0.9,
                     "max_regression_vs_baseline": 0.02}}})"));
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->service, "breast-cancer");
  EXPECT_EQ(c->load.concurrency, 8);
  EXPECT_EQ(c->load.rate, 100);
  EXPECT_EQ(c->load.duration, std::chrono::seconds(20));
  EXPECT_EQ(c->load.request_timeout, std::chrono::seconds(2));
  EXPECT_EQ(c->stages, (std::vector<double>{10, 50, 100}));
  EXPECT_EQ(*c->thresholds.max_p99_ms, 500);
  EXPECT_TRUE(c->shadow);
}

TEST(ValidationConfigTest, ErrorsNameTheField) {
  auto error = [](const char* json) {
    auto c = ParseValidationConfig(Json::parse(json));
    return c ? std::string("ok") : c.error().message();
  };
  EXPECT_EQ(error(R"({"service": "s", "requests": "r", "stages": [50, 10]})"),
            "validation.stages[1]: stages must increase, e.g. [10, 50, 100]");
  EXPECT_EQ(error(R"({"service": "s", "requests": "r", "thresholds": {"max_p95_ms": 1}})"),
            "validation.thresholds.max_p95_ms: unknown threshold; known: max_error_rate, "
            "max_p99_ms, min_accuracy, max_regression_vs_baseline");
  EXPECT_EQ(error(R"({"service": "s", "requests": "r",
                      "thresholds": {"max_regression_vs_baseline": 0.1}})"),
            "validation.thresholds.max_regression_vs_baseline: needs a baseline: set shadow: "
            "true (or baseline_endpoint)");
  EXPECT_EQ(error(R"({"requests": "r"})"),
            "validation.service: give exactly one of service (a deployed service, whose canary "
            "is validated and rolled out) or endpoint (a URL to validate only)");
}

TEST(RequestSetTest, BadLineNamesFileAndLine) {
  std::string dir = testing::MakeTempDir("sluice-requests-");
  WriteFile(dir + "/r.jsonl", "{\"input\": [1], \"label\": 1}\n\n{\"label\": 1}\n");
  auto items = LoadRequestSet(dir + "/r.jsonl");
  ASSERT_FALSE(items.has_value());
  EXPECT_EQ(items.error().message(), dir + "/r.jsonl:3: want an object with \"input\" (and "
                                           "optionally \"label\")");
  std::filesystem::remove_all(dir);
}

// ---- Real servers ----

class ValidateTest : public ServingTest {
 protected:
  // Starts the fake server for `model_json` directly (no proxy).
  std::string StartServer(const std::string& name, const std::string& model_json) {
    std::string model = Model(name + ".json", model_json);
    auto port = FindFreePort("127.0.0.1");
    EXPECT_TRUE(port.has_value());
    SpawnOptions spawn;
    spawn.argv = {"python3", FAKE_MODEL_SERVER, "--model", model, "--port", std::to_string(*port)};
    spawn.log_path = dir_ + "/" + name + ".log";
    auto pid = SpawnDetached(spawn);
    EXPECT_TRUE(pid.has_value());
    servers_.push_back(*pid);
    std::string url = "http://127.0.0.1:" + std::to_string(*port);
    EXPECT_TRUE(WaitReady(url, "/healthz", std::chrono::seconds(20), &*pid).ok());
    return url;
  }
  void TearDown() override {
    for (const auto& p : servers_) (void)StopProcess(p, std::chrono::seconds(2));
    ServingTest::TearDown();
  }
  std::string Requests(const std::string& lines) {
    std::string path = dir_ + "/requests.jsonl";
    WriteFile(path, lines);
    return path;
  }
  std::vector<ProcessId> servers_;
};

TEST_F(ValidateTest, MeasuresAccuracyAgreementAndRegression) {
  std::string candidate = StartServer("echo", R"({"echo": 0})");
  std::string baseline = StartServer("ones", R"({"answer": 1})");
  auto items = LoadRequestSet(Requests("{\"input\": [1], \"label\": 1}\n"
                                       "{\"input\": [0], \"label\": 1}\n"
                                       "{\"input\": [1], \"label\": 1}\n"
                                       "{\"input\": [1], \"label\": 0}\n"));
  ASSERT_TRUE(items.has_value());
  LoadOptions options;
  options.concurrency = 2;
  auto f = RunLoad(candidate, baseline, *items, options);
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  EXPECT_EQ(f->requests, 4);
  EXPECT_EQ(f->errors, 0);
  EXPECT_EQ(f->labelled, 4);
  EXPECT_EQ(*f->accuracy, 0.5);            // echo: 1,0,1,1 vs labels 1,1,1,0
  EXPECT_EQ(*f->baseline_accuracy, 0.75);  // always 1
  EXPECT_EQ(*f->agreement, 0.75);
  EXPECT_EQ(*f->regression, 0.25);
  EXPECT_GT(f->p99_ms, 0);
  EXPECT_LE(f->p50_ms, f->p99_ms);
}

TEST_F(ValidateTest, ServerErrorsCountAsErrors) {
  std::string candidate = StartServer("failing", R"({"fail": true})");
  auto items = LoadRequestSet(Requests("{\"input\": [1]}\n{\"input\": [2]}\n"));
  ASSERT_TRUE(items.has_value());
  auto f = RunLoad(candidate, "", *items, LoadOptions{});
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->errors, 2);
  EXPECT_EQ(f->error_rate, 1.0);
  EXPECT_EQ(f->first_error,
            "POST " + candidate + "/predict: HTTP 500 {\"error\": \"model failed\"}");
  EXPECT_FALSE(f->accuracy.has_value());
}

TEST_F(ValidateTest, UnreachableEndpointIsAClearErrorWithinTheBound) {
  auto port = FindFreePort("127.0.0.1");
  ASSERT_TRUE(port.has_value());
  std::string url = "http://127.0.0.1:" + std::to_string(*port);
  ValidationConfig config;
  config.endpoint = url;
  config.requests = Requests("{\"input\": [1]}\n");
  config.load.connect_timeout = std::chrono::milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  auto outcome = ValidateRollout(config, env_);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(outcome.has_value());
  EXPECT_EQ(outcome.error().code(), StatusCode::kUnavailable);
  EXPECT_EQ(outcome.error().message(),
            "the candidate: cannot reach " + url +
                ": connection refused or host unreachable (tried for 300ms; is the server "
                "running?)");
  EXPECT_LT(took, std::chrono::seconds(5));
}

// Deploys v1 (always 1) as stable and `candidate_json` as a 10% canary.
class RolloutTest : public ValidateTest {
 protected:
  void DeployPair(const std::string& candidate_json) {
    auto v1 = DeployLocal(Config("svc", Model("v1.json", R"({"answer": 1})"), "v1"), env_);
    ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
    stable_digest_ = v1->model_digest;
    DeployConfig c = Config("svc", Model("v2.json", candidate_json), "v2");
    c.mode = DeployMode::kCanary;
    c.traffic = 10;
    auto v2 = DeployLocal(c, env_);
    ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
    candidate_digest_ = v2->model_digest;
    endpoint_ = v2->endpoint;
  }
  ValidationConfig Config3Stages() {
    ValidationConfig config;
    config.service = "svc";
    config.requests = Requests("{\"input\": [1], \"label\": 1}\n{\"input\": [2], \"label\": 1}\n"
                               "{\"input\": [3], \"label\": 1}\n{\"input\": [4], \"label\": 1}\n");
    config.stages = {10, 50, 100};
    config.shadow = true;
    config.thresholds.min_accuracy = 0.9;
    config.thresholds.max_error_rate = 0;
    config.run.run_id = "run-2";
    config.run.instance = "validate";
    return config;
  }
  // Which model answers through the proxy, for `n` requests.
  std::map<std::string, int> Served(int n) {
    httplib::Client client(endpoint_);
    std::map<std::string, int> counts;
    for (int i = 0; i < n; ++i) {
      auto r = client.Post("/predict", R"({"input": [1]})", "application/json");
      counts[r ? std::filesystem::path(Json::parse(r->body).value("model", "")).filename().string()
               : "error"]++;
    }
    return counts;
  }
  std::string stable_digest_, candidate_digest_, endpoint_;
};

TEST_F(RolloutTest, FailedStageRollsBackToThePreviousModelDigest) {
  DeployPair(R"({"answer": 0})");  // always wrong
  auto outcome = ValidateRollout(Config3Stages(), env_);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_FALSE(outcome->passed);
  EXPECT_TRUE(outcome->rolled_back);
  EXPECT_EQ(outcome->message,
            "traffic validation of service svc version v2 (" + candidate_digest_ +
                ") failed at stage 1/3 (10% traffic): accuracy 0.0000 (4 labelled) < "
                "min_accuracy 0.9 (passed: error rate 0.0000 (0/4) <= max_error_rate 0). "
                "Rolled back: service svc serves version v1 (" + stable_digest_ +
                ") at 100% again; the candidate was stopped");
  EXPECT_EQ(outcome->metrics["rolled_back"], 1);
  EXPECT_EQ(outcome->metrics["stages_passed"], 0);
  EXPECT_EQ(outcome->metrics["accuracy"], 0.0);
  EXPECT_EQ(outcome->metrics["baseline_accuracy"], 1.0);

  auto state = LoadServiceState(env_.state_dir, "svc");
  ASSERT_TRUE(state.has_value() && state->has_value());
  EXPECT_EQ((*state)->stable->model_digest, stable_digest_);
  EXPECT_EQ((*state)->stable->traffic_percent, 100);
  EXPECT_FALSE((*state)->candidate.has_value());
  EXPECT_EQ(Served(20), (std::map<std::string, int>{{"v1.json", 20}}));

  auto records = store_->ListDeployments("svc", 10);
  ASSERT_TRUE(records.has_value());
  ASSERT_GE(records->size(), 3u);
  const DeploymentRecord& newest = records->front();
  EXPECT_EQ(newest.action, "rollback");
  EXPECT_EQ(newest.model_digest, stable_digest_);
  EXPECT_EQ(newest.version, "v1");
  EXPECT_EQ(newest.traffic_percent, 100);
  EXPECT_EQ(newest.run_id, "run-2");
  EXPECT_EQ(newest.details["rolled_back_digest"], candidate_digest_);
}

TEST_F(RolloutTest, AllStagesPassThenPromote) {
  DeployPair(R"({"answer": 1, "v": 2})");
  EXPECT_EQ(Served(10), (std::map<std::string, int>{{"v1.json", 9}, {"v2.json", 1}}));
  auto outcome = ValidateRollout(Config3Stages(), env_);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_TRUE(outcome->passed) << outcome->message;
  EXPECT_TRUE(outcome->promoted);
  EXPECT_EQ(outcome->metrics["stages_passed"], 3);
  EXPECT_EQ(outcome->metrics["stage2_accuracy"], 1.0);
  EXPECT_EQ(Served(10), (std::map<std::string, int>{{"v2.json", 10}}));
  auto records = store_->ListDeployments("svc", 10);
  ASSERT_TRUE(records.has_value());
  std::vector<std::string> actions;
  for (const auto& r : *records) actions.push_back(r.action + "@" + std::to_string(static_cast<int>(r.traffic_percent)));
  EXPECT_EQ(actions, (std::vector<std::string>{"promote@100", "shift@100", "shift@50",
                                               "deploy@10", "deploy@100"}));
  EXPECT_EQ(records->front().model_digest, candidate_digest_);

  std::string out = dir_ + "/out";
  ASSERT_TRUE(WriteValidationOutputs(Config3Stages(), *outcome, out).ok());
  Json metrics = Json::parse(ReadFile(out + "/metrics.json"));
  EXPECT_EQ(metrics["promoted"], 1);
  for (const auto& [key, value] : metrics.items()) EXPECT_TRUE(value.is_number()) << key;
}

TEST_F(RolloutTest, UnreachableCandidateIsRolledBack) {
  DeployPair(R"({"answer": 1})");
  auto state = LoadServiceState(env_.state_dir, "svc");
  ASSERT_TRUE(state.has_value() && state->has_value());
  ASSERT_TRUE(StopProcess((*state)->candidate->process, std::chrono::seconds(2)).ok());
  ValidationConfig config = Config3Stages();
  config.load.connect_timeout = std::chrono::milliseconds(300);
  auto outcome = ValidateRollout(config, env_);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_FALSE(outcome->passed);
  EXPECT_TRUE(outcome->rolled_back);
  EXPECT_EQ(outcome->message,
            "traffic validation of service svc version v2 (" + candidate_digest_ +
                ") failed at stage 1/3 (10% traffic): the candidate: cannot reach " +
                (*state)->candidate->url +
                ": connection refused or host unreachable (tried for 300ms; is the server "
                "running?). Rolled back: service svc serves version v1 (" + stable_digest_ +
                ") at 100% again; the candidate was stopped");
  EXPECT_EQ(Served(5), (std::map<std::string, int>{{"v1.json", 5}}));
}

}  // namespace
}  // namespace sluice::serving
