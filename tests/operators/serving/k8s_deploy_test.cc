#include "operators/serving/k8s_deploy.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>

#include "serving_test_util.h"

namespace sluice::serving {
namespace {

using testing::ServingTest;

// A fake API server for deployments and services in one namespace, behaving
// like kwok: objects are stored as sent and, when `available` is set, a
// Deployment's status says all its replicas are up as soon as it is written.
class FakeApiServer {
 public:
  FakeApiServer() {
    server_.new_task_queue = [] { return new httplib::ThreadPool(8); };
    const std::string ns = "/namespaces/ml/";
    for (const std::string prefix : {"/apis/apps/v1", "/api/v1"}) {
      std::string collection = prefix + ns + "([a-z]+)";
      server_.Get(collection, [this](const httplib::Request& req, httplib::Response& res) {
        if (req.has_param("watch")) return Watch(res);
        std::lock_guard<std::mutex> lock(mu_);
        Json items = Json::array();
        for (const auto& [key, object] : objects_) {
          if (key.first == req.matches[1].str()) items.push_back(object);
        }
        Reply(res, 200, {{"metadata", {{"resourceVersion", std::to_string(version_)}}},
                         {"items", items}});
      });
      server_.Post(collection, [this](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(mu_);
        Json object = Json::parse(req.body);
        auto key = std::pair{req.matches[1].str(), object["metadata"]["name"].get<std::string>()};
        if (objects_.count(key)) return Reply(res, 409, {{"reason", "AlreadyExists"}, {"message", "exists"}});
        object["metadata"]["generation"] = 1;
        Settle(object);
        objects_[key] = object;
        requests_.push_back("POST " + key.first + "/" + key.second);
        Reply(res, 201, object);
      });
      std::string item = collection + "/([a-z0-9-]+)";
      server_.Get(item, [this](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = objects_.find({req.matches[1].str(), req.matches[2].str()});
        if (it == objects_.end()) return Reply(res, 404, {{"reason", "NotFound"}, {"message", "not found"}});
        Reply(res, 200, it->second);
      });
      server_.Patch(item, [this](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = objects_.find({req.matches[1].str(), req.matches[2].str()});
        if (it == objects_.end()) return Reply(res, 404, {{"reason", "NotFound"}, {"message", "not found"}});
        it->second.merge_patch(Json::parse(req.body));
        it->second["metadata"]["generation"] = it->second["metadata"].value("generation", 1) + 1;
        Settle(it->second);
        requests_.push_back("PATCH " + it->first.first + "/" + it->first.second);
        Reply(res, 200, it->second);
      });
      server_.Delete(item, [this](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(mu_);
        objects_.erase({req.matches[1].str(), req.matches[2].str()});
        requests_.push_back("DELETE " + req.matches[1].str() + "/" + req.matches[2].str());
        Reply(res, 200, {{"status", "Success"}});
      });
    }
    server_.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeApiServer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    while (!server_.is_running()) std::this_thread::yield();
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void set_available(bool available) { available_ = available; }
  std::optional<Json> Object(const std::string& plural, const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find({plural, name});
    if (it == objects_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  static void Reply(httplib::Response& res, int status, const Json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
  }
  // Objects only change through requests here, so a watch never has news: it
  // stays open until the client goes away or the server stops.
  void Watch(httplib::Response& res) {
    res.set_chunked_content_provider("application/json", [this](size_t, httplib::DataSink& sink) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stopping_; });
      if (stopping_ || !sink.is_writable()) {
        sink.done();
        return false;
      }
      return true;
    });
  }
  void Settle(Json& object) {
    version_++;
    object["metadata"]["resourceVersion"] = std::to_string(version_);
    if (object.value("kind", "") != "Deployment") return;
    int64_t replicas = object["spec"].value("replicas", 1);
    int64_t up = available_ ? replicas : 0;
    object["status"] = {{"observedGeneration", object["metadata"]["generation"]},
                        {"replicas", replicas},
                        {"updatedReplicas", up},
                        {"availableReplicas", up}};
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::atomic<bool> available_{true};
  int64_t version_ = 1;
  std::map<std::pair<std::string, std::string>, Json> objects_;  // (plural, name)
  std::vector<std::string> requests_;
};

class KubernetesDeployTest : public ServingTest {
 protected:
  void SetUp() override {
    ServingTest::SetUp();
    k8s::RestConfig rest;
    rest.context = "fake";
    rest.namespace_ = "ml";
    rest.cluster.server = api_.url();
    rest.user.token = "t";
    auto client = k8s::Client::Create(rest);
    ASSERT_TRUE(client.has_value()) << client.error().ToString();
    client_ = std::move(*client);
  }
  DeployConfig K8sConfig(const std::string& version, DeployMode mode) {
    DeployConfig c = Config("breast-cancer", Model(version + ".pkl", version), version);
    services_.clear();  // nothing local to undeploy
    c.executor = "kubernetes";
    c.image = "python:3.11-slim";
    c.command = {"python3", "/app/serve.py", "--model", "{{model}}", "--port", "{{port}}"};
    c.mode = mode;
    c.traffic = 10;
    c.kubernetes = {{"replicas", 10}};
    return c;
  }
  FakeApiServer api_;
  std::unique_ptr<k8s::Client> client_;
};

TEST_F(KubernetesDeployTest, ReplaceThenCanaryByReplicas) {
  auto v1 = DeployKubernetes(K8sConfig("v1", DeployMode::kReplace), *client_, env_);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  EXPECT_EQ(v1->endpoint, "http://breast-cancer.ml.svc.cluster.local");
  EXPECT_EQ(api_.Object("deployments", "breast-cancer-stable").value()["spec"]["replicas"], 10);

  auto v2 = DeployKubernetes(K8sConfig("v2", DeployMode::kCanary), *client_, env_);
  ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
  EXPECT_EQ(v2->traffic_percent, 10);
  EXPECT_EQ(api_.Object("deployments", "breast-cancer-canary").value()["spec"]["replicas"], 1);
  EXPECT_EQ(api_.Object("deployments", "breast-cancer-stable").value()["spec"]["replicas"], 9);
  EXPECT_EQ(api_.requests(), (std::vector<std::string>{
                                 "POST deployments/breast-cancer-stable",
                                 "POST services/breast-cancer",
                                 "POST deployments/breast-cancer-canary",
                                 "PATCH deployments/breast-cancer-stable",
                                 "PATCH services/breast-cancer",
                                 "POST services/breast-cancer-canary"}));
  auto records = store_->ListDeployments("breast-cancer", 10);
  ASSERT_TRUE(records.has_value());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].executor, "kubernetes");
  EXPECT_EQ((*records)[0].namespace_, "ml");
  EXPECT_EQ((*records)[0].traffic_percent, 10);
  EXPECT_EQ((*records)[0].model_digest, v2->model_digest);
}

TEST_F(KubernetesDeployTest, RolloutThatNeverBecomesAvailableIsUndone) {
  auto v1 = DeployKubernetes(K8sConfig("v1", DeployMode::kReplace), *client_, env_);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  api_.set_available(false);
  DeployConfig c = K8sConfig("v2", DeployMode::kCanary);
  c.readiness_timeout = std::chrono::milliseconds(2000);
  auto v2 = DeployKubernetes(c, *client_, env_);
  ASSERT_FALSE(v2.has_value());
  EXPECT_EQ(v2.error().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(v2.error().message(),
            "service breast-cancer version v2 in namespace ml: Deployment breast-cancer-canary "
            "not rolled out within 2000ms (last: observedGeneration 1/1, updatedReplicas 0/1, "
            "availableReplicas 0/1). no pod was created (see the ReplicaSet's events). The objects "
            "were put back as they were; the previous deployment keeps serving");
  // The canary is followed before anything else is applied: the stable
  // Deployment was never scaled down, and the canary Service never made.
  EXPECT_EQ(api_.requests(), (std::vector<std::string>{
                                 "POST deployments/breast-cancer-stable",
                                 "POST services/breast-cancer",
                                 "POST deployments/breast-cancer-canary",
                                 "DELETE deployments/breast-cancer-canary"}));
  EXPECT_FALSE(api_.Object("deployments", "breast-cancer-canary").has_value());
  Json stable = api_.Object("deployments", "breast-cancer-stable").value();
  EXPECT_EQ(stable["spec"]["replicas"], 10);
  EXPECT_EQ(stable["metadata"]["generation"], 1);
  auto records = store_->ListDeployments("breast-cancer", 10);
  ASSERT_TRUE(records.has_value());
  EXPECT_EQ(records->size(), 1u);
}

TEST_F(KubernetesDeployTest, FailedValidationScalesTheStableBackAndDeletesTheCanary) {
  auto v1 = DeployKubernetes(K8sConfig("v1", DeployMode::kReplace), *client_, env_);
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  auto v2 = DeployKubernetes(K8sConfig("v2", DeployMode::kCanary), *client_, env_);
  ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
  const Json stable_before = api_.Object("deployments", "breast-cancer-stable").value()["spec"];
  EXPECT_EQ(api_.Object("deployments", "breast-cancer-canary")
                .value()["metadata"]["annotations"]["sluice.dev/stable-replicas-before"],
            "10");

  // kwok serves nothing: a local server stands in for the canary.
  auto bad = DeployLocal(Config("stand-in", Model("bad.json", R"({"answer": 0})"), "bad"), env_);
  ASSERT_TRUE(bad.has_value()) << bad.error().ToString();
  ValidationConfig v;
  v.service = "breast-cancer";
  v.executor = "kubernetes";
  v.endpoint = bad->candidate_url;
  v.requests = Model("requests.jsonl", "{\"input\": [1], \"label\": 1}\n");
  v.stages = {10, 100};
  v.thresholds.min_accuracy = 0.5;
  v.kubernetes = {{"rollout_timeout", "10s"}};
  auto outcome = ValidateKubernetes(v, *client_, env_);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  EXPECT_TRUE(outcome->rolled_back);
  EXPECT_EQ(outcome->message,
            "traffic validation of service breast-cancer version v2 (" + v2->model_digest +
                ") failed at stage 1/2 (10% traffic): accuracy 0.0000 (1 labelled) < "
                "min_accuracy 0.5. Rolled back: service breast-cancer serves version v1 (" +
                v1->model_digest + ") at 100% again; the candidate was stopped");
  std::vector<std::string> requests = api_.requests();
  ASSERT_GE(requests.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(requests.end() - 3, requests.end()),
            (std::vector<std::string>{"PATCH deployments/breast-cancer-stable",
                                      "DELETE deployments/breast-cancer-canary",
                                      "DELETE services/breast-cancer-canary"}));
  Json stable = api_.Object("deployments", "breast-cancer-stable").value();
  EXPECT_EQ(stable["spec"]["replicas"], 10);
  Json expected = stable_before;
  expected["replicas"] = 10;
  EXPECT_EQ(stable["spec"], expected);
  auto records = store_->ListDeployments("breast-cancer", 1);
  ASSERT_TRUE(records.has_value() && !records->empty());
  EXPECT_EQ(records->front().action, "rollback");
  EXPECT_EQ(records->front().model_digest, v1->model_digest);
  EXPECT_EQ(records->front().executor, "kubernetes");
}

}  // namespace
}  // namespace sluice::serving
