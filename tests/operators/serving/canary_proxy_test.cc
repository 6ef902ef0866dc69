#include "operators/serving/canary_proxy.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>

#include "operators/serving/process.h"
#include "serving_test_util.h"

namespace sluice::serving {
namespace {

using testing::MakeTempDir;
using testing::WriteFile;

// A real loopback HTTP server that answers with its name and counts hits.
class Backend {
 public:
  explicit Backend(std::string name) : name_(std::move(name)) {
    server_.new_task_queue = [] { return new httplib::ThreadPool(64); };
    server_.set_keep_alive_max_count(100000);
    server_.set_tcp_nodelay(true);
    // No SO_REUSEPORT (httplib's default): parallel tests must not share ports.
    server_.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      hits_++;
      Json echo = {{"backend", name_},
                   {"method", req.method},
                   {"target", req.target},
                   {"body", req.body},
                   {"x_test", req.get_header_value("X-Test")}};
      res.status = req.has_header("X-Status") ? std::stoi(req.get_header_value("X-Status")) : 200;
      res.set_header("X-From", name_);
      res.set_content(echo.dump(), "application/json");
    };
    server_.Get(".*", handler);
    server_.Post(".*", handler);
    port_ = server_.bind_to_any_port("127.0.0.1");
    // bind_to_any_port also listens: connections queue until the loop runs.
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~Backend() {
    // stop() is a no-op until the listen loop runs.
    while (!server_.is_running()) std::this_thread::yield();
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int64_t hits() const { return hits_.load(); }

 private:
  std::string name_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int64_t> hits_{0};
};

std::unique_ptr<CanaryProxy> StartProxy() {
  CanaryProxyOptions options;
  options.service = "demo";
  options.token = "s3cret";
  auto proxy = CanaryProxy::Start(options);
  EXPECT_TRUE(proxy.has_value()) << proxy.error().ToString();
  return proxy ? std::move(*proxy) : nullptr;
}

// Tolerance: smooth weighted round-robin is exact over every cycle of
// sum(weights) picks, so 10,000 requests split 1/3/6 land exactly
// 1,000/3,000/6,000, even from 16 concurrent clients.
TEST(CanaryProxyTest, WeightsHoldExactlyOverTenThousandRequests) {
  Backend a("a"), b("b"), c("c");
  auto proxy = StartProxy();
  ASSERT_TRUE(proxy);
  ASSERT_TRUE(proxy->SetBackends({{"a", a.url(), 1}, {"b", b.url(), 3}, {"c", c.url(), 6}}).ok());

  constexpr int kClients = 16;  // the proxy's default 32 workers serve them all
  constexpr int kPerClient = 625;
  std::atomic<int> not_ok{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&] {
      httplib::Client client("127.0.0.1", proxy->port());
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      for (int i = 0; i < kPerClient; ++i) {
        auto r = client.Get("/predict");
        if (!r || r->status != 200) not_ok++;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(not_ok.load(), 0);
  EXPECT_EQ(a.hits(), 1000);
  EXPECT_EQ(b.hits(), 3000);
  EXPECT_EQ(c.hits(), 6000);
  Json stats = proxy->Stats();
  EXPECT_EQ(stats["requests"], 10000);
  EXPECT_EQ(stats["errors"], 0);
  EXPECT_EQ(stats["backends"][0]["requests"], 1000);
  EXPECT_EQ(stats["backends"][2]["requests"], 6000);
}

TEST(CanaryProxyTest, ForwardsMethodTargetBodyAndHeaders) {
  Backend a("a");
  auto proxy = StartProxy();
  ASSERT_TRUE(proxy);
  ASSERT_TRUE(proxy->SetBackends({{"a", a.url(), 1}}).ok());
  httplib::Client client("127.0.0.1", proxy->port());
  auto r = client.Post("/predict?x=1&y=%20z", {{"X-Test", "yes"}}, R"({"input":[1]})",
                       "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("X-Sluice-Backend"), "a");
  EXPECT_EQ(r->get_header_value("X-From"), "a");
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(Json::parse(r->body), (Json{{"backend", "a"},
                                       {"method", "POST"},
                                       {"target", "/predict?x=1&y=%20z"},
                                       {"body", R"({"input":[1]})"},
                                       {"x_test", "yes"}}));
  // Upstream statuses come back unchanged.
  auto r404 = client.Get("/nope", {{"X-Status", "404"}});
  ASSERT_TRUE(r404);
  EXPECT_EQ(r404->status, 404);
}

TEST(CanaryProxyTest, UnreachableUpstreamIs502WithAClearBody) {
  auto port = FindFreePort("127.0.0.1");
  ASSERT_TRUE(port.has_value());
  std::string url = "http://127.0.0.1:" + std::to_string(*port);
  auto proxy = StartProxy();
  ASSERT_TRUE(proxy);
  ASSERT_TRUE(proxy->SetBackends({{"gone", url, 1}}).ok());
  httplib::Client client("127.0.0.1", proxy->port());
  auto r = client.Get("/predict");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);
  EXPECT_EQ(Json::parse(r->body),
            (Json{{"error", "upstream gone (" + url +
                                ") failed: connection refused or host unreachable"},
                  {"backend", "gone"}}));
  EXPECT_EQ(proxy->Stats()["backends"][0]["errors"], 1);
}

TEST(CanaryProxyTest, NoBackendIs503) {
  auto proxy = StartProxy();
  ASSERT_TRUE(proxy);
  httplib::Client client("127.0.0.1", proxy->port());
  auto r = client.Get("/predict");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(Json::parse(r->body)["error"],
            "service demo has no backend with a non-zero weight (is it deployed?)");
}

TEST(CanaryProxyTest, AdminApiNeedsTheTokenAndSwapsBackendsAtomically) {
  Backend a("a"), b("b");
  auto proxy = StartProxy();
  ASSERT_TRUE(proxy);
  httplib::Client admin("127.0.0.1", proxy->admin_port());
  auto health = admin.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto anonymous = admin.Get("/stats");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto wrong = admin.Get("/stats", {{"Authorization", "Bearer nope"}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);

  httplib::Headers auth = {{"Authorization", "Bearer s3cret"}};
  Json body = {{"backends", {{{"name", "a"}, {"url", a.url()}, {"weight", 9}},
                             {{"name", "b"}, {"url", b.url()}, {"weight", 1}}}}};
  auto put = admin.Put("/backends", auth, body.dump(), "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 200);
  auto bad = admin.Put("/backends", auth, R"({"backends":[{"name":"x","url":"ftp://h:1","weight":1}]})",
                       "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(Json::parse(bad->body)["error"], "backend URL 'ftp://h:1' must start with http://");

  httplib::Client client("127.0.0.1", proxy->port());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(client.Get("/"));
  EXPECT_EQ(a.hits(), 90);
  EXPECT_EQ(b.hits(), 10);
  auto stats = admin.Get("/stats", auth);
  ASSERT_TRUE(stats);
  Json s = Json::parse(stats->body);
  EXPECT_EQ(s["requests"], 100);
  EXPECT_EQ(s["backends"][1], (Json{{"name", "b"}, {"url", b.url()}, {"weight", 1},
                                    {"requests", 10}, {"errors", 0}}));
}

TEST(CanaryProxyTest, TokenFileMustBePrivate) {
  std::string dir = MakeTempDir("sluice-token-");
  std::string path = dir + "/token";
  auto written = WriteNewTokenFile(path);
  ASSERT_TRUE(written.has_value());
  EXPECT_EQ(written->size(), 64u);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto read = ReadTokenFile(path);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(*read, *written);

  chmod(path.c_str(), 0644);
  auto open = ReadTokenFile(path);
  ASSERT_FALSE(open.has_value());
  EXPECT_EQ(open.error().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(open.error().message(),
            "token file " + path + " has mode 0644; it must not be readable by group or others "
            "(chmod 600 " + path + ")");
  std::filesystem::remove_all(dir);
}

TEST(CanaryProxyTest, RejectsBadBackendSets) {
  auto proxy = StartProxy();
  ASSERT_TRUE(proxy);
  EXPECT_EQ(proxy->SetBackends({{"a", "http://127.0.0.1:1", 1}, {"a", "http://127.0.0.1:2", 1}})
                .message(),
            "backend name 'a' appears twice");
  EXPECT_EQ(proxy->SetBackends({{"a", "http://127.0.0.1", 1}}).message(),
            "backend URL 'http://127.0.0.1' must be http://HOST:PORT");
  EXPECT_EQ(proxy->SetBackends({{"a", "http://127.0.0.1:1", -1}}).message(),
            "backend 'a' has a negative weight");
}

}  // namespace
}  // namespace sluice::serving
